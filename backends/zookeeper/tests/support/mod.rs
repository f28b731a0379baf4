//! What the ZooKeeper tests share: a connected elector, the members' four-letter words, and the
//! cluster script. The test configuration is `ZookeeperConfig::for_tests()`
//! (`elect_test_support::clusters::TestConfig`).

#![allow(dead_code)] // each test binary uses its own part

use elect_core::config::ZookeeperConfig;
use elect_test_support::clusters::{TestCluster, TestConfig};
use elect_zookeeper::ZookeeperElector;

/// A connected elector, or a failure that says how to start the ensemble.
pub async fn connect() -> ZookeeperElector {
    TestCluster::Zookeeper.connected(ZookeeperElector::connect(&ZookeeperConfig::for_tests()).await)
}

/// Deletes every claim of `election` with a client of its own, as `zkCli deleteall` would.
pub async fn delete_claims(election: &str) {
    let client = zookeeper_client::Client::connect(&TestCluster::Zookeeper.addresses())
        .await
        .expect("connect");
    let dir = format!("/{election}");
    for child in client.list_children(&dir).await.unwrap_or_default() {
        let _ = client.delete(&format!("{dir}/{child}"), None).await;
    }
}

/// A four-letter-word command to one member (`mntr`, `cons`, `srvr`, …).
pub fn four_letters(port: u16, word: &str) -> String {
    use std::io::{Read, Write};
    let mut stream =
        std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect to a member");
    stream.write_all(word.as_bytes()).unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).unwrap();
    out
}

/// The members' client ports, in the cluster script's order (n1, n2, n3).
pub fn ports() -> Vec<u16> {
    TestCluster::Zookeeper
        .addresses()
        .split(',')
        .map(|e| e.rsplit(':').next().unwrap().parse().unwrap())
        .collect()
}

/// Watch notifications the members fired so far (mntr's node-event watch counters).
pub fn watches_fired() -> u64 {
    ports()
        .into_iter()
        .map(|port| {
            four_letters(port, "mntr")
                .lines()
                .filter(|l| l.starts_with("zk_sum_node_") && l.contains("_watch_count"))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
                .sum::<f64>() as u64
        })
        .sum()
}

/// The paths session `id` watches now, from the members' `wchc`.
pub fn watched_by(id: i64) -> Vec<String> {
    let wanted = format!("0x{id:x}");
    let mut paths = Vec::new();
    for port in ports() {
        let mut ours = false;
        for line in four_letters(port, "wchc").lines() {
            if let Some(path) = line.strip_prefix('\t') {
                if ours {
                    paths.push(path.trim().to_owned());
                }
            } else {
                ours = line.trim() == wanted;
            }
        }
    }
    paths
}

/// The member (1..3) that holds the connection of session `id`, from `cons`.
pub fn member_of_session(id: i64) -> Option<usize> {
    let wanted = format!("sid=0x{id:x}");
    ports()
        .into_iter()
        .position(|port| four_letters(port, "cons").contains(&wanted))
        .map(|i| i + 1)
}

/// Requests the ensemble received on session `id`'s connection so far (`cons`' `recved`), or
/// `None` while no member holds it.
pub fn requests_received(id: i64) -> Option<u64> {
    let wanted = format!("sid=0x{id:x}");
    ports().into_iter().find_map(|port| {
        let cons = four_letters(port, "cons");
        let line = cons.lines().find(|l| l.contains(&wanted))?;
        let recved = line
            .split(['(', ',', ')'])
            .find_map(|f| f.strip_prefix("recved="))?;
        recved.parse().ok()
    })
}
