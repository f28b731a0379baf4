//! The conformance suite against a real 3-node ZooKeeper ensemble.
//!
//! The ensemble comes from `tests/cluster/cluster up zookeeper` (or `tests/run`, which starts
//! it); `ELECT_TEST_ZK_CONNECT` points the tests elsewhere (e.g. at docker-compose.yml).

mod support;

use std::sync::Arc;
use std::time::Duration;

use elect_core::testkit::{CutOff, Harness};
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
    harness.crash_failover = support::SESSION_TIMEOUT + Duration::from_secs(3);
    harness.with_cut_off(Arc::new(connect_cut_off))
}

/// An elector whose links to the cluster go through a proxy the test can take down.
fn connect_cut_off() -> futures::future::BoxFuture<'static, elect_core::Result<CutOff>> {
    proxy::cut_off(support::connect_string(), |list| async move {
        ZookeeperElector::connect(&support::config_for(&list)).await
    })
}

mod conformance {
    elect_core::conformance_suite!(super::harness());
}

mod cut_off {
    elect_core::cut_off_suite!(super::harness());
}
