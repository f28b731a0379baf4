//! The leadership handle a won campaign returns, and the backend's side of a term.

use std::fmt;
use std::sync::Arc;

use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use crate::clock::{sleep_until_opt, LeaseClock, LeasePhase, LeaseStatus};
use crate::error::{Error, NotLeaderReason, Result};
use crate::loss::LossReason;
use crate::{ElectionName, FencingToken};

/// Where a term stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeadershipState {
    /// Leading, confirmed until the deadline.
    Leading,
    /// The connection to the store is down and the deadline has not passed: the claim may
    /// still stand, but the leader must not act until it is `Leading` again.
    Suspended,
    /// The term is over. Final.
    Lost(LossReason),
}

/// The backend's side of one term: what only the store can do.
///
/// Backends implement it; users go through [`Leadership`], which checks the term's state
/// before it calls in here.
#[async_trait::async_trait]
pub trait Claim: fmt::Debug + Send + Sync {
    /// Replaces the candidate value followers read, if the claim is still ours.
    async fn proclaim(&self, value: &[u8]) -> Result<()>;
    /// Deletes the claim so that a successor is elected at once. Called once per term, after
    /// the handle has stopped reporting leadership.
    async fn release(&self) -> Result<()>;
    /// Writes `key` = `value` into the store itself, committed only if the claim still
    /// stands; [`Error::NotLeader`] otherwise.
    async fn fenced_put(&self, key: &str, value: &[u8]) -> Result<()>;
    /// Reads back a key written by [`Claim::fenced_put`]; used by tests and tools.
    async fn fenced_get(&self, key: &str) -> Result<Option<Vec<u8>>>;
}

/// The backend's handle on a term it granted: it ends the term when the store says so
/// (claim deleted, lease revoked).
#[derive(Debug, Clone)]
pub struct TermControl {
    ended: Arc<watch::Sender<Option<LossReason>>>,
}

impl TermControl {
    /// Ends the term with `reason`; the first reason sticks.
    pub fn end(&self, reason: LossReason) {
        self.ended.send_if_modified(|ended| {
            if ended.is_none() {
                *ended = Some(reason);
                true
            } else {
                false
            }
        });
    }

    /// True once the term has ended (by the backend or by resign).
    pub fn is_ended(&self) -> bool {
        self.ended.borrow().is_some()
    }

    /// Waits until the term is ended by anyone; used by backend tasks that watch the claim.
    pub async fn ended(&self) -> LossReason {
        let mut rx = self.ended.subscribe();
        loop {
            if let Some(reason) = *rx.borrow_and_update() {
                return reason;
            }
            if rx.changed().await.is_err() {
                return LossReason::ShutDown;
            }
        }
    }
}

/// Leadership of one election for one term, returned by a won campaign.
///
/// The handle is cheap to clone; all clones are the same term. Dropping it does **not**
/// release the claim: call [`Leadership::resign`] (or close the elector). A claim that is
/// dropped without resign stays until the session ends, like a crashed holder's.
///
/// ```no_run
/// # async fn demo(elector: &dyn elect_core::Elector) -> elect_core::Result<()> {
/// use elect_core::{Candidate, ElectionName};
/// let election: ElectionName = "billing".parse()?;
/// let leadership = elector.campaign(&election, &Candidate::generated()).await?;
/// let token = leadership.token();
/// tokio::select! {
///     reason = leadership.lost() => tracing::warn!(%reason, "lost leadership"),
///     _ = charge_subscriptions(token.get()) => leadership.resign().await?,
/// }
/// # Ok(()) }
/// # async fn charge_subscriptions(_token: u64) {}
/// ```
#[derive(Clone)]
#[must_use = "a won term is watched and resigned through this handle; dropped, its claim stands until the session ends"]
pub struct Leadership {
    election: ElectionName,
    candidate_id: String,
    token: FencingToken,
    backend: &'static str,
    lease: watch::Receiver<LeaseStatus>,
    /// Asks the session's keep-alive for a renewal now.
    renew_now: Arc<Notify>,
    ended: Arc<watch::Sender<Option<LossReason>>>,
    /// True while a resign's release is still being tried in the background.
    releasing: Arc<watch::Sender<bool>>,
    claim: Arc<dyn Claim>,
}

impl fmt::Debug for Leadership {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Leadership")
            .field("election", &self.election)
            .field("candidate_id", &self.candidate_id)
            .field("token", &self.token)
            .field("backend", &self.backend)
            .field("state", &self.state())
            .finish()
    }
}

impl Leadership {
    /// Used by backends: a term of `election` won by `candidate_id` with `token`, valid while
    /// the session behind `lease` lives and until the returned [`TermControl`] ends it.
    pub fn new(
        backend: &'static str,
        election: ElectionName,
        candidate_id: String,
        token: FencingToken,
        lease: &LeaseClock,
        claim: Arc<dyn Claim>,
    ) -> (Leadership, TermControl) {
        let (ended, _) = watch::channel(None);
        let ended = Arc::new(ended);
        let leadership = Leadership {
            election,
            candidate_id,
            token,
            backend,
            lease: lease.watch(),
            renew_now: lease.renew_now(),
            ended: ended.clone(),
            releasing: Arc::new(watch::channel(false).0),
            claim,
        };
        (leadership, TermControl { ended })
    }

    /// The fencing token of this term.
    pub fn token(&self) -> FencingToken {
        self.token
    }

    /// The election this term leads.
    pub fn election(&self) -> &ElectionName {
        &self.election
    }

    /// The id of the candidate that won.
    pub fn candidate_id(&self) -> &str {
        &self.candidate_id
    }

    /// The backend that granted the term: `etcd`, `consul`, `zookeeper`, `file`, `memory`.
    pub fn backend(&self) -> &'static str {
        self.backend
    }

    /// Where the term stands now, checked against the clock: past the deadline it is
    /// `Lost(DeadlinePassed)` even if no message said so.
    pub fn state(&self) -> LeadershipState {
        term_state(&self.ended, &self.lease)
    }

    /// True while leading and before the deadline; false once suspended or lost.
    pub fn is_leader(&self) -> bool {
        self.state() == LeadershipState::Leading
    }

    /// Until when this term may act, if the backend has a deadline (the file backend's
    /// kernel lock has none).
    pub fn deadline(&self) -> Option<Instant> {
        self.lease.borrow().deadline
    }

    /// The least time to the deadline a healthy term shows (see
    /// [`LeaseStatus::headroom`](crate::clock::LeaseStatus::headroom)); `None` without a
    /// deadline. Supervisors use it to stop work in time when renewals stop getting through.
    pub fn headroom(&self) -> Option<std::time::Duration> {
        self.lease.borrow().headroom
    }

    /// Asks the session for a renewal now rather than at its time; its answer moves the
    /// [deadline](Leadership::deadline) on ([`Leadership::lease_changed`] wakes then). For a
    /// supervisor elected with too little time left to stop its work before the deadline,
    /// which would otherwise wait for the next scheduled renewal. Without a deadline (the
    /// file backend), nothing happens.
    pub fn renew_soon(&self) {
        self.renew_now.notify_one();
    }

    /// Resolves at the next change of the session behind this term: a renewal confirmed (the
    /// deadline moved), suspended, ended. Pending for ever once the session is gone (the
    /// term's state says `Lost` then).
    pub async fn lease_changed(&self) {
        let mut lease = self.lease.clone();
        lease.borrow_and_update();
        if lease.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Resolves when the term ends, with the reason; at once if it already has. Resolves by
    /// the deadline even if the store is silent.
    pub async fn lost(&self) -> LossReason {
        let mut states = self.subscribe();
        loop {
            if let LeadershipState::Lost(reason) = states.changed().await {
                return reason;
            }
        }
    }

    /// A watch-style reader of this term's state: [`LeadershipWatch::changed`] yields every
    /// new state (`Leading` ⇄ `Suspended`, then `Lost`).
    pub fn subscribe(&self) -> LeadershipWatch {
        LeadershipWatch {
            leadership: self.clone(),
            last: None,
        }
    }

    /// Replaces the value followers read. Fails with [`Error::NotLeader`] once the term has
    /// ended or while it is suspended.
    pub async fn proclaim(&self, value: impl Into<Vec<u8>>) -> Result<()> {
        let value = value.into();
        crate::names::check_value("value", &value)?;
        self.check_leading()?;
        self.claim.proclaim(&value).await
    }

    /// Releases leadership at once so that a successor is elected without waiting for a TTL.
    ///
    /// The handle (and every clone) stops reporting leadership *before* the release is sent.
    /// Idempotent: a second call, or a call after the store ended the term, does nothing and
    /// returns `Ok`. A term already lost by its deadline keeps that reason, and its claim is
    /// still withdrawn. If the store does not take the release (or the caller stops waiting),
    /// it is retried in the background until it does or the session ends: our own live
    /// session would otherwise keep the claim of an ended term standing, ahead of our next
    /// campaign.
    pub async fn resign(&self) -> Result<()> {
        let reason = match self.state() {
            LeadershipState::Lost(reason) => reason,
            _ => LossReason::Resigned,
        };
        let first = self.ended.send_if_modified(|ended| {
            if ended.is_none() {
                *ended = Some(reason);
                true
            } else {
                false
            }
        });
        if !first {
            return Ok(());
        }
        tracing::info!(
            election = self.election.as_str(),
            candidate = self.candidate_id.as_str(),
            token = self.token.get(),
            backend = self.backend,
            reason = reason.as_str(),
            "resigned"
        );
        let (first_result, first) = tokio::sync::oneshot::channel();
        let (claim, lease) = (self.claim.clone(), self.lease.clone());
        let releasing = self.releasing.clone();
        releasing.send_replace(true);
        tokio::spawn(async move {
            let mut first_result = Some(first_result);
            crate::clock::retry_until_session_ends("release", lease, || {
                let (claim, first_result) = (claim.clone(), first_result.take());
                async move {
                    let result = claim.release().await;
                    let retry = result.as_ref().map_err(|e| e.to_string()).map(|_| ());
                    if let Some(sender) = first_result {
                        let _ = sender.send(result);
                    }
                    retry
                }
            })
            .await;
            releasing.send_replace(false);
        });
        first.await.unwrap_or(Ok(()))
    }

    /// Resolves once no release of this term is being tried any more: it landed, or the
    /// session ended (or no resign was made).
    /// What the elector keeps of a term it granted: its state, not its claim (so that
    /// dropping every handle of a lost term still drops the claim).
    pub(crate) fn view(&self) -> TermView {
        TermView {
            lease: self.lease.clone(),
            ended: self.ended.clone(),
            releasing: self.releasing.clone(),
        }
    }

    /// Writes `key` = `value` into the store itself, committed only if this term still
    /// holds there. Returns [`Error::NotLeader`] if it does not.
    pub async fn fenced_put(&self, key: &str, value: impl AsRef<[u8]>) -> Result<()> {
        self.check_leading()?;
        self.claim.fenced_put(key, value.as_ref()).await
    }

    /// Reads a key that [`Leadership::fenced_put`] writes.
    pub async fn fenced_get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        self.claim.fenced_get(key).await
    }

    fn check_leading(&self) -> Result<()> {
        let reason = match self.state() {
            LeadershipState::Leading => return Ok(()),
            LeadershipState::Suspended => NotLeaderReason::Suspended,
            LeadershipState::Lost(reason) => NotLeaderReason::Lost(reason),
        };
        Err(Error::NotLeader {
            election: self.election.clone(),
            reason,
        })
    }
}

fn term_state(
    ended: &watch::Sender<Option<LossReason>>,
    lease: &watch::Receiver<LeaseStatus>,
) -> LeadershipState {
    if let Some(reason) = *ended.borrow() {
        return LeadershipState::Lost(reason);
    }
    match lease.borrow().phase_at(crate::clock::now()) {
        LeasePhase::Live => LeadershipState::Leading,
        LeasePhase::Suspended => LeadershipState::Suspended,
        LeasePhase::Ended(reason) => LeadershipState::Lost(reason),
    }
}

/// A term's state without its claim; see [`Leadership::view`].
#[derive(Debug, Clone)]
pub(crate) struct TermView {
    lease: watch::Receiver<LeaseStatus>,
    ended: Arc<watch::Sender<Option<LossReason>>>,
    releasing: Arc<watch::Sender<bool>>,
}

impl TermView {
    pub(crate) fn is_lost(&self) -> bool {
        matches!(
            term_state(&self.ended, &self.lease),
            LeadershipState::Lost(_)
        )
    }

    pub(crate) fn same_term(&self, other: &TermView) -> bool {
        Arc::ptr_eq(&self.ended, &other.ended)
    }

    /// Resolves once no release of the term is being tried any more: it landed, or the
    /// session ended (or no resign was made).
    pub(crate) async fn release_settled(&self) {
        let _ = self.releasing.subscribe().wait_for(|busy| !*busy).await;
    }
}

/// Reads every state change of one term. See [`Leadership::subscribe`].
#[derive(Debug)]
pub struct LeadershipWatch {
    leadership: Leadership,
    last: Option<LeadershipState>,
}

impl LeadershipWatch {
    /// The next state that differs from the last one returned (the current state on the
    /// first call). After `Lost` it returns `Lost` again at once.
    pub async fn changed(&mut self) -> LeadershipState {
        let mut lease = self.leadership.lease.clone();
        let mut ended = self.leadership.ended.subscribe();
        loop {
            // Mark both sources seen before reading the state, so no change slips between.
            let deadline = lease.borrow_and_update().deadline;
            ended.borrow_and_update();
            let state = self.leadership.state();
            if self.last != Some(state) || matches!(state, LeadershipState::Lost(_)) {
                self.last = Some(state);
                return state;
            }
            tokio::select! {
                changed = lease.changed() => if changed.is_err() {
                    // The backend dropped its clock: the session is gone.
                    self.leadership.ended.send_if_modified(|e| {
                        if e.is_none() { *e = Some(LossReason::ShutDown); true } else { false }
                    });
                },
                _ = ended.changed() => {}
                _ = sleep_until_opt(deadline) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;
    use crate::clock::LeaseClock;
    use crate::testkit::{accepted_term, AcceptingClaim};

    fn term(clock: &LeaseClock) -> (Leadership, TermControl, Arc<AcceptingClaim>) {
        accepted_term(clock, 7)
    }

    #[tokio::test]
    async fn an_ended_term_never_reaches_the_store() {
        let clock = LeaseClock::unbounded();
        let (leadership, _control, store) = term(&clock);
        leadership.fenced_put("k", "v").await.unwrap();
        assert_eq!(store.writes.load(Ordering::SeqCst), 1);
        leadership.resign().await.unwrap();
        for refused in [
            leadership.fenced_put("k", "v").await,
            leadership.proclaim("v").await,
        ] {
            assert!(
                matches!(
                    refused,
                    Err(Error::NotLeader {
                        reason: NotLeaderReason::Lost(LossReason::Resigned),
                        ..
                    })
                ),
                "{refused:?}"
            );
        }
        assert_eq!(
            store.writes.load(Ordering::SeqCst),
            1,
            "an ended term's write reached the store"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn suspended_or_past_the_deadline_nothing_is_written() {
        let start = Instant::now();
        let ttl = std::time::Duration::from_secs(10);
        let clock = LeaseClock::new(start, ttl, ttl / 10, ttl / 3);
        let (leadership, _control, store) = term(&clock);
        clock.suspend();
        assert!(matches!(
            leadership.fenced_put("k", "v").await,
            Err(Error::NotLeader {
                reason: NotLeaderReason::Suspended,
                ..
            })
        ));
        clock.confirm(Instant::now(), ttl);
        leadership.fenced_put("k", "v").await.unwrap();
        tokio::time::advance(ttl).await;
        assert!(!leadership.is_leader());
        assert!(matches!(
            leadership.fenced_put("k", "v").await,
            Err(Error::NotLeader { .. })
        ));
        assert_eq!(store.writes.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn the_backend_ends_a_term_with_its_reason() {
        let clock = LeaseClock::unbounded();
        let (leadership, control, _store) = term(&clock);
        control.end(LossReason::Revoked);
        control.end(LossReason::Expired);
        assert_eq!(
            leadership.lost().await,
            LossReason::Revoked,
            "the first reason sticks"
        );
        assert_eq!(
            leadership.state(),
            LeadershipState::Lost(LossReason::Revoked)
        );
    }
}
