//! No herd (L3): with 200 candidates waiting, a handover wakes only the successor. Each
//! waiter watches the key just before its own, so the members send O(1) watch events for
//! one handover, whatever the number of candidates — read from their own counters.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use elect_core::config::EtcdConfig;
use elect_core::testkit::{campaign_as, spawn_campaign_as};
use elect_core::{ElectionName, Elector};
use elect_etcd::EtcdElector;
use elect_test_support::clusters::{TestCluster, TestConfig};
use elect_test_support::herd::one_handover_wakes_only_the_successor;
use support::connect;

const WAITING: usize = 200;

/// `etcd_debugging_mvcc_events_total` summed over the members: watch events they sent.
fn events_sent() -> u64 {
    TestCluster::Etcd
        .addresses()
        .split(',')
        .map(|endpoint| {
            let mut stream = TcpStream::connect(endpoint).expect("connect to a member's /metrics");
            write!(stream, "GET /metrics HTTP/1.0\r\nHost: {endpoint}\r\n\r\n").unwrap();
            let mut body = String::new();
            stream.read_to_string(&mut body).unwrap();
            body.lines()
                .find_map(|l| l.strip_prefix("etcd_debugging_mvcc_events_total "))
                .and_then(|v| v.trim().parse::<f64>().ok())
                .expect("the member reports etcd_debugging_mvcc_events_total") as u64
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handover_among_200_waiting_candidates_wakes_only_the_successor() {
    let election: ElectionName = format!("herd-{}", std::process::id()).parse().unwrap();
    let leader = connect().await;
    let leadership = campaign_as(&leader, &election, "leader").await;
    // 200 candidates on one client (each its own lease), waiting in order.
    let client = leader.client().clone();
    let mut waiting = Vec::new();
    for i in 0..WAITING {
        let elector = EtcdElector::with_client(client.clone(), &EtcdConfig::for_tests()).unwrap();
        waiting.push(spawn_campaign_as(elector, &election, &format!("c{i}")));
        // Join one at a time, so that the order is known and every watch is set.
        tokio::time::timeout(Duration::from_secs(10), async {
            while leader.candidates(&election).await.unwrap().len() < i + 2 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("candidate joined");
    }
    one_handover_wakes_only_the_successor(
        leadership,
        waiting,
        "c0",
        events_sent,
        "watch events sent by the members",
        5,
    )
    .await;
}
