//! No herd (L3): with 200 candidates waiting, a handover notifies only the successor: each
//! waiter watches its predecessor alone, so the ensemble fires O(1) watches for one handover —
//! read from its own counters.

mod support;

use std::time::Duration;

use elect_core::config::ZookeeperConfig;
use elect_core::testkit::{campaign_as, spawn_campaign_as};
use elect_core::{ElectionName, Elector};
use elect_test_support::clusters::{TestCluster, TestConfig};
use elect_test_support::herd::one_handover_wakes_only_the_successor;
use elect_zookeeper::ZookeeperElector;
use support::{connect, watches_fired};

const WAITING: usize = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handover_among_200_waiting_candidates_notifies_only_the_successor() {
    let election: ElectionName = format!("herd-{}", std::process::id()).parse().unwrap();
    let leader = connect().await;
    let leadership = campaign_as(&leader, &election, "leader").await;
    // 200 candidates on one shared client (one session, like one process with many electors).
    let client = zookeeper_client::Client::connector()
        .with_session_timeout(Duration::from_secs(10))
        .connect(&TestCluster::Zookeeper.addresses())
        .await
        .unwrap();
    let mut waiting = Vec::new();
    for i in 0..WAITING {
        let elector =
            ZookeeperElector::with_client(client.clone(), &ZookeeperConfig::for_tests()).unwrap();
        waiting.push(spawn_campaign_as(elector, &election, &format!("c{i}")));
    }
    let queue = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let queue = leader.candidates(&election).await.unwrap();
            if queue.len() == WAITING + 1 {
                return queue;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("every candidate joined");
    let next_in_line = queue[1].id.clone();
    one_handover_wakes_only_the_successor(
        leadership,
        waiting,
        &next_in_line,
        watches_fired,
        "watches fired by the ensemble",
        5,
    )
    .await;
}

/// Electors on one client check their one session once, however many there are: a hundred of
/// them leading a hundred elections cost the ensemble what one does — a `sync` every third of
/// the timeout and the client's own pings — not a hundred syncs a period (issue 16: idle cost).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_electors_on_one_client_check_the_session_once() {
    const ELECTORS: usize = 100;
    let timeout = Duration::from_secs(3);
    let client = zookeeper_client::Client::connector()
        .with_session_timeout(timeout)
        .connect(&TestCluster::Zookeeper.addresses())
        .await
        .unwrap();
    let session = client.session_id().0;
    let mut terms = Vec::new();
    for i in 0..ELECTORS {
        let elector =
            ZookeeperElector::with_client(client.clone(), &ZookeeperConfig::for_tests()).unwrap();
        let election: ElectionName = elect_test_support::unique_name(&format!("idle-{i}"))
            .parse()
            .unwrap();
        let term = campaign_as(&elector, &election, "me").await;
        terms.push((elector, term));
    }
    // Past the campaigns' own requests; then one whole timeout of idle leading.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = support::requests_received(session).expect("a member holds the session");
    tokio::time::sleep(timeout).await;
    let received =
        support::requests_received(session).expect("a member holds the session") - before;
    for (_, term) in &terms {
        assert!(term.is_leader(), "a term was lost while idle");
    }
    // One timeout: three syncs and about three pings of the client; a hundred electors
    // checking on their own would send three hundred syncs.
    assert!(
        received <= 12,
        "{ELECTORS} electors on one client sent {received} requests in one session timeout"
    );
    eprintln!("{ELECTORS} electors on one client: {received} requests in {timeout:?}");
    for (_, term) in terms {
        term.resign().await.unwrap();
    }
}
