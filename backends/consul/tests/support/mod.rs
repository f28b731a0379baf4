//! What the Consul tests share: the agents' addresses, `consul`, raw HTTP, the cluster script.

#![allow(dead_code)] // each test binary uses its own part

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use elect_consul::ConsulElector;
use elect_core::config::{ConsulConfig, Endpoint};

/// Consul's minimum session TTL.
pub const TTL: Duration = Duration::from_secs(10);

pub fn addresses() -> String {
    std::env::var("ELECT_TEST_CONSUL_ADDRS")
        .unwrap_or_else(|_| "127.0.0.1:8500,127.0.0.1:8510,127.0.0.1:8520".to_owned())
}

pub fn config() -> ConsulConfig {
    let endpoints: Vec<Endpoint> = addresses()
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
    let mut stream = std::net::TcpStream::connect(&address).expect("connect to an agent");
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: {address}\r\nContent-Length: 0\r\n\r\n"
    )
    .unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    let status = reply
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = reply
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `consul` from the Debian package the cluster script unpacked, aimed at the first agent.
pub fn consul() -> Command {
    let bin = std::env::var("ELECT_TEST_SERVERS_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo().join(".servers/root/usr/bin"));
    let path = bin.join("consul");
    assert!(
        path.exists(),
        "{} is missing: run `tests/cluster/cluster install`",
        path.display()
    );
    let mut command = Command::new(path);
    command.env("CONSUL_HTTP_ADDR", addresses().split(',').next().unwrap());
    command
}

/// Runs the cluster script (`kill`, `start`, `freeze`, `thaw`, `leader`, `wait`, …).
pub fn cluster(args: &[&str]) -> Output {
    let script = std::env::var("ELECT_TEST_CLUSTER")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo().join("tests/cluster/cluster"));
    let output = Command::new(&script)
        .args(args)
        .output()
        .expect("run the cluster script");
    assert!(
        output.status.success(),
        "{} {args:?} failed: {}{}",
        script.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}
