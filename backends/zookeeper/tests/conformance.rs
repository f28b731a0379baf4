//! The conformance suite against a real 3-node ZooKeeper ensemble.
//!
//! The ensemble comes from `tests/cluster/cluster up zookeeper` (or `tests/run`, which starts
//! it); `ELECT_TEST_ZK_CONNECT` points the tests elsewhere (e.g. at docker-compose.yml).

mod support;

use std::sync::Arc;
use std::time::Duration;

use elect_core::testkit::Harness;
use elect_core::Elector;
use futures::FutureExt;

fn harness() -> Harness {
    let mut harness = Harness::new(
        "zookeeper",
        Arc::new(|| {
            async {
                let elector: Arc<dyn Elector> = Arc::new(support::connect().await);
                Ok(elector)
            }
            .boxed()
        }),
        Arc::new(|election| {
            async move {
                support::delete_claims(election.as_str()).await;
                Ok(())
            }
            .boxed()
        }),
    );
    // A dropped client closes its session and the server deletes its claims at once; the
    // bound also covers a session that has to time out.
    harness.crash_failover = support::SESSION_TIMEOUT + Duration::from_secs(3);
    harness
}

mod conformance {
    elect_core::conformance_suite!(super::harness());
}
