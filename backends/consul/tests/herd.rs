//! No herd (L3) on Consul: waiting `elect` candidates line up under `<election>/.queue/`, each
//! watching the place before its own and only the head the lock key, so a handover costs a
//! few requests and wakes one waiter, whatever the number waiting. Counted at a proxy that
//! every elector of the test talks through.

mod support;

use std::time::Duration;

use elect_consul::ConsulElector;
use elect_core::config::ConsulConfig;
use elect_core::testkit::{campaign_as, spawn_campaign_as};
use elect_core::ElectionName;
use elect_test_support::clusters::{TestCluster, TestConfig};
use elect_test_support::herd::one_handover_wakes_only_the_successor;
use elect_test_support::proxy::Proxy;

/// Each waiter holds a connection for its blocking query, and Consul takes 200 connections
/// per client address.
const WAITING: usize = 40;

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
        tokio::time::timeout(Duration::from_secs(10), async {
            while places(&election) < i + 1 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("candidate joined the line");
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
    one_handover_wakes_only_the_successor(
        leadership,
        waiting,
        "c0",
        asked,
        "requests to the agents",
        10,
    )
    .await;
}
