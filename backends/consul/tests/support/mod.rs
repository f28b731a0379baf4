//! What the Consul tests share: the agents' addresses, `consul`, HTTP to an agent, the cluster script.

#![allow(dead_code)] // each test binary uses its own part

use std::process::Command;
use std::time::Duration;

use elect_consul::ConsulElector;
use elect_core::config::{ConsulConfig, Endpoint};

/// Consul's minimum session TTL.
pub const TTL: Duration = Duration::from_secs(10);

pub fn addresses() -> String {
    elect_test_support::clusters::consul_addresses()
}

pub fn config() -> ConsulConfig {
    config_for(&addresses())
}

/// The test config, aimed at `list` (comma-separated `host:port`, e.g. a proxy's).
pub fn config_for(list: &str) -> ConsulConfig {
    let endpoints: Vec<Endpoint> = list
        .split(',')
        .map(|e| {
            e.parse()
                .expect("ELECT_TEST_CONSUL_ADDRS holds host:port items")
        })
        .collect();
    let mut config = ConsulConfig::new(endpoints);
    config.ttl = TTL;
    config
}

/// A connected elector, or a failure that says how to start the cluster.
pub async fn connect() -> ConsulElector {
    match ConsulElector::connect(&config()).await {
        Ok(elector) => elector,
        Err(error) => panic!(
            "no Consul cluster at {}: {error}\n\
             start one with `tests/cluster/cluster up consul` (or run `tests/run`), \
             or set ELECT_TEST_CONSUL_ADDRS",
            addresses()
        ),
    }
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
