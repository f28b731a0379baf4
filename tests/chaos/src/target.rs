//! The stores under test: the TTL the candidates use, their URLs, and the bounds L1 and L2 of
//! `docs/guarantees.md` give for that TTL.

use std::net::SocketAddr;
use std::time::Duration;

use crate::check::Bounds;

/// The backends, as the test kit names them (`ttl` is the TTL candidates use).
pub use elect_test_support::clusters::TestCluster as Backend;

/// The URL of `election` on `backend` through `addresses` (the proxies in front of the
/// members), at the backend's test TTL.
pub fn url(backend: Backend, addresses: &[SocketAddr], election: &str) -> String {
    let hosts: Vec<String> = addresses.iter().map(|a| a.to_string()).collect();
    backend.url_through(&hosts.join(","), election)
}

/// The bounds of `docs/guarantees.md` at the backend's TTL, plus [`SCHEDULING`] for a loaded
/// 2-core machine.
///
/// L1: etcd, TTL + the lessor's 500 ms expiry check; ZooKeeper, the session timeout + a
/// tick; Consul, 2 × TTL + the lock delay (one TTL, elect's default). L2: a few round trips.
pub fn bounds(backend: Backend) -> Bounds {
    let ttl = backend.ttl();
    let failover = match backend {
        Backend::Etcd => ttl + Duration::from_millis(500),
        Backend::Zookeeper => ttl + Duration::from_millis(200),
        Backend::Consul => ttl * 3,
    } + SCHEDULING;
    Bounds {
        failover,
        handover: Duration::from_secs(1),
        loss_slack: Duration::from_millis(100),
    }
}

/// Allowance for round trips and scheduling on the test machine (2 cores running three
/// clusters and the candidates).
pub const SCHEDULING: Duration = Duration::from_secs(1);
