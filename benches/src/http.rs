//! HTTP/1.0 requests for the benches (etcd's metrics, Consul's API), off the async threads.

use std::time::Duration;

use anyhow::{bail, Context, Result};

/// One HTTP/1.0 request to `addr`; returns the status and the body.
pub async fn http(
    addr: &str,
    method: &str,
    path: &str,
    body: &str,
    timeout: Duration,
) -> Result<(u16, String)> {
    let (addr, method, path, body) = (
        addr.to_owned(),
        method.to_owned(),
        path.to_owned(),
        body.to_owned(),
    );
    tokio::task::spawn_blocking(move || {
        elect_test_support::try_http(&addr, &method, &path, &[], &body, timeout)
            .with_context(|| format!("{method} {addr}{path}"))
    })
    .await?
}

/// `GET path` on `addr`, the body of a 200 answer.
pub async fn http_get(addr: &str, path: &str, timeout: Duration) -> Result<String> {
    let (status, body) = http(addr, "GET", path, "", timeout).await?;
    if status != 200 {
        bail!("GET {addr}{path}: status {status}: {body}");
    }
    Ok(body)
}
