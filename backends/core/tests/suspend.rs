//! Deadlines count the time the host spends suspended (CLOCK_BOOTTIME): a leader whose host
//! or VM slept past its deadline is lost the moment it wakes, as the store's TTL ran on.
//!
//! The suspension is simulated through the clock source (`elect_core::clock::simulate_suspend`,
//! feature `testkit`); it is global to the process, so this file holds one test.

use std::time::Duration;

use elect_core::clock::{self, LeaseClock};
use elect_core::testkit::accepted_term;
use elect_core::{LeadershipState, LossReason};

#[tokio::test]
async fn a_deadline_that_passed_while_the_host_was_suspended_is_past_on_waking() {
    let ttl = Duration::from_secs(10);
    let clock = LeaseClock::new(clock::now(), ttl, Duration::from_secs(1), ttl / 3);
    let (leadership, _control, _claim) = accepted_term(&clock, 1);
    assert!(leadership.is_leader());
    let watching = leadership.clone();
    let lost = tokio::spawn(async move { watching.lost().await });
    tokio::task::yield_now().await;

    clock::simulate_suspend(Duration::from_secs(30));

    assert_eq!(
        leadership.state(),
        LeadershipState::Lost(LossReason::DeadlinePassed),
        "a leader woke 30 s after a 10 s TTL began and still leads"
    );
    let reason = tokio::time::timeout(Duration::from_secs(2), lost)
        .await
        .expect("lost() resolves within 2 s of waking, not a TTL of tokio time later")
        .unwrap();
    assert_eq!(reason, LossReason::DeadlinePassed);
}
