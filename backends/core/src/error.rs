//! The one error type of every backend: stable kinds, the backend's own error kept as `source()`.

use std::fmt;
use std::time::Duration;

use crate::config_error::ConfigError;
use crate::loss::LossReason;
use crate::ElectionName;

/// A backend's native error, boxed so that `elect-core` knows no backend.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// `Result` with [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong, as stable kinds.
///
/// Callers match on the variant, never on the message. Each variant that comes from a store
/// names the backend and keeps the store's own error as [`std::error::Error::source`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration value is invalid (it names the field and the value).
    #[error(transparent)]
    Config(#[from] ConfigError),

    /// The configuration names a backend this build does not contain.
    #[error("the {backend} backend is not compiled in: build elect with the `{feature}` feature")]
    NotCompiled {
        /// The backend the configuration asked for.
        backend: &'static str,
        /// The cargo feature that turns it on.
        feature: &'static str,
    },

    /// The operation needs leadership of `election`, and this term no longer holds it
    /// (a fenced write the store rolled back, or a proclaim after loss).
    #[error("not leader of election {election}: {reason}")]
    NotLeader {
        /// The election whose leadership was needed.
        election: ElectionName,
        /// Why this term does not lead (any more).
        reason: NotLeaderReason,
    },

    /// The store could not be reached (connection refused, no quorum, DNS failure).
    #[error("{backend} is unreachable: {source}")]
    Unavailable {
        /// The backend that failed.
        backend: &'static str,
        /// The store client's own error.
        #[source]
        source: BoxError,
    },

    /// The store refused the credentials or the ACL forbids the operation.
    #[error("{backend} refused {operation}: permission denied: {source}")]
    PermissionDenied {
        /// The backend that refused.
        backend: &'static str,
        /// What was refused, e.g. `"create session"` or a key.
        operation: String,
        /// The store client's own error.
        #[source]
        source: BoxError,
    },

    /// A call to the store got no answer in time.
    #[error("{backend}: {operation} got no answer within {after:?}")]
    Timeout {
        /// The backend that did not answer.
        backend: &'static str,
        /// What was asked.
        operation: String,
        /// How long we waited.
        after: Duration,
    },

    /// This elector already campaigns in, or leads, `election`: one elector holds at most one
    /// candidacy per election (see [`Elector`](crate::Elector)'s contract).
    #[error(
        "this elector already campaigns in or leads election {election}: resign or drop that \
         campaign first, or use another elector for a second candidate"
    )]
    AlreadyCampaigning {
        /// The election campaigned in twice.
        election: ElectionName,
    },

    /// The store refuses the operation for good: trying again cannot help (a path the file
    /// system cannot hold, a read-only file system, a record that does not parse). Unlike
    /// [`Error::Backend`], never retried.
    #[error("{backend}: {operation}: {source}")]
    Unusable {
        /// The backend that failed.
        backend: &'static str,
        /// What was being done, with the key or path involved.
        operation: String,
        /// Why it cannot be done.
        #[source]
        source: BoxError,
    },

    /// The elector was closed; nothing more can be done with it.
    #[error("the {backend} elector is closed")]
    Closed {
        /// The backend whose elector was closed.
        backend: &'static str,
    },

    /// Any other failure of the store, with the operation and key involved.
    #[error("{backend}: {operation}: {source}")]
    Backend {
        /// The backend that failed.
        backend: &'static str,
        /// What was being done, with the key or path involved.
        operation: String,
        /// The store client's own error.
        #[source]
        source: BoxError,
    },
}

impl Error {
    /// Wraps a store's error that fits no more specific kind.
    pub fn backend(
        backend: &'static str,
        operation: impl Into<String>,
        source: impl Into<BoxError>,
    ) -> Self {
        Error::Backend {
            backend,
            operation: operation.into(),
            source: source.into(),
        }
    }

    /// An [`Error::Unavailable`] from a TLS connection, with a hint at the settings to check
    /// (`prefix` is the config's, e.g. `"etcd.tls"`): TLS clients often report a failed
    /// handshake only as "connection closed" or "no available hosts". Other errors unchanged.
    pub fn over_tls(self, prefix: &str) -> Self {
        match self {
            Error::Unavailable { backend, source } => Error::Unavailable {
                backend,
                source: format!(
                    "{source} (over TLS: if the servers listen, the handshake may have failed; \
                     check {prefix}.ca, {prefix}.cert and {prefix}.key)"
                )
                .into(),
            },
            other => other,
        }
    }

    /// The store refused a write or proclaim on `election`: the claim is gone or belongs to a
    /// newer term. What a backend returns when its store's own check fails.
    pub fn rejected_by_store(election: &ElectionName) -> Self {
        Error::NotLeader {
            election: election.clone(),
            reason: NotLeaderReason::RejectedByStore,
        }
    }

    /// Why leadership was refused, for a [`Error::NotLeader`]; `None` for every other error.
    ///
    /// ```
    /// use elect_core::{Error, NotLeaderReason};
    /// let error = Error::rejected_by_store(&"billing".parse()?);
    /// assert_eq!(error.not_leader_reason(), Some(NotLeaderReason::RejectedByStore));
    /// # Ok::<(), elect_core::Error>(())
    /// ```
    pub fn not_leader_reason(&self) -> Option<NotLeaderReason> {
        match self {
            Error::NotLeader { reason, .. } => Some(*reason),
            _ => None,
        }
    }

    /// True for errors that may pass if the call is tried again (the store was unreachable or
    /// slow), false for errors that will repeat (bad config, permission, an unusable store,
    /// not leader, closed).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Error::Unavailable { .. } | Error::Timeout { .. } | Error::Backend { .. }
        )
    }
}

/// An error with every cause under it, `: `-separated, each cause left out if the text so far
/// already shows it (many errors print their source themselves). Client libraries often hide
/// what went wrong below a generic top line ("client error (Connect)").
pub fn with_causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Why a write or proclaim needing leadership was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NotLeaderReason {
    /// This process already knows its term ended.
    Lost(LossReason),
    /// The connection to the store is down: the claim may stand, but acting is not safe.
    Suspended,
    /// The store rejected the write because the claim is gone or belongs to a newer term.
    RejectedByStore,
}

impl fmt::Display for NotLeaderReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotLeaderReason::Lost(reason) => write!(f, "the term ended ({reason})"),
            NotLeaderReason::Suspended => {
                f.write_str("leadership is suspended (store unreachable)")
            }
            NotLeaderReason::RejectedByStore => {
                f.write_str("the store rejected the write: the claim is no longer ours")
            }
        }
    }
}
