//! Idle candidates keep their connections: our HTTP/2 pings respect the servers' keep-alive
//! policy (`--grpc-keepalive-min-time`, 5 s by default), which closes a connection that pings
//! faster and so broke every watch and keep-alive stream of a waiting candidate every ~5 s.
//! Alone in its test binary: it reads the cluster-wide request counters.

mod support;

use std::time::Duration;

use elect_core::config::EtcdConfig;
use elect_core::testkit::within;
use elect_core::{Candidate, ElectionName, Elector, LeadershipState};
use elect_etcd::EtcdElector;
use elect_test_support::clusters::{TestCluster, TestConfig};

/// Long enough for two of our pings per connection, and for the servers to close a connection
/// that pinged every second (they do after three fast pings).
const WINDOW: Duration = Duration::from_secs(14);

/// Streams opened (watches, lease keep-alives) and transactions (a campaign's looks), summed
/// over the members' `/metrics`. A reconnect re-opens the streams and makes the waiter look
/// again, so these only grow while connections break.
fn reconnect_work() -> u64 {
    let mut total = 0.0;
    for member in TestCluster::Etcd.addresses().split(',') {
        let (status, body) = elect_test_support::http(member, "GET", "/metrics", &[], "");
        assert_eq!(status, 200, "GET {member}/metrics: {body}");
        for line in body.lines() {
            let counted = (line.starts_with("grpc_server_started_total{")
                && (line.contains("grpc_method=\"Watch\"")
                    || line.contains("grpc_method=\"LeaseKeepAlive\"")))
                || (line.starts_with("grpc_server_handled_total{")
                    && line.contains("grpc_method=\"Txn\""));
            if counted {
                let value = line.rsplit(' ').next().unwrap_or("0");
                total += value.parse::<f64>().unwrap_or_else(|_| panic!("{line}"));
            }
        }
    }
    total as u64
}

#[tokio::test]
async fn waiting_candidates_keep_their_connections_at_a_long_ttl() {
    let mut config = EtcdConfig::for_tests();
    // Keep-alives every 20 s: no data on the connections within the window but our pings.
    config.ttl = Duration::from_secs(60);
    let leader_elector = EtcdElector::connect(&config).await.unwrap();
    let waiter_elector = EtcdElector::connect(&config).await.unwrap();
    let election: ElectionName = elect_test_support::unique_name("idle-connection")
        .parse()
        .unwrap();
    let leadership = leader_elector
        .campaign(&election, &Candidate::new("leader", "l").unwrap())
        .await
        .unwrap();
    let waiter = {
        let election = election.clone();
        tokio::spawn(async move {
            waiter_elector
                .campaign(&election, &Candidate::new("waiter", "w").unwrap())
                .await
        })
    };
    // The waiter has joined and set its watch once the counters stand still for a second.
    let before = within(
        Duration::from_secs(20),
        async {
            let mut last = reconnect_work();
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let now = reconnect_work();
                if now == last {
                    return now;
                }
                last = now;
            }
        },
        "the waiter settles",
    )
    .await;
    assert!(!waiter.is_finished(), "the waiter led while the leader led");

    tokio::time::sleep(WINDOW).await;
    let after = reconnect_work();

    assert!(!waiter.is_finished(), "the waiter led while the leader led");
    assert_eq!(
        leadership.state(),
        LeadershipState::Leading,
        "the leader lost its term while idle"
    );
    assert_eq!(
        after - before,
        0,
        "{} streams opened or transactions made in {WINDOW:?} by two idle candidates: \
         their connections were closed and made again",
        after - before
    );
    waiter.abort();
    leadership.resign().await.unwrap();
}
