//! Credentials that are never printed.

use std::fmt;

use serde::Deserialize;

/// A credential: an etcd password, a Consul ACL token, a ZooKeeper `user:password`.
///
/// Its `Debug` and `Display` show `<redacted>`, so that no log line, error or `{:?}` of a
/// config or an elector prints it. [`Secret::expose`] gives the text to the client that
/// sends it.
///
/// ```
/// use elect_core::config::Secret;
/// let token = Secret::new("s3cret");
/// assert_eq!(format!("{token} {token:?}"), "<redacted> Secret(<redacted>)");
/// assert_eq!(token.expose(), "s3cret");
/// ```
#[derive(Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a credential.
    pub fn new(text: impl Into<String>) -> Self {
        Secret(text.into())
    }

    /// The credential itself, for the request that carries it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(text: String) -> Self {
        Secret(text)
    }
}

impl From<&str> for Secret {
    fn from(text: &str) -> Self {
        Secret(text.to_owned())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}
