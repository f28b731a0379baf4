//! What the Consul tests share: a connected elector, `consul`, HTTP to an agent, the cluster
//! script. The test configuration is `ConsulConfig::for_tests()`
//! (`elect_test_support::clusters::TestConfig`).

#![allow(dead_code)] // each test binary uses its own part

use std::process::Command;
use std::time::Duration;

use elect_consul::ConsulElector;
use elect_core::config::ConsulConfig;
use elect_test_support::clusters::{TestCluster, TestConfig};

/// Consul's minimum session TTL.
pub const TTL: Duration = TestCluster::Consul.ttl();

/// A connected elector, or a failure that says how to start the cluster.
pub async fn connect() -> ConsulElector {
    TestCluster::Consul.connected(ConsulElector::connect(&ConsulConfig::for_tests()).await)
}

/// One HTTP request to the first agent: `(status, body)`.
pub fn http(method: &str, path: &str) -> (u16, String) {
    elect_test_support::http(&first_agent(), method, path, &[], "")
}

/// `consul` from the Debian package the cluster script unpacked, aimed at the first agent.
pub fn consul() -> Command {
    let mut command = Command::new(elect_test_support::server_bin("consul"));
    command.env("CONSUL_HTTP_ADDR", first_agent());
    command
}

/// The first agent's HTTP address, `host:port`.
fn first_agent() -> String {
    let addresses = TestCluster::Consul.addresses();
    addresses.split(',').next().unwrap().to_owned()
}
