//! Deadlines count the time the host spends suspended (CLOCK_BOOTTIME): a leader whose host
//! or VM slept past its deadline is lost the moment it wakes, as the store's TTL ran on.
//!
//! The suspension is simulated through the clock source (`elect_core::clock::simulate_suspend`,
//! feature `testkit`); it is global to the process, so this file holds one test.

use std::sync::Arc;
use std::time::Duration;

use elect_core::clock::{self, LeaseClock};
use elect_core::{Claim, FencingToken, Leadership, LeadershipState, LossReason, Result};

#[derive(Debug)]
struct NoStore;

#[async_trait::async_trait]
impl Claim for NoStore {
    async fn proclaim(&self, _: &[u8]) -> Result<()> {
        Ok(())
    }
    async fn release(&self) -> Result<()> {
        Ok(())
    }
    async fn fenced_put(&self, _: &str, _: &[u8]) -> Result<()> {
        Ok(())
    }
    async fn fenced_get(&self, _: &str) -> Result<Option<Vec<u8>>> {
        Ok(None)
    }
}

#[tokio::test]
async fn a_deadline_that_passed_while_the_host_was_suspended_is_past_on_waking() {
    let ttl = Duration::from_secs(10);
    let clock = LeaseClock::new(clock::now(), ttl, Duration::from_secs(1), ttl / 3);
    let (leadership, _control) = Leadership::new(
        "test",
        "suspended".parse().unwrap(),
        "me".to_owned(),
        FencingToken(1),
        clock.watch(),
        Arc::new(NoStore),
    );
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
