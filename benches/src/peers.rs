//! The candidates that run as processes: the peer tools (`etcdctl elect`, `etcdctl lock`,
//! kazoo's `Election`, `consul lock`) and our own `elect run`, each driven through its
//! standard input, signals and the line it prints once it leads.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use elect::ElectionName;
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::time::Instant;

use crate::cluster::Backend;

/// The programs the benchmark runs, found before anything is measured.
#[derive(Debug, Clone)]
pub struct Bins {
    /// `etcdctl` from the Debian package the cluster script unpacked.
    pub etcdctl: PathBuf,
    /// `consul`, the same.
    pub consul: PathBuf,
    /// The Python of `.servers/venv`, with kazoo.
    pub python: PathBuf,
    /// Our `elect`, beside this binary in the cargo target folder.
    pub elect: PathBuf,
    /// `flock(1)` from util-linux, the file backend's peer.
    pub flock: PathBuf,
}

impl Bins {
    /// Finds every program; a missing one is an error that says how to get it.
    pub fn find() -> Result<Bins> {
        let repo = elect_test_support::repo();
        let servers = std::env::var("ELECT_TEST_SERVERS_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|_| repo.join(".servers/root/usr/bin"));
        let server = |name: &str| -> Result<PathBuf> {
            let path = servers.join(name);
            if !path.exists() {
                bail!(
                    "{} is missing: run `tests/cluster/cluster install` (it unpacks etcd, \
                     etcdctl and consul from Debian's archive into .servers/)",
                    path.display()
                );
            }
            Ok(path)
        };
        let python = std::env::var("ELECT_TEST_PYTHON")
            .map(PathBuf::from)
            .unwrap_or_else(|_| repo.join(".servers/venv/bin/python"));
        let kazoo = std::process::Command::new(&python)
            .args(["-c", "import kazoo.recipe.election"])
            .status()
            .is_ok_and(|s| s.success());
        if !kazoo {
            bail!(
                "{} cannot import kazoo: run `tests/cluster/cluster install` (it makes \
                 .servers/venv with kazoo from PyPI)",
                python.display()
            );
        }
        let exe = std::env::current_exe().context("where this binary is")?;
        let elect = exe
            .parent()
            .ok_or_else(|| anyhow!("no folder for {}", exe.display()))?
            .join("elect");
        if !elect.exists() {
            bail!(
                "{} is missing: build it beside the bench binary with \
                 `cargo build --release -p elect --bins -p elect-bench` (or run benches/run)",
                elect.display()
            );
        }
        let flock = ["/usr/bin/flock", "/bin/flock"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .ok_or_else(|| {
                anyhow!("flock(1) is missing: install util-linux (apt-get install util-linux)")
            })?;
        Ok(Bins {
            etcdctl: server("etcdctl")?,
            consul: server("consul")?,
            python,
            elect,
            flock,
        })
    }
}

/// One candidate of a tool, elected by the tool's own recipe.
#[derive(Debug, Clone, PartialEq)]
pub enum Tool {
    /// `etcdctl elect NAME PROPOSAL`: Go's `concurrency.Election`, session TTL 60 s (fixed:
    /// the command has no TTL flag). Resigns on SIGINT.
    EtcdctlElect,
    /// `etcdctl lock --ttl=N NAME`: Go's `concurrency.Mutex`, the same session code with a
    /// TTL flag. Unlocks on SIGINT.
    EtcdctlLock {
        /// Session TTL in seconds.
        ttl: u64,
    },
    /// kazoo's `Election(path, id).run(func)` with `KazooClient(timeout=…)`; releases when a
    /// line arrives on its standard input.
    Kazoo {
        /// Requested session timeout in seconds.
        timeout: u64,
    },
    /// `consul lock NAME CHILD` (Go API lock: session TTL 15 s, lock delay 15 s, both
    /// fixed), CHILD the [wrapped command](wrapped_command).
    ConsulLock,
    /// `etcdctl lock --ttl=N NAME CHILD…`: Go's `concurrency.Mutex` running the [wrapped
    /// command](wrapped_command) while it holds the lock.
    EtcdctlLockRun {
        /// Session TTL in seconds.
        ttl: u64,
    },
    /// A kazoo `Lock(path, id)` that runs the [wrapped command](wrapped_command) while held,
    /// with `KazooClient(timeout=…)`.
    KazooLockRun {
        /// Requested session timeout in seconds.
        timeout: u64,
    },
    /// Our `elect run --url URL [--contain MODE] -- CHILD`, CHILD the [wrapped
    /// command](wrapped_command).
    ElectRun {
        /// The store.
        backend: Backend,
        /// The URL's query (the TTL).
        query: String,
        /// `--contain`, if not the default.
        contain: Option<&'static str>,
    },
}

/// The command every wrapping tool runs while it leads: it says `leading` and ends once its
/// FIFO is written (then the tool lets go by itself).
fn wrapped_command(fifo: &Path) -> String {
    format!("echo leading; read x < {}", fifo.display())
}

impl Tool {
    /// A short name for the report.
    pub fn name(&self) -> String {
        match self {
            Tool::EtcdctlElect => "etcdctl elect (TTL 60 s)".to_owned(),
            Tool::EtcdctlLock { ttl } => format!("etcdctl lock --ttl={ttl}"),
            Tool::Kazoo { timeout } => format!("kazoo Election (timeout {timeout} s)"),
            Tool::ConsulLock => "consul lock (TTL 15 s, lock delay 15 s)".to_owned(),
            Tool::EtcdctlLockRun { ttl } => format!("etcdctl lock --ttl={ttl} NAME CMD"),
            Tool::KazooLockRun { timeout } => {
                format!("kazoo Lock running CMD (timeout {timeout} s)")
            }
            Tool::ElectRun { contain: None, .. } => "elect run".to_owned(),
            Tool::ElectRun {
                contain: Some(mode),
                ..
            } => format!("elect run --contain {mode}"),
        }
    }

    /// How often the tool renews its session while it leads: Go's `concurrency.Session`
    /// every TTL/3, kazoo pings every timeout/3, Consul's Go API every TTL/2.
    pub fn renew_every(&self) -> Duration {
        match self {
            Tool::EtcdctlElect => Duration::from_secs(60) / 3,
            Tool::EtcdctlLock { ttl } | Tool::EtcdctlLockRun { ttl } => {
                Duration::from_secs(*ttl) / 3
            }
            Tool::Kazoo { timeout } | Tool::KazooLockRun { timeout } => {
                Duration::from_secs(*timeout) / 3
            }
            Tool::ConsulLock => Duration::from_secs(15) / 2,
            // Never a peer: our own rounds take the period from their TTL.
            Tool::ElectRun { .. } => Duration::ZERO,
        }
    }

    /// The longest a crash failover may take with the tool's settings, plus slack: the
    /// bound of every wait for a successor.
    pub fn failover_bound(&self) -> Duration {
        let secs = match self {
            Tool::EtcdctlElect => 60 + 10,
            Tool::EtcdctlLock { ttl } | Tool::EtcdctlLockRun { ttl } => ttl + 10,
            Tool::Kazoo { timeout } | Tool::KazooLockRun { timeout } => timeout + 10,
            Tool::ConsulLock => 2 * 15 + 15 + 15,
            Tool::ElectRun { .. } => 60,
        };
        Duration::from_secs(secs)
    }
}

/// A running candidate process.
#[derive(Debug)]
pub struct Proc {
    name: String,
    child: Child,
    pid: i32,
    lines: Lines<BufReader<ChildStdout>>,
    stdin: Option<ChildStdin>,
    fifo: Option<PathBuf>,
    stderr: PathBuf,
    any_line_leads: bool,
}

/// kazoo's `Election` recipe, one candidate: says `leading` once it runs, releases on a line.
const KAZOO_ONE: &str = r#"
import sys
from kazoo.client import KazooClient
hosts, path, ident, timeout = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
zk = KazooClient(hosts=hosts, timeout=timeout)
zk.start(timeout=30)
def lead():
    print("leading", flush=True)
    sys.stdin.readline()
zk.Election(path, ident).run(lead)
print("released", flush=True)
zk.stop()
"#;

/// kazoo's `Lock` recipe running a command while it holds the lock.
const KAZOO_LOCK_RUN: &str = r#"
import subprocess, sys
from kazoo.client import KazooClient
hosts, path, ident, timeout, command = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), sys.argv[5]
zk = KazooClient(hosts=hosts, timeout=timeout)
zk.start(timeout=30)
with zk.Lock(path, ident):
    subprocess.run(["sh", "-c", command])
zk.stop()
"#;

static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl Proc {
    /// Starts a candidate of `tool` in `election`; `dir` holds its FIFO and stderr log.
    pub fn spawn(tool: &Tool, election: &ElectionName, dir: &Path, bins: &Bins) -> Result<Proc> {
        Proc::spawn_with(tool, election, dir, bins, None)
    }

    /// The same, with Consul's agent address given (`consul lock` talks to one agent).
    pub fn spawn_with(
        tool: &Tool,
        election: &ElectionName,
        dir: &Path,
        bins: &Bins,
        consul_agent: Option<&str>,
    ) -> Result<Proc> {
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let stderr = dir.join(format!("proc-{n}.stderr"));
        let mut fifo = None;
        // The FIFO that ends the wrapped command, made for the tools that wrap one.
        let mut wrapped = || -> Result<String> {
            let path = dir.join(format!("proc-{n}.fifo"));
            nix::unistd::mkfifo(&path, nix::sys::stat::Mode::S_IRWXU)
                .with_context(|| format!("mkfifo {}", path.display()))?;
            let command = wrapped_command(&path);
            fifo = Some(path);
            Ok(command)
        };
        let mut any_line_leads = false;
        let mut command = match tool {
            Tool::EtcdctlElect => {
                any_line_leads = true;
                let mut c = Command::new(&bins.etcdctl);
                c.arg(format!("--endpoints={}", Backend::Etcd.hosts()))
                    .args(["elect", election.as_str(), &format!("p{n}")]);
                c
            }
            Tool::EtcdctlLock { ttl } => {
                any_line_leads = true;
                let mut c = Command::new(&bins.etcdctl);
                c.arg(format!("--endpoints={}", Backend::Etcd.hosts()))
                    .args(["lock", &format!("--ttl={ttl}"), election.as_str()]);
                c
            }
            Tool::Kazoo { timeout } => {
                let mut c = Command::new(&bins.python);
                c.args([
                    "-c",
                    KAZOO_ONE,
                    &Backend::Zookeeper.hosts(),
                    &format!("/{election}"),
                    &format!("p{n}"),
                    &timeout.to_string(),
                ]);
                c
            }
            Tool::ConsulLock => {
                let agent = consul_agent
                    .map(str::to_owned)
                    .unwrap_or_else(|| Backend::Consul.members()[0].clone());
                let mut c = Command::new(&bins.consul);
                c.args([
                    "lock",
                    &format!("-http-addr={agent}"),
                    election.as_str(),
                    &wrapped()?,
                ]);
                c
            }
            Tool::EtcdctlLockRun { ttl } => {
                let mut c = Command::new(&bins.etcdctl);
                c.arg(format!("--endpoints={}", Backend::Etcd.hosts()))
                    .args(["lock", &format!("--ttl={ttl}"), election.as_str()])
                    .args(["--", "sh", "-c", &wrapped()?]);
                c
            }
            Tool::KazooLockRun { timeout } => {
                let mut c = Command::new(&bins.python);
                c.args([
                    "-c",
                    KAZOO_LOCK_RUN,
                    &Backend::Zookeeper.hosts(),
                    &format!("/{election}"),
                    &format!("p{n}"),
                    &timeout.to_string(),
                    &wrapped()?,
                ]);
                c
            }
            Tool::ElectRun {
                backend,
                query,
                contain,
            } => {
                let mut c = Command::new(&bins.elect);
                c.args(["run", "--url", &backend.url(election, query)]);
                if let Some(mode) = contain {
                    c.args(["--contain", mode]);
                }
                c.args(["--id", &format!("run-{n}"), "--", "sh", "-c", &wrapped()?]);
                c
            }
        };
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(File::create(&stderr)?)
            .process_group(0)
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .with_context(|| format!("start {}", tool.name()))?;
        let pid = child
            .id()
            .ok_or_else(|| anyhow!("{} exited at once", tool.name()))? as i32;
        let lines = BufReader::new(child.stdout.take().expect("piped")).lines();
        let stdin = child.stdin.take();
        Ok(Proc {
            name: tool.name(),
            child,
            pid,
            lines,
            stdin,
            fifo,
            stderr,
            any_line_leads,
        })
    }

    fn stderr_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(8)..].join("\n")
    }

    /// Waits for the line that says it leads; returns when it was read.
    pub async fn leading(&mut self, within: Duration) -> Result<Instant> {
        let deadline = Instant::now() + within;
        loop {
            let line = tokio::time::timeout_at(deadline, self.lines.next_line())
                .await
                .map_err(|_| {
                    anyhow!(
                        "{} (pid {}) did not lead within {within:?}",
                        self.name,
                        self.pid
                    )
                })?
                .with_context(|| format!("read {}'s output", self.name))?;
            let at = Instant::now();
            match line {
                Some(line) if self.any_line_leads || line.trim() == "leading" => return Ok(at),
                Some(_) => continue,
                None => bail!(
                    "{} (pid {}) ended before it led; its stderr:\n{}",
                    self.name,
                    self.pid,
                    self.stderr_tail()
                ),
            }
        }
    }

    /// Tells the leader to let go the tool's own way (SIGINT for etcdctl, a line for kazoo,
    /// the child's FIFO for `consul lock`, SIGTERM for `elect run`); returns the instant
    /// just before the message went out.
    pub async fn resign(&mut self) -> Result<Instant> {
        if let Some(fifo) = &self.fifo {
            // The child opens its FIFO right after saying `leading`.
            let started = Instant::now();
            let fd = loop {
                match nix::fcntl::open(
                    fifo,
                    nix::fcntl::OFlag::O_WRONLY | nix::fcntl::OFlag::O_NONBLOCK,
                    nix::sys::stat::Mode::empty(),
                ) {
                    Ok(fd) => break fd,
                    Err(nix::errno::Errno::ENXIO) if started.elapsed() < Duration::from_secs(5) => {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    Err(e) => bail!("{}: open its FIFO: {e}", self.name),
                }
            };
            let at = Instant::now();
            nix::unistd::write(&fd, b"x\n")
                .with_context(|| format!("{}: write its FIFO", self.name))?;
            drop(fd);
            return Ok(at);
        }
        if self.name.starts_with("kazoo") {
            let stdin = self
                .stdin
                .as_mut()
                .ok_or_else(|| anyhow!("{}: no stdin", self.name))?;
            let at = Instant::now();
            stdin.write_all(b"release\n").await?;
            stdin.flush().await?;
            return Ok(at);
        }
        let signal = if self.name.starts_with("elect") {
            Signal::SIGTERM
        } else {
            Signal::SIGINT
        };
        let at = Instant::now();
        kill(Pid::from_raw(self.pid), signal).with_context(|| format!("signal {}", self.name))?;
        Ok(at)
    }

    /// SIGKILL to the process (for `consul lock`, to its whole group, child included: the
    /// crash of the host, not the child's own exit); returns the instant just before.
    pub fn kill(&mut self) -> Instant {
        let at = Instant::now();
        if self.fifo.is_some() {
            let _ = killpg(Pid::from_raw(self.pid), Signal::SIGKILL);
        } else {
            let _ = kill(Pid::from_raw(self.pid), Signal::SIGKILL);
        }
        at
    }

    /// Waits for the process to exit, up to `within`; kills it after that.
    pub async fn exit(&mut self, within: Duration) -> Result<()> {
        if tokio::time::timeout(within, self.child.wait())
            .await
            .is_err()
        {
            let _ = killpg(Pid::from_raw(self.pid), Signal::SIGKILL);
            let _ = self.child.wait().await;
            bail!(
                "{} (pid {}) did not exit within {within:?}",
                self.name,
                self.pid
            );
        }
        Ok(())
    }

    /// The process's resident memory (KiB) and thread count, from `/proc`.
    pub fn footprint(&self) -> Option<(u64, u64)> {
        proc_status(self.pid)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = killpg(Pid::from_raw(self.pid), Signal::SIGKILL);
        if let Some(fifo) = &self.fifo {
            let _ = std::fs::remove_file(fifo);
        }
    }
}

/// `VmRSS` (KiB) and `Threads` of a process, from `/proc/<pid>/status`.
pub fn proc_status(pid: i32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    Some((field("VmRSS:")?, field("Threads:")?))
}
