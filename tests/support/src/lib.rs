//! What elect's test suites share: the real-cluster script, the server binaries it unpacked,
//! unique election names, one raw HTTP request, the check that leadership intervals never
//! overlap, and a TCP [`proxy`] that cuts, slows or drops one client's links.
//!
//! Every path is found from this crate's own place in the repository, or from the variables
//! `tests/cluster/cluster env` prints (`ELECT_TEST_CLUSTER`, `ELECT_TEST_SERVERS_BIN`,
//! `ELECT_TEST_PYTHON`). A missing server is a failure that says how to get it, never a skip.
//!
//! [`NetnsCluster`] runs a cluster with every member in a network namespace of its own, for
//! tests that cut members from their peers (see the [`netns`] module).

pub mod cli;
pub mod clusters;
pub mod faults;
pub mod herd;
pub mod pki;
pub mod process;
pub mod proxy;
pub mod script;

use std::fmt::Debug;
use std::io::{Read, Write};
use std::net::ToSocketAddrs;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

pub mod netns;
pub use netns::NetnsCluster;

/// The repository's root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// One HTTP/1.0 request to a server's own HTTP port (Consul's API, etcd's `/metrics`), with
/// extra headers and a body: `(status, body)`. Panics if the server cannot be reached; see
/// [`try_http`] for the fallible form.
pub fn http(
    address: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    try_http(
        address,
        method,
        path,
        headers,
        body,
        Duration::from_secs(30),
    )
    .unwrap_or_else(|e| panic!("{method} {path} to {address}: {e}"))
}

/// [`http`] as a `Result`, each of connect, write and read bounded by `timeout`.
pub fn try_http(
    address: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
    timeout: Duration,
) -> std::io::Result<(u16, String)> {
    let socket = address
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::other(format!("{address} resolves to nothing")))?;
    let mut stream = std::net::TcpStream::connect_timeout(&socket, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut request = format!("{method} {path} HTTP/1.0\r\nHost: {address}\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(request.as_bytes())?;
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply)?;
    let reply = String::from_utf8_lossy(&reply);
    let status = reply
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = reply
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// Runs the cluster script (`up`, `kill`, `start`, `freeze`, `thaw`, `leader`, `wait`, …);
/// panics with its output if it fails.
pub fn cluster(args: &[&str]) -> Output {
    process::output_ok(Command::new(script::script_path()).args(args))
}

/// A server binary (`etcd`, `etcdctl`, `consul`) from Debian's packages, unpacked by
/// `tests/cluster/cluster install`.
pub fn server_bin(name: &str) -> PathBuf {
    let bin = std::env::var("ELECT_TEST_SERVERS_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo().join(".servers/root/usr/bin"));
    let path = bin.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `tests/cluster/cluster install`",
        path.display()
    );
    path
}

/// A Consul agent of a test's own, in dev mode on 127.0.0.1, with the extra HCL `config`
/// (its ports, ACLs, TLS); killed when dropped. `what` names it in a failure.
pub fn consul_dev_agent(config: &std::path::Path, what: &str) -> process::KillOnDrop {
    let child = Command::new(server_bin("consul"))
        .args([
            "agent",
            "-dev",
            "-bind",
            "127.0.0.1",
            "-client",
            "127.0.0.1",
        ])
        .args(["-log-level", "error"])
        .arg(format!("-config-file={}", config.display()))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("start a Consul agent {what}: {e}"));
    process::KillOnDrop(child)
}

/// A `java` command that runs ZooKeeper's server classes (`tests/cluster/cluster install`
/// unpacked them), with the Netty jars its TLS listener needs besides.
pub fn zookeeper_java() -> Command {
    let bin = std::env::var("ELECT_TEST_SERVERS_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo().join(".servers/root/usr/bin"));
    // <servers>/root/usr/bin
    let servers = bin
        .ancestors()
        .nth(3)
        .expect("the servers' folder holds root/usr/bin")
        .to_path_buf();
    let classpath_file = servers.join("zookeeper.classpath");
    let classpath = std::fs::read_to_string(&classpath_file).unwrap_or_else(|e| {
        panic!(
            "{}: {e}: run `tests/cluster/cluster install`",
            classpath_file.display()
        )
    });
    let java = servers.join("root/usr/share/java");
    let netty = [
        "netty-codec.jar",
        "netty-resolver.jar",
        "netty-transport-native-unix-common.jar",
    ]
    .map(|jar| java.join(jar).display().to_string())
    .join(":");
    let mut command = Command::new("java");
    command
        .args([
            "-Xms32m",
            "-Xmx256m",
            "-XX:+UseSerialGC",
            "-Djava.net.preferIPv4Stack=true",
        ])
        .arg("-cp")
        .arg(format!("{}:{netty}", classpath.trim()));
    command
}

/// The Python of `.servers/venv`, with kazoo.
pub fn python() -> PathBuf {
    let python = std::env::var("ELECT_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo().join(".servers/venv/bin/python"));
    let ok = Command::new(&python)
        .args(["-c", "import kazoo"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "{} cannot import kazoo: run `tests/cluster/cluster install`",
        python.display()
    );
    python
}

/// The output of the first of `tasks` to finish, which leaves `tasks`; the others go on.
/// Panics if that task panicked.
pub async fn first_finished<T>(tasks: &mut Vec<tokio::task::JoinHandle<T>>) -> T {
    let (output, _, others) = futures::future::select_all(std::mem::take(tasks)).await;
    *tasks = others;
    output.expect("the task panicked")
}

/// `<prefix>-<8 hex digits>`: a fresh election name for each test run.
pub fn unique_name(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970")
        .subsec_nanos();
    format!(
        "{prefix}-{:08x}",
        nanos ^ std::process::id().rotate_left(16)
    )
}

/// One side's leadership, as its observer logged it.
#[derive(Debug, Clone, Copy)]
pub struct Interval<T> {
    /// Who led.
    pub who: &'static str,
    /// When it started leading.
    pub from: T,
    /// When it stopped.
    pub to: T,
}

impl<T> Interval<T> {
    /// `who` led from `from` to `to`.
    pub fn new(who: &'static str, from: T, to: T) -> Self {
        Interval { who, from, to }
    }
}

/// Panics if two intervals overlap: two leaders at once.
pub fn assert_no_overlap<T, Since>(intervals: &[Interval<T>])
where
    T: PartialOrd + Copy + Debug + std::ops::Sub<Output = Since>,
    Since: Debug,
{
    // The log, from the first interval's start, shows the handovers' gaps.
    if let Some(first) = intervals.first() {
        for i in intervals {
            eprintln!(
                "{:>12} led from {:?} to {:?}",
                i.who,
                i.from - first.from,
                i.to - first.from
            );
        }
    }
    for (i, a) in intervals.iter().enumerate() {
        for b in &intervals[i + 1..] {
            assert!(
                a.to <= b.from || b.to <= a.from,
                "two leaders at once: {a:?} and {b:?}"
            );
        }
    }
}
