//! The HTTP endpoints of `elect run --metrics-addr ADDR`, for probes, load balancers and
//! Prometheus:
//!
//! | path | answer |
//! | --- | --- |
//! | `/healthz` | 200 while campaigning or leading with a confirmed deadline, else 503 |
//! | `/leader` | 200 while leading with a confirmed deadline, else 503 (route to the leader) |
//! | `/status` | JSON: election, candidate, state, leader, token, deadline headroom |
//! | `/metrics` | Prometheus text: `elect_leader`, `elect_fencing_token`, `elect_terms_total`, `elect_losses_total{reason}`, `elect_deadline_headroom_seconds`, `elect_command_restarts_total` |
//!
//! A plain HTTP/1.0-style server: one request per connection, GET only, requests bounded in
//! size and time.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::status::RunStatus;

/// The longest request head read.
const MAX_REQUEST: usize = 8 * 1024;
/// How long a client may take to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Binds `addr`; the listener is then served by [`serve`].
pub(crate) async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let listener = TcpListener::bind(addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "serving /healthz, /leader, /status and /metrics");
    Ok(listener)
}

/// Answers requests on `listener` until dropped.
pub(crate) async fn serve(listener: TcpListener, status: RunStatus) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let status = status.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(READ_TIMEOUT, answer(stream, &status)).await;
        });
    }
}

async fn answer(mut stream: TcpStream, status: &RunStatus) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 || head.len() + n > MAX_REQUEST {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&head);
    let mut words = head.split_whitespace();
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let (code, kind, body) = match (method, path) {
        ("GET", "/healthz") if status.healthy() => (200, "text/plain", "ok\n".to_owned()),
        ("GET", "/healthz") => (503, "text/plain", "unhealthy\n".to_owned()),
        ("GET", "/leader") if status.leads() => (200, "text/plain", "leader\n".to_owned()),
        ("GET", "/leader") => (503, "text/plain", "not leader\n".to_owned()),
        ("GET", "/status") => (200, "application/json", format!("{}\n", status.json())),
        ("GET", "/metrics") => (
            200,
            "text/plain; version=0.0.4; charset=utf-8",
            status.prometheus(),
        ),
        ("GET", _) => (404, "text/plain", "not found\n".to_owned()),
        _ => (405, "text/plain", "GET only\n".to_owned()),
    };
    let reason = match code {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Service Unavailable",
    };
    let response = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}
