//! The conformance suite against a real 3-node ZooKeeper ensemble.
//!
//! The ensemble comes from `tests/cluster/cluster up zookeeper` (or `tests/run`, which starts
//! it); `ELECT_TEST_ZK_CONNECT` points the tests elsewhere (e.g. at docker-compose.yml).

mod support;

use std::time::Duration;

use elect_core::config::ZookeeperConfig;
use elect_core::testkit::Harness;
use elect_test_support::clusters::TestCluster;
use elect_test_support::proxy;
use elect_zookeeper::ZookeeperElector;

fn harness() -> Harness {
    let mut harness = Harness::new(
        "zookeeper",
        || async { Ok(support::connect().await) },
        |election| async move {
            support::delete_claims(election.as_str()).await;
            Ok(())
        },
    );
    // A dropped client closes its session and the server deletes its claims at once; the
    // bound also covers a session that has to time out.
    harness.crash_failover = TestCluster::Zookeeper.ttl() + Duration::from_secs(3);
    // An elector whose links to the cluster go through a proxy the test can take down.
    harness.with_cut_off(proxy::cut_off_connector(
        |config: ZookeeperConfig| async move { ZookeeperElector::connect(&config).await },
    ))
}

elect_core::cluster_suites!(harness);
