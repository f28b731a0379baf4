//! The clusters under test: where they listen, the TTL the candidates use there, and the
//! bounds SPEC.md's L1 and L2 give for that TTL.

use std::net::SocketAddr;
use std::time::Duration;

use crate::check::Bounds;

/// A backend with a real 3-node cluster (`tests/cluster/cluster up`).
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

    /// The members' client addresses, from the variables `tests/cluster/cluster env` prints.
    pub fn members(self) -> Vec<SocketAddr> {
        let (var, default) = match self {
            Backend::Etcd => (
                "ELECT_TEST_ETCD_ENDPOINTS",
                "127.0.0.1:2379,127.0.0.1:22379,127.0.0.1:32379",
            ),
            Backend::Zookeeper => (
                "ELECT_TEST_ZK_CONNECT",
                "127.0.0.1:2181,127.0.0.1:2182,127.0.0.1:2183",
            ),
            Backend::Consul => (
                "ELECT_TEST_CONSUL_ADDRS",
                "127.0.0.1:8500,127.0.0.1:8510,127.0.0.1:8520",
            ),
        };
        let list = std::env::var(var).unwrap_or_else(|_| default.to_owned());
        list.split(',')
            .map(|a| {
                a.trim()
                    .parse()
                    .unwrap_or_else(|_| panic!("{var}: {a:?} is not an ip:port address"))
            })
            .collect()
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

    /// SPEC.md's bounds at [`Backend::ttl`], plus [`SCHEDULING`] for a loaded 2-core machine.
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
