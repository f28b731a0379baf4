//! A 3-member cluster with every member in a network namespace of its own
//! (`ELECT_CLUSTER_NET=netns tests/cluster/cluster …`), so that a test can cut a member from its
//! PEERS while clients still reach it, and heal it again.
//!
//! [`NetnsCluster::up`] takes a machine-wide lock for its backend (namespaces and the
//! 10.213.0.0/16 addresses are machine-wide; tests run in parallel threads and in several test
//! binaries), starts the cluster from scratch, and takes it down again on drop — also when the
//! test panics — removing every namespace, veth and bridge it made. Test processes stay in the
//! root namespace and reach each member at its client address.
//!
//! A missing prerequisite (not root, no `ip`) is a failure that says what to do, never a skip.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};

/// `up` may have to install the servers first (a download from Debian's archive).
const UP_TIMEOUT: Duration = Duration::from_secs(900);
/// Any other call of the script (`down` stops members, SIGKILL after 10 s each).
const CALL_TIMEOUT: Duration = Duration::from_secs(120);
/// How long `up` waits for another test's netns cluster of the same backend to go.
const LOCK_TIMEOUT: Duration = Duration::from_secs(1800);
/// How long [`NetnsCluster::leader`] waits for a leader (an election takes ~1–4 s here).
const LEADER_TIMEOUT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(100);

/// The backends the script knows, by the names it prints.
const BACKENDS: [&str; 3] = ["etcd", "consul", "zookeeper"];

/// A running netns cluster of one backend; taken down on drop. See the module docs.
///
/// Members are numbered 1, 2, 3 as in the script.
#[derive(Debug)]
pub struct NetnsCluster {
    backend: &'static str,
    endpoints: Vec<String>,
    /// Set once `down` ran, so that drop does not run it again.
    down: bool,
    /// Released after `down` (fields drop after `Drop::drop`).
    _lock: Flock<File>,
}

impl NetnsCluster {
    /// Starts a fresh 3-member cluster of `backend` (`etcd`, `consul`, `zookeeper` or `zk`)
    /// in network namespaces and waits until all three members are healthy. Blocks while
    /// another test (in any process) has a netns cluster of the same backend.
    pub fn up(backend: &str) -> NetnsCluster {
        let backend = canonical(backend);
        prerequisites();
        let lock = lock(backend);
        // The guard exists before `up` runs, so that a failed `up` is taken down too.
        let mut cluster = NetnsCluster {
            backend,
            endpoints: Vec::new(),
            down: false,
            _lock: lock,
        };
        let up = crate::script::run_cluster_script(
            &[("ELECT_CLUSTER_NET", "netns")],
            &["up", backend],
            UP_TIMEOUT,
        );
        assert!(
            up.ok(),
            "{backend}: the netns cluster did not come up (servers come from \
             `tests/cluster/cluster install`)\n{}",
            up.describe()
        );
        let endpoints = cluster.script(&["endpoints", backend]);
        cluster.endpoints = endpoints.lines().map(str::to_owned).collect();
        assert_eq!(
            cluster.endpoints.len(),
            3,
            "`endpoints {backend}` printed {endpoints:?}"
        );
        cluster
    }

    /// `etcd`, `consul` or `zookeeper`.
    pub fn backend(&self) -> &'static str {
        self.backend
    }

    /// The members' client addresses (`"10.213.3.1:2181"`), member 1 first.
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// Member `member`'s client address (1, 2 or 3).
    pub fn endpoint(&self, member: usize) -> &str {
        assert!((1..=3).contains(&member), "no member {member}");
        &self.endpoints[member - 1]
    }

    /// The client addresses of the members other than `member`.
    pub fn endpoints_except(&self, member: usize) -> Vec<String> {
        self.others(member)
            .into_iter()
            .map(|m| self.endpoint(m).to_owned())
            .collect()
    }

    /// The two members other than `member`, in order.
    pub fn others(&self, member: usize) -> Vec<usize> {
        assert!((1..=3).contains(&member), "no member {member}");
        (1..=3).filter(|&m| m != member).collect()
    }

    /// The cluster's own (raft/zab) leader, 1..=3; waits up to 30 s for one.
    pub fn leader(&self) -> usize {
        let end = Instant::now() + LEADER_TIMEOUT;
        loop {
            let run = crate::script::run_cluster_script(
                &[("ELECT_CLUSTER_NET", "netns")],
                &["leader", self.backend],
                CALL_TIMEOUT,
            );
            if run.ok() {
                let leader = run
                    .stdout
                    .trim()
                    .parse()
                    .ok()
                    .filter(|l| (1..=3).contains(l));
                return leader.unwrap_or_else(|| {
                    panic!("`leader` printed no member index\n{}", run.describe())
                });
            }
            assert!(
                Instant::now() < end,
                "{}: no leader within {LEADER_TIMEOUT:?}\n{}",
                self.backend,
                run.describe()
            );
            thread::sleep(POLL);
        }
    }

    /// Cuts `member` from both peers, both ways; clients still reach it.
    pub fn isolate(&self, member: usize) {
        self.script(&["isolate", self.backend, &member.to_string()]);
    }

    /// Cuts `a` and `b` from each other, both ways.
    pub fn cut(&self, a: usize, b: usize) {
        self.script(&["cut", self.backend, &a.to_string(), &b.to_string()]);
    }

    /// Drops what `from` sends to `to` (TCP between them stops both ways: `from`'s replies are
    /// lost; datagrams from `to` still arrive).
    pub fn cut_one_way(&self, from: usize, to: usize) {
        let (from, to) = (from.to_string(), to.to_string());
        self.script(&["cut", self.backend, &from, &to, "--one-way"]);
    }

    /// Cuts the two members other than `member` from each other; `member` sees both
    /// (Jepsen's bridge).
    pub fn bridge(&self, member: usize) {
        self.script(&["bridge", self.backend, &member.to_string()]);
    }

    /// Undoes every cut.
    pub fn heal(&self) {
        self.script(&["heal", self.backend]);
    }

    /// Undoes the cuts between `a` and `b`.
    pub fn heal_pair(&self, a: usize, b: usize) {
        self.script(&["heal", self.backend, &a.to_string(), &b.to_string()]);
    }

    /// The cuts in place, as `(from, to)`: what `from` sends to `to` is dropped.
    pub fn cuts(&self) -> Vec<(usize, usize)> {
        self.script(&["cuts", self.backend])
            .lines()
            .map(|l| {
                let (from, to) = l
                    .split_once(" -> ")
                    .unwrap_or_else(|| panic!("`cuts` printed {l:?}"));
                (from.parse().unwrap(), to.parse().unwrap())
            })
            .collect()
    }

    /// Whether `from` opens a TCP connection to `to`'s peer port now (real traffic over the
    /// peer link, within 2 s).
    pub fn reaches(&self, from: usize, to: usize) -> bool {
        let run = crate::script::run_cluster_script(
            &[("ELECT_CLUSTER_NET", "netns")],
            &["reach", self.backend, &from.to_string(), &to.to_string()],
            CALL_TIMEOUT,
        );
        assert!(run.status.is_some(), "{}", run.describe());
        run.ok()
    }

    /// Waits until all three members are healthy with one leader (e.g. after [`heal`]).
    ///
    /// [`heal`]: NetnsCluster::heal
    pub fn wait_all(&self, within: Duration) {
        let secs = within.as_secs().max(1).to_string();
        self.script(&["wait", self.backend, "all", &secs]);
    }

    /// Waits until a majority is healthy with one leader.
    pub fn wait_quorum(&self, within: Duration) {
        let secs = within.as_secs().max(1).to_string();
        self.script(&["wait", self.backend, "quorum", &secs]);
    }

    /// Runs any other command of the script in netns mode (`status`, `kill`, `start`,
    /// `freeze`, `thaw`, …); panics with its output if it fails; returns its stdout.
    pub fn script(&self, args: &[&str]) -> String {
        let run = crate::script::run_cluster_script(
            &[("ELECT_CLUSTER_NET", "netns")],
            args,
            CALL_TIMEOUT,
        );
        assert!(run.ok(), "{}", run.describe());
        run.stdout
    }
}

impl NetnsCluster {
    /// Takes the cluster down now (what drop does): stops the members and removes every
    /// namespace, veth and bridge, then checks that none is left — still holding the lock, so
    /// no other test's cluster can be mistaken for a leftover. Panics if something is left.
    pub fn down(mut self) {
        if let Err(message) = self.take_down() {
            panic!("{message}");
        }
    }

    fn take_down(&mut self) -> Result<(), String> {
        if std::mem::replace(&mut self.down, true) {
            return Ok(());
        }
        let down = crate::script::run_cluster_script(
            &[("ELECT_CLUSTER_NET", "netns")],
            &["down", self.backend],
            CALL_TIMEOUT,
        );
        let left = leftovers(self.backend);
        if down.ok() && left.is_empty() {
            return Ok(());
        }
        Err(format!(
            "{}: taking the netns cluster down failed; left behind: {left:?}\n{}",
            self.backend,
            down.describe()
        ))
    }
}

impl Drop for NetnsCluster {
    fn drop(&mut self) {
        if let Err(message) = self.take_down() {
            if thread::panicking() {
                eprintln!("{message}");
            } else {
                panic!("{message}");
            }
        }
    }
}

/// The network namespaces of `backend`'s netns cluster that exist now (`elect-zk-1`, …).
pub fn leftovers(backend: &str) -> Vec<String> {
    let tag = match canonical(backend) {
        "zookeeper" => "zk",
        other => other,
    };
    let prefix = format!("elect-{tag}-");
    let namespaces = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let links = Command::new("ip")
        .args(["-o", "link", "show"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let link_prefix = format!("elect-{tag}");
    namespaces
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(&prefix))
        .map(|n| format!("netns {n}"))
        .chain(
            links
                .lines()
                .filter_map(|l| l.split(": ").nth(1))
                .map(|n| n.split('@').next().unwrap_or(n))
                .filter(|n| n.starts_with(&link_prefix))
                .map(|n| format!("link {n}")),
        )
        .collect()
}

/// A ZooKeeper four-letter word (`srvr`, `mntr`, `cons`, …) to `address`; each of connect,
/// write and read bounded by `timeout`.
pub fn four_letter_word(address: &str, word: &str, timeout: Duration) -> std::io::Result<String> {
    let socket: SocketAddr = address
        .parse()
        .map_err(|e| std::io::Error::other(format!("{address}: {e}")))?;
    let mut stream = TcpStream::connect_timeout(&socket, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.write_all(word.as_bytes())?;
    let mut out = String::new();
    stream.read_to_string(&mut out)?;
    Ok(out)
}

fn canonical(backend: &str) -> &'static str {
    match backend {
        "zk" => "zookeeper",
        b => BACKENDS
            .into_iter()
            .find(|&known| known == b)
            .unwrap_or_else(|| panic!("unknown backend {b:?} (etcd, consul, zookeeper)")),
    }
}

fn prerequisites() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .unwrap_or("?");
    assert!(
        euid == "0",
        "the netns partition tests make network namespaces, veths and bridges, which needs \
         root (effective uid here: {euid}); run them as root, e.g. \
         `sudo -E env PATH=$PATH cargo test …`, on a machine you may change the network of"
    );
    let ip = Command::new("ip").arg("-V").output();
    assert!(
        ip.as_ref().is_ok_and(|o| o.status.success()),
        "the netns partition tests need iproute2's `ip` on PATH ({ip:?}): \
         apt-get install iproute2"
    );
}

/// The machine-wide lock of `backend`'s netns cluster, held for the guard's life.
fn lock(backend: &str) -> Flock<File> {
    let dir = ["/run/lock", "/var/lock"]
        .into_iter()
        .map(PathBuf::from)
        .find(|d| d.is_dir())
        .unwrap_or_else(std::env::temp_dir);
    let path = dir.join(format!("elect-netns-{backend}.lock"));
    let end = Instant::now() + LOCK_TIMEOUT;
    let mut said = false;
    let mut file = File::create(&path)
        .unwrap_or_else(|e| panic!("cannot open the lock file {}: {e}", path.display()));
    loop {
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => return lock,
            Err((f, nix::errno::Errno::EWOULDBLOCK)) => file = f,
            Err((_, e)) => panic!("flock {}: {e}", path.display()),
        }
        if !said {
            eprintln!(
                "waiting for {} (another test has a netns {backend} cluster)",
                path.display()
            );
            said = true;
        }
        assert!(
            Instant::now() < end,
            "{} still held after {LOCK_TIMEOUT:?}",
            path.display()
        );
        thread::sleep(POLL);
    }
}
