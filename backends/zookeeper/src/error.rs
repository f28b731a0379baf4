//! zookeeper-client's errors as `elect` error kinds, and the per-call deadline.

use std::future::Future;
use std::time::Duration;

use elect_core::Error;
use zookeeper_client as zk;

pub(crate) const BACKEND: &str = "zookeeper";

/// How long one request may take.
pub(crate) const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Maps a ZooKeeper error, naming what was being done.
pub(crate) fn map(operation: impl Into<String>, error: zk::Error) -> Error {
    let operation = operation.into();
    match error {
        zk::Error::NoAuth | zk::Error::AuthFailed | zk::Error::InvalidAcl => {
            Error::PermissionDenied {
                backend: BACKEND,
                operation,
                source: error.into(),
            }
        }
        zk::Error::ConnectionLoss
        | zk::Error::Timeout
        | zk::Error::NoHosts
        | zk::Error::SessionExpired
        | zk::Error::SessionMoved
        | zk::Error::Throttled
        | zk::Error::Custom(_) => Error::Unavailable {
            backend: BACKEND,
            source: format!("{operation}: {error}").into(),
        },
        zk::Error::ClientClosed => Error::Closed { backend: BACKEND },
        other => Error::backend(BACKEND, operation, other),
    }
}

/// Runs one request, bounded by [`CALL_TIMEOUT`].
pub(crate) async fn call<T>(
    operation: &str,
    request: impl Future<Output = Result<T, zk::Error>>,
) -> Result<T, Error> {
    match tokio::time::timeout(CALL_TIMEOUT, request).await {
        Ok(result) => result.map_err(|e| map(operation, e)),
        Err(_) => Err(Error::Timeout {
            backend: BACKEND,
            operation: operation.to_owned(),
            after: CALL_TIMEOUT,
        }),
    }
}
