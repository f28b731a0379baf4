//! The deadline clock: how long a leader may safely act, from confirmed renewals only.
//!
//! Deadlines are on [`now`]'s timeline, which keeps counting while the host is suspended
//! (CLOCK_BOOTTIME on Linux): the store's TTL runs on during a suspended host or VM, so a
//! leader that wakes up past its deadline must find itself lost at once.
//!
//! Every backend owns one [`LeaseClock`] per session (etcd lease, Consul session, ZooKeeper
//! session) and feeds it each renewal the store *answered*: the instant the request was
//! sent plus the TTL the store granted, minus a drift margin. The server counts the TTL from
//! when it heard us, which is never earlier than when we sent, so the local deadline never
//! ends after the server's. Readers ([`crate::Leadership`]) compare the deadline with the
//! clock themselves, so a missed deadline turns into `Lost` even if no task runs and no
//! message arrives — a partitioned client or a frozen server cannot keep a leader leading.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use crate::loss::LossReason;

/// The time deadlines are counted in: tokio's clock, which reads CLOCK_MONOTONIC and stops
/// while the host is suspended, plus the time the host has spent suspended since this
/// process first asked ([`suspended`]). Backends take their renewals' send times from here.
pub fn now() -> Instant {
    Instant::now() + suspended()
}

/// How long the host has been suspended since this process first asked: the growth of
/// CLOCK_BOOTTIME − CLOCK_MONOTONIC (always zero where there is no CLOCK_BOOTTIME), plus
/// what tests simulate (feature `testkit`).
pub fn suspended() -> Duration {
    let source = suspend_source();
    boot_minus_monotonic().saturating_sub(source.baseline)
        + Duration::from_nanos(source.simulated.load(std::sync::atomic::Ordering::SeqCst))
}

/// Adds `duration` to [`suspended`], as if the host had been suspended that long, and wakes
/// every deadline sleeper: what a test drives instead of suspending the machine.
#[cfg(feature = "testkit")]
pub fn simulate_suspend(duration: Duration) {
    let source = suspend_source();
    source.simulated.fetch_add(
        duration.as_nanos() as u64,
        std::sync::atomic::Ordering::SeqCst,
    );
    source.resumed.notify_waiters();
}

struct SuspendSource {
    /// CLOCK_BOOTTIME − CLOCK_MONOTONIC when first asked.
    baseline: Duration,
    simulated: std::sync::atomic::AtomicU64,
    resumed: tokio::sync::Notify,
}

fn suspend_source() -> &'static SuspendSource {
    static SOURCE: std::sync::OnceLock<SuspendSource> = std::sync::OnceLock::new();
    SOURCE.get_or_init(|| SuspendSource {
        baseline: boot_minus_monotonic(),
        simulated: std::sync::atomic::AtomicU64::new(0),
        resumed: tokio::sync::Notify::new(),
    })
}

#[cfg(target_os = "linux")]
fn boot_minus_monotonic() -> Duration {
    use nix::time::{clock_gettime, ClockId};
    let read = |clock| {
        clock_gettime(clock)
            .map(Duration::from)
            .unwrap_or(Duration::ZERO)
    };
    // Monotonic first: a suspend between the two reads then counts, never the other way.
    let monotonic = read(ClockId::CLOCK_MONOTONIC);
    read(ClockId::CLOCK_BOOTTIME).saturating_sub(monotonic)
}

#[cfg(not(target_os = "linux"))]
fn boot_minus_monotonic() -> Duration {
    Duration::ZERO
}

/// How often a sleep until a deadline looks at [`now`] again: tokio's timer does not count
/// suspended time, so after a resume a deadline that passed is noticed within this long.
const RESUME_CHECK: Duration = Duration::from_secs(1);

/// Sleeps until `deadline` on [`now`]'s timeline, counting time the host spent suspended.
pub async fn sleep_until(deadline: Instant) {
    loop {
        let left = deadline.saturating_duration_since(now());
        if left.is_zero() {
            return;
        }
        let resumed = suspend_source().resumed.notified();
        tokio::select! {
            _ = tokio::time::sleep(left.min(RESUME_CHECK)) => {}
            _ = resumed => {}
        }
    }
}

/// The state of one session, as its readers see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseStatus {
    /// Until when a leader holding this session may act; `None` for a session that cannot
    /// expire by time (the file backend's lock, held by the kernel).
    pub deadline: Option<Instant>,
    /// Whether the session is confirmed, in doubt, or over.
    pub phase: LeasePhase,
    /// The least time to the deadline that a healthy session shows: TTL − margin − renewal
    /// interval, the moment before a renewal is answered. Less than that left means
    /// renewals are not getting through; `None` without a deadline.
    pub headroom: Option<Duration>,
}

/// The phase of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeasePhase {
    /// The last renewal was confirmed; valid until the deadline.
    Live,
    /// The connection is down; the session may still live on the server, but a leader must
    /// not act. Back to `Live` if a renewal is confirmed before the deadline.
    Suspended,
    /// The session is over for good.
    Ended(LossReason),
}

impl LeaseStatus {
    /// The phase as of `now`: a passed deadline is `Ended(DeadlinePassed)` whatever the
    /// backend last said.
    pub fn phase_at(&self, now: Instant) -> LeasePhase {
        match (self.phase, self.deadline) {
            (LeasePhase::Ended(reason), _) => LeasePhase::Ended(reason),
            (_, Some(deadline)) if now >= deadline => LeasePhase::Ended(LossReason::DeadlinePassed),
            (phase, _) => phase,
        }
    }
}

/// The writer side of a session's deadline. Cheap to clone; all clones are one clock.
#[derive(Debug, Clone)]
pub struct LeaseClock {
    status: Arc<watch::Sender<LeaseStatus>>,
    margin: Duration,
    renew_now: Arc<Notify>,
}

impl LeaseClock {
    /// A clock whose first renewal was sent at `sent_at` and granted `ttl`; `margin` is taken
    /// off every deadline to cover clock drift between us and the store; the backend renews
    /// every `renew_every`.
    pub fn new(sent_at: Instant, ttl: Duration, margin: Duration, renew_every: Duration) -> Self {
        let deadline = sent_at + ttl.saturating_sub(margin);
        let (status, _) = watch::channel(LeaseStatus {
            deadline: Some(deadline),
            phase: LeasePhase::Live,
            headroom: Some(ttl.saturating_sub(margin).saturating_sub(renew_every)),
        });
        LeaseClock {
            status: Arc::new(status),
            margin,
            renew_now: Arc::new(Notify::new()),
        }
    }

    /// A clock with no deadline: the session ends only when [`LeaseClock::end`] is called.
    pub fn unbounded() -> Self {
        let (status, _) = watch::channel(LeaseStatus {
            deadline: None,
            phase: LeasePhase::Live,
            headroom: None,
        });
        LeaseClock {
            status: Arc::new(status),
            margin: Duration::ZERO,
            renew_now: Arc::new(Notify::new()),
        }
    }

    /// What asks the session's keep-alive ([`crate::renewal::KeepAlive`]) to renew at once,
    /// whatever the time to the next renewal: after a reconnection, or for a term granted
    /// with too little time left ([`crate::Leadership::renew_soon`]). Nothing listens on a
    /// clock without a keep-alive.
    pub fn renew_now(&self) -> Arc<Notify> {
        self.renew_now.clone()
    }

    /// Records a renewal sent at `sent_at` that the store answered with `granted_ttl`.
    ///
    /// Returns false, and ends the session with `DeadlinePassed`, if the deadline had
    /// already passed: a leader that has been told it lost stays lost, even if a late
    /// answer arrives.
    pub fn confirm(&self, sent_at: Instant, granted_ttl: Duration) -> bool {
        let now = now();
        let candidate = sent_at + granted_ttl.saturating_sub(self.margin);
        let mut live = false;
        self.status
            .send_if_modified(|status| match status.phase_at(now) {
                LeasePhase::Ended(reason) => {
                    let changed = status.phase != LeasePhase::Ended(reason);
                    status.phase = LeasePhase::Ended(reason);
                    changed
                }
                LeasePhase::Live | LeasePhase::Suspended => {
                    live = true;
                    let deadline = status.deadline.map(|d| d.max(candidate));
                    let changed = status.phase != LeasePhase::Live || status.deadline != deadline;
                    status.phase = LeasePhase::Live;
                    status.deadline = deadline;
                    changed
                }
            });
        live
    }

    /// The connection is down: leaders must stop acting until a renewal is confirmed.
    pub fn suspend(&self) {
        self.status.send_if_modified(|status| {
            if status.phase == LeasePhase::Live {
                status.phase = LeasePhase::Suspended;
                true
            } else {
                false
            }
        });
    }

    /// The session is over (expired, revoked, closed). Final.
    pub fn end(&self, reason: LossReason) {
        self.status.send_if_modified(|status| {
            if matches!(status.phase, LeasePhase::Ended(_)) {
                false
            } else {
                status.phase = LeasePhase::Ended(reason);
                true
            }
        });
    }

    /// The status as of now (a passed deadline reads as ended).
    pub fn status(&self) -> LeaseStatus {
        let status = *self.status.borrow();
        LeaseStatus {
            phase: status.phase_at(now()),
            ..status
        }
    }

    /// True once the session ended (a passed deadline counts): it can carry no claim.
    pub fn is_ended(&self) -> bool {
        matches!(self.status().phase, LeasePhase::Ended(_))
    }

    /// The deadline of the last confirmed renewal.
    pub fn deadline(&self) -> Option<Instant> {
        self.status.borrow().deadline
    }

    /// A reader of this clock, for leaderships and supervisors.
    pub fn watch(&self) -> watch::Receiver<LeaseStatus> {
        self.status.subscribe()
    }
}

/// Waits until the session behind `lease` ends, counting a passed deadline as the end.
pub async fn lease_ended(lease: &mut watch::Receiver<LeaseStatus>) -> LossReason {
    loop {
        let status = *lease.borrow_and_update();
        if let LeasePhase::Ended(reason) = status.phase_at(now()) {
            return reason;
        }
        let deadline = status.deadline;
        tokio::select! {
            changed = lease.changed() => if changed.is_err() {
                // The backend dropped the clock without ending it: its session is gone. A
                // deadline that passed meanwhile ended it first, whichever woke us.
                return match lease.borrow().phase_at(now()) {
                    LeasePhase::Ended(reason) => reason,
                    _ => LossReason::ShutDown,
                };
            },
            _ = sleep_until_opt(deadline) => {}
        }
    }
}

/// How soon a release or withdrawal that the store did not take is tried again.
pub const RETRY_EVERY: Duration = Duration::from_millis(500);

/// Tries `attempt` until it succeeds or the session behind `lease` ends (the store then
/// reaps whatever is left). For releases and withdrawals: a claim that our own live session
/// keeps must never be given up on, or it stands ahead of every later candidate for as long
/// as the session lives.
pub async fn retry_until_session_ends<F, Fut, E>(
    what: &str,
    mut lease: watch::Receiver<LeaseStatus>,
    mut attempt: F,
) where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    loop {
        match attempt().await {
            Ok(()) => return,
            Err(error) => tracing::debug!(%error, what, "not taken by the store; trying again"),
        }
        tokio::select! {
            _ = lease_ended(&mut lease) => {
                tracing::debug!(what, "the session ended: the store reaps what is left");
                return;
            }
            _ = tokio::time::sleep(RETRY_EVERY) => {}
        }
    }
}

/// Sleeps until `deadline`, or forever for `None`.
pub(crate) async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(10);
    const MARGIN: Duration = Duration::from_secs(1);

    #[tokio::test(start_paused = true)]
    async fn deadline_is_send_time_plus_ttl_minus_margin() {
        let start = Instant::now();
        let clock = LeaseClock::new(start, TTL, MARGIN, TTL / 3);
        assert_eq!(clock.deadline(), Some(start + Duration::from_secs(9)));
        tokio::time::advance(Duration::from_secs(3)).await;
        // Sent 2 s ago, answered now: the deadline counts from the send.
        assert!(clock.confirm(start + Duration::from_secs(1), TTL));
        assert_eq!(clock.deadline(), Some(start + Duration::from_secs(10)));
    }

    #[tokio::test(start_paused = true)]
    async fn an_older_renewal_never_moves_the_deadline_back() {
        let start = Instant::now();
        let clock = LeaseClock::new(start + Duration::from_secs(5), TTL, MARGIN, TTL / 3);
        assert!(clock.confirm(start, TTL));
        assert_eq!(clock.deadline(), Some(start + Duration::from_secs(14)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_missed_deadline_ends_the_lease_by_itself_and_for_good() {
        let start = Instant::now();
        let clock = LeaseClock::new(start, TTL, MARGIN, TTL / 3);
        let mut watch = clock.watch();
        let ended = tokio::spawn(async move {
            let reason = lease_ended(&mut watch).await;
            (reason, Instant::now())
        });
        let (reason, at) = ended.await.unwrap();
        assert_eq!(reason, LossReason::DeadlinePassed);
        assert_eq!(at, start + Duration::from_secs(9));
        assert_eq!(
            clock.status().phase,
            LeasePhase::Ended(LossReason::DeadlinePassed)
        );
        // A late answer to a renewal sent in time must not bring the lease back.
        assert!(!clock.confirm(start + Duration::from_secs(8), TTL));
        assert_eq!(
            clock.status().phase,
            LeasePhase::Ended(LossReason::DeadlinePassed)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_clock_dropped_after_its_deadline_still_reports_the_deadline() {
        // The keep-alive drops its clock as the deadline passes: a watcher woken by both
        // at once must still see the deadline, whichever it polls first.
        for _ in 0..32 {
            let clock = LeaseClock::new(Instant::now(), TTL, MARGIN, TTL / 3);
            let mut watch = clock.watch();
            let ended = tokio::spawn(async move { lease_ended(&mut watch).await });
            tokio::task::yield_now().await;
            tokio::time::advance(TTL).await;
            drop(clock);
            assert_eq!(ended.await.unwrap(), LossReason::DeadlinePassed);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn suspended_comes_back_only_through_a_confirmed_renewal() {
        let start = Instant::now();
        let clock = LeaseClock::new(start, TTL, MARGIN, TTL / 3);
        clock.suspend();
        assert_eq!(clock.status().phase, LeasePhase::Suspended);
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(clock.confirm(Instant::now(), TTL));
        assert_eq!(clock.status().phase, LeasePhase::Live);
        clock.end(LossReason::Expired);
        clock.suspend();
        assert!(!clock.confirm(Instant::now(), TTL));
        assert_eq!(clock.status().phase, LeasePhase::Ended(LossReason::Expired));
    }

    #[tokio::test(start_paused = true)]
    async fn an_unbounded_lease_ends_only_when_told() {
        let clock = LeaseClock::unbounded();
        tokio::time::advance(Duration::from_secs(100 * 365 * 24 * 3600)).await;
        assert_eq!(clock.status().phase, LeasePhase::Live);
        clock.end(LossReason::Revoked);
        let mut watch = clock.watch();
        assert_eq!(lease_ended(&mut watch).await, LossReason::Revoked);
    }
}
