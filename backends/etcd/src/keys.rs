//! Where an election lives in etcd — the layout of Go's `concurrency.Election`, which
//! `etcdctl elect` uses too, so that both meet `elect` in the same election.
//!
//! | key | value |
//! | --- | --- |
//! | `<namespace><election>/<lease id, lower-case hex>` | the candidate's value; the smallest create revision leads |
//! | `<namespace><election>:id/<lease id hex>` | the candidate's id (ours only; `:` cannot occur in an election name, so no other election and no Go client ever reads it) |

/// The keys of one candidate (one lease) in one election.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    /// `<namespace><election>/`: every candidate's key starts with it.
    pub(crate) prefix: String,
    /// `<prefix><lease hex>`: our claim.
    pub(crate) key: String,
    /// `<namespace><election>:id/<lease hex>`: our id.
    pub(crate) id_key: String,
}

impl Keys {
    pub(crate) fn new(namespace: &str, election: &str, lease: i64) -> Self {
        let prefix = prefix(namespace, election);
        Keys {
            key: format!("{prefix}{lease:x}"),
            id_key: format!("{}{lease:x}", id_prefix(namespace, election)),
            prefix,
        }
    }
}

/// `<namespace><election>/`.
pub(crate) fn prefix(namespace: &str, election: &str) -> String {
    format!("{namespace}{election}/")
}

/// `<namespace><election>:id/`.
pub(crate) fn id_prefix(namespace: &str, election: &str) -> String {
    format!("{namespace}{election}:id/")
}

/// The lease part of a candidate key, as written (hex).
pub(crate) fn lease_hex<'a>(prefix: &str, key: &'a [u8]) -> Option<&'a str> {
    std::str::from_utf8(key).ok()?.strip_prefix(prefix)
}
