//! The one error type of every backend: stable kinds, the backend's own error kept as `source()`.

use std::fmt;
use std::time::Duration;

use crate::leadership::LossReason;
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

/// A configuration value that cannot be used. Names the field and the value.
///
/// Secrets (passwords, tokens, auth strings) are never echoed back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("config field `{field}`: {problem} (got {value})")]
pub struct ConfigError {
    /// The field, as the user wrote it: `ttl`, `etcd.endpoints[1]`, `url`, `--grace`.
    pub field: String,
    /// The offending value, quoted, or `<redacted>` for secrets.
    pub value: String,
    /// What is wrong and, where it helps, what would be right.
    pub problem: String,
}

impl ConfigError {
    /// An error about `field` holding `value`.
    pub fn new(
        field: impl Into<String>,
        value: impl AsRef<str>,
        problem: impl Into<String>,
    ) -> Self {
        let field = field.into();
        let value = if is_secret(&field) {
            "<redacted>".to_owned()
        } else {
            format!("{:?}", redact_url(value.as_ref()))
        };
        ConfigError {
            field,
            value,
            problem: problem.into(),
        }
    }

    /// An error about `field` whose value must not be shown (it may be a mistyped secret).
    pub fn withheld(field: impl Into<String>, problem: impl Into<String>) -> Self {
        ConfigError {
            field: field.into(),
            value: "<redacted>".to_owned(),
            problem: problem.into(),
        }
    }
}

/// Whether a field holds a credential: any word of its name is one of these.
fn is_secret(field: &str) -> bool {
    field
        .split(|c: char| !c.is_ascii_alphanumeric())
        .any(|word| SECRET_WORDS.contains(&word.to_ascii_lowercase().as_str()))
}

const SECRET_WORDS: [&str; 5] = ["password", "token", "auth", "userinfo", "secret"];

/// `text` with the user information of a URL in it, and the values of its parameters that
/// name a credential, replaced by `<redacted>`.
pub fn redact_url(text: &str) -> String {
    let Some(scheme_end) = text.find("://") else {
        return text.to_owned();
    };
    let (scheme, rest) = text.split_at(scheme_end + 3);
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((_, hosts)) => format!("<redacted>@{hosts}"),
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let params: Vec<String> = query
                .split('&')
                .map(|param| match param.split_once('=') {
                    Some((key, _)) if is_secret(key) => format!("{key}=<redacted>"),
                    _ => param.to_owned(),
                })
                .collect();
            format!("{path}?{}", params.join("&"))
        }
        None => tail.to_owned(),
    };
    format!("{scheme}{authority}{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_errors_name_field_and_value_but_hide_secrets() {
        let plain = ConfigError::new("ttl", "0s", "must be at least 1s");
        assert_eq!(
            plain.to_string(),
            "config field `ttl`: must be at least 1s (got \"0s\")"
        );
        let secret = ConfigError::new("etcd.password", "hunter2", "must not be empty");
        assert!(!secret.to_string().contains("hunter2"), "{secret}");
        assert!(secret.to_string().contains("<redacted>"));
        for (field, value) in [
            ("url ?token", "hunter2"),
            ("ELECT_CONSUL_TOKEN", "hunter2"),
            ("zookeeper.auth", "u:hunter2"),
            ("url", "etcdd://user:hunter2@h:2379/x"),
            ("--url", "consul://h/x?ttl=5s&token=hunter2"),
            ("url", "zk://u:hunter2@h1,h2/x?auth=hunter2"),
        ] {
            let error = ConfigError::new(field, value, "wrong");
            assert!(!error.to_string().contains("hunter2"), "{error}");
        }
        assert!(
            ConfigError::new("url", "consul://h/x?ttl=5s&token=t", "wrong")
                .to_string()
                .contains("consul://h/x?ttl=5s&token=<redacted>")
        );
    }
}
