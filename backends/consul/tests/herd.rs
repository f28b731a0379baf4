//! No herd (L3) on Consul: waiting `elect` candidates line up under `<election>/.queue/`, each
//! watching the place before its own and only the head the lock key, so a handover costs a
//! few requests and wakes one waiter, whatever the number waiting. Counted at a proxy that
//! every elector of the test talks through.

mod support;

use std::time::Duration;

use elect_consul::ConsulElector;
use elect_core::config::ConsulConfig;
use elect_core::testkit::{campaign_as, spawn_campaign_as};
use elect_core::{ElectionName, LossReason};
use elect_test_support::clusters::{TestCluster, TestConfig};
use elect_test_support::herd::one_handover_wakes_only_the_successor;
use elect_test_support::proxy::Proxy;

/// Each waiter holds a connection for its blocking query, and Consul takes 200 connections
/// per client address by default (the test clusters take more; a cluster the tests are
/// pointed at may not).
const WAITING: usize = 40;

/// Waits until `election`'s line holds `n` places.
async fn line_holds(election: &ElectionName, n: usize) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while places(election) != n {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the line holds {} places, not {n}", places(election)));
}

/// Places in line of `election`, as `consul kv get -keys` shows them.
fn places(election: &ElectionName) -> usize {
    let (status, body) = support::http("GET", &format!("/v1/kv/{election}/.queue/?keys"));
    match status {
        404 => 0,
        200 => body.matches(".queue/").count(),
        _ => panic!("list the line: {status} {body}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handover_among_40_waiting_candidates_wakes_only_the_successor() {
    let proxy = Proxy::in_front_of(&TestCluster::Consul.addresses())
        .await
        .unwrap();
    let config = ConsulConfig::aimed_at(&proxy.list());
    let election: ElectionName = elect_test_support::unique_name("herd").parse().unwrap();
    let leader = ConsulElector::connect(&config).await.unwrap();
    let leadership = campaign_as(&leader, &election, "leader").await;
    let mut waiting = Vec::new();
    for i in 0..WAITING {
        let elector = ConsulElector::connect(&config).await.unwrap();
        waiting.push(spawn_campaign_as(elector, &election, &format!("c{i}")));
        // Join one at a time, so that the order is known.
        line_holds(&election, i + 1).await;
    }
    // What the electors asked of the store, session renewals aside (they run on their own
    // clock, whatever the handover).
    let asked = || {
        proxy
            .requests()
            .iter()
            .filter(|request| !request.contains("/v1/session/renew/"))
            .count() as u64
    };
    // The resign, the successor's acquire and its watch on its own lock: the leader keeps its
    // place in line while it leads, so the waiter behind the successor is not woken at all.
    one_handover_wakes_only_the_successor(
        leadership,
        waiting,
        "c0",
        asked,
        "requests to the agents",
        3,
    )
    .await;
}

/// A leader keeps its place in line, and the waiter behind it waits on that place. When an
/// operator deletes the lock (`consul kv delete`), nobody resigns the revoked term, yet its
/// place must go: the waiter behind it leads, not after the leader's session ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_waiter_behind_a_leader_whose_lock_was_deleted_by_hand_leads() {
    let config = ConsulConfig::aimed_at(&TestCluster::Consul.addresses());
    let election: ElectionName = elect_test_support::unique_name("revoked").parse().unwrap();
    let first = ConsulElector::connect(&config).await.unwrap();
    let first_term = campaign_as(&first, &election, "first").await;
    let a = ConsulElector::connect(&config).await.unwrap();
    let a_task = spawn_campaign_as(a, &election, "a");
    line_holds(&election, 1).await;
    first_term.resign().await.unwrap();
    let a_won = tokio::time::timeout(Duration::from_secs(5), a_task)
        .await
        .expect("a leads after the resign")
        .unwrap();
    let b = ConsulElector::connect(&config).await.unwrap();
    let b_task = spawn_campaign_as(b, &election, "b");
    // a's place, kept while it leads, and b's behind it.
    line_holds(&election, 2).await;

    let (status, body) = support::http("DELETE", &format!("/v1/kv/{election}/.lock"));
    assert_eq!(status, 200, "delete the lock key: {body}");
    let reason = tokio::time::timeout(Duration::from_secs(2), a_won.leadership.lost())
        .await
        .expect("a notices its lock was deleted");
    assert_eq!(reason, LossReason::Revoked);
    let b_won = tokio::time::timeout(Duration::from_secs(5), b_task)
        .await
        .expect("b leads while a's session lives on")
        .unwrap();
    assert_eq!(places(&election), 1, "only b's place is left");
    b_won.leadership.resign().await.unwrap();
    line_holds(&election, 0).await;
}
