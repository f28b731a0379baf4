//! # elect-consul: leader election on Consul sessions and KV locks
//!
//! The lock of Consul's Go API, which `consul lock` uses, so that both meet `elect` in one
//! election:
//!
//! * **Layout** — the lock key `<prefix><election>/.lock`, acquired with our session and
//!   Go's `LockFlagValue` flags, value = the candidate's value; held = its `Session` is ours,
//!   free = empty. A proclaimed value goes to `<prefix><election>/.value` (Go's lock ignores
//!   other keys), so that the lock key, and the token, stay as acquired.
//! * **Token** — the lock key's `ModifyIndex` read right after the acquire (not `LockIndex`,
//!   which restarts at 1 when the key is deleted).
//! * **Sessions** — one per elector, named after its candidate, TTL (10 s minimum),
//!   behaviour `release`, renewed every TTL/2 by our own task; no node health checks by
//!   default and `LockDelay` always sent (the TTL by default: see
//!   `ConsulConfig::lock_delay` for the invalidations a holder may not see).
//! * **Waiting** — a line of places under `<prefix><election>/.queue/<session>/`, one key per
//!   waiting campaign, ordered by `CreateIndex`; each waiter blocks on the place before its own (a leader keeps
//!   its place until it releases), the head on the lock key (a missing key is a normal state).
//! * **Hand-over** — each waiter writes itself into the place before its own (the head into
//!   `.next`), and a leader's release locks the key for that successor in the same
//!   transaction as its unlock, if the successor still holds the place it wrote itself in
//!   from: one write per handover, no acquire after the wake.
//! * **Loss** — a renewal answered 404, no renewal confirmed by the deadline, or our own key
//!   showing another session or none (a blocking query on it).
//! * **Fenced writes** — `/v1/txn` with `check-session` on the lock key.
//!
//! See the `agent` module for which calls go through rs-consul and which are ours.
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

mod agent;
mod claim;
mod observe;
mod session;

use std::sync::Arc;
use std::time::Duration;

use elect_core::backend::{Candidacy, ElectorState, OnDrop};
use elect_core::config::ConsulConfig;
use elect_core::{
    Candidate, CandidateInfo, ElectionName, Elector, Error, FencingToken, LeaderInfo, LeaderStream,
    Leadership, Result,
};

use agent::{Agent, BACKEND};
use claim::{ConsulClaim, Keys, Successor};
use session::Session;

pub use agent::{DEFAULT_PORT, LOCK_FLAGS};

/// How long one blocking query waits for a change before it is sent again.
const WAIT: Duration = Duration::from_secs(30);
/// How soon a campaign refused by a lock delay asks again.
const LOCK_DELAY_RETRY: Duration = Duration::from_millis(250);

/// Leader election on Consul: one session per elector, shared by all its campaigns.
///
/// ```no_run
/// # async fn demo() -> elect_core::Result<()> {
/// use elect_core::config::ConsulConfig;
/// use elect_core::{Candidate, Elector};
/// use elect_consul::ConsulElector;
/// let config = ConsulConfig::new(vec!["127.0.0.1:8500".parse()?]);
/// let elector = ConsulElector::connect(&config).await?;
/// let leadership = elector.campaign(&"billing".parse()?, &Candidate::generated()).await?;
/// println!("leading with token {}", leadership.token());
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct ConsulElector {
    agent: Arc<Agent>,
    config: ConsulConfig,
    state: ElectorState<Session, ConsulClaim>,
    /// How many places in line this elector took: each place gets a name of its own.
    places: std::sync::atomic::AtomicU64,
}

impl ConsulElector {
    /// Connects and checks that an agent answers (and that the token may read the KV store).
    pub async fn connect(config: &ConsulConfig) -> Result<Self> {
        config.validate()?;
        let agent = Arc::new(Agent::new(config)?);
        agent.read("elect/probe", false, None).await?;
        Ok(ConsulElector {
            agent,
            config: config.clone(),
            state: ElectorState::new(BACKEND, None),
            places: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// The id of the current session, if one was created.
    pub async fn session_id(&self) -> Option<String> {
        self.state.current().await.map(|s| s.id.clone())
    }

    /// The live session, or a new one (named after `candidate`) if there is none or it ended.
    async fn session(&self, candidate: &Candidate) -> Result<Arc<Session>> {
        self.state
            .session(|| Session::create(&self.agent, &self.config, candidate.id()))
            .await
    }

    fn keys(&self, election: &ElectionName) -> Keys {
        Keys::new(&self.config.prefix, election.as_str())
    }

    /// Acquires the lock; the token (the acquire's `ModifyIndex`, returned by the same
    /// transaction) if Consul granted it to our session.
    async fn acquire(
        &self,
        keys: &Keys,
        session: &Session,
        candidate: &Candidate,
    ) -> Result<Option<u64>> {
        let txn = serde_json::json!([
            {"KV": {
                "Verb": "lock",
                "Key": keys.lock,
                "Value": agent::b64(candidate.value()),
                "Flags": LOCK_FLAGS,
                "Session": session.id,
            }},
            {"KV": {"Verb": "set", "Key": keys.id, "Value": agent::b64(candidate.id().as_bytes())}},
        ]);
        let Some(entries) = self.agent.txn_entries(txn).await? else {
            return Ok(None);
        };
        let acquired = entries.iter().find(|e| e.key == keys.lock).ok_or_else(|| {
            Error::backend(
                BACKEND,
                format!("acquire {}", keys.lock),
                "the transaction committed without returning the lock key",
            )
        })?;
        tracing::debug!(
            key = keys.lock.as_str(),
            modify_index = acquired.modify_index,
            lock_index = acquired.lock_index,
            "lock acquired"
        );
        Ok(Some(acquired.modify_index))
    }

    /// Takes our place in line (a key held by our session under `.queue/`, kept through the
    /// retries of this session and while we lead; `in_line` says it was taken) and waits
    /// until the place before ours is gone, then, at the head, until the lock is free.
    /// `None` when our place or session went meanwhile.
    ///
    /// Only the head watches the lock key, and each other waiter the place before its own,
    /// which a leader keeps until it releases: a release wakes the one waiter behind the
    /// leader, and nobody else. Each waiter writes itself into the place before its own, so
    /// that its holder, once it leads, hands the lock over in its release (no acquire after
    /// the wake). `consul lock` candidates do not line up; they block on the lock key as
    /// always and take the lock when it is released, not handed over.
    async fn wait_in_line(
        &self,
        keys: &Keys,
        session: &Session,
        candidate: &Candidate,
        in_line: &mut Option<String>,
    ) -> Result<Option<Turn>> {
        let place = match in_line {
            Some(place) => place.clone(),
            None => {
                let n = self
                    .places
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let place = keys.place(&session.id, n);
                if !self
                    .agent
                    .lock_op(&place, b"", Some(&session.id), None)
                    .await?
                {
                    // Our session is no longer valid (the next renewal notices): no tight
                    // loop of refused acquires meanwhile.
                    tokio::time::sleep(LOCK_DELAY_RETRY).await;
                    return Ok(None);
                }
                *in_line = Some(place.clone());
                place
            }
        };
        let me = Successor {
            session: session.id.clone(),
            place: place.clone(),
            id: candidate.id().to_owned(),
            value: agent::b64(candidate.value()),
        };
        loop {
            // The whole election in one read: the line, and the lock for when we are its head.
            let (entries, index) = self.agent.read(&keys.dir, true, None).await?;
            let mut line: Vec<&agent::KvEntry> = Vec::with_capacity(entries.len());
            let mut lock_held = false;
            let mut lock_holder = None;
            for entry in &entries {
                let held = entry.holder().is_some();
                if entry.key == keys.lock {
                    lock_holder = entry.holder();
                    if entry.holder() == Some(session.id.as_str()) {
                        // Handed over to us (every acquire of ours in this campaign was
                        // refused, or it would not wait).
                        return Ok(Some(Turn::HandedOver(entry.modify_index)));
                    }
                    lock_held = held;
                } else if entry.key.starts_with(&keys.queue) && held {
                    line.push(entry);
                } else if entry.key.starts_with(&keys.queue) {
                    // The place of a session that ended: nobody will delete it but us.
                    let stale = serde_json::json!([{"KV": {
                        "Verb": "delete-cas", "Key": entry.key, "Index": entry.modify_index,
                    }}]);
                    self.agent.txn(stale).await?;
                }
            }
            line.sort_by_key(|e| e.create_index);
            let Some(ours) = line.iter().position(|e| e.key == place) else {
                *in_line = None;
                return Ok(None);
            };
            // Write ourselves in as the successor: the head into `.next` (for a holder
            // without a place), every other waiter into the place before its own.
            let ahead = ours.checked_sub(1).map(|a| line[a]);
            let written = match ahead {
                None => entries.iter().find(|e| e.key == keys.next),
                Some(place) => Some(place),
            };
            // The place before ours is waited on from our write into it, which would
            // otherwise wake us at once; the lock key from this read, never from a later
            // write of ours: a release between the two would go unseen.
            let mut place_from = index;
            // (`.next` only for a holder: at a free lock the head acquires.)
            let useful = ahead.is_some() || lock_held;
            if useful && written.and_then(|e| Successor::decode(&e.bytes())).as_ref() != Some(&me) {
                let place = ahead.map(|p| (p.key.as_str(), p.holder().unwrap_or("")));
                match self.agent.txn_entries(keys.register(place, &me)).await? {
                    Some(written) => {
                        place_from = written.iter().map(|e| e.modify_index).fold(index, u64::max)
                    }
                    // The place before ours went or changed hands: read again.
                    None => continue,
                }
            }
            // What the wait needs, and no more: the listing is the whole election, and
            // holding it while waiting made every waiter cost O(n) memory.
            let ahead = ahead.map(|p| (p.key.clone(), p.holder() == lock_holder));
            drop(line);
            drop(entries);
            let waited = match ahead {
                // At the head: a held lock is waited on from this read (no second read); a
                // free one is read again, which checks it is a lock at all.
                None => {
                    let from = if lock_held { index } else { 0 };
                    return Ok(match self.wait_unheld(&keys.lock, from, session).await? {
                        None => None,
                        Some(Unheld::Free) => Some(Turn::LockFree),
                        Some(Unheld::Ours(token)) => Some(Turn::HandedOver(token)),
                    });
                }
                // Behind the holder: its release hands the lock over or frees it, and the
                // lock key shows which at once, with no read after the wake.
                Some((_, true)) => {
                    return Ok(match self.wait_unheld(&keys.lock, index, session).await? {
                        None => None,
                        Some(Unheld::Free) => Some(Turn::HeadLeft),
                        Some(Unheld::Ours(token)) => Some(Turn::HandedOver(token)),
                    });
                }
                Some((place, false)) => self.wait_unheld(&place, place_from, session).await?,
            };
            match waited {
                None => return Ok(None),
                Some(Unheld::Ours(token)) => return Ok(Some(Turn::HandedOver(token))),
                // The head's place went: it left, or it led since and released the lock or
                // handed it to us. Ours is the head now: see which, without reading the line.
                Some(Unheld::Free) if ours == 1 => {
                    let (lock, _) = self.agent.read(&keys.lock, false, None).await?;
                    return Ok(Some(match lock.first() {
                        Some(lock) if lock.holder() == Some(session.id.as_str()) => {
                            Turn::HandedOver(lock.modify_index)
                        }
                        _ => Turn::HeadLeft,
                    }));
                }
                Some(Unheld::Free) => {}
            }
        }
    }

    /// Waits until `key` is unheld (missing, or no session holds it) or held by our own
    /// session, with a blocking query from `index` (0: read first). `None` when our session
    /// ended meanwhile.
    async fn wait_unheld(
        &self,
        key: &str,
        index: u64,
        session: &Session,
    ) -> Result<Option<Unheld>> {
        let mut lease = session.clock.watch();
        let mut index = index;
        loop {
            let blocking = (index > 0).then_some((index, WAIT));
            let read = tokio::select! {
                read = self.agent.read(key, false, blocking) => read?,
                _ = elect_core::clock::lease_ended(&mut lease) => return Ok(None),
            };
            let (entries, new_index) = read;
            // Consul's rule: an index that went backwards starts over.
            index = if new_index < index {
                0
            } else {
                new_index.max(1)
            };
            match entries.first() {
                None => return Ok(Some(Unheld::Free)),
                Some(entry) if entry.flags != LOCK_FLAGS => {
                    return Err(elect_core::ConfigError::new(
                        "consul.prefix",
                        &entry.key,
                        format!(
                            "the key exists with flags {} and is not a lock (consul#9951)",
                            entry.flags
                        ),
                    )
                    .into())
                }
                Some(entry) => match entry.holder() {
                    None => return Ok(Some(Unheld::Free)),
                    Some(holder) if holder == session.id => {
                        return Ok(Some(Unheld::Ours(entry.modify_index)))
                    }
                    Some(_) => {}
                },
            }
        }
    }

    fn grant(
        &self,
        election: &ElectionName,
        candidate: &Candidate,
        session: &Session,
        keys: Keys,
        token: u64,
        place: Option<String>,
    ) -> Leadership {
        let claim = Arc::new(ConsulClaim {
            agent: self.agent.clone(),
            election: election.clone(),
            keys,
            session: session.id.clone(),
            token,
            place,
        });
        self.state.grant(
            election,
            candidate,
            session,
            FencingToken(token),
            claim,
            |claim, term, lease| claim::watch_own_key(claim, term, lease, token),
        )
    }
}

/// Why a wait in line ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Turn {
    /// The place at the head of the line, just before ours, went: ours is the head.
    HeadLeft,
    /// At the head, the lock was seen free (a refused acquire then means a lock delay).
    LockFree,
    /// The leader before us handed the lock to our session: the term's token, with no
    /// acquire of ours.
    HandedOver(u64),
}

/// What [`ConsulElector::wait_unheld`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unheld {
    /// The key is missing or no session holds it.
    Free,
    /// Our own session holds it, since the `ModifyIndex` given: a lock handed to us.
    Ours(u64),
}

/// Releases the lock and leaves the line if a campaign is dropped before its grant (while it
/// waits, or with the acquire's answer lost: it may have been granted). Tried until it lands
/// or the session ends: our own session would otherwise hold the lock, or a place that keeps
/// the waiters behind it waiting, for as long as it lives. No other campaign of this elector
/// in the election runs meanwhile (the candidacy), so our session holds them for this
/// campaign if at all.
fn release_on_drop(
    candidacy: &Candidacy,
    agent: &Arc<Agent>,
    keys: &Keys,
    session: &Session,
) -> OnDrop {
    let (agent, lock, leave) = (
        agent.clone(),
        keys.lock.clone(),
        keys.leave_line_all(&session.id),
    );
    let id = session.id.clone();
    let lease = session.clock.watch();
    candidacy.withdraw_on_drop(async move {
        elect_core::clock::retry_until_session_ends("release lock", lease, || {
            let (agent, lock, leave, id) = (agent.clone(), lock.clone(), leave.clone(), id.clone());
            async move {
                // The place first: a hand-over needs it, so none lands after the release.
                agent.txn(leave).await?;
                agent.lock_op(&lock, b"", None, Some(&id)).await.map(drop)
            }
        })
        .await
    })
}

#[async_trait::async_trait]
impl Elector for ConsulElector {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    async fn campaign(&self, election: &ElectionName, candidate: &Candidate) -> Result<Leadership> {
        let keys = self.keys(election);
        let candidacy = self.state.enter(election).await?;
        // Whether the last wait ended at a free lock that refused us anyway (a lock delay).
        let mut delayed = false;
        // The place in line our session holds, if any.
        let mut in_line = None;
        // Armed for as long as the session may hold our place or the lock: a campaign dropped
        // or failed at any point leaves nothing behind.
        let mut guard: Option<(Arc<Session>, OnDrop)> = None;
        loop {
            let session = self.session(candidate).await?;
            if guard
                .as_ref()
                .is_none_or(|(s, _)| !Arc::ptr_eq(s, &session))
            {
                // A new session: the old one ended, and what it held was released with it.
                if let Some((_, old)) = guard.take() {
                    old.disarm();
                }
                let undo = release_on_drop(&candidacy, &self.agent, &keys, &session);
                guard = Some((session.clone(), undo));
                in_line = None;
            }
            if let Some(token) = self.acquire(&keys, &session, candidate).await? {
                if let Some((_, undo)) = guard.take() {
                    undo.disarm();
                }
                return Ok(
                    candidacy.lead(self.grant(election, candidate, &session, keys, token, in_line))
                );
            }
            // Refused. After a free lock refused us, a lock delay runs: ask again shortly.
            // Else wait in line (a blocking query answers at once when the lock is free).
            let wait = async {
                if delayed {
                    tokio::time::sleep(LOCK_DELAY_RETRY).await;
                    Ok(Some(Turn::LockFree))
                } else {
                    self.wait_in_line(&keys, &session, candidate, &mut in_line)
                        .await
                }
            };
            let waited = self.state.unless_closed(wait).await?;
            if let Some(Turn::HandedOver(token)) = waited {
                if let Some((_, undo)) = guard.take() {
                    undo.disarm();
                }
                return Ok(
                    candidacy.lead(self.grant(election, candidate, &session, keys, token, in_line))
                );
            }
            delayed = waited == Some(Turn::LockFree) && !delayed;
        }
    }

    async fn try_campaign(
        &self,
        election: &ElectionName,
        candidate: &Candidate,
    ) -> Result<Option<Leadership>> {
        let candidacy = self.state.enter(election).await?;
        let keys = self.keys(election);
        let session = self.session(candidate).await?;
        let guard = release_on_drop(&candidacy, &self.agent, &keys, &session);
        let acquired = self.acquire(&keys, &session, candidate).await?;
        guard.disarm();
        Ok(acquired.map(|token| {
            candidacy.lead(self.grant(election, candidate, &session, keys, token, None))
        }))
    }

    async fn leader(&self, election: &ElectionName) -> Result<Option<LeaderInfo>> {
        self.state.check_open()?;
        let keys = self.keys(election);
        let (entries, _) = self.agent.read(&keys.dir, true, None).await?;
        observe::leader_of(&self.agent, &keys, &entries, &mut Default::default()).await
    }

    async fn candidates(&self, election: &ElectionName) -> Result<Vec<CandidateInfo>> {
        // Waiting sessions are invisible in Consul's lock: only the holder is listed.
        Ok(self
            .leader(election)
            .await?
            .map(|l| CandidateInfo {
                id: l.id,
                value: l.value,
                leading: true,
            })
            .into_iter()
            .collect())
    }

    async fn observe(&self, election: &ElectionName) -> Result<LeaderStream> {
        self.state.check_open()?;
        Ok(observe::observe(
            self.agent.clone(),
            self.keys(election),
            self.state.closed(),
        ))
    }

    async fn close(&self) -> Result<()> {
        // Release first: a destroyed session's locks are released too, but then the lock
        // delay holds the successors off.
        for claim in self.state.shut() {
            use elect_core::Claim;
            if let Err(error) = claim.release().await {
                tracing::warn!(%error, key = claim.keys.lock.as_str(), "close: lock left to the session's end");
            }
        }
        if let Some(session) = self.state.take_session().await {
            session.destroy(&self.agent).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The library refuses what the config parsers refuse, before it reaches any agent.
    #[tokio::test]
    async fn a_ttl_over_consuls_lock_delay_cap_needs_an_explicit_lock_delay() {
        let mut config = ConsulConfig::new(vec!["127.0.0.1:1".parse().unwrap()]);
        config.ttl = Duration::from_secs(90);
        let refused = ConsulElector::connect(&config).await.unwrap_err();
        assert!(
            matches!(&refused, Error::Config(e) if e.field == "consul.ttl"),
            "{refused}"
        );
        config.lock_delay = Some(Duration::from_secs(60));
        config
            .validate()
            .expect("an explicit lock delay is the user's choice");
    }
}
