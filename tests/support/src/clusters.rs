//! Where the test clusters are: one place for every test and bench. The defaults are the
//! loopback clusters of `tests/cluster/cluster up` (and the ports docker-compose.yml
//! publishes); `tests/cluster/cluster env` prints the variables that point elsewhere.

use std::fmt::Display;
use std::time::Duration;

use elect_core::config::{ConsulConfig, Endpoint, EtcdConfig, ZookeeperConfig};

/// One of the three test clusters: where it is, the TTL tests use on it, and how a test that
/// cannot reach it says how to start it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TestCluster {
    Etcd,
    Zookeeper,
    Consul,
}

impl TestCluster {
    /// All three, in the order reports list them.
    pub const ALL: [TestCluster; 3] = [
        TestCluster::Etcd,
        TestCluster::Zookeeper,
        TestCluster::Consul,
    ];

    /// `etcd`, `zookeeper` or `consul`: the name the cluster script uses.
    pub fn name(self) -> &'static str {
        match self {
            TestCluster::Etcd => "etcd",
            TestCluster::Zookeeper => "zookeeper",
            TestCluster::Consul => "consul",
        }
    }

    /// Parses `etcd`, `zookeeper` (or `zk`), `consul`.
    pub fn parse(name: &str) -> Option<TestCluster> {
        match name {
            "zk" => Some(TestCluster::Zookeeper),
            _ => TestCluster::ALL.into_iter().find(|c| c.name() == name),
        }
    }

    /// The test ensemble's tickTime (`tests/cluster/cluster topology`).
    pub const ZOOKEEPER_TICK_TIME: Duration = Duration::from_millis(200);

    /// The TTL (session timeout) the tests use: the shortest each store allows here (etcd's
    /// 2 s minimum lease with a 1 s election timeout, ZooKeeper's 2 s, Consul's 10 s floor).
    pub const fn ttl(self) -> Duration {
        match self {
            TestCluster::Etcd | TestCluster::Zookeeper => Duration::from_secs(2),
            TestCluster::Consul => Duration::from_secs(10),
        }
    }

    /// The URL of `election` on this cluster, at [`TestCluster::ttl`].
    pub fn url(self, election: &str) -> String {
        self.url_through(&self.addresses(), election)
    }

    /// [`TestCluster::url`] through the members (or proxies) `hosts`, `host:port,…`.
    pub fn url_through(self, hosts: &str, election: &str) -> String {
        let ttl = self.ttl().as_secs();
        match self {
            TestCluster::Etcd => format!("etcd://{hosts}/{election}?ttl={ttl}s"),
            TestCluster::Zookeeper => {
                let tick = TestCluster::ZOOKEEPER_TICK_TIME.as_millis();
                format!("zk://{hosts}/{election}?session_timeout={ttl}s&tick_time={tick}ms")
            }
            TestCluster::Consul => format!("consul://{hosts}/{election}?ttl={ttl}s"),
        }
    }

    /// The variable that points the tests at another cluster.
    pub fn variable(self) -> &'static str {
        match self {
            TestCluster::Etcd => "ELECT_TEST_ETCD_ENDPOINTS",
            TestCluster::Consul => "ELECT_TEST_CONSUL_ADDRS",
            TestCluster::Zookeeper => "ELECT_TEST_ZK_CONNECT",
        }
    }

    /// The members' client addresses, `host:port,…`.
    pub fn addresses(self) -> String {
        let default = match self {
            TestCluster::Etcd => "127.0.0.1:2379,127.0.0.1:22379,127.0.0.1:32379",
            TestCluster::Consul => "127.0.0.1:8500,127.0.0.1:8510,127.0.0.1:8520",
            TestCluster::Zookeeper => "127.0.0.1:2181,127.0.0.1:2182,127.0.0.1:2183",
        };
        std::env::var(self.variable()).unwrap_or_else(|_| default.to_owned())
    }

    /// `list` (`host:port,…`, the cluster's or a proxy's) as config endpoints.
    pub fn endpoints_in(self, list: &str) -> Vec<Endpoint> {
        list.split(',')
            .map(|item| {
                item.parse().unwrap_or_else(|e| {
                    panic!(
                        "{} holds host:port items, not {item:?}: {e}",
                        self.variable()
                    )
                })
            })
            .collect()
    }

    /// What `connect` returned, or a failure that says how to start this cluster: a missing
    /// cluster fails loudly, it never skips a test.
    pub fn connected<E, Error: Display>(self, result: Result<E, Error>) -> E {
        let what = match self {
            TestCluster::Etcd => "etcd cluster",
            TestCluster::Consul => "Consul cluster",
            TestCluster::Zookeeper => "ZooKeeper ensemble",
        };
        result.unwrap_or_else(|error| {
            panic!(
                "no {what} at {}: {error}\n\
                 start one with `tests/cluster/cluster up {}` (or run `tests/run`), \
                 or set {}",
                self.addresses(),
                self.name(),
                self.variable()
            )
        })
    }
}

/// A backend's configuration as the test clusters want it: their endpoints, the test TTL.
pub trait TestConfig: Sized {
    /// The cluster this configuration is for.
    const CLUSTER: TestCluster;

    /// The test configuration aimed at `list` (comma-separated `host:port`, e.g. a proxy's).
    fn aimed_at(list: &str) -> Self;

    /// The test configuration aimed at the cluster itself.
    fn for_tests() -> Self {
        Self::aimed_at(&Self::CLUSTER.addresses())
    }
}

/// [`TestConfig`] for a configuration made by `new(endpoints)` whose TTL is its `ttl` field.
macro_rules! ttl_test_config {
    ($($config:ident for $cluster:ident),+) => {$(
        impl TestConfig for $config {
            const CLUSTER: TestCluster = TestCluster::$cluster;

            fn aimed_at(list: &str) -> Self {
                let mut config = $config::new(Self::CLUSTER.endpoints_in(list));
                config.ttl = Self::CLUSTER.ttl();
                config
            }
        }
    )+};
}

ttl_test_config!(EtcdConfig for Etcd, ConsulConfig for Consul);

impl TestConfig for ZookeeperConfig {
    const CLUSTER: TestCluster = TestCluster::Zookeeper;

    fn aimed_at(list: &str) -> Self {
        let mut config = ZookeeperConfig::new(Self::CLUSTER.endpoints_in(list));
        config.session_timeout = Self::CLUSTER.ttl();
        config.tick_time = Some(TestCluster::ZOOKEEPER_TICK_TIME);
        config
    }
}
