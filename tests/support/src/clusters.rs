//! Where the test clusters are: one place for every test and bench. The defaults are the
//! loopback clusters of `tests/cluster/cluster up` (and the ports docker-compose.yml
//! publishes); `tests/cluster/cluster env` prints the variables that point elsewhere.

use std::fmt::Display;

use elect_core::config::Endpoint;

/// The etcd members' client endpoints, `host:port,…` (`ELECT_TEST_ETCD_ENDPOINTS`).
pub fn etcd_endpoints() -> String {
    TestCluster::Etcd.addresses()
}

/// The ZooKeeper connect string, `host:port,…` (`ELECT_TEST_ZK_CONNECT`).
pub fn zookeeper_connect() -> String {
    TestCluster::Zookeeper.addresses()
}

/// The Consul agents' HTTP addresses, `host:port,…` (`ELECT_TEST_CONSUL_ADDRS`).
pub fn consul_addresses() -> String {
    TestCluster::Consul.addresses()
}

/// One of the three test clusters: where it is, and how a test that cannot reach it says how
/// to start it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TestCluster {
    Etcd,
    Consul,
    Zookeeper,
}

impl TestCluster {
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
        let (name, script) = match self {
            TestCluster::Etcd => ("etcd cluster", "etcd"),
            TestCluster::Consul => ("Consul cluster", "consul"),
            TestCluster::Zookeeper => ("ZooKeeper ensemble", "zookeeper"),
        };
        result.unwrap_or_else(|error| {
            panic!(
                "no {name} at {}: {error}\n\
                 start one with `tests/cluster/cluster up {script}` (or run `tests/run`), \
                 or set {}",
                self.addresses(),
                self.variable()
            )
        })
    }
}
