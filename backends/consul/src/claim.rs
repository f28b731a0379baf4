//! The Consul side of a term: the lock key held by our session.

use std::sync::Arc;
use std::time::Duration;

use elect_core::{Claim, ElectionName, Error, LossReason, Result, TermControl};

use crate::agent::{b64, Agent, LOCK_FLAGS};

/// A waiter's name, value, session and place, written into the place before its own so
/// that the holder of that place, once it leads, can hand the lock to it in its release (see
/// [`Keys::hand_over`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Successor {
    pub(crate) session: String,
    /// The waiter's place: the hand-over checks that this very key is still held. A place
    /// its session took again later sits elsewhere in line, where its waiter watches another
    /// key and would not see the lock handed to it.
    pub(crate) place: String,
    pub(crate) id: String,
    /// The candidate's value, base64 (as Consul takes it).
    pub(crate) value: String,
}

impl Successor {
    pub(crate) fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The successor written in a place, if any (a place is taken with an empty value).
    pub(crate) fn decode(bytes: &[u8]) -> Option<Self> {
        serde_json::from_slice(bytes).ok()
    }
}

/// Where one election lives: `<prefix><election>/` with `.lock`, `.value`, `.id` and `.next`
/// in it. `.id` holds the holder's candidate id, written in the acquire's own transaction (so its
/// `ModifyIndex` is the lock's): one session serves every campaign of an elector, so the
/// session's name cannot tell which candidate holds the lock. Waiting `elect` candidates line
/// up under `.queue/`, one key per waiting campaign (see [`Keys::place`]); the head of the
/// line writes itself into `.next` for a holder that has no place in line (it won without
/// waiting).
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    pub(crate) dir: String,
    pub(crate) lock: String,
    pub(crate) value: String,
    pub(crate) id: String,
    pub(crate) next: String,
    pub(crate) queue: String,
}

impl Keys {
    pub(crate) fn new(prefix: &str, election: &str) -> Self {
        let dir = format!("{prefix}{election}/");
        Keys {
            lock: format!("{dir}.lock"),
            value: format!("{dir}.value"),
            id: format!("{dir}.id"),
            next: format!("{dir}.next"),
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
    /// names, and deletes the value, id and `.next` keys with it, in one write (so that no
    /// reader pairs them with the next holder). The term's `place` in line, if it has one,
    /// goes in the same write: the waiter behind it wakes at the release, at once the head.
    /// Rolled back if the lock is no longer that term's (see [`Keys::leave_line`]).
    pub(crate) fn release(
        &self,
        session: &str,
        index: u64,
        place: Option<&str>,
    ) -> serde_json::Value {
        let mut ops = vec![
            serde_json::json!({"KV": {"Verb": "check-index", "Key": self.lock, "Index": index}}),
            serde_json::json!({"KV": {"Verb": "delete", "Key": self.value}}),
            serde_json::json!({"KV": {"Verb": "delete", "Key": self.id}}),
            serde_json::json!({"KV": {"Verb": "delete", "Key": self.next}}),
            serde_json::json!({"KV": {"Verb": "unlock", "Key": self.lock, "Flags": LOCK_FLAGS, "Session": session}}),
        ];
        ops.extend(place.map(|place| serde_json::json!({"KV": {"Verb": "delete", "Key": place}})));
        serde_json::Value::Array(ops)
    }

    /// Hands the lock from `session`, in the term `index` names, to `next` in one write: the
    /// lock released and acquired for `next`'s session (with its value and, in `.id`, its
    /// name), the term's `place`, if any, deleted. Rolled back unless `next` still holds the
    /// very place it wrote itself in from: a waiter that left is never handed the lock (it
    /// deletes its place before it releases whatever lock its session holds, see
    /// `release_on_drop`), nor one that came back to another place, where it watches another
    /// key. No `LockDelay` applies: it follows invalidated sessions only.
    pub(crate) fn hand_over(
        &self,
        session: &str,
        index: u64,
        place: Option<&str>,
        next: &Successor,
    ) -> serde_json::Value {
        let mut ops = vec![
            serde_json::json!({"KV": {"Verb": "check-index", "Key": self.lock, "Index": index}}),
            serde_json::json!({"KV": {"Verb": "check-session", "Key": next.place, "Session": next.session}}),
            serde_json::json!({"KV": {"Verb": "delete", "Key": self.value}}),
            serde_json::json!({"KV": {"Verb": "unlock", "Key": self.lock, "Flags": LOCK_FLAGS, "Session": session}}),
            serde_json::json!({"KV": {"Verb": "lock", "Key": self.lock, "Value": next.value, "Flags": LOCK_FLAGS, "Session": next.session}}),
            serde_json::json!({"KV": {"Verb": "set", "Key": self.id, "Value": b64(next.id.as_bytes())}}),
            serde_json::json!({"KV": {"Verb": "delete", "Key": self.next}}),
        ];
        ops.extend(place.map(|place| serde_json::json!({"KV": {"Verb": "delete", "Key": place}})));
        serde_json::Value::Array(ops)
    }

    /// Writes `successor` into the place `ahead`, if `holder` still holds it (a `set` keeps
    /// the place's session, and is given its lock flags, which it would otherwise reset: the
    /// waiter behind checks them); with no place ahead, into `.next`.
    pub(crate) fn register(
        &self,
        ahead: Option<(&str, &str)>,
        successor: &Successor,
    ) -> serde_json::Value {
        let value = b64(&successor.encode());
        match ahead {
            Some((ahead, holder)) => serde_json::json!([
                {"KV": {"Verb": "check-session", "Key": ahead, "Session": holder}},
                {"KV": {"Verb": "set", "Key": ahead, "Value": value, "Flags": LOCK_FLAGS}},
            ]),
            None => serde_json::json!([{"KV": {"Verb": "set", "Key": self.next, "Value": value}}]),
        }
    }

    /// Deletes a place in line: what a term that ended leaves behind, which would otherwise
    /// hold the waiter behind it until the session ends.
    pub(crate) fn leave_line(place: &str) -> serde_json::Value {
        serde_json::json!([{"KV": {"Verb": "delete", "Key": place}}])
    }

    /// Deletes every place of `session` in this election: what a campaign that ended leaves
    /// behind (one campaign of an elector runs in an election at a time).
    pub(crate) fn leave_line_all(&self, session: &str) -> serde_json::Value {
        serde_json::json!([{"KV": {"Verb": "delete-tree", "Key": self.places_of(session)}}])
    }

    /// The `n`th place in line `session` takes: a key held by it, ordered by its
    /// `CreateIndex`. A candidate keeps its place while it leads, so that the one behind it
    /// waits on it and nobody else wakes at a handover. A place taken again gets a new name
    /// (a new `n`), so that a successor written into the line names one place, not a session.
    pub(crate) fn place(&self, session: &str, n: u64) -> String {
        format!("{}{n}", self.places_of(session))
    }

    /// The prefix of `session`'s places.
    fn places_of(&self, session: &str) -> String {
        format!("{}{session}/", self.queue)
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
    /// The term's place in line, if it waited for the lock: the waiter behind it writes
    /// itself there as the successor; else the head writes itself into `.next`.
    pub(crate) place: Option<String>,
}

impl ConsulClaim {
    /// Deletes our place in line, once the term is over.
    async fn leave_line(&self) -> Result<()> {
        let Some(place) = &self.place else {
            return Ok(());
        };
        self.agent.txn(Keys::leave_line(place)).await.map(drop)
    }

    /// Hands the lock to the waiter that wrote itself into our place, if one did and it is
    /// still in line: one write instead of a release and the successor's acquire. False if
    /// there was nobody to hand it to or the hand-over was refused (the term is over, or the
    /// successor left); the plain release follows.
    async fn hand_over(&self) -> bool {
        // Not a confirmed read: a successor it does not show gets a plain release, and one
        // that left meanwhile makes the hand-over roll back.
        let next = match self.agent.read_unconfirmed(self.successor_key()).await {
            Ok(entries) => self.successor_in(&entries),
            Err(error) => {
                tracing::debug!(%error, "read the successor");
                None
            }
        };
        let Some(next) = next else {
            return false;
        };
        match self
            .agent
            .txn(
                self.keys
                    .hand_over(&self.session, self.token, self.place.as_deref(), &next),
            )
            .await
        {
            Ok(handed) => {
                tracing::debug!(successor = next.id.as_str(), handed, "hand-over");
                handed
            }
            Err(error) => {
                tracing::debug!(%error, "hand-over failed");
                false
            }
        }
    }

    /// Where the next in line writes itself for this term: our place, or `.next`.
    fn successor_key(&self) -> &str {
        self.place.as_deref().unwrap_or(&self.keys.next)
    }

    /// The successor written in `entries` (a read of [`ConsulClaim::successor_key`]).
    fn successor_in(&self, entries: &[crate::agent::KvEntry]) -> Option<Successor> {
        entries
            .first()
            .and_then(|e| Successor::decode(&e.bytes()))
            .filter(|next| next.session != self.session)
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
        if self.hand_over().await {
            return Ok(());
        }
        // Rolled back if the lock is no longer this term's — released, taken, or taken again
        // by our own session for a later term: nothing left to release but our place.
        if !self
            .agent
            .txn(
                self.keys
                    .release(&self.session, self.token, self.place.as_deref()),
            )
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
