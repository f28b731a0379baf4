//! The keep-alive loop, written once for every backend: the backend supplies one renewal
//! request ([`Renew`]); [`KeepAlive`] sends it on time, bounds every wait by the deadline and
//! turns each answer into the deadline clock's confirm, suspend or end.
//!
//! "Loss is noticed by the deadline" rests on this loop: a renewal counts only once the store
//! answered, from the instant it was sent ([`Renewal::Confirmed`]); a renewal that fails or
//! is not answered before the deadline suspends the session and is retried, quickly, until
//! the deadline ends it.
//!
//! ```
//! use std::time::Duration;
//! use elect_core::clock::{LeaseClock, LeasePhase};
//! use elect_core::renewal::{KeepAlive, Renew, Renewal};
//! use tokio::time::Instant;
//!
//! /// A store that always answers, granting 10 s.
//! struct AlwaysAnswers;
//!
//! #[async_trait::async_trait]
//! impl Renew for AlwaysAnswers {
//!     async fn renew(&mut self, sent_at: Instant, _patience: Duration) -> Renewal {
//!         Renewal::Confirmed { from: sent_at, ttl: Duration::from_secs(10) }
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let ttl = Duration::from_secs(10);
//! let clock = LeaseClock::new(elect_core::clock::now(), ttl, Duration::from_secs(1), ttl / 3);
//! let task = KeepAlive::new("example", clock.clone(), ttl / 3).spawn(AlwaysAnswers);
//! assert_eq!(clock.status().phase, LeasePhase::Live);
//! task.abort();
//! # }
//! ```

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::clock::{self, LeaseClock};
use crate::loss::LossReason;

/// What one renewal request came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Renewal {
    /// The store answered: the session lives for `ttl` counted from `from` — the send time
    /// of this request, or of an earlier one the answer vouches for (ZooKeeper).
    Confirmed {
        /// When the request the deadline counts from was sent ([`clock::now`]'s timeline).
        from: Instant,
        /// What the store granted.
        ttl: Duration,
    },
    /// The store answered, but the answer vouches for no request yet: nothing changes.
    Answered,
    /// The store says the session is gone: it ends at once, for good.
    Gone(LossReason),
    /// No usable answer (an error, a broken stream): the session is suspended and the
    /// renewal is tried again soon, until the deadline ends it.
    Failed(String),
}

/// One renewal request of a backend's session; [`KeepAlive`] calls it.
#[async_trait::async_trait]
pub trait Renew: Send + 'static {
    /// Sends one renewal, sent at `sent_at`, and waits for its answer. The loop gives up on
    /// it after `patience` (the time left to the deadline) and drops the future: a renewer
    /// that keeps a stream must not count on getting it back then.
    async fn renew(&mut self, sent_at: Instant, patience: Duration) -> Renewal;

    /// Ends at the store a session whose deadline passed unrenewed: the store may still hold
    /// it, and every claim of it, until its own expiry (Consul: 2 × TTL after the last
    /// renewal, then the lock delay), which keeps the candidates behind those claims waiting
    /// for nothing. Tried once the deadline ended the session and again after each failure
    /// (the links may be back any moment), for as long as [`KeepAlive::abandon_within`] says
    /// the store may hold it; never called without it. Only claims of *this* session may be
    /// touched: their terms ended with the deadline. By default there is nothing to do.
    async fn abandon(&mut self) -> Result<(), String> {
        Ok(())
    }
}

/// How soon a failed renewal is tried again at first; the pause doubles up to
/// [`RETRY_AT_MOST`] (or the renewal period, if shorter).
pub const RETRY_FIRST: Duration = Duration::from_millis(50);
/// The longest pause between retries of a failing renewal.
pub const RETRY_AT_MOST: Duration = Duration::from_millis(500);

/// The keep-alive loop of one session, ready to start.
#[derive(Debug)]
pub struct KeepAlive {
    backend: &'static str,
    clock: LeaseClock,
    every: Duration,
    first: Duration,
    abandon_within: Duration,
}

impl KeepAlive {
    /// Renews the session behind `clock` every `every` once the last renewal was confirmed;
    /// the first renewal goes out `every` after the start.
    pub fn new(backend: &'static str, clock: LeaseClock, every: Duration) -> Self {
        KeepAlive {
            backend,
            clock,
            every,
            first: every,
            abandon_within: Duration::ZERO,
        }
    }

    /// How long, after the deadline ended the session, the store may still hold it:
    /// [`Renew::abandon`] is called then, and tried again after failures for that long. By
    /// default (zero) it is not called.
    pub fn abandon_within(mut self, within: Duration) -> Self {
        self.abandon_within = within;
        self
    }

    /// Sends the first renewal at once instead of a period after the start.
    pub fn first_at_once(mut self) -> Self {
        self.first = Duration::ZERO;
        self
    }

    /// Starts the loop on its own task; it returns once the session ended (or the task is
    /// aborted, as a crash would stop it). Abandoning a session the deadline ended runs on a
    /// task of its own, so that dropping the session (which aborts the loop) does not stop it.
    pub fn spawn<R: Renew>(self, renewer: R) -> JoinHandle<()> {
        let renewer = Arc::new(tokio::sync::Mutex::new(renewer));
        if !self.abandon_within.is_zero() {
            tokio::spawn(abandon_if_given_up(
                self.backend,
                self.clock.watch(),
                renewer.clone(),
                self.abandon_within,
            ));
        }
        tokio::spawn(self.run(renewer))
    }

    /// Runs the loop until the session ended, holding the renewer until then.
    async fn run<R: Renew>(self, renewer: Arc<tokio::sync::Mutex<R>>) {
        let mut renewer = renewer.lock().await;
        let KeepAlive {
            backend,
            clock,
            every,
            first,
            abandon_within: _,
        } = self;
        let renew_now = clock.renew_now();
        let mut ended = clock.watch();
        let mut pause = first;
        let mut failing = false;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = renew_now.notified() => {}
                _ = clock::lease_ended(&mut ended) => return,
            }
            let sent_at = clock::now();
            // Wait for the answer no longer than the deadline allows.
            let patience = clock
                .deadline()
                .map(|deadline| deadline.saturating_duration_since(sent_at))
                .unwrap_or(every)
                .max(Duration::from_millis(1));
            let renewal = tokio::time::timeout(patience, renewer.renew(sent_at, patience))
                .await
                .unwrap_or_else(|_| Renewal::Failed(format!("not answered within {patience:?}")));
            if !matches!(renewal, Renewal::Failed(_)) {
                crate::telemetry::renewal_answered(
                    backend,
                    clock::now().saturating_duration_since(sent_at),
                );
            }
            match renewal {
                Renewal::Confirmed { from, ttl } => {
                    if !clock.confirm(from, ttl) {
                        return;
                    }
                    if failing {
                        tracing::info!(backend, "renewal confirmed again");
                        failing = false;
                    }
                    pause = every;
                }
                Renewal::Answered => pause = every,
                Renewal::Gone(reason) => {
                    tracing::warn!(backend, %reason, "the session is gone");
                    clock.end(reason);
                    return;
                }
                Renewal::Failed(error) => {
                    clock.suspend();
                    // Once per outage at warn; the retries that follow at debug.
                    if failing {
                        tracing::debug!(backend, error, "renewal failed again");
                        pause = (pause * 2).min(RETRY_AT_MOST).min(every);
                    } else {
                        tracing::warn!(
                            backend,
                            error,
                            "renewal failed; retrying until the deadline"
                        );
                        pause = RETRY_FIRST.min(every);
                    }
                    failing = true;
                }
            }
        }
    }
}

/// Once the deadline ended the session (not the store, not its owner), tries
/// [`Renew::abandon`] until it succeeds or `within` passed, pausing as failed renewals do.
async fn abandon_if_given_up<R: Renew>(
    backend: &'static str,
    mut lease: tokio::sync::watch::Receiver<clock::LeaseStatus>,
    renewer: Arc<tokio::sync::Mutex<R>>,
    within: Duration,
) {
    // A session dropped unended ends as `ShutDown` here: its owner let it go.
    if clock::lease_ended(&mut lease).await != LossReason::DeadlinePassed {
        return;
    }
    let give_up_at = Instant::now() + within;
    // The loop lets the renewer go as it ends (an answer it waits for is bounded by the
    // deadline), or at once when it is aborted.
    let mut renewer = renewer.lock().await;
    let mut pause = RETRY_FIRST;
    loop {
        match renewer.abandon().await {
            Ok(()) => {
                tracing::info!(backend, "the session given up is ended at the store");
                return;
            }
            Err(error) if Instant::now() + pause > give_up_at => {
                tracing::warn!(
                    backend,
                    error,
                    "the session given up is left to the store's expiry"
                );
                return;
            }
            Err(error) => tracing::debug!(backend, error, "ending the session given up failed"),
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(RETRY_AT_MOST);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::LeasePhase;
    use std::collections::VecDeque;

    const TTL: Duration = Duration::from_secs(9);
    const MARGIN: Duration = Duration::from_secs(1);

    type Times = Arc<std::sync::Mutex<Vec<Instant>>>;

    /// Answers with what the test queued, then never answers; records when it was asked.
    /// Abandoning fails `abandon_failures` times, then succeeds; each try is recorded.
    struct Scripted {
        answers: VecDeque<Renewal>,
        asked: Times,
        abandon_failures: usize,
        abandoned: Times,
    }

    #[async_trait::async_trait]
    impl Renew for Scripted {
        async fn renew(&mut self, sent_at: Instant, _patience: Duration) -> Renewal {
            self.asked.lock().unwrap().push(sent_at);
            match self.answers.pop_front() {
                Some(Renewal::Confirmed { ttl, .. }) => Renewal::Confirmed { from: sent_at, ttl },
                Some(other) => other,
                None => std::future::pending().await,
            }
        }

        async fn abandon(&mut self) -> Result<(), String> {
            self.abandoned.lock().unwrap().push(Instant::now());
            if self.abandon_failures == 0 {
                return Ok(());
            }
            self.abandon_failures -= 1;
            Err("unreachable".into())
        }
    }

    fn scripted(answers: Vec<Renewal>) -> (Scripted, Times) {
        let asked = Times::default();
        let renewer = Scripted {
            answers: answers.into(),
            asked: asked.clone(),
            abandon_failures: 0,
            abandoned: Times::default(),
        };
        (renewer, asked)
    }

    fn confirmed() -> Renewal {
        Renewal::Confirmed {
            from: Instant::now(),
            ttl: TTL,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_confirmed_renewal_moves_the_deadline_from_its_send_time() {
        let start = clock::now();
        let clock = LeaseClock::new(start, TTL, MARGIN, TTL / 3);
        let (renewer, asked) = scripted(vec![confirmed(), confirmed()]);
        let task = KeepAlive::new("test", clock.clone(), TTL / 3).spawn(renewer);
        tokio::time::sleep(TTL / 3 * 2 + Duration::from_millis(1)).await;
        let asked = asked.lock().unwrap().clone();
        assert_eq!(asked.len(), 2, "one renewal every period");
        assert_eq!(clock.deadline(), Some(asked[1] + TTL - MARGIN));
        assert_eq!(clock.status().phase, LeasePhase::Live);
        task.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn an_unanswered_renewal_suspends_and_the_deadline_ends_the_session() {
        let start = clock::now();
        let clock = LeaseClock::new(start, TTL, MARGIN, TTL / 3);
        let (renewer, _) = scripted(vec![]);
        let task = KeepAlive::new("test", clock.clone(), TTL / 3).spawn(renewer);
        let mut watch = clock.watch();
        let reason = clock::lease_ended(&mut watch).await;
        assert_eq!(reason, LossReason::DeadlinePassed);
        assert_eq!(clock::now(), start + TTL - MARGIN);
        tokio::time::timeout(Duration::from_secs(1), task)
            .await
            .expect("the loop stops once the session ended")
            .unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_suspends_and_is_retried_soon_until_confirmed() {
        let start = clock::now();
        let clock = LeaseClock::new(start, TTL, MARGIN, TTL / 3);
        let failed = || Renewal::Failed("refused".into());
        let (renewer, asked) = scripted(vec![failed(), failed(), failed(), confirmed()]);
        let task = KeepAlive::new("test", clock.clone(), TTL / 3).spawn(renewer);
        let mut watch = clock.watch();
        watch
            .wait_for(|status| status.phase == LeasePhase::Suspended)
            .await
            .unwrap();
        watch
            .wait_for(|status| status.phase == LeasePhase::Live)
            .await
            .unwrap();
        let asked = asked.lock().unwrap().clone();
        let pauses: Vec<Duration> = asked.windows(2).map(|w| w[1] - w[0]).collect();
        assert_eq!(
            pauses,
            [RETRY_FIRST, RETRY_FIRST * 2, RETRY_FIRST * 4],
            "retries back off from {RETRY_FIRST:?}"
        );
        task.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_gone_session_ends_at_once_with_the_stores_reason() {
        let clock = LeaseClock::new(clock::now(), TTL, MARGIN, TTL / 3);
        let (renewer, _) = scripted(vec![Renewal::Gone(LossReason::Revoked)]);
        let abandoned = renewer.abandoned.clone();
        let task = KeepAlive::new("test", clock.clone(), TTL / 3)
            .abandon_within(TTL)
            .spawn(renewer);
        task.await.unwrap();
        assert_eq!(clock.status().phase, LeasePhase::Ended(LossReason::Revoked));
        tokio::time::sleep(TTL).await;
        assert!(
            abandoned.lock().unwrap().is_empty(),
            "a session the store ended has nothing left to abandon"
        );
    }

    /// A session nobody answers for, abandoned within a TTL once its deadline passed, whose
    /// abandoning fails `failures` times: the loop (stopped once the deadline passed), when
    /// the session ended, and the abandon tries.
    async fn given_up(failures: usize) -> (JoinHandle<()>, Instant, Times) {
        let clock = LeaseClock::new(clock::now(), TTL, MARGIN, TTL / 3);
        let (mut renewer, _) = scripted(vec![]);
        renewer.abandon_failures = failures;
        let abandoned = renewer.abandoned.clone();
        let task = KeepAlive::new("test", clock.clone(), TTL / 3)
            .abandon_within(TTL)
            .spawn(renewer);
        clock::lease_ended(&mut clock.watch()).await;
        (task, clock::now(), abandoned)
    }

    #[tokio::test(start_paused = true)]
    async fn a_session_the_deadline_ended_is_abandoned_until_the_store_takes_it() {
        let (task, ended, abandoned) = given_up(3).await;
        // The session's owner lets it go at once: the abandoning goes on regardless.
        task.abort();
        tokio::time::sleep(TTL).await;
        let abandoned = abandoned.lock().unwrap().clone();
        let expected = [0, 1, 3, 7].map(|n| ended + RETRY_FIRST * n);
        assert_eq!(
            abandoned, expected,
            "tried at the end, then backing off, until it took"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn abandoning_stops_once_the_store_has_expired_the_session_anyway() {
        let (_, ended, abandoned) = given_up(usize::MAX).await;
        tokio::time::sleep(TTL * 3).await;
        let abandoned = abandoned.lock().unwrap().clone();
        let last = *abandoned.last().unwrap();
        assert!(
            last <= ended + TTL,
            "tried after the store's expiry: {last:?}"
        );
        assert!(
            last + RETRY_AT_MOST > ended + TTL,
            "gave up early: {last:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn renew_now_sends_a_renewal_before_its_time() {
        let start = clock::now();
        let clock = LeaseClock::new(start, TTL, MARGIN, TTL / 3);
        let (renewer, asked) = scripted(vec![confirmed(), confirmed()]);
        let keep_alive = KeepAlive::new("test", clock.clone(), TTL / 3).first_at_once();
        let renew_now = clock.renew_now();
        let task = keep_alive.spawn(renewer);
        tokio::time::sleep(Duration::from_millis(100)).await;
        renew_now.notify_one();
        tokio::time::sleep(Duration::from_millis(1)).await;
        let asked = asked.lock().unwrap().clone();
        assert_eq!(asked, [start, start + Duration::from_millis(100)]);
        task.abort();
    }
}
