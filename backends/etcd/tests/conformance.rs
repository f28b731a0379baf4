//! The conformance suite against a real 3-node etcd cluster.
//!
//! The cluster comes from `tests/cluster/cluster up etcd` (or `tests/run`, which starts it);
//! `ELECT_TEST_ETCD_ENDPOINTS` points the tests elsewhere (e.g. at docker-compose.yml).

use std::time::Duration;

use elect_core::config::EtcdConfig;
use elect_core::testkit::Harness;
use elect_etcd::EtcdElector;
use elect_test_support::proxy;

mod support;

use support::TTL;

fn harness() -> Harness {
    let mut harness = Harness::new(
        "etcd",
        || async { Ok(support::connect().await) },
        |election| async move {
            let mut delete = support::etcdctl();
            delete.args(["del", "--prefix", &format!("{election}/")]);
            let output = elect_test_support::process::output_ok(&mut delete);
            let deleted = String::from_utf8_lossy(&output.stdout);
            assert_ne!(deleted.trim(), "0", "etcdctl deleted no key");
            Ok(())
        },
    );
    // etcd's lessor checks expiry every 500 ms; the lease may also be extended by a raft
    // leader change.
    harness.crash_failover = TTL + Duration::from_secs(3);
    // An elector whose links to the cluster go through a proxy the test can take down.
    harness.with_cut_off(proxy::cut_off_connector(|config: EtcdConfig| async move {
        EtcdElector::connect(&config).await
    }))
}

elect_core::cluster_suites!(harness);
