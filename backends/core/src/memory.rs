//! The in-memory elector: the reference implementation of the contract, with no server.
//!
//! A [`MemoryStore`] plays the server: sessions with a TTL that it expires itself, claims
//! ordered by a revision counter, like etcd's. Each [`MemoryElector`] is one client with one
//! session, kept alive by core's keep-alive loop ([`crate::renewal`]) exactly as a real backend is, and can be cut off
//! from the store ([`MemoryElector::set_partitioned`]) to show what a silent network does.
//! Use it in your own tests, and read it to see what a backend must do.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::backend::{Campaign, ElectorState, Line, OnDrop, Turn};
use crate::clock::{LeaseClock, LeasePhase};
use crate::error::{Error, Result};
use crate::leadership::{Claim, TermControl};
use crate::loss::LossReason;
use crate::observe::{leader_stream, WatchLeader};
use crate::renewal::{KeepAlive, Renew, Renewal};
use crate::{
    Candidate, CandidateInfo, ElectionName, Elector, FencingToken, LeaderInfo, LeaderStream,
    Leadership,
};

const BACKEND: &str = "memory";

/// The "server" shared by every [`MemoryElector`] made from it. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    /// Bumped on every change, so waiters and observers re-read.
    version: watch::Sender<u64>,
    reaper: Mutex<Option<JoinHandle<()>>>,
}

impl Default for Shared {
    fn default() -> Self {
        Shared {
            state: Mutex::default(),
            version: watch::channel(0).0,
            reaper: Mutex::default(),
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        if let Some(reaper) = self.reaper.get_mut().ok().and_then(Option::take) {
            reaper.abort();
        }
    }
}

#[derive(Debug, Default)]
struct State {
    revision: u64,
    next_session: u64,
    /// Session id → (TTL, instant the store expires it).
    sessions: HashMap<u64, (Duration, Instant)>,
    /// Election → claims in creation order; the first one leads.
    claims: HashMap<String, Vec<StoredClaim>>,
    /// Keys written by fenced puts.
    data: HashMap<String, Vec<u8>>,
}

#[derive(Debug, Clone)]
struct StoredClaim {
    revision: u64,
    session: u64,
    id: String,
    value: Vec<u8>,
}

impl State {
    fn bump(&mut self) -> u64 {
        self.revision += 1;
        self.revision
    }

    fn leader(&self, election: &str) -> Option<&StoredClaim> {
        self.claims.get(election).and_then(|claims| claims.first())
    }

    fn is_leader(&self, election: &str, revision: u64) -> bool {
        self.leader(election)
            .is_some_and(|c| c.revision == revision)
    }

    fn remove_claims(&mut self, keep: impl Fn(&StoredClaim) -> bool) -> bool {
        let mut removed = false;
        for claims in self.claims.values_mut() {
            let before = claims.len();
            claims.retain(&keep);
            removed |= claims.len() != before;
        }
        self.claims.retain(|_, claims| !claims.is_empty());
        removed
    }

    /// Expires sessions whose TTL ran out; returns the next expiry.
    fn reap(&mut self, now: Instant) -> (bool, Option<Instant>) {
        let expired: Vec<u64> = self
            .sessions
            .iter()
            .filter(|(_, (_, at))| *at <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in &expired {
            self.sessions.remove(id);
        }
        let removed = self.remove_claims(|c| !expired.contains(&c.session));
        let next = self.sessions.values().map(|(_, at)| *at).min();
        (!expired.is_empty() || removed, next)
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        MemoryStore::default()
    }

    /// A client of this store with one session of `ttl`; `margin` comes off its deadlines.
    pub fn elector(&self, ttl: Duration, margin: Duration) -> MemoryElector {
        self.ensure_reaper();
        MemoryElector {
            store: self.clone(),
            inner: Arc::new(ElectorInner {
                ttl,
                margin,
                partitioned: watch::channel(false).0,
                state: ElectorState::new(BACKEND, None),
            }),
        }
    }

    /// Deletes every claim of `election`, as an operator would by hand.
    pub fn delete_claims(&self, election: &ElectionName) {
        self.change(|state| ((), state.claims.remove(election.as_str()).is_some()));
    }

    /// Expires a session at once, as a store does when its TTL runs out.
    fn expire_session(&self, session: u64) {
        self.change(|state| {
            state.sessions.remove(&session);
            state.remove_claims(|c| c.session != session);
            ((), true)
        });
    }

    /// Runs `f` on the state; `f` says whether waiters must look again.
    fn change<T>(&self, f: impl FnOnce(&mut State) -> (T, bool)) -> T {
        let (out, changed) = {
            let mut state = self.shared.state.lock().expect("memory store poisoned");
            f(&mut state)
        };
        if changed {
            self.shared.version.send_modify(|v| *v += 1);
        }
        out
    }

    fn read<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        f(&self.shared.state.lock().expect("memory store poisoned"))
    }

    fn ensure_reaper(&self) {
        let mut reaper = self.shared.reaper.lock().expect("memory store poisoned");
        if reaper.is_none() {
            let weak = Arc::downgrade(&self.shared);
            *reaper = Some(tokio::spawn(reap(weak)));
        }
    }
}

/// The store's own expiry of sessions whose TTL ran out.
async fn reap(shared: Weak<Shared>) {
    let mut version = match shared.upgrade() {
        Some(shared) => shared.version.subscribe(),
        None => return,
    };
    loop {
        let next = {
            let Some(shared) = shared.upgrade() else {
                return;
            };
            let store = MemoryStore { shared };
            store.change(|state| {
                let (changed, next) = state.reap(Instant::now());
                (next, changed)
            })
        };
        tokio::select! {
            _ = crate::clock::sleep_until_opt(next) => {}
            changed = version.changed() => if changed.is_err() { return },
        }
    }
}

/// One client of a [`MemoryStore`]: one session, kept alive every TTL/3.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> elect_core::Result<()> {
/// use std::time::Duration;
/// use elect_core::{Candidate, Elector, MemoryStore};
/// let store = MemoryStore::new();
/// let elector = store.elector(Duration::from_secs(10), Duration::from_secs(1));
/// let election = "billing".parse()?;
/// let leadership = elector.campaign(&election, &Candidate::new("a", "addr-a")?).await?;
/// assert!(leadership.is_leader());
/// assert_eq!(elector.leader(&election).await?.unwrap().id, "a");
/// leadership.resign().await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct MemoryElector {
    store: MemoryStore,
    inner: Arc<ElectorInner>,
}

/// What a backend keeps per elector, on core's toolkit: the session, the candidacies, the
/// granted terms and the closed flag are in [`ElectorState`].
#[derive(Debug)]
struct ElectorInner {
    ttl: Duration,
    margin: Duration,
    partitioned: watch::Sender<bool>,
    state: ElectorState<Session, MemoryClaim>,
}

/// One session of the store, kept alive by core's keep-alive loop.
#[derive(Debug)]
struct Session {
    id: u64,
    clock: LeaseClock,
    keepalive: JoinHandle<()>,
}

impl crate::backend::Session for Session {
    fn clock(&self) -> &LeaseClock {
        &self.clock
    }
}

impl Drop for Session {
    /// Like a crash: stop renewing and let the store expire the session by its TTL.
    fn drop(&mut self) {
        self.keepalive.abort();
        self.clock.end(LossReason::ShutDown);
    }
}

impl MemoryElector {
    /// Cuts this client off from the store (`true`) or reconnects it (`false`). While cut
    /// off, every call and every renewal waits, as on a silent network: the deadline runs
    /// out, and the store expires the session after its TTL.
    pub fn set_partitioned(&self, partitioned: bool) {
        self.inner.partitioned.send_replace(partitioned);
    }

    /// Waits until the store can be reached and the elector is open.
    async fn reach(&self) -> Result<()> {
        self.inner.reach().await
    }

    /// The live session, or a new one if there is none or it ended.
    async fn session(&self) -> Result<Arc<Session>> {
        self.reach().await?;
        self.inner
            .state
            .session(|| async { Ok(self.new_session()) })
            .await
    }

    /// Opens a session at the store and starts keeping it alive.
    fn new_session(&self) -> Session {
        let sent_at = crate::clock::now();
        let ttl = self.inner.ttl;
        let id = self.store.change(|state| {
            state.next_session += 1;
            let id = state.next_session;
            state.sessions.insert(id, (ttl, sent_at + ttl));
            (id, true)
        });
        let clock = LeaseClock::new(sent_at, ttl, self.inner.margin, ttl / 3);
        let keepalive = KeepAlive::new(BACKEND, clock.clone(), ttl / 3).spawn(SessionRenewer {
            store: self.store.clone(),
            inner: Arc::downgrade(&self.inner),
            session: id,
        });
        Session {
            id,
            clock,
            keepalive,
        }
    }
}

impl ElectorInner {
    async fn reach(&self) -> Result<()> {
        let mut partitioned = self.partitioned.subscribe();
        let mut closed = self.state.closed();
        loop {
            if *closed.borrow_and_update() {
                return Err(Error::Closed { backend: BACKEND });
            }
            if !*partitioned.borrow_and_update() {
                return Ok(());
            }
            tokio::select! {
                _ = partitioned.changed() => {}
                _ = closed.changed() => {}
            }
        }
    }
}

/// One renewal of a session: waits while the elector is cut off, as a real request would.
struct SessionRenewer {
    store: MemoryStore,
    inner: Weak<ElectorInner>,
    session: u64,
}

#[async_trait::async_trait]
impl Renew for SessionRenewer {
    async fn renew(&mut self, sent_at: Instant, _patience: Duration) -> Renewal {
        let Some(elector) = self.inner.upgrade() else {
            return Renewal::Gone(LossReason::ShutDown);
        };
        if elector.reach().await.is_err() {
            return Renewal::Gone(LossReason::ShutDown);
        }
        drop(elector);
        let session = self.session;
        let renewed = self
            .store
            .change(|state| match state.sessions.get_mut(&session) {
                Some((ttl, expires)) => {
                    *expires = Instant::now() + *ttl;
                    (Some(*ttl), false)
                }
                None => (None, false),
            });
        match renewed {
            Some(ttl) => Renewal::Confirmed { from: sent_at, ttl },
            None => Renewal::Gone(LossReason::Expired),
        }
    }
}

/// Reads the leader whenever the store changed, waiting while the elector is cut off.
struct LeaderWatch {
    store: MemoryStore,
    inner: Weak<ElectorInner>,
    election: String,
    version: watch::Receiver<u64>,
}

#[async_trait::async_trait]
impl WatchLeader for LeaderWatch {
    async fn read(&mut self) -> Result<Option<LeaderInfo>> {
        let Some(elector) = self.inner.upgrade() else {
            return Err(Error::Closed { backend: BACKEND });
        };
        elector.reach().await?;
        drop(elector);
        self.version.borrow_and_update();
        Ok(self.store.read(|state| leader_info(state, &self.election)))
    }

    async fn changed(&mut self) -> Result<()> {
        self.version
            .changed()
            .await
            .map_err(|_| Error::Closed { backend: BACKEND })
    }
}

/// Ends the term when its claim disappears from the store (deleted by hand, session
/// expired), as a real backend's watch on its own key does.
async fn watch_own_claim(
    store: MemoryStore,
    mut version: watch::Receiver<u64>,
    inner: Weak<ElectorInner>,
    claim: Arc<MemoryClaim>,
    term: TermControl,
) {
    loop {
        let Some(elector) = inner.upgrade() else {
            return;
        };
        if elector.reach().await.is_err() {
            return;
        }
        version.borrow_and_update();
        let session = elector.state.current().await.map(|s| s.id);
        let (exists, session_alive) = store.read(|state| {
            let exists = state
                .claims
                .get(claim.election.as_str())
                .is_some_and(|cs| cs.iter().any(|c| c.revision == claim.revision));
            (
                exists,
                session.is_some_and(|id| state.sessions.contains_key(&id)),
            )
        });
        drop(elector);
        if !exists {
            term.end(if session_alive {
                LossReason::Revoked
            } else {
                LossReason::Expired
            });
            return;
        }
        tokio::select! {
            _ = term.ended() => return,
            changed = version.changed() => if changed.is_err() { return },
        }
    }
}

#[async_trait::async_trait]
impl Elector for MemoryElector {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    async fn campaign(&self, election: &ElectionName, candidate: &Candidate) -> Result<Leadership> {
        self.inner
            .state
            .campaign_in_line(&Queue(self), election, candidate)
            .await
    }

    async fn try_campaign(
        &self,
        election: &ElectionName,
        candidate: &Candidate,
    ) -> Result<Option<Leadership>> {
        self.inner
            .state
            .try_in_line(&Queue(self), election, candidate)
            .await
    }

    async fn leader(&self, election: &ElectionName) -> Result<Option<LeaderInfo>> {
        self.reach().await?;
        Ok(self
            .store
            .read(|state| leader_info(state, election.as_str())))
    }

    async fn candidates(&self, election: &ElectionName) -> Result<Vec<CandidateInfo>> {
        self.reach().await?;
        Ok(self.store.read(|state| {
            state
                .claims
                .get(election.as_str())
                .map(|claims| {
                    claims
                        .iter()
                        .enumerate()
                        .map(|(i, c)| CandidateInfo {
                            id: c.id.clone(),
                            value: c.value.clone(),
                            leading: i == 0,
                        })
                        .collect()
                })
                .unwrap_or_default()
        }))
    }

    async fn observe(&self, election: &ElectionName) -> Result<LeaderStream> {
        self.reach().await?;
        let watcher = LeaderWatch {
            store: self.store.clone(),
            inner: Arc::downgrade(&self.inner),
            election: election.as_str().to_owned(),
            version: self.store.shared.version.subscribe(),
        };
        Ok(leader_stream(self.inner.state.closed(), watcher))
    }

    async fn close(&self) -> Result<()> {
        for claim in self.inner.state.shut() {
            claim.delete();
        }
        if let Some(session) = self.inner.state.take_session().await {
            self.store.expire_session(session.id);
        }
        Ok(())
    }
}

/// The store's requests for a campaign in line, as a real backend writes them; core's
/// [`ElectorState::campaign_in_line`] runs the campaign. A private view of the elector, so
/// that its callers cannot join a line by hand.
struct Queue<'a>(&'a MemoryElector);

#[async_trait::async_trait]
impl Line for Queue<'_> {
    type Session = Session;
    /// Our claim's revision.
    type Place = u64;
    type Seen = ();

    async fn session(&self) -> Result<Arc<Session>> {
        self.0.session().await
    }

    async fn join(&self, at: &Campaign<'_, Session>) -> Result<Option<(u64, OnDrop)>> {
        let (election, candidate, session) = (at.election, at.candidate, at.session.id);
        let store = self.0.store.clone();
        let Some(revision) = store.change(|state| put_claim(state, election, candidate, session))
        else {
            return Ok(None);
        };
        let guard = at
            .candidacy
            .withdraw_on_drop(async move { delete_claim(&store, revision) });
        Ok(Some((revision, guard)))
    }

    /// Waits until our claim leads (and the session is live), or is gone.
    async fn wait_turn(&self, at: &Campaign<'_, Session>, revision: &u64) -> Result<Turn> {
        let (election, revision) = (at.election.as_str(), *revision);
        let mut version = self.0.store.shared.version.subscribe();
        let mut lease = at.session.clock.watch();
        loop {
            self.0.reach().await?;
            version.borrow_and_update();
            let (exists, leads) = self.0.store.read(|state| {
                let exists = state
                    .claims
                    .get(election)
                    .is_some_and(|cs| cs.iter().any(|c| c.revision == revision));
                (exists, state.is_leader(election, revision))
            });
            match at.session.clock.status().phase {
                LeasePhase::Ended(_) => return Ok(Turn::SessionOver),
                LeasePhase::Live if leads => return Ok(Turn::Lead(())),
                _ if !exists => return Ok(Turn::ClaimGone),
                _ => {}
            }
            tokio::select! {
                _ = version.changed() => {}
                _ = crate::clock::lease_ended(&mut lease) => {}
            }
        }
    }

    async fn first_in_line(
        &self,
        at: &Campaign<'_, Session>,
        revision: &u64,
    ) -> Result<Option<()>> {
        self.0.reach().await?;
        let first = self
            .0
            .store
            .read(|s| s.is_leader(at.election.as_str(), *revision));
        Ok(first.then_some(()))
    }

    fn grant(&self, at: &Campaign<'_, Session>, revision: u64, _: ()) -> Leadership {
        let claim = Arc::new(MemoryClaim {
            store: self.0.store.clone(),
            inner: Arc::downgrade(&self.0.inner),
            election: at.election.clone(),
            revision,
        });
        let (store, inner) = (self.0.store.clone(), Arc::downgrade(&self.0.inner));
        let version = self.0.store.shared.version.subscribe();
        self.0.inner.state.grant(
            at.election,
            at.candidate,
            &at.session,
            FencingToken(revision),
            claim,
            |claim, term, _| watch_own_claim(store, version, inner, claim, term),
        )
    }
}

fn leader_info(state: &State, election: &str) -> Option<LeaderInfo> {
    state.leader(election).map(|c| LeaderInfo {
        id: c.id.clone(),
        value: c.value.clone(),
        token: FencingToken(c.revision),
    })
}

/// Adds a claim for `candidate` if its session lives; returns its revision.
fn put_claim(
    state: &mut State,
    election: &ElectionName,
    candidate: &Candidate,
    session: u64,
) -> (Option<u64>, bool) {
    if !state.sessions.contains_key(&session) {
        return (None, false);
    }
    let revision = state.bump();
    state
        .claims
        .entry(election.as_str().to_owned())
        .or_default()
        .push(StoredClaim {
            revision,
            session,
            id: candidate.id().to_owned(),
            value: candidate.value().to_vec(),
        });
    (Some(revision), true)
}

fn delete_claim(store: &MemoryStore, revision: u64) {
    store.change(|state| ((), state.remove_claims(|c| c.revision != revision)));
}

/// The memory backend's side of a term.
#[derive(Debug)]
struct MemoryClaim {
    store: MemoryStore,
    inner: Weak<ElectorInner>,
    election: ElectionName,
    revision: u64,
}

impl MemoryClaim {
    fn delete(&self) {
        delete_claim(&self.store, self.revision);
    }

    async fn reach(&self) -> Result<()> {
        match self.inner.upgrade() {
            Some(inner) => inner.reach().await,
            None => Err(Error::Closed { backend: BACKEND }),
        }
    }

    fn not_leader(&self) -> Error {
        Error::rejected_by_store(&self.election)
    }
}

#[async_trait::async_trait]
impl Claim for MemoryClaim {
    async fn proclaim(&self, value: &[u8]) -> Result<()> {
        self.reach().await?;
        let (election, revision) = (self.election.as_str(), self.revision);
        self.store.change(|state| {
            let claim = state
                .claims
                .get_mut(election)
                .and_then(|cs| cs.iter_mut().find(|c| c.revision == revision));
            match claim {
                Some(claim) => {
                    claim.value = value.to_vec();
                    (Ok(()), true)
                }
                None => (Err(self.not_leader()), false),
            }
        })
    }

    async fn release(&self) -> Result<()> {
        self.reach().await?;
        self.delete();
        Ok(())
    }

    async fn fenced_put(&self, key: &str, value: &[u8]) -> Result<()> {
        self.reach().await?;
        let (election, revision) = (self.election.as_str(), self.revision);
        self.store.change(|state| {
            if !state.is_leader(election, revision) {
                return (Err(self.not_leader()), false);
            }
            state.data.insert(key.to_owned(), value.to_vec());
            (Ok(()), true)
        })
    }

    async fn fenced_get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        self.reach().await?;
        Ok(self.store.read(|state| state.data.get(key).cloned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::NotLeaderReason;

    /// The store itself refuses an old term's fenced write, whatever the handle believes.
    #[tokio::test]
    async fn the_store_refuses_an_old_terms_fenced_write() {
        let store = MemoryStore::new();
        let ttl = Duration::from_secs(5);
        let (a, b) = (store.elector(ttl, ttl / 10), store.elector(ttl, ttl / 10));
        let election: ElectionName = "fenced".parse().unwrap();
        let first = a
            .campaign(&election, &Candidate::new("a", "a").unwrap())
            .await
            .unwrap();
        // The old term's claim, as the store knows it, without the handle's own check.
        let stale = MemoryClaim {
            store: store.clone(),
            inner: Arc::downgrade(&a.inner),
            election: election.clone(),
            revision: first.token().get(),
        };
        stale.fenced_put("k", b"from-a").await.unwrap();
        first.resign().await.unwrap();
        let second = b
            .campaign(&election, &Candidate::new("b", "b").unwrap())
            .await
            .unwrap();
        let late = stale.fenced_put("k", b"late-from-a").await;
        assert_eq!(
            late.err().and_then(|e| e.not_leader_reason()),
            Some(NotLeaderReason::RejectedByStore)
        );
        assert_eq!(
            second.fenced_get("k").await.unwrap().as_deref(),
            Some(&b"from-a"[..])
        );
    }
}
