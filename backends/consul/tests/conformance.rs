//! The conformance suite against a real 3-server Consul cluster.
//!
//! The cluster comes from `tests/cluster/cluster up consul` (or `tests/run`, which starts
//! it); `ELECT_TEST_CONSUL_ADDRS` points the tests elsewhere (e.g. at docker-compose.yml).

mod support;

use std::sync::Arc;
use std::time::Duration;

use elect_consul::ConsulElector;
use elect_core::testkit::{CutOff, Harness};
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
    harness.with_cut_off(Arc::new(connect_cut_off))
}

/// An elector whose links to the cluster go through a proxy the test can take down.
fn connect_cut_off() -> futures::future::BoxFuture<'static, elect_core::Result<CutOff>> {
    proxy::cut_off(support::addresses(), |list| async move {
        ConsulElector::connect(&support::config_for(&list)).await
    })
}

mod conformance {
    elect_core::conformance_suite!(super::harness());
}

mod cut_off {
    elect_core::cut_off_suite!(super::harness());
}
