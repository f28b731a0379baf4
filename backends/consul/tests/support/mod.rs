//! What the Consul tests share: the agents' addresses, `consul`, HTTP to an agent, the cluster script.

#![allow(dead_code)] // each test binary uses its own part

use std::process::Command;
use std::time::Duration;

use elect_consul::ConsulElector;
use elect_core::config::ConsulConfig;
use elect_test_support::clusters::TestCluster;

/// Consul's minimum session TTL.
pub const TTL: Duration = TestCluster::Consul.ttl();

pub fn addresses() -> String {
    TestCluster::Consul.addresses()
}

pub fn config() -> ConsulConfig {
    config_for(&addresses())
}

/// The test config, aimed at `list` (comma-separated `host:port`, e.g. a proxy's).
pub fn config_for(list: &str) -> ConsulConfig {
    let mut config = ConsulConfig::new(TestCluster::Consul.endpoints_in(list));
    config.ttl = TTL;
    config
}

/// A connected elector, or a failure that says how to start the cluster.
pub async fn connect() -> ConsulElector {
    TestCluster::Consul.connected(ConsulElector::connect(&config()).await)
}

/// One HTTP request to the first agent: `(status, body)`.
pub fn http(method: &str, path: &str) -> (u16, String) {
    let address = addresses().split(',').next().unwrap().to_owned();
    elect_test_support::http(&address, method, path, &[], "")
}

/// `consul` from the Debian package the cluster script unpacked, aimed at the first agent.
pub fn consul() -> Command {
    let mut command = Command::new(elect_test_support::server_bin("consul"));
    command.env("CONSUL_HTTP_ADDR", addresses().split(',').next().unwrap());
    command
}
