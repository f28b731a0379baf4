//! Where the test clusters are: one place for every test and bench. The defaults are the
//! loopback clusters of `tests/cluster/cluster up` (and the ports docker-compose.yml
//! publishes); `tests/cluster/cluster env` prints the variables that point elsewhere.

/// The etcd members' client endpoints, `host:port,…` (`ELECT_TEST_ETCD_ENDPOINTS`).
pub fn etcd_endpoints() -> String {
    from_env(
        "ELECT_TEST_ETCD_ENDPOINTS",
        "127.0.0.1:2379,127.0.0.1:22379,127.0.0.1:32379",
    )
}

/// The ZooKeeper connect string, `host:port,…` (`ELECT_TEST_ZK_CONNECT`).
pub fn zookeeper_connect() -> String {
    from_env(
        "ELECT_TEST_ZK_CONNECT",
        "127.0.0.1:2181,127.0.0.1:2182,127.0.0.1:2183",
    )
}

/// The Consul agents' HTTP addresses, `host:port,…` (`ELECT_TEST_CONSUL_ADDRS`).
pub fn consul_addresses() -> String {
    from_env(
        "ELECT_TEST_CONSUL_ADDRS",
        "127.0.0.1:8500,127.0.0.1:8510,127.0.0.1:8520",
    )
}

fn from_env(variable: &str, default: &str) -> String {
    std::env::var(variable).unwrap_or_else(|_| default.to_owned())
}
