//! What the etcd tests share: the cluster's endpoints, `etcdctl`, and the cluster script.

#![allow(dead_code)] // each test binary uses its own part

use std::process::Command;
use std::time::Duration;

use elect_core::config::EtcdConfig;
use elect_etcd::EtcdElector;
use elect_test_support::clusters::TestCluster;

/// The lease TTL of test electors: etcd's minimum with the test cluster's 1 s election timeout.
pub const TTL: Duration = TestCluster::Etcd.ttl();

pub fn endpoints() -> String {
    TestCluster::Etcd.addresses()
}

pub fn config() -> EtcdConfig {
    config_for(&endpoints())
}

/// The test config, aimed at `list` (comma-separated `host:port`, e.g. a proxy's).
pub fn config_for(list: &str) -> EtcdConfig {
    let mut config = EtcdConfig::new(TestCluster::Etcd.endpoints_in(list));
    config.ttl = TTL;
    config
}

/// A connected elector, or a failure that says how to start the cluster.
pub async fn connect() -> EtcdElector {
    TestCluster::Etcd.connected(EtcdElector::connect(&config()).await)
}

/// `etcdctl` from the Debian package the cluster script unpacked.
pub fn etcdctl() -> Command {
    let mut command = Command::new(elect_test_support::server_bin("etcdctl"));
    command.arg(format!("--endpoints={}", endpoints()));
    command
}
