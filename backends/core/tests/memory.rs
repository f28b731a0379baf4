//! The conformance suite on the in-memory backend, plus what only it can show without a
//! server: a client cut off from its store loses by its deadline.

use std::time::Duration;

use elect_core::testkit::{campaign_as, spawn_campaign_as, Harness, Won};
use elect_core::{LeadershipState, LossReason, MemoryStore};
use tokio::time::Instant;

const TTL: Duration = Duration::from_millis(1500);
const MARGIN: Duration = Duration::from_millis(150);

fn harness() -> Harness {
    let store = MemoryStore::new();
    let connect_store = store.clone();
    let mut harness = Harness::new(
        "memory",
        move || {
            let elector = connect_store.elector(TTL, MARGIN);
            async move { Ok(elector) }
        },
        move |election| {
            store.delete_claims(&election);
            async { Ok(()) }
        },
    );
    harness.crash_failover = TTL + Duration::from_secs(1);
    harness
}

mod conformance {
    elect_core::conformance_suite!(super::harness());
}

/// S3 and S1 without a server: a leader cut off from the store hears nothing,
/// yet its lost-future resolves by its deadline, before the store expires its session and
/// a successor leads.
#[tokio::test]
async fn a_partitioned_leader_loses_by_its_deadline_before_a_successor_leads() {
    let store = MemoryStore::new();
    let a = store.elector(TTL, MARGIN);
    let b = store.elector(TTL, MARGIN);
    let election = "partition".parse().unwrap();
    let leader = campaign_as(&a, &election, "a").await;
    let b_task = spawn_campaign_as(b, &election, "b");
    a.set_partitioned(true);
    let cut_at = Instant::now();
    let deadline = leader.deadline().expect("memory leases have deadlines");
    let reason = tokio::time::timeout(TTL * 2, leader.lost())
        .await
        .expect("lost by the deadline");
    let lost_at = Instant::now();
    assert_eq!(reason, LossReason::DeadlinePassed);
    assert!(lost_at >= deadline, "lost before the deadline");
    assert!(
        lost_at <= deadline + Duration::from_millis(100),
        "lost {:?} after the deadline",
        lost_at - deadline
    );
    assert!(
        lost_at - cut_at <= TTL,
        "the deadline was later than the TTL"
    );
    let Won {
        leadership: successor,
        at: elected_at,
        elector: _b,
    } = tokio::time::timeout(TTL * 2, b_task)
        .await
        .expect("b elected")
        .unwrap();
    assert!(elected_at > lost_at, "S1: b led while a still could");
    assert!(successor.token() > leader.token());
    // Reconnecting does not bring the old term back.
    a.set_partitioned(false);
    assert_eq!(
        leader.state(),
        LeadershipState::Lost(LossReason::DeadlinePassed)
    );
    assert!(!leader.is_leader());
    // The old term's resign (what `elect run` does after a loss) leaves the successor alone.
    leader.resign().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        successor.is_leader(),
        "an old term's resign ended the successor's"
    );
}

/// A resign the store does not hear (the caller gives up waiting) is still delivered once
/// the store is reachable: the elector's own live session would otherwise keep the ended
/// term's claim standing, and the successor would wait for nothing.
#[tokio::test]
async fn a_resign_the_store_missed_lands_when_it_is_reachable_again() {
    let ttl = Duration::from_secs(30);
    let store = MemoryStore::new();
    let a = store.elector(ttl, MARGIN);
    let b = store.elector(ttl, MARGIN);
    let election: elect_core::ElectionName = "missed-resign".parse().unwrap();
    let leader = campaign_as(&a, &election, "a").await;
    let b_task = spawn_campaign_as(b, &election, "b");
    a.set_partitioned(true);
    let gave_up = tokio::time::timeout(Duration::from_millis(200), leader.resign()).await;
    assert!(gave_up.is_err(), "the resign reached a partitioned store");
    assert_eq!(leader.state(), LeadershipState::Lost(LossReason::Resigned));
    a.set_partitioned(false);
    let successor = tokio::time::timeout(Duration::from_secs(2), b_task)
        .await
        .expect("b leads within 2 s of the partition healing, not after the 30 s TTL")
        .unwrap()
        .leadership;
    assert!(successor.token() > leader.token());
    drop(a);
}
