//! etcd-client's errors as `elect` error kinds, and the per-call deadline.

use std::future::Future;
use std::time::Duration;

use elect_core::Error;
use tonic::Code;

pub(crate) const BACKEND: &str = "etcd";

/// How long a unary call may take, retries included.
pub(crate) const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Maps an etcd-client error, naming what was being done.
pub(crate) fn map(operation: impl Into<String>, error: etcd_client::Error) -> Error {
    let operation = operation.into();
    match &error {
        etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => {
            Error::Unavailable {
                backend: BACKEND,
                source: format!("{operation}: {error}").into(),
            }
        }
        etcd_client::Error::GRpcStatus(status) => match status.code() {
            Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Aborted => {
                Error::Unavailable {
                    backend: BACKEND,
                    source: format!("{operation}: {error}").into(),
                }
            }
            // etcd-client reports a broken connection as Unknown ("h2 protocol error",
            // "transport error").
            Code::Unknown if is_transport(status.message()) => Error::Unavailable {
                backend: BACKEND,
                source: format!("{operation}: {error}").into(),
            },
            Code::PermissionDenied | Code::Unauthenticated => Error::PermissionDenied {
                backend: BACKEND,
                operation,
                source: error.into(),
            },
            Code::InvalidArgument if status.message().contains("authentication failed") => {
                Error::PermissionDenied {
                    backend: BACKEND,
                    operation,
                    source: error.into(),
                }
            }
            Code::InvalidArgument if status.message().contains("user name is empty") => {
                Error::PermissionDenied {
                    backend: BACKEND,
                    operation,
                    source: error.into(),
                }
            }
            _ => Error::backend(BACKEND, operation, error),
        },
        _ => Error::backend(BACKEND, operation, error),
    }
}

/// The lease a request named does not exist (any more).
pub(crate) fn lease_not_found(error: &Error) -> bool {
    match error {
        Error::Backend { source, .. } => source.to_string().contains("requested lease not found"),
        _ => false,
    }
}

fn is_transport(message: &str) -> bool {
    [
        "transport error",
        "h2 protocol error",
        "connection",
        "broken pipe",
    ]
    .iter()
    .any(|m| message.to_ascii_lowercase().contains(m))
}

/// Runs a unary call, retrying while the cluster is unreachable (a dead member stays in the
/// client's balancer, so a retry usually reaches a live one), for at most [`CALL_TIMEOUT`].
/// Only for calls that may be repeated: reads and guarded transactions.
pub(crate) async fn retrying<T, F, Fut>(operation: &str, mut call: F) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, etcd_client::Error>>,
{
    let started = tokio::time::Instant::now();
    let mut pause = Duration::from_millis(20);
    loop {
        let left = CALL_TIMEOUT.saturating_sub(started.elapsed());
        let error = match tokio::time::timeout(left, call()).await {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(error)) => map(operation, error),
            Err(_) => {
                return Err(Error::Timeout {
                    backend: BACKEND,
                    operation: operation.to_owned(),
                    after: CALL_TIMEOUT,
                })
            }
        };
        if !matches!(error, Error::Unavailable { .. }) || started.elapsed() + pause >= CALL_TIMEOUT
        {
            return Err(error);
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(500));
    }
}

/// Runs a call once, bounded by [`CALL_TIMEOUT`].
pub(crate) async fn once<T, Fut>(operation: &str, call: Fut) -> Result<T, Error>
where
    Fut: Future<Output = Result<T, etcd_client::Error>>,
{
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(result) => result.map_err(|e| map(operation, e)),
        Err(_) => Err(Error::Timeout {
            backend: BACKEND,
            operation: operation.to_owned(),
            after: CALL_TIMEOUT,
        }),
    }
}

/// A read, retried as [`retrying`] does.
pub(crate) async fn get(
    client: &etcd_client::Client,
    operation: &str,
    key: impl Into<Vec<u8>>,
    options: Option<etcd_client::GetOptions>,
) -> Result<etcd_client::GetResponse, Error> {
    let key = key.into();
    retrying(operation, || {
        let (mut client, key, options) = (client.clone(), key.clone(), options.clone());
        async move { client.get(key, options).await }
    })
    .await
}

/// A guarded transaction, retried as [`retrying`] does (a guard makes a repeat harmless).
pub(crate) async fn txn(
    client: &etcd_client::Client,
    operation: &str,
    txn: etcd_client::Txn,
) -> Result<etcd_client::TxnResponse, Error> {
    retrying(operation, || {
        let (mut client, txn) = (client.clone(), txn.clone());
        async move { client.txn(txn).await }
    })
    .await
}

/// A watch whose messages come with `elect`'s error kinds: a stream that ends (its member went
/// away) is [`Error::Unavailable`], for the caller to watch again through another.
pub(crate) struct Watch {
    stream: etcd_client::WatchStream,
    operation: String,
}

impl Watch {
    /// Opens a watch on `key`, the call bounded as [`once`] does.
    pub(crate) async fn open(
        client: &etcd_client::Client,
        operation: String,
        key: impl Into<Vec<u8>>,
        options: etcd_client::WatchOptions,
    ) -> Result<Watch, Error> {
        let stream = once(&operation, client.clone().watch(key, Some(options))).await?;
        Ok(Watch { stream, operation })
    }

    /// The next message.
    pub(crate) async fn message(&mut self) -> Result<etcd_client::WatchResponse, Error> {
        match self.stream.message().await {
            Ok(Some(message)) => Ok(message),
            Ok(None) => Err(Error::Unavailable {
                backend: BACKEND,
                source: format!("{}: watch stream ended", self.operation).into(),
            }),
            Err(error) => Err(map(self.operation.clone(), error)),
        }
    }
}
