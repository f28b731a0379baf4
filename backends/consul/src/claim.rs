//! The Consul side of a term: the lock key held by our session.

use std::sync::Arc;
use std::time::Duration;

use elect_core::{Claim, ElectionName, Error, LossReason, NotLeaderReason, Result, TermControl};

use crate::agent::{b64, Agent, KvEntry, LOCK_FLAGS};

/// Where one election lives: `<prefix><election>/` with `.lock`, `.value` and `.released`
/// in it (Go's lock looks at `.lock` only).
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    pub(crate) dir: String,
    pub(crate) lock: String,
    pub(crate) value: String,
    pub(crate) released: String,
}

impl Keys {
    pub(crate) fn new(prefix: &str, election: &str) -> Self {
        let dir = format!("{prefix}{election}/");
        Keys {
            lock: format!("{dir}.lock"),
            value: format!("{dir}.value"),
            released: format!("{dir}.released"),
            dir,
        }
    }
}

/// Whether the lock in `entries` (the election's keys) is free and was let go of cleanly:
/// never held, or released by an `elect` holder that stopped acting first (it writes the
/// `LockIndex` of its term to `.released` in the same transaction as the unlock). A lock
/// freed by an invalidated session — or by another tool — is not clean: its holder may act
/// until its own deadline.
pub(crate) fn freed_cleanly(keys: &Keys, entries: &[KvEntry]) -> Option<bool> {
    let Some(lock) = entries.iter().find(|e| e.key == keys.lock) else {
        return Some(true);
    };
    if lock.holder().is_some() {
        return None;
    }
    let marker = entries
        .iter()
        .find(|e| e.key == keys.released)
        .map(KvEntry::bytes);
    Some(marker.is_some_and(|m| m == lock.lock_index.to_string().into_bytes()))
}

#[derive(Debug)]
pub(crate) struct ConsulClaim {
    pub(crate) agent: Arc<Agent>,
    pub(crate) election: ElectionName,
    pub(crate) keys: Keys,
    pub(crate) session: String,
    /// The lock's `LockIndex` when this term acquired it.
    pub(crate) lock_index: u64,
}

impl ConsulClaim {
    fn rejected(&self) -> Error {
        Error::NotLeader {
            election: self.election.clone(),
            reason: NotLeaderReason::RejectedByStore,
        }
    }

    /// `Session` of the lock key is still ours: the check every write of this term carries.
    fn check(&self) -> serde_json::Value {
        serde_json::json!({"KV": {"Verb": "check-session", "Key": self.keys.lock, "Session": self.session}})
    }
}

#[async_trait::async_trait]
impl Claim for ConsulClaim {
    async fn proclaim(&self, value: &[u8]) -> Result<()> {
        let txn = serde_json::json!([
            self.check(),
            {"KV": {"Verb": "set", "Key": self.keys.value, "Value": b64(value)}},
        ]);
        if self.agent.txn(txn).await? {
            Ok(())
        } else {
            Err(self.rejected())
        }
    }

    async fn release(&self) -> Result<()> {
        // One transaction: the proclaimed value goes, the lock is unlocked, and the release is
        // marked clean for the waiters. Rolled back if the lock is no longer ours.
        let txn = serde_json::json!([
            {"KV": {"Verb": "delete", "Key": self.keys.value}},
            {"KV": {"Verb": "unlock", "Key": self.keys.lock, "Session": self.session, "Flags": LOCK_FLAGS}},
            {"KV": {"Verb": "set", "Key": self.keys.released, "Value": b64(self.lock_index.to_string().as_bytes())}},
        ]);
        self.agent.txn(txn).await?;
        Ok(())
    }

    async fn fenced_put(&self, key: &str, value: &[u8]) -> Result<()> {
        let txn = serde_json::json!([self.check(), {"KV": {"Verb": "set", "Key": key, "Value": b64(value)}}]);
        if self.agent.txn(txn).await? {
            Ok(())
        } else {
            Err(self.rejected())
        }
    }

    async fn fenced_get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let (entries, _) = self.agent.read(key, false, None).await?;
        Ok(entries.first().map(|e| e.bytes()))
    }
}

/// Ends the term within one blocking-query round trip when the lock key shows another
/// session or none (released by an operator, session destroyed).
pub(crate) async fn watch_own_key(
    claim: Arc<ConsulClaim>,
    term: TermControl,
    mut lease: tokio::sync::watch::Receiver<elect_core::clock::LeaseStatus>,
    from_index: u64,
) {
    let mut index = from_index;
    loop {
        let read = tokio::select! {
            _ = term.ended() => return,
            _ = elect_core::clock::lease_ended(&mut lease) => return,
            read = claim.agent.read(&claim.keys.lock, false, Some((index, crate::WAIT))) => read,
        };
        match read {
            Ok((entries, new_index)) => {
                let ours = entries
                    .first()
                    .is_some_and(|e| e.holder() == Some(claim.session.as_str()));
                if !ours {
                    tracing::warn!(
                        key = claim.keys.lock.as_str(),
                        "our lock was released or taken"
                    );
                    term.end(LossReason::Revoked);
                    return;
                }
                index = if new_index < index { 0 } else { new_index };
            }
            Err(error) => {
                tracing::debug!(%error, "own-key watch failed; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}
