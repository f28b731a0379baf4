//! The stores under test: the TTL the candidates use, their URLs, and the bounds L1 and L2 of
//! `docs/guarantees.md` give for that TTL.

use std::net::SocketAddr;
use std::time::Duration;

use crate::check::Bounds;

/// A backend with a real 3-member cluster (the runner starts one in network namespaces).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Backend {
    /// etcd leases.
    Etcd,
    /// ZooKeeper sessions.
    Zookeeper,
    /// Consul sessions.
    Consul,
}

impl Backend {
    /// All three.
    pub const ALL: [Backend; 3] = [Backend::Etcd, Backend::Zookeeper, Backend::Consul];

    /// The name the cluster script and URLs use.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Etcd => "etcd",
            Backend::Zookeeper => "zookeeper",
            Backend::Consul => "consul",
        }
    }

    /// Parses `etcd`, `zookeeper` (or `zk`), `consul`.
    pub fn parse(name: &str) -> Option<Backend> {
        match name {
            "etcd" => Some(Backend::Etcd),
            "zookeeper" | "zk" => Some(Backend::Zookeeper),
            "consul" => Some(Backend::Consul),
            _ => None,
        }
    }

    /// The TTL (session timeout) candidates use: the shortest each store allows here.
    pub fn ttl(self) -> Duration {
        match self {
            Backend::Etcd | Backend::Zookeeper => Duration::from_secs(2),
            Backend::Consul => Duration::from_secs(10),
        }
    }

    /// The URL of `election` through `addresses`.
    pub fn url(self, addresses: &[SocketAddr], election: &str) -> String {
        let hosts: Vec<String> = addresses.iter().map(|a| a.to_string()).collect();
        let hosts = hosts.join(",");
        let ttl = self.ttl().as_secs();
        match self {
            Backend::Etcd => format!("etcd://{hosts}/{election}?ttl={ttl}s"),
            Backend::Zookeeper => {
                format!("zk://{hosts}/{election}?session_timeout={ttl}s&tick_time=200ms")
            }
            Backend::Consul => format!("consul://{hosts}/{election}?ttl={ttl}s"),
        }
    }

    /// The bounds of `docs/guarantees.md` at [`Backend::ttl`], plus [`SCHEDULING`] for a loaded
    /// 2-core machine.
    ///
    /// L1: etcd, TTL + the lessor's 500 ms expiry check; ZooKeeper, the session timeout + a
    /// tick; Consul, 2 × TTL + the lock delay (one TTL, elect's default). L2: a few round trips.
    pub fn bounds(self) -> Bounds {
        let ttl = self.ttl();
        let failover = match self {
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
}

/// Allowance for round trips and scheduling on the test machine (2 cores running three
/// clusters and the candidates).
pub const SCHEDULING: Duration = Duration::from_secs(1);
