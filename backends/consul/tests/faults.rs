//! Faults against the real 3-server Consul cluster, each with its time measured and bounded.
//! The cases run one at a time: they kill and freeze servers.

mod support;

use std::time::Duration;

use elect_core::{Candidate, LossReason};
use elect_test_support::faults::{self, lead, MemberFault};
use support::{connect, http, TTL};
use tokio::sync::Mutex;
use tokio::time::Instant;

static SERIAL: Mutex<()> = Mutex::const_new(());

/// Waits until no other case runs (they share the cluster); with
/// `ELECT_TEST_LOG=elect_consul=debug`, shows what the backend did.
async fn alone() -> tokio::sync::MutexGuard<'static, ()> {
    let serial = SERIAL.lock().await;
    if let Ok(filter) = std::env::var("ELECT_TEST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    }
    serial
}

#[tokio::test]
async fn a_session_destroyed_by_an_operator_is_lost_within_a_blocking_query_round_trip() {
    let _alone = alone().await;
    let elector = connect().await;
    let (_, leadership) = lead(&elector, "destroy").await;
    let session = elector.session_id().await.unwrap();
    let started = Instant::now();
    let (status, body) = http("PUT", &format!("/v1/session/destroy/{session}"));
    assert_eq!(status, 200, "{body}");
    let reason = tokio::time::timeout(Duration::from_secs(1), leadership.lost())
        .await
        .expect("lost within 1 s");
    assert_eq!(reason, LossReason::Revoked);
    eprintln!("session destroyed: lost after {:?}", started.elapsed());
}

#[tokio::test]
async fn frozen_servers_end_leadership_by_the_deadline() {
    let _alone = alone().await;
    let elector = connect().await;
    let (_, leadership) = lead(&elector, "frozen").await;
    faults::frozen_cluster_ends_the_term_by_its_deadline("consul", &leadership, TTL).await;
}

/// The first address's server dies: it is the agent our session was made on. With the other
/// addresses configured the leader goes on through them — until Consul deregisters the dead
/// node and invalidates its sessions, which the leader sees at once; the lock delay keeps the
/// rival out meanwhile, so there is never a second leader.
#[tokio::test]
async fn the_server_we_talk_to_dies_and_there_is_never_a_second_leader() {
    let _alone = alone().await;
    let (elector, rival) = (connect().await, connect().await);
    let (election, leadership) = lead(&elector, "agent").await;
    let waiting = {
        let election = election.clone();
        tokio::spawn(async move {
            // As a service would: errors that pass (no raft leader while the dead server was
            // it) are retried.
            let term = elect_core::campaign_logged(
                &rival,
                &election,
                &Candidate::new("rival", "rival").unwrap(),
            )
            .await;
            (Instant::now(), term)
        })
    };
    let restart = MemberFault::kill("consul", &["1"]);
    let killed_at = Instant::now();
    let watched = tokio::time::timeout(TTL * 3, leadership.lost()).await;
    let lost_at = Instant::now();
    match watched {
        // Still leading after 3 TTLs: the rival must not have won.
        Err(_) => assert!(!waiting.is_finished(), "the rival won while we lead"),
        Ok(reason) => {
            let (elected, term) = tokio::time::timeout(TTL * 3, waiting)
                .await
                .expect("the rival leads")
                .unwrap();
            let term = term.expect("the rival's campaign");
            assert!(elected > lost_at, "the rival led before we saw the loss");
            eprintln!(
                "server 1 killed: lost ({reason}) after {:?}; the rival led {:?} after that",
                lost_at - killed_at,
                elected - lost_at
            );
            term.resign().await.unwrap();
            drop(restart);
            return;
        }
    }
    drop(restart);
    eprintln!(
        "server 1 killed: still leading after {:?}",
        killed_at.elapsed()
    );
    leadership.resign().await.unwrap();
    let (_, term) = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("the rival leads after the resign")
        .unwrap();
    term.unwrap().resign().await.unwrap();
}
