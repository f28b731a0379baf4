//! The conformance suite against a real 3-node etcd cluster.
//!
//! The cluster comes from `tests/cluster/cluster up etcd` (or `tests/run`, which starts it);
//! `ELECT_TEST_ETCD_ENDPOINTS` points the tests elsewhere (e.g. at docker-compose.yml).

use std::sync::Arc;
use std::time::Duration;

use elect_core::testkit::Harness;
use elect_core::Elector;
use elect_etcd::EtcdElector;
use futures::FutureExt;

mod support;

use support::{config, TTL};

async fn connect() -> elect_core::Result<Arc<dyn Elector>> {
    Ok(Arc::new(support::connect().await))
}

fn harness() -> Harness {
    let mut harness = Harness::new(
        "etcd",
        Arc::new(|| connect().boxed()),
        Arc::new(|election| {
            async move {
                // What `etcdctl del --prefix <election>/` does.
                let elector = EtcdElector::connect(&config()).await?;
                elector
                    .client()
                    .clone()
                    .delete(
                        format!("{election}/"),
                        Some(etcd_client::DeleteOptions::new().with_prefix()),
                    )
                    .await
                    .expect("delete the claims");
                Ok(())
            }
            .boxed()
        }),
    );
    // etcd's lessor checks expiry every 500 ms; the lease may also be extended by a raft
    // leader change.
    harness.crash_failover = TTL + Duration::from_secs(3);
    harness
}

mod conformance {
    elect_core::conformance_suite!(super::harness());
}
