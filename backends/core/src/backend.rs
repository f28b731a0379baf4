//! Pieces every session-based backend needs, written once: the elector's state (one live
//! session, made again once it is over; the closed flag; the terms it granted; its
//! [`Candidacies`], at most one per election), a guard that undoes a half-done campaign when
//! its future is dropped. The keep-alive loop is [`crate::renewal`], the observer loop
//! [`crate::observe`].

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use tokio::sync::{watch, Notify};

use crate::clock::{LeaseClock, LeaseStatus};
use crate::error::{Error, Result};
use crate::leadership::{Claim, TermControl, TermView};
use crate::loss::LossReason;
use crate::{Candidate, ElectionName, FencingToken, Leadership};

/// A backend's session: an etcd lease, a Consul session, a ZooKeeper session.
pub trait Session: Send + Sync {
    /// The session's deadline clock: the terms granted on it end when it ends.
    fn clock(&self) -> &LeaseClock;

    /// True once the session can carry no claim any more (expired, revoked, closed): by
    /// default, once its clock ended.
    fn is_over(&self) -> bool {
        self.clock().is_ended()
    }
}

/// Where a campaign that waits in line (a queue of claims ordered by the store) stands once
/// its wait is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turn<T = ()> {
    /// Nobody older is left and our claim stands: lead, with what the wait learned (etcd: the
    /// revision it saw).
    Lead(T),
    /// The session ended while we waited: our claim is gone with it.
    SessionOver,
    /// Our claim was deleted while we waited.
    ClaimGone,
}

/// A recipe where candidates wait in line, each claim ordered by the store (etcd, ZooKeeper,
/// the memory backend): the backend writes its requests, and
/// [`ElectorState::campaign_in_line`] runs the campaign — join, wait for the turn, grant, and
/// start again with a live session when the session or the claim was lost meanwhile.
#[async_trait::async_trait]
pub trait Line: Send + Sync {
    /// The backend's session.
    type Session: Session;
    /// Our place in line: what the wait and the grant need to know of our claim.
    type Place: Send + Sync;
    /// What the wait learned when it was our turn (etcd: the revision it saw).
    type Seen: Send;

    /// The elector's live session, or a new one.
    async fn session(&self) -> Result<Arc<Self::Session>>;

    /// Writes our claim, with a guard from the candidacy that withdraws it if the campaign is
    /// dropped before its grant; `None` when the session ended meanwhile.
    async fn join(&self, at: &Campaign<'_, Self::Session>)
        -> Result<Option<(Self::Place, OnDrop)>>;

    /// Waits until nobody older is left in line, or our claim or session is gone.
    async fn wait_turn(
        &self,
        at: &Campaign<'_, Self::Session>,
        place: &Self::Place,
    ) -> Result<Turn<Self::Seen>>;

    /// For a try that does not wait: whether our claim is first in line now, with what the
    /// look learned.
    async fn first_in_line(
        &self,
        at: &Campaign<'_, Self::Session>,
        place: &Self::Place,
    ) -> Result<Option<Self::Seen>>;

    /// For a try that does not wait: whether someone leads already, asked before any claim is
    /// written (when a read costs less than a claim and its withdrawal). Not asked by default.
    async fn someone_leads(&self, _election: &ElectionName) -> Result<bool> {
        Ok(false)
    }

    /// Turns our claim, first in line, into a term ([`ElectorState::grant`]).
    fn grant(
        &self,
        at: &Campaign<'_, Self::Session>,
        place: Self::Place,
        seen: Self::Seen,
    ) -> Leadership;
}

/// One campaign's try in a [`Line`]: what it runs on and for whom.
#[derive(Debug)]
pub struct Campaign<'a, S> {
    /// The candidacy, which withdraws what a dropped campaign left.
    pub candidacy: &'a Candidacy,
    /// The session this try runs on.
    pub session: Arc<S>,
    /// The election.
    pub election: &'a ElectionName,
    /// The candidate.
    pub candidate: &'a Candidate,
}

/// The state of one elector: its session `S` and the claims `C` of the terms it granted.
#[derive(Debug)]
pub struct ElectorState<S, C> {
    backend: &'static str,
    session: tokio::sync::Mutex<Option<Arc<S>>>,
    closed: watch::Sender<bool>,
    terms: Mutex<Vec<(TermControl, Arc<C>)>>,
    /// The elections this elector campaigns in or leads.
    pub candidacies: Candidacies,
}

impl<S: Session, C> ElectorState<S, C> {
    /// The state of a new elector of `backend`, with a session already made (perhaps shared
    /// with other electors) or none yet.
    pub fn new(backend: &'static str, session: Option<Arc<S>>) -> Self {
        ElectorState {
            backend,
            session: tokio::sync::Mutex::new(session),
            closed: watch::channel(false).0,
            terms: Mutex::new(Vec::new()),
            candidacies: Candidacies::default(),
        }
    }

    /// [`Error::Closed`] once the elector was closed.
    pub fn check_open(&self) -> Result<()> {
        if *self.closed.borrow() {
            return Err(Error::Closed {
                backend: self.backend,
            });
        }
        Ok(())
    }

    /// Starts a candidacy in `election`: refused once the elector is closed, and while this
    /// elector already campaigns in or leads that election.
    pub async fn enter(&self, election: &ElectionName) -> Result<Candidacy> {
        self.check_open()?;
        self.candidacies.enter(election).await
    }

    /// Runs `wait` (a campaign's wait for its turn), or fails with `Closed` as soon as the
    /// elector is closed.
    pub async fn unless_closed<T>(&self, wait: impl Future<Output = Result<T>>) -> Result<T> {
        let mut closed = self.closed();
        tokio::select! {
            done = wait => done,
            _ = closed.wait_for(|c| *c) => Err(Error::Closed { backend: self.backend }),
        }
    }

    /// Waits in line (`wait`) unless the elector closes: what the wait learned when it is our
    /// turn, or `None` when the session or the claim was lost meanwhile and the campaign must
    /// start again (logged here).
    pub async fn my_turn<T>(
        &self,
        election: &ElectionName,
        wait: impl Future<Output = Result<Turn<T>>>,
    ) -> Result<Option<T>> {
        match self.unless_closed(wait).await? {
            Turn::Lead(learned) => Ok(Some(learned)),
            lost => {
                let lost = match lost {
                    Turn::SessionOver => "session over",
                    _ => "claim gone",
                };
                tracing::info!(
                    backend = self.backend,
                    election = election.as_str(),
                    lost,
                    "claim or session lost while waiting; campaigning again"
                );
                Ok(None)
            }
        }
    }

    /// Campaigns in `election` through `line` until `candidate` leads (see [`Line`]).
    pub async fn campaign_in_line<L: Line<Session = S>>(
        &self,
        line: &L,
        election: &ElectionName,
        candidate: &Candidate,
    ) -> Result<Leadership> {
        let candidacy = self.enter(election).await?;
        loop {
            let (at, place, guard) = join_line(line, &candidacy, election, candidate).await?;
            let turn = line.wait_turn(&at, &place);
            let Some(seen) = self.my_turn(election, turn).await? else {
                continue;
            };
            guard.disarm();
            let leadership = line.grant(&at, place, seen);
            return Ok(candidacy.lead(leadership));
        }
    }

    /// Leads in `election` through `line` if nobody is ahead of `candidate` now; else
    /// withdraws at once (see [`Line`]).
    pub async fn try_in_line<L: Line<Session = S>>(
        &self,
        line: &L,
        election: &ElectionName,
        candidate: &Candidate,
    ) -> Result<Option<Leadership>> {
        let candidacy = self.enter(election).await?;
        if line.someone_leads(election).await? {
            return Ok(None);
        }
        let (at, place, guard) = join_line(line, &candidacy, election, candidate).await?;
        let Some(seen) = line.first_in_line(&at, &place).await? else {
            // Not first: our claim is gone before we answer, so that no reader sees it after.
            guard.undo_now().await;
            return Ok(None);
        };
        guard.disarm();
        let leadership = line.grant(&at, place, seen);
        Ok(Some(candidacy.lead(leadership)))
    }

    /// Resolves when the elector is closed.
    pub fn closed(&self) -> watch::Receiver<bool> {
        self.closed.subscribe()
    }

    /// The live session, or a new one from `create` if there is none or it is over; `Closed`
    /// once the elector is closed, so that a campaign's every try stops there.
    pub async fn session<F, Fut>(&self, create: F) -> Result<Arc<S>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<S>>,
    {
        self.check_open()?;
        let mut slot = self.session.lock().await;
        if let Some(session) = slot.as_ref() {
            if !session.is_over() {
                return Ok(session.clone());
            }
        }
        let session = Arc::new(create().await?);
        *slot = Some(session.clone());
        Ok(session)
    }

    /// The current session, over or not, if one was made.
    pub async fn current(&self) -> Option<Arc<S>> {
        self.session.lock().await.clone()
    }

    /// Takes the session out, so that the caller can end it.
    pub async fn take_session(&self) -> Option<Arc<S>> {
        self.session.lock().await.take()
    }

    /// Turns a claim won on `session` into a term: the [`Leadership`] handle on the
    /// session's clock, the watcher of the term's own claim (`watch_own`, given the claim, the
    /// term and the session's lease; it ends the term when the claim disappears), and the
    /// term kept so that closing the elector ends it.
    pub fn grant<W, Fut>(
        &self,
        election: &ElectionName,
        candidate: &Candidate,
        session: &S,
        token: FencingToken,
        claim: Arc<C>,
        watch_own: W,
    ) -> Leadership
    where
        C: Claim + 'static,
        W: FnOnce(Arc<C>, TermControl, watch::Receiver<LeaseStatus>) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let (leadership, term) = Leadership::new(
            self.backend,
            election.clone(),
            candidate.id().to_owned(),
            token,
            session.clock(),
            claim.clone(),
        );
        tokio::spawn(watch_own(
            claim.clone(),
            term.clone(),
            session.clock().watch(),
        ));
        self.register(term, claim);
        leadership
    }

    /// Keeps a granted term, so that closing the elector can end it.
    fn register(&self, term: TermControl, claim: Arc<C>) {
        let mut terms = self.terms.lock().expect("elector state poisoned");
        terms.retain(|(term, _)| !term.is_ended());
        terms.push((term, claim));
    }

    /// Closes: every later call is [`Error::Closed`], every term ends with `ShutDown`.
    /// Returns the claims, for the backend to release.
    pub fn shut(&self) -> Vec<Arc<C>> {
        self.closed.send_replace(true);
        let terms = std::mem::take(&mut *self.terms.lock().expect("elector state poisoned"));
        terms
            .into_iter()
            .map(|(term, claim)| {
                term.end(LossReason::ShutDown);
                claim
            })
            .collect()
    }
}

/// Writes our claim in `line` with a live session (a new one each time the session ended
/// before the claim was written): the try, our place and the guard that withdraws it.
async fn join_line<'a, L: Line>(
    line: &L,
    candidacy: &'a Candidacy,
    election: &'a ElectionName,
    candidate: &'a Candidate,
) -> Result<(Campaign<'a, L::Session>, L::Place, OnDrop)> {
    loop {
        let at = Campaign {
            candidacy,
            session: line.session().await?,
            election,
            candidate,
        };
        if let Some((place, guard)) = line.join(&at).await? {
            return Ok((at, place, guard));
        }
    }
}

/// How long a term's watch on its own claim may outlive the term: until the release's delete
/// fires it.
pub const OWN_WATCH_LINGER: std::time::Duration = std::time::Duration::from_secs(5);

/// Keeps a term's watch on its own claim (`watch`, the pending wait) open after the term
/// ended, until it fires or [`OWN_WATCH_LINGER`] passes. Dropping it at once sends a cancel
/// (ZooKeeper: `removeWatches`) that the server handles before the release's delete on the
/// same session: ~3 ms added to every ZooKeeper handover.
pub async fn linger<F: Future>(watch: F) {
    let _ = tokio::time::timeout(OWN_WATCH_LINGER, watch).await;
}

/// Runs a future in the background when dropped, unless disarmed: withdraws the claim of a
/// campaign whose future is dropped half-way (cancel safety).
pub struct OnDrop {
    undo: Option<BoxFuture<'static, ()>>,
    /// Called when the undo starts, before it is spawned (see [`Candidacy::withdraw_on_drop`]).
    started: Option<Box<dyn FnOnce() + Send>>,
}

impl std::fmt::Debug for OnDrop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnDrop")
            .field("armed", &self.undo.is_some())
            .finish()
    }
}

impl OnDrop {
    /// Armed with `undo`.
    pub fn new(undo: impl Future<Output = ()> + Send + 'static) -> Self {
        OnDrop {
            undo: Some(Box::pin(undo)),
            started: None,
        }
    }

    /// The campaign finished: nothing to undo.
    pub fn disarm(mut self) {
        self.undo = None;
    }

    /// Undoes now, and returns once the undo is done.
    pub async fn undo_now(mut self) {
        if let Some(undo) = self.undo.take() {
            if let Some(started) = self.started.take() {
                started();
            }
            undo.await;
        }
    }
}

impl Drop for OnDrop {
    fn drop(&mut self) {
        if let Some(undo) = self.undo.take() {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                if let Some(started) = self.started.take() {
                    started();
                }
                runtime.spawn(undo);
            }
        }
    }
}

/// The elections one elector campaigns in or leads: at most one candidacy per election.
///
/// A second campaign in an election where this elector already campaigns, or holds a term
/// that is not lost, is refused with [`Error::AlreadyCampaigning`] — on a store that lets a
/// session take a lock it already holds (Consul) or names claims after the session (etcd),
/// it would otherwise win a second term beside the first. A campaign that was dropped while
/// its claim is still being withdrawn is waited for instead: the withdrawal deletes claims by
/// name, and must not reach the next campaign's.
#[derive(Debug, Clone, Default)]
pub struct Candidacies {
    shared: Arc<CandidaciesShared>,
}

#[derive(Debug, Default)]
struct CandidaciesShared {
    slots: Mutex<HashMap<ElectionName, Slot>>,
    /// The greatest token each election granted this elector.
    last_tokens: Mutex<HashMap<ElectionName, FencingToken>>,
    /// Signalled whenever a withdrawal ends.
    withdrawn: Notify,
}

#[derive(Debug, Default)]
struct Slot {
    phase: Phase,
    /// Withdrawals of dropped campaigns still running.
    withdrawing: usize,
}

#[derive(Debug, Default)]
enum Phase {
    #[default]
    Idle,
    Campaigning,
    Leading(TermView),
}

impl Phase {
    fn is_busy(&self) -> bool {
        match self {
            Phase::Idle => false,
            Phase::Campaigning => true,
            Phase::Leading(term) => !term.is_lost(),
        }
    }
}

impl Candidacies {
    /// The greatest token this elector was granted in `election`, if any.
    pub fn last_token(&self, election: &ElectionName) -> Option<FencingToken> {
        let last_tokens = self
            .shared
            .last_tokens
            .lock()
            .expect("candidacies poisoned");
        last_tokens.get(election).copied()
    }

    /// Starts a campaign in `election`: refused while another campaign of this elector runs
    /// there or its term there is not lost; waits while a dropped campaign's claim is being
    /// withdrawn or the last term's release is still being tried.
    pub async fn enter(&self, election: &ElectionName) -> Result<Candidacy> {
        loop {
            let withdrawn = self.shared.withdrawn.notified();
            tokio::pin!(withdrawn);
            withdrawn.as_mut().enable();
            let last_term = {
                let mut slots = self.shared.slots.lock().expect("candidacies poisoned");
                let slot = slots.entry(election.clone()).or_default();
                if slot.phase.is_busy() {
                    return Err(Error::AlreadyCampaigning {
                        election: election.clone(),
                    });
                }
                if let Phase::Leading(term) = &slot.phase {
                    Some(term.clone())
                } else {
                    None
                }
            };
            // A release of the last term still on its way could meet the next term's claim
            // (Consul releases by session, and gives a session that takes the lock it still
            // holds the same lock — and the same token — again): let it settle first.
            if let Some(term) = last_term {
                term.release_settled().await;
                let mut slots = self.shared.slots.lock().expect("candidacies poisoned");
                if let Some(slot) = slots.get_mut(election) {
                    if matches!(&slot.phase, Phase::Leading(t) if t.same_term(&term)) {
                        slot.phase = Phase::Idle;
                    }
                }
                continue;
            }
            {
                let mut slots = self.shared.slots.lock().expect("candidacies poisoned");
                let slot = slots.entry(election.clone()).or_default();
                if slot.phase.is_busy() || matches!(slot.phase, Phase::Leading(_)) {
                    continue;
                }
                if slot.withdrawing == 0 {
                    slot.phase = Phase::Campaigning;
                    return Ok(Candidacy {
                        shared: self.shared.clone(),
                        election: election.clone(),
                        won: false,
                    });
                }
            }
            withdrawn.await;
        }
    }
}

/// One campaign's hold on its election; see [`Candidacies`]. Dropped without
/// [`Candidacy::lead`], the election is free again once the campaign's withdrawals are done.
#[derive(Debug)]
pub struct Candidacy {
    shared: Arc<CandidaciesShared>,
    election: ElectionName,
    won: bool,
}

impl Candidacy {
    /// The campaign won: the election stays taken until `leadership` is lost. Gives the term
    /// back, for the campaign to return.
    pub fn lead(mut self, leadership: Leadership) -> Leadership {
        self.won = true;
        let token = leadership.token();
        let mut last_tokens = self
            .shared
            .last_tokens
            .lock()
            .expect("candidacies poisoned");
        let last = last_tokens.entry(self.election.clone()).or_insert(token);
        if token < *last {
            // Tokens come from the store's revision: a lower one means the store went back,
            // e.g. restored from a snapshot without bumping its revision (etcd:
            // `--bump-revision` with `--mark-compacted`). Downstream ledgers will refuse the
            // term; the operator must know.
            tracing::error!(
                election = self.election.as_str(),
                token = token.get(),
                earlier = last.get(),
                backend = leadership.backend(),
                "fencing token went back: was the store restored from an older snapshot? \
                 systems that keep the highest token will refuse this leader"
            );
        }
        *last = (*last).max(token);
        drop(last_tokens);
        let mut slots = self.shared.slots.lock().expect("candidacies poisoned");
        slots.entry(self.election.clone()).or_default().phase = Phase::Leading(leadership.view());
        drop(slots);
        leadership
    }

    /// A guard that runs `undo` if dropped armed (see [`OnDrop`]); until `undo` is done, a
    /// new campaign of this elector in this election waits.
    pub fn withdraw_on_drop(&self, undo: impl Future<Output = ()> + Send + 'static) -> OnDrop {
        let (started, done) = (self.shared.clone(), self.shared.clone());
        let (election, done_election) = (self.election.clone(), self.election.clone());
        OnDrop {
            undo: Some(Box::pin(async move {
                undo.await;
                let mut slots = done.slots.lock().expect("candidacies poisoned");
                if let Some(slot) = slots.get_mut(&done_election) {
                    slot.withdrawing = slot.withdrawing.saturating_sub(1);
                    if slot.withdrawing == 0 && matches!(slot.phase, Phase::Idle) {
                        slots.remove(&done_election);
                    }
                }
                drop(slots);
                done.withdrawn.notify_waiters();
            })),
            started: Some(Box::new(move || {
                let mut slots = started.slots.lock().expect("candidacies poisoned");
                slots.entry(election).or_default().withdrawing += 1;
            })),
        }
    }
}

impl Drop for Candidacy {
    fn drop(&mut self) {
        if self.won {
            return;
        }
        let mut slots = self.shared.slots.lock().expect("candidacies poisoned");
        if let Some(slot) = slots.get_mut(&self.election) {
            if matches!(slot.phase, Phase::Campaigning) {
                slot.phase = Phase::Idle;
            }
            if slot.withdrawing == 0 {
                slots.remove(&self.election);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::LeaseClock;
    use crate::testkit::{accepted_term, capture_logs};

    /// A store restored from an old snapshot grants a token lower than one this elector was
    /// granted before: that is logged as an error.
    #[tokio::test]
    async fn a_token_lower_than_an_earlier_one_is_logged_as_an_error() {
        let (_logging, logs) = capture_logs();
        let candidacies = Candidacies::default();
        let clock = LeaseClock::unbounded();
        for token in [40, 41, 12] {
            let (term, _control, _claim) = accepted_term(&clock, token);
            let term = candidacies.enter(term.election()).await.unwrap().lead(term);
            term.resign().await.unwrap();
        }
        let logged = logs.text();
        let errors: Vec<&str> = logged.lines().filter(|l| l.contains("ERROR")).collect();
        assert_eq!(errors.len(), 1, "{logged}");
        assert!(
            errors[0].contains("token=12") && errors[0].contains("earlier=41"),
            "{logged}"
        );
        let election: ElectionName = "e".parse().unwrap();
        assert_eq!(candidacies.last_token(&election), Some(FencingToken(41)));
    }
}
