//! What the etcd tests share: a connected elector, `etcdctl`, and the cluster script. The
//! test configuration is `EtcdConfig::for_tests()` (`elect_test_support::clusters::TestConfig`).

#![allow(dead_code)] // each test binary uses its own part

use std::process::Command;
use std::time::Duration;

use elect_core::config::EtcdConfig;
use elect_etcd::EtcdElector;
use elect_test_support::clusters::{TestCluster, TestConfig};

/// The lease TTL of test electors: etcd's minimum with the test cluster's 1 s election timeout.
pub const TTL: Duration = TestCluster::Etcd.ttl();

/// A connected elector, or a failure that says how to start the cluster.
pub async fn connect() -> EtcdElector {
    TestCluster::Etcd.connected(EtcdElector::connect(&EtcdConfig::for_tests()).await)
}

/// `etcdctl` from the Debian package the cluster script unpacked.
pub fn etcdctl() -> Command {
    let mut command = Command::new(elect_test_support::server_bin("etcdctl"));
    command.arg(format!("--endpoints={}", TestCluster::Etcd.addresses()));
    command
}
