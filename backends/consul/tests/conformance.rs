//! The conformance suite against a real 3-server Consul cluster.
//!
//! The cluster comes from `tests/cluster/cluster up consul` (or `tests/run`, which starts
//! it); `ELECT_TEST_CONSUL_ADDRS` points the tests elsewhere (e.g. at docker-compose.yml).

mod support;

use std::time::Duration;

use elect_consul::ConsulElector;
use elect_core::config::ConsulConfig;
use elect_core::testkit::Harness;
use elect_test_support::proxy;

fn harness() -> Harness {
    let mut harness = Harness::new(
        "consul",
        || async { Ok(support::connect().await) },
        |election| async move {
            // What `consul kv delete <election>/.lock` does.
            let (status, body) = support::http("DELETE", &format!("/v1/kv/{election}/.lock"));
            assert_eq!(status, 200, "delete the lock key: {body}");
            Ok(())
        },
    );
    // A crashed holder's session is invalidated between TTL and 2 × TTL, then the lock delay
    // (one TTL by default) runs.
    harness.crash_failover = support::TTL * 3 + Duration::from_secs(5);
    // Waiting sessions are invisible in Consul's lock.
    harness.lists_waiting_candidates = false;
    // An elector whose links to the cluster go through a proxy the test can take down.
    harness.with_cut_off(proxy::cut_off_connector(
        |config: ConsulConfig| async move { ConsulElector::connect(&config).await },
    ))
}

elect_core::cluster_suites!(harness);
