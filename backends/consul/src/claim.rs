//! The Consul side of a term: the lock key held by our session.

use std::sync::Arc;
use std::time::Duration;

use elect_core::{Claim, ElectionName, Error, LossReason, Result, TermControl};

use crate::agent::{b64, Agent, LOCK_FLAGS};

/// Where one election lives: `<prefix><election>/` with `.lock`, `.value` and `.id` in it.
/// `.id` holds the holder's candidate id, written in the acquire's own transaction (so its
/// `ModifyIndex` is the lock's): one session serves every campaign of an elector, so the
/// session's name cannot tell which candidate holds the lock. Waiting `elect` candidates line
/// up under `.queue/`, one key per session (see [`Keys::place`]).
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    pub(crate) dir: String,
    pub(crate) lock: String,
    pub(crate) value: String,
    pub(crate) id: String,
    pub(crate) queue: String,
}

impl Keys {
    pub(crate) fn new(prefix: &str, election: &str) -> Self {
        let dir = format!("{prefix}{election}/");
        Keys {
            lock: format!("{dir}.lock"),
            value: format!("{dir}.value"),
            id: format!("{dir}.id"),
            queue: format!("{dir}.queue/"),
            dir,
        }
    }

    /// The keys of the election whose lock key is `lock`.
    pub(crate) fn of_lock(lock: &str) -> Option<Self> {
        let dir = lock.strip_suffix("/.lock")?;
        Some(Keys::new(dir, ""))
    }

    /// Releases the lock if `session` holds it in the term the lock's `ModifyIndex` `index`
    /// names, and deletes the value and id keys with it, in one write (so that no reader pairs
    /// them with the next holder). The session's place in line goes in the same write: the
    /// waiter behind it wakes at the release, at once the head. Rolled back if the lock is
    /// no longer that term's (see [`Keys::leave_line`]).
    pub(crate) fn release(&self, session: &str, index: u64) -> serde_json::Value {
        serde_json::json!([
            {"KV": {"Verb": "check-index", "Key": self.lock, "Index": index}},
            {"KV": {"Verb": "delete", "Key": self.value}},
            {"KV": {"Verb": "delete", "Key": self.id}},
            {"KV": {"Verb": "unlock", "Key": self.lock, "Flags": LOCK_FLAGS, "Session": session}},
            {"KV": {"Verb": "delete", "Key": self.place(session)}},
        ])
    }

    /// Deletes the place in line of `session`: what a term or a campaign that ended leaves
    /// behind, which would otherwise hold the waiter behind it until the session ends.
    pub(crate) fn leave_line(&self, session: &str) -> serde_json::Value {
        serde_json::json!([{"KV": {"Verb": "delete", "Key": self.place(session)}}])
    }

    /// The place in line of `session`: a key held by it, ordered by its `CreateIndex`. A
    /// candidate keeps its place while it leads, so that the one behind it waits on it and
    /// nobody else wakes at a handover.
    pub(crate) fn place(&self, session: &str) -> String {
        format!("{}{session}", self.queue)
    }
}

#[derive(Debug)]
pub(crate) struct ConsulClaim {
    pub(crate) agent: Arc<Agent>,
    pub(crate) election: ElectionName,
    pub(crate) keys: Keys,
    pub(crate) session: String,
    /// The lock key's `ModifyIndex` when this term acquired it: the token. A later acquire,
    /// even by our own session, changes it.
    pub(crate) token: u64,
}

impl ConsulClaim {
    /// Deletes our place in line, once the term is over.
    async fn leave_line(&self) -> Result<()> {
        self.agent
            .txn(self.keys.leave_line(&self.session))
            .await
            .map(drop)
    }

    fn rejected(&self) -> Error {
        Error::rejected_by_store(&self.election)
    }

    /// The lock key is still held by our session *in this term*: the checks every write of
    /// the term carries. Consul lets a session acquire a lock it already holds, so the session
    /// alone does not name the term; the lock key's `ModifyIndex` does.
    fn checks(&self) -> [serde_json::Value; 2] {
        [
            serde_json::json!({"KV": {"Verb": "check-session", "Key": self.keys.lock, "Session": self.session}}),
            serde_json::json!({"KV": {"Verb": "check-index", "Key": self.keys.lock, "Index": self.token}}),
        ]
    }
}

#[async_trait::async_trait]
impl Claim for ConsulClaim {
    async fn proclaim(&self, value: &[u8]) -> Result<()> {
        let [session, index] = self.checks();
        let txn = serde_json::json!([
            session,
            index,
            {"KV": {"Verb": "set", "Key": self.keys.value, "Value": b64(value)}},
        ]);
        if self.agent.txn(txn).await? {
            Ok(())
        } else {
            Err(self.rejected())
        }
    }

    async fn release(&self) -> Result<()> {
        // Rolled back if the lock is no longer this term's — released, taken, or taken again
        // by our own session for a later term: nothing left to release but our place.
        if !self
            .agent
            .txn(self.keys.release(&self.session, self.token))
            .await?
        {
            self.leave_line().await?;
        }
        Ok(())
    }

    async fn fenced_put(&self, key: &str, value: &[u8]) -> Result<()> {
        let [session, index] = self.checks();
        let txn = serde_json::json!([
            session,
            index,
            {"KV": {"Verb": "set", "Key": key, "Value": b64(value)}},
        ]);
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
        let read = claim
            .agent
            .read(&claim.keys.lock, false, Some((index, crate::WAIT)));
        tokio::pin!(read);
        let read = tokio::select! {
            _ = term.ended() => return elect_core::backend::linger(read).await,
            _ = elect_core::clock::lease_ended(&mut lease) => return,
            read = &mut read => read,
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
                    // Nobody resigns a revoked term, and our live session would hold our
                    // place, and the waiter behind it, for as long as it lives.
                    elect_core::clock::retry_until_session_ends("leave the line", lease, || {
                        claim.leave_line()
                    })
                    .await;
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
