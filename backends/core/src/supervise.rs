//! Run work only while leading: the re-campaign loop most services need.

use std::future::Future;
use std::time::Duration;

use crate::error::Result;
#[cfg(test)]
use crate::FencingToken;
use crate::{Candidate, ElectionName, Elector, Leadership, LeadershipState};

/// Logs one state change of a term as a `tracing` event with election, candidate and token,
/// and reports it as metrics ([`crate::telemetry`]); `previous` tells a first election
/// (`elected`) from a recovery (`resumed`).
pub fn log_state(
    leadership: &Leadership,
    previous: Option<LeadershipState>,
    state: LeadershipState,
) {
    crate::telemetry::term_state(leadership, previous, state);
    let election = leadership.election().as_str();
    let candidate = leadership.candidate_id();
    let token = leadership.token().get();
    let backend = leadership.backend();
    match state {
        LeadershipState::Leading if previous.is_none() => {
            tracing::info!(election, candidate, token, backend, "elected")
        }
        LeadershipState::Leading => {
            tracing::info!(election, candidate, token, backend, "resumed")
        }
        LeadershipState::Suspended => {
            tracing::warn!(election, candidate, token, backend, "suspended")
        }
        LeadershipState::Lost(reason) => {
            tracing::warn!(
                election,
                candidate,
                token,
                backend,
                reason = reason.as_str(),
                "lost"
            )
        }
    }
}

/// Campaigns for `election`, runs `work` while leading, and campaigns again after a loss.
///
/// `work` receives the [`Leadership`] of each term. Its future is dropped (cancelled) the
/// moment the term is lost — including when the store stays silent past the deadline — and
/// then the loop campaigns again. When `work` finishes by itself, the term is resigned at
/// once and its output returned as `Some`. When `shutdown` resolves, the current term is
/// resigned and `None` returned.
///
/// Errors from campaigning that may pass (the store unreachable) are logged and retried
/// after a short pause; others (bad config, permission, closed elector) are returned.
///
/// ```no_run
/// # async fn demo(elector: &dyn elect_core::Elector) -> elect_core::Result<()> {
/// use elect_core::{run_while_leader, Candidate, ElectionName};
/// let election: ElectionName = "billing".parse()?;
/// let me = Candidate::generated();
/// let ctrl_c = async { tokio::signal::ctrl_c().await.ok(); };
/// run_while_leader(elector, &election, &me, ctrl_c, |leadership| async move {
///     loop {
///         // charge subscriptions, passing leadership.token() to the ledger
///         tokio::time::sleep(std::time::Duration::from_secs(1)).await;
///     }
/// })
/// .await?;
/// # Ok(()) }
/// ```
pub async fn run_while_leader<W, F, T>(
    elector: &dyn Elector,
    election: &ElectionName,
    candidate: &Candidate,
    shutdown: impl Future<Output = ()>,
    mut work: W,
) -> Result<Option<T>>
where
    W: FnMut(Leadership) -> F,
    F: Future<Output = T>,
{
    tokio::pin!(shutdown);
    loop {
        let leadership = tokio::select! {
            _ = &mut shutdown => return Ok(None),
            won = campaign_logged(elector, election, candidate) => won?,
        };
        let mut states = leadership.subscribe();
        let mut previous = Some(LeadershipState::Leading);
        let run = work(leadership.clone());
        tokio::pin!(run);
        let outcome = loop {
            tokio::select! {
                output = &mut run => break Some(output),
                _ = &mut shutdown => break None,
                state = states.changed() => {
                    if previous != Some(state) {
                        log_state(&leadership, previous, state);
                        previous = Some(state);
                    }
                    if let LeadershipState::Lost(_) = state {
                        break None;
                    }
                }
            }
        };
        let lost = matches!(leadership.state(), LeadershipState::Lost(_));
        resign_or_let_expire(&leadership).await;
        match outcome {
            Some(output) => return Ok(Some(output)),
            None if lost => continue,
            None => return Ok(None),
        }
    }
}

/// Campaigns until elected, logging `campaigning` and `elected`; errors that may pass (the
/// store unreachable) are logged and the campaign is tried again after a jittered pause that
/// doubles up to [`MAX_CAMPAIGN_RETRY_PAUSE`]. Other errors (bad config, permission, an unusable
/// store, closed elector) are returned at once: retrying them would only repeat them.
pub async fn campaign_logged(
    elector: &dyn Elector,
    election: &ElectionName,
    candidate: &Candidate,
) -> Result<Leadership> {
    tracing::info!(
        election = election.as_str(),
        candidate = candidate.id(),
        backend = elector.backend(),
        "campaigning"
    );
    let mut pause = FIRST_RETRY_PAUSE;
    let started = tokio::time::Instant::now();
    loop {
        match elector.campaign(election, candidate).await {
            Ok(leadership) => {
                crate::telemetry::campaign_won(election.as_str(), started.elapsed());
                log_state(&leadership, None, LeadershipState::Leading);
                return Ok(leadership);
            }
            Err(error) if error.is_transient() => {
                let wait = jittered(pause);
                tracing::warn!(
                    election = election.as_str(),
                    %error,
                    retry_in_ms = wait.as_millis() as u64,
                    "campaign failed; retrying"
                );
                tokio::time::sleep(wait).await;
                pause = (pause * 2).min(MAX_CAMPAIGN_RETRY_PAUSE);
            }
            Err(error) => return Err(error),
        }
    }
}

/// Resigns, but waits at most [`RESIGN_TIMEOUT`] for the store: a term that ended because
/// the store went silent must not hang its supervisor. A claim left behind expires with its
/// session.
pub async fn resign_or_let_expire(leadership: &Leadership) {
    let election = leadership.election().as_str();
    match tokio::time::timeout(RESIGN_TIMEOUT, leadership.resign()).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => {
            tracing::warn!(election, %error, "resign failed; the claim will expire with the session")
        }
        Err(_) => tracing::warn!(
            election,
            timeout_ms = RESIGN_TIMEOUT.as_millis() as u64,
            "the store did not answer the resign; the claim will expire with the session"
        ),
    }
}

/// How long a supervisor waits for the store to confirm a resign.
pub const RESIGN_TIMEOUT: Duration = Duration::from_secs(2);

/// Pause before campaigning again after a first transient error.
const FIRST_RETRY_PAUSE: Duration = Duration::from_millis(250);

/// The longest pause between campaigns that failed with transient errors. Short, because a
/// candidate that is pausing when the store comes back, or when the leader dies right after
/// an outage, adds its pause to the failover: the fault suite saw an 8 s cap turn a 2 s
/// ZooKeeper failover into 3.9 s. One connection attempt a second per candidate is nothing
/// to a store that is down.
pub const MAX_CAMPAIGN_RETRY_PAUSE: Duration = Duration::from_secs(1);

/// A pause drawn evenly from `[pause/2, pause]`, so that replicas that failed together do
/// not retry together.
fn jittered(pause: Duration) -> Duration {
    pause.mul_f64(rand::random_range(0.5..=1.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CandidateInfo, Error, LeaderInfo, LeaderStream, MemoryStore};

    /// Unreachable `failures` times, then the memory store's elector.
    #[derive(Debug)]
    struct Flaky {
        failures: std::sync::atomic::AtomicUsize,
        attempts: std::sync::Mutex<Vec<tokio::time::Instant>>,
        then: crate::MemoryElector,
    }

    #[async_trait::async_trait]
    impl Elector for Flaky {
        fn backend(&self) -> &'static str {
            "flaky"
        }
        async fn campaign(&self, e: &ElectionName, c: &Candidate) -> Result<Leadership> {
            self.attempts
                .lock()
                .unwrap()
                .push(tokio::time::Instant::now());
            let left = self.failures.load(std::sync::atomic::Ordering::SeqCst);
            if left > 0 {
                self.failures
                    .store(left - 1, std::sync::atomic::Ordering::SeqCst);
                return Err(Error::Unavailable {
                    backend: "flaky",
                    source: "down".into(),
                });
            }
            self.then.campaign(e, c).await
        }
        async fn try_campaign(
            &self,
            e: &ElectionName,
            c: &Candidate,
        ) -> Result<Option<Leadership>> {
            self.then.try_campaign(e, c).await
        }
        async fn leader(&self, e: &ElectionName) -> Result<Option<LeaderInfo>> {
            self.then.leader(e).await
        }
        async fn candidates(&self, e: &ElectionName) -> Result<Vec<CandidateInfo>> {
            self.then.candidates(e).await
        }
        async fn observe(&self, e: &ElectionName) -> Result<LeaderStream> {
            self.then.observe(e).await
        }
        async fn close(&self) -> Result<()> {
            self.then.close().await
        }
    }

    /// After a long outage, a candidate still campaigns again within a second of the store
    /// coming back: the pause between transient failures backs off, jittered, but never past
    /// [`MAX_CAMPAIGN_RETRY_PAUSE`].
    #[tokio::test(start_paused = true)]
    async fn transient_failures_back_off_with_jitter_up_to_a_second() {
        let ttl = Duration::from_secs(10);
        let flaky = Flaky {
            failures: 12.into(),
            attempts: Default::default(),
            then: MemoryStore::new().elector(ttl, ttl / 10),
        };
        let election: ElectionName = "e".parse().unwrap();
        let candidate = Candidate::new("a", "a").unwrap();
        let won = campaign_logged(&flaky, &election, &candidate)
            .await
            .unwrap();
        assert_eq!(won.token(), FencingToken(1));
        let attempts = flaky.attempts.lock().unwrap().clone();
        let pauses: Vec<Duration> = attempts.windows(2).map(|w| w[1] - w[0]).collect();
        assert_eq!(pauses.len(), 12, "{pauses:?}");
        assert!(pauses[0] >= FIRST_RETRY_PAUSE / 2 && pauses[0] <= FIRST_RETRY_PAUSE);
        let second = Duration::from_secs(1);
        assert!(pauses.iter().all(|p| *p <= second), "{pauses:?}");
        assert!(
            pauses[6..].iter().all(|p| *p >= second / 2),
            "backed off to the cap: {pauses:?}"
        );
    }
}
