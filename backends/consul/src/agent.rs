//! Talking to Consul agents: rs-consul where it serves, a small typed layer of our own for
//! the rest, both on one HTTP client.
//!
//! | what | from |
//! | --- | --- |
//! | KV release of a lock never granted a term (`PUT /v1/kv/<key>?release=`, with flags) | rs-consul `create_or_update_key` |
//! | sessions: create, renew, destroy, info | ours (rs-consul has no session API) |
//! | KV reads and blocking queries | ours (rs-consul drops the index of a missing key and requires UTF-8 values) |
//! | `/v1/txn`: acquire (`lock`, which returns the token in the same round trip), release (value key and `unlock` at once), fenced writes (`check-session`) | ours (rs-consul has no txn) |
//!
//! Several agent addresses may be given: a request that cannot reach one is tried on the next.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use elect_core::config::{ConsulConfig, Secret, TlsConfig};
use elect_core::{ConfigError, Error};
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::{Method, StatusCode};
use serde::Deserialize;

/// Consul's default HTTP port.
pub const DEFAULT_PORT: u16 = 8500;

pub(crate) const BACKEND: &str = "consul";

/// How long a plain request may take.
pub(crate) const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// `api.LockFlagValue` of Consul's Go API, which `consul lock` sets on its lock key: a lock
/// key with other flags is not a lock (consul#9951).
pub const LOCK_FLAGS: u64 = 0x2ddc_cbc0_58a5_0c18;

type HttpClient = rs_consul::HttpsClient;

/// The agents of one Consul datacenter.
pub(crate) struct Agent {
    bases: Vec<String>,
    current: AtomicUsize,
    http: HttpClient,
    consuls: Vec<rs_consul::Consul>,
    token: Option<Secret>,
    datacenter: Option<String>,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("addresses", &self.bases)
            .finish_non_exhaustive()
    }
}

/// One KV entry as Consul returns it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct KvEntry {
    pub(crate) key: String,
    #[serde(default)]
    pub(crate) value: Option<String>,
    #[serde(default)]
    pub(crate) session: Option<String>,
    pub(crate) flags: u64,
    pub(crate) lock_index: u64,
    #[serde(default)]
    pub(crate) create_index: u64,
    pub(crate) modify_index: u64,
}

impl KvEntry {
    /// The value, base64-decoded (Consul values are bytes).
    pub(crate) fn bytes(&self) -> Vec<u8> {
        self.value
            .as_deref()
            .and_then(|v| base64::engine::general_purpose::STANDARD.decode(v).ok())
            .unwrap_or_default()
    }

    /// The session holding the key, if any.
    pub(crate) fn holder(&self) -> Option<&str> {
        self.session.as_deref().filter(|s| !s.is_empty())
    }
}

/// The TLS client configuration: the CA given, else the system's trust store; the client
/// certificate and key if given (mutual TLS). Without `tls`, plain HTTP: no roots needed.
fn tls_config(tls: Option<&TlsConfig>) -> Result<rustls::ClientConfig, Error> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let unreadable = |field: &str, path: &Path, problem: String| -> Error {
        ConfigError::new(field, path.display().to_string(), problem).into()
    };
    let certificates = |field: &str, path: &Path| -> Result<Vec<CertificateDer<'static>>, Error> {
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| unreadable(field, path, format!("cannot read PEM certificates: {e}")))?;
        if certs.is_empty() {
            return Err(unreadable(
                field,
                path,
                "holds no PEM certificate".to_owned(),
            ));
        }
        Ok(certs)
    };
    let mut roots = rustls::RootCertStore::empty();
    match tls {
        None => {}
        Some(TlsConfig { ca: Some(ca), .. }) => {
            for cert in certificates("consul.tls.ca", ca)? {
                roots.add(cert).map_err(|e| {
                    unreadable(
                        "consul.tls.ca",
                        ca,
                        format!("not a usable CA certificate: {e}"),
                    )
                })?;
            }
        }
        Some(TlsConfig { ca: None, .. }) => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(ConfigError::new(
                    "consul.tls.ca",
                    "",
                    format!(
                        "no CA given and no usable certificate in the system's trust store ({} errors)",
                        found.errors.len()
                    ),
                )
                .into());
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::backend(BACKEND, "set up TLS", e))?
        .with_root_certificates(roots);
    match tls {
        Some(TlsConfig {
            cert: Some(cert),
            key: Some(key),
            ..
        }) => {
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
                unreadable(
                    "consul.tls.key",
                    key,
                    format!("cannot read a PEM private key: {e}"),
                )
            })?;
            builder
                .with_client_auth_cert(certificates("consul.tls.cert", cert)?, key)
                .map_err(|e| {
                    unreadable(
                        "consul.tls.cert",
                        cert,
                        format!("the certificate and key do not go together: {e}"),
                    )
                })
        }
        _ => Ok(builder.with_no_client_auth()),
    }
}

/// A response: status, `X-Consul-Index`, body.
struct Reply {
    status: StatusCode,
    index: u64,
    body: Bytes,
}

impl Agent {
    pub(crate) fn new(config: &ConsulConfig) -> Result<Self, Error> {
        let scheme = if config.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let bases: Vec<String> = config
            .endpoints
            .iter()
            .map(|e| format!("{scheme}://{}", e.with_default_port(DEFAULT_PORT)))
            .collect();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls_config(config.tls.as_ref())?)
            .https_or_http()
            .enable_http1()
            .build();
        let http: HttpClient =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(30))
                // hyper's adaptive read buffer grows to fit a large answer (a waiter's read
                // of the whole election) and keeps that size for the connection's life: the
                // waiter's blocking query that follows would hold it all the wait long.
                .http1_read_buf_exact_size(8192)
                .build(connector);
        let consuls = bases
            .iter()
            .map(|base| {
                let config = rs_consul::Config {
                    address: base.clone(),
                    token: config.token.as_ref().map(|t| t.expose().to_owned()),
                    ..Default::default()
                };
                rs_consul::ConsulBuilder::new(config)
                    .with_https_client(http.clone())
                    .build()
            })
            .collect();
        Ok(Agent {
            bases,
            current: AtomicUsize::new(0),
            http,
            consuls,
            token: config.token.clone(),
            datacenter: config.datacenter.clone(),
        })
    }

    /// Runs `call` on the current agent, moving on to the next one when it cannot be reached.
    async fn on_any<T, F, Fut>(&self, operation: &str, mut call: F) -> Result<T, Error>
    where
        F: FnMut(usize) -> Fut,
        Fut: std::future::Future<Output = Result<T, Error>>,
    {
        let start = self.current.load(Ordering::Relaxed);
        let mut last = None;
        for attempt in 0..self.bases.len() {
            let i = (start + attempt) % self.bases.len();
            match call(i).await {
                Err(error @ (Error::Unavailable { .. } | Error::Timeout { .. })) => {
                    tracing::debug!(agent = self.bases[i].as_str(), %error, operation, "agent unreachable; trying the next");
                    last = Some(error);
                }
                other => {
                    self.current.store(i, Ordering::Relaxed);
                    return other;
                }
            }
        }
        Err(last.expect("at least one address"))
    }

    async fn send(
        &self,
        i: usize,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        timeout: Duration,
    ) -> Result<Reply, Error> {
        let separator = if path.contains('?') { '&' } else { '?' };
        let url = match &self.datacenter {
            Some(dc) => format!("{}{path}{separator}dc={dc}", self.bases[i]),
            None => format!("{}{path}", self.bases[i]),
        };
        let body: BoxBody<Bytes, std::convert::Infallible> =
            Full::new(Bytes::from(body.unwrap_or_default())).boxed();
        let request = hyper::Request::builder()
            .method(method)
            .uri(&url)
            .header(
                "X-Consul-Token",
                self.token.as_ref().map_or("", Secret::expose),
            )
            .body(body)
            .map_err(|e| Error::backend(BACKEND, format!("request {url}"), e))?;
        let exchange = async {
            let response = self
                .http
                .request(request)
                .await
                .map_err(|e| Error::Unavailable {
                    backend: BACKEND,
                    source: format!("{url}: {}", elect_core::with_causes(&e)).into(),
                })?;
            let status = response.status();
            let index = response
                .headers()
                .get("X-Consul-Index")
                .and_then(|v| v.to_str().ok()?.parse().ok())
                .unwrap_or(0);
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| Error::Unavailable {
                    backend: BACKEND,
                    source: format!("{url}: {}", elect_core::with_causes(&e)).into(),
                })?
                .to_bytes();
            Ok(Reply {
                status,
                index,
                body,
            })
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(reply) => reply,
            Err(_) => Err(Error::Timeout {
                backend: BACKEND,
                operation: url,
                after: timeout,
            }),
        }
    }

    /// Sends a request to any agent; maps refusals to error kinds.
    async fn call(
        &self,
        operation: &str,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        timeout: Duration,
    ) -> Result<Reply, Error> {
        let reply = self
            .on_any(operation, |i| {
                self.send(i, method.clone(), path, body.clone(), timeout)
            })
            .await?;
        match reply.status {
            StatusCode::FORBIDDEN | StatusCode::UNAUTHORIZED => Err(Error::PermissionDenied {
                backend: BACKEND,
                operation: operation.to_owned(),
                source: String::from_utf8_lossy(&reply.body).into_owned().into(),
            }),
            StatusCode::INTERNAL_SERVER_ERROR
                if String::from_utf8_lossy(&reply.body).contains("No cluster leader") =>
            {
                Err(Error::Unavailable {
                    backend: BACKEND,
                    source: format!("{operation}: no cluster leader").into(),
                })
            }
            _ => Ok(reply),
        }
    }

    /// A request with no body, bounded by [`CALL_TIMEOUT`], that must be answered 200 OK.
    async fn call_ok(&self, operation: &str, method: Method, path: &str) -> Result<Reply, Error> {
        let reply = self
            .call(operation, method, path, None, CALL_TIMEOUT)
            .await?;
        if reply.status != StatusCode::OK {
            return Err(Self::unexpected(operation, &reply));
        }
        Ok(reply)
    }

    /// A PUT of a JSON body, bounded by [`CALL_TIMEOUT`].
    async fn put_json(
        &self,
        operation: &str,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<Reply, Error> {
        let body = Some(body.to_string().into_bytes());
        self.call(operation, Method::PUT, path, body, CALL_TIMEOUT)
            .await
    }

    fn unexpected(operation: &str, reply: &Reply) -> Error {
        Error::backend(
            BACKEND,
            operation.to_owned(),
            format!(
                "HTTP {}: {}",
                reply.status,
                String::from_utf8_lossy(&reply.body).trim()
            ),
        )
    }

    /// Creates a session: TTL, lock delay (always sent: omitted, Consul applies 15 s),
    /// behaviour `release`, and the node health checks given (none: the TTL alone).
    pub(crate) async fn create_session(
        &self,
        name: &str,
        ttl: Duration,
        lock_delay: Duration,
        checks: &[String],
    ) -> Result<String, Error> {
        let body = serde_json::json!({
            "Name": name,
            "TTL": format!("{}s", ttl.as_secs()),
            "LockDelay": format!("{}ms", lock_delay.as_millis()),
            "Behavior": "release",
            "Checks": checks,
            "NodeChecks": checks,
        });
        let reply = self
            .put_json("create session", "/v1/session/create", &body)
            .await?;
        if reply.status != StatusCode::OK {
            return Err(Self::unexpected("create session", &reply));
        }
        #[derive(Deserialize)]
        struct Created {
            #[serde(rename = "ID")]
            id: String,
        }
        let created: Created = serde_json::from_slice(&reply.body)
            .map_err(|e| Error::backend(BACKEND, "create session", e))?;
        Ok(created.id)
    }

    /// Renews a session: the TTL the server granted, or `None` if the session is gone.
    pub(crate) async fn renew_session(
        &self,
        id: &str,
        timeout: Duration,
    ) -> Result<Option<Duration>, Error> {
        let reply = self
            .call(
                "renew session",
                Method::PUT,
                &format!("/v1/session/renew/{id}"),
                None,
                timeout,
            )
            .await?;
        match reply.status {
            StatusCode::OK => {
                let sessions: Vec<SessionInfo> = serde_json::from_slice(&reply.body)
                    .map_err(|e| Error::backend(BACKEND, "renew session", e))?;
                Ok(sessions
                    .first()
                    .and_then(|s| s.ttl.as_deref())
                    .and_then(parse_go_duration))
            }
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(Self::unexpected("renew session", &reply)),
        }
    }

    pub(crate) async fn destroy_session(&self, id: &str) -> Result<(), Error> {
        let path = format!("/v1/session/destroy/{id}");
        self.call_ok("destroy session", Method::PUT, &path)
            .await
            .map(drop)
    }

    /// A session's name, if the session exists.
    pub(crate) async fn session_name(&self, id: &str) -> Result<Option<String>, Error> {
        let path = format!("/v1/session/info/{id}");
        let reply = self.call_ok("session info", Method::GET, &path).await?;
        let sessions: Option<Vec<SessionInfo>> = serde_json::from_slice(&reply.body)
            .map_err(|e| Error::backend(BACKEND, "session info", e))?;
        Ok(sessions
            .unwrap_or_default()
            .into_iter()
            .next()
            .map(|s| s.name))
    }

    /// Reads the entries at `key` (`recurse`: every key under it), consistently; with an
    /// index, a blocking query that returns on a change or after `wait`. A missing key is an
    /// empty list, with its index.
    pub(crate) async fn read(
        &self,
        key: &str,
        recurse: bool,
        blocking: Option<(u64, Duration)>,
    ) -> Result<(Vec<KvEntry>, u64), Error> {
        self.read_as("consistent", key, recurse, blocking).await
    }

    /// Reads the entry at `key` as Consul's leader has it, without the round in which it
    /// confirms that it still leads (Consul's default mode; a deposed leader may answer from
    /// behind): for a hint that a later write checks.
    pub(crate) async fn read_unconfirmed(&self, key: &str) -> Result<Vec<KvEntry>, Error> {
        Ok(self.read_as("", key, false, None).await?.0)
    }

    /// A read in the `consistency` mode given (`consistent`, or empty for the default).
    async fn read_as(
        &self,
        consistency: &str,
        key: &str,
        recurse: bool,
        blocking: Option<(u64, Duration)>,
    ) -> Result<(Vec<KvEntry>, u64), Error> {
        let mut path = format!("/v1/kv/{key}?{consistency}");
        if recurse {
            path.push_str("&recurse");
        }
        let mut timeout = CALL_TIMEOUT;
        if let Some((index, wait)) = blocking {
            // The server may answer up to wait/16 late; give it that and a margin.
            path.push_str(&format!("&index={index}&wait={}s", wait.as_secs().max(1)));
            timeout = wait + wait / 16 + CALL_TIMEOUT;
        }
        let reply = self
            .call(&format!("read {key}"), Method::GET, &path, None, timeout)
            .await?;
        match reply.status {
            StatusCode::OK => {
                let entries = serde_json::from_slice(&reply.body)
                    .map_err(|e| Error::backend(BACKEND, format!("read {key}"), e))?;
                Ok((entries, reply.index))
            }
            StatusCode::NOT_FOUND => Ok((Vec::new(), reply.index)),
            _ => Err(Self::unexpected(&format!("read {key}"), &reply)),
        }
    }

    /// Acquires (`Some(session)` in `acquire`) or releases the lock key, with the lock flags,
    /// through rs-consul. True if Consul granted it.
    pub(crate) async fn lock_op(
        &self,
        key: &str,
        value: &[u8],
        acquire: Option<&str>,
        release: Option<&str>,
    ) -> Result<bool, Error> {
        let operation = if acquire.is_some() {
            format!("acquire {key}")
        } else {
            format!("release {key}")
        };
        self.on_any(&operation, |i| {
            let request = rs_consul::types::CreateOrUpdateKeyRequest {
                key,
                namespace: "",
                datacenter: self.datacenter.as_deref().unwrap_or(""),
                flags: LOCK_FLAGS,
                check_and_set: None,
                acquire: acquire.unwrap_or(""),
                release: release.unwrap_or(""),
            };
            let operation = operation.clone();
            async move {
                match tokio::time::timeout(
                    CALL_TIMEOUT,
                    self.consuls[i].create_or_update_key(request, value.to_vec()),
                )
                .await
                {
                    Ok(Ok((granted, _))) => Ok(granted),
                    Ok(Err(error)) => Err(map_rs_consul(&operation, error)),
                    Err(_) => Err(Error::Timeout {
                        backend: BACKEND,
                        operation,
                        after: CALL_TIMEOUT,
                    }),
                }
            }
        })
        .await
    }

    /// A `/v1/txn`: true if committed, false if rolled back (a check or a lock failed).
    pub(crate) async fn txn(&self, operations: serde_json::Value) -> Result<bool, Error> {
        Ok(self.txn_entries(operations).await?.is_some())
    }

    /// A `/v1/txn`: the entries its operations returned if committed (a `lock` or `set`
    /// returns its key with the new indexes; a `delete` returns none), `None` if rolled back.
    pub(crate) async fn txn_entries(
        &self,
        operations: serde_json::Value,
    ) -> Result<Option<Vec<KvEntry>>, Error> {
        let reply = self.put_json("txn", "/v1/txn", &operations).await?;
        match reply.status {
            StatusCode::OK => {
                #[derive(Deserialize)]
                struct Committed {
                    #[serde(rename = "Results", default)]
                    results: Option<Vec<Returned>>,
                }
                #[derive(Deserialize)]
                struct Returned {
                    #[serde(rename = "KV")]
                    kv: Option<KvEntry>,
                }
                let committed: Committed = serde_json::from_slice(&reply.body)
                    .map_err(|e| Error::backend(BACKEND, "txn", e))?;
                let entries = committed.results.unwrap_or_default();
                Ok(Some(entries.into_iter().filter_map(|r| r.kv).collect()))
            }
            StatusCode::CONFLICT => Ok(None),
            _ => Err(Self::unexpected("txn", &reply)),
        }
    }
}

pub(crate) fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SessionInfo {
    #[serde(default)]
    name: String,
    #[serde(rename = "TTL", default)]
    ttl: Option<String>,
}

fn map_rs_consul(operation: &str, error: rs_consul::ConsulError) -> Error {
    let text = error.to_string();
    if text.contains("403") || text.contains("Permission denied") {
        Error::PermissionDenied {
            backend: BACKEND,
            operation: operation.to_owned(),
            source: text.into(),
        }
    } else if matches!(error, rs_consul::ConsulError::ResponseError(_)) {
        Error::Unavailable {
            backend: BACKEND,
            source: format!("{operation}: {text}").into(),
        }
    } else {
        Error::backend(BACKEND, operation.to_owned(), text)
    }
}

/// Parses Go durations as Consul writes them: `10s`, `1m30s`, `1h0m0s`, `500ms`.
pub(crate) fn parse_go_duration(text: &str) -> Option<Duration> {
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let (number, tail) = rest.split_at(digits);
        let number: f64 = number.parse().ok()?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let seconds = match unit {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 0.001,
            "us" | "µs" => 0.000_001,
            "ns" => 0.000_000_001,
            _ => return None,
        };
        total += Duration::from_secs_f64(number * seconds);
        rest = tail;
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_as_consul_writes_them() {
        assert_eq!(parse_go_duration("10s"), Some(Duration::from_secs(10)));
        assert_eq!(parse_go_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_go_duration("1h0m0s"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_go_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_go_duration("10x"), None);
    }
}
