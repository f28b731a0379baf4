//! Keeping every descendant of the command within reach, so that none outlives its term.
//!
//! The command runs in a process group that `elect` (and its guardian, if `elect` is killed)
//! signals; but a descendant can leave the group (`setsid`, `setpgid`) and would keep working
//! after the term — two leaders' work at once. Two ways to keep it:
//!
//! - **cgroup**: each term's command runs in a cgroup v2 group of its own, a child of
//!   `elect`'s cgroup. No process can leave a cgroup by itself; at the term's end
//!   `cgroup.kill` ends every member at once, and the guardian does the same if `elect` is
//!   killed. Needs a writable cgroup v2 tree (root, or a systemd unit with `Delegate=yes`)
//!   and Linux ≥ 5.14.
//! - **subreaper** (the fallback): `elect` is made a child subreaper, so a descendant whose
//!   parent exits is re-parented to `elect` instead of to init; at the term's end `elect`
//!   kills every descendant it still has. If `elect` itself is killed with SIGKILL, a
//!   descendant that left the process group escapes.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// How `elect run` keeps the command's descendants (see the module's docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ContainMode {
    /// A cgroup if one can be made here, else the subreaper.
    #[default]
    Auto,
    /// A cgroup v2 group per term; refused if none can be made.
    Cgroup,
    /// `PR_SET_CHILD_SUBREAPER`.
    Subreaper,
}

impl FromStr for ContainMode {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "auto" => Ok(ContainMode::Auto),
            "cgroup" => Ok(ContainMode::Cgroup),
            "subreaper" => Ok(ContainMode::Subreaper),
            _ => Err(format!("{text:?}: write auto, cgroup or subreaper")),
        }
    }
}

/// The containment in force for one `elect run`.
#[derive(Debug)]
pub(crate) enum Containment {
    /// Terms' groups are made under this directory (our own cgroup).
    Cgroup(PathBuf),
    Subreaper,
}

impl Containment {
    /// Sets up `mode` and logs which one runs; `Err` if `mode` is `Cgroup` and none can be made.
    pub(crate) fn start(mode: ContainMode) -> std::io::Result<Containment> {
        if mode != ContainMode::Subreaper {
            match own_cgroup().and_then(|dir| probe(&dir).map(|()| dir)) {
                Ok(dir) => {
                    sweep(&dir);
                    tracing::info!(
                        cgroup = %dir.display(),
                        "containment: each command runs in a cgroup of its own, ended with cgroup.kill; no descendant outlives its term"
                    );
                    return Ok(Containment::Cgroup(dir));
                }
                Err(error) if mode == ContainMode::Cgroup => return Err(error),
                Err(error) => tracing::info!(
                    %error,
                    "containment: no writable cgroup v2 here; falling back to the subreaper"
                ),
            }
        }
        nix::sys::prctl::set_child_subreaper(true).map_err(std::io::Error::from)?;
        tracing::info!(
            "containment: subreaper; a descendant that leaves the command's process group is killed at the term's end, but escapes if elect itself is killed with SIGKILL"
        );
        Ok(Containment::Subreaper)
    }

    /// The group of one term's command.
    pub(crate) fn term_group(&self) -> std::io::Result<TermGroup> {
        match self {
            Containment::Cgroup(base) => {
                let dir = base.join(unique_name("term"));
                fs::create_dir(&dir)?;
                let opened = OpenOptions::new()
                    .read(true)
                    .custom_flags(nix::libc::O_DIRECTORY)
                    .open(&dir)?;
                Ok(TermGroup::Cgroup { dir, opened })
            }
            Containment::Subreaper => Ok(TermGroup::Subreaper {
                before: descendants(nix::unistd::getpid()),
            }),
        }
    }
}

/// Where one term's command and its descendants are kept.
#[derive(Debug)]
pub(crate) enum TermGroup {
    Cgroup {
        dir: PathBuf,
        /// The directory, open: the command is created in it.
        opened: File,
    },
    /// `before`: our descendants before the command started (in a library, the host
    /// program's own), which are left alone.
    Subreaper { before: Vec<Pid> },
}

impl TermGroup {
    /// The cgroup's directory, open, to start the command in it
    /// ([`crate::spawn::Launch::spawn`]).
    pub(crate) fn cgroup_dir(&self) -> Option<BorrowedFd<'_>> {
        match self {
            TermGroup::Cgroup { opened, .. } => Some(opened.as_fd()),
            TermGroup::Subreaper { .. } => None,
        }
    }

    /// The guardian's arguments, so that it ends the whole group if `elect` dies.
    pub(crate) fn guardian_args(&self) -> Vec<OsString> {
        match self {
            TermGroup::Cgroup { dir, .. } => vec!["--cgroup".into(), dir.clone().into()],
            TermGroup::Subreaper { .. } => Vec::new(),
        }
    }

    /// Kills every process left in the group and waits (up to [`KILL_WAIT`]) until none is.
    /// Call it once the command itself was waited for.
    pub(crate) async fn kill_all(&self) {
        match self {
            TermGroup::Cgroup { dir, .. } => end_cgroup(dir).await,
            TermGroup::Subreaper { before } => {
                let gone = wait_until(|| {
                    let mut left = descendants(nix::unistd::getpid());
                    // Not what was there before, nor another term's command (a second `run` in
                    // this process) and what it started.
                    let others = running_trees();
                    left.retain(|pid| !before.contains(pid) && !others.contains(pid));
                    for pid in &left {
                        let _ = kill(*pid, Signal::SIGKILL);
                    }
                    reap(&left);
                    left.is_empty()
                })
                .await;
                if !gone {
                    tracing::warn!("descendants of the command are still alive");
                }
            }
        }
    }
}

impl Drop for TermGroup {
    fn drop(&mut self) {
        // An emptied group goes (a populated one cannot be removed, and is not ours to leave
        // behind: kill_all ran before, unless the command never started).
        if let TermGroup::Cgroup { dir, .. } = self {
            let _ = fs::remove_dir(dir);
        }
    }
}

/// `elect-<pid>-<kind><n>`: a cgroup name no other call of this process uses (`sweep` reads
/// the pid back).
fn unique_name(kind: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "elect-{}-{kind}{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// The commands (and guardians) of the terms running in this process: the subreaper leaves
/// them and their descendants to their own terms.
static RUNNING: std::sync::Mutex<Vec<Pid>> = std::sync::Mutex::new(Vec::new());

/// A term's processes, marked as running (see [`RUNNING`]) until this is dropped.
#[derive(Debug)]
pub(crate) struct Registered(Vec<Pid>);

impl Registered {
    /// Marks `pids` as a running term's processes.
    pub(crate) fn new(pids: impl IntoIterator<Item = u32>) -> Registered {
        let pids: Vec<Pid> = pids
            .into_iter()
            .map(|pid| Pid::from_raw(pid as i32))
            .collect();
        RUNNING
            .lock()
            .expect("running terms poisoned")
            .extend(&pids);
        Registered(pids)
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        if let Ok(mut running) = RUNNING.lock() {
            running.retain(|pid| !self.0.contains(pid));
        }
    }
}

/// The running terms' processes and their descendants.
fn running_trees() -> Vec<Pid> {
    let running = RUNNING.lock().expect("running terms poisoned").clone();
    let mut trees = running.clone();
    for pid in running {
        trees.extend(descendants(pid));
    }
    trees
}

/// How long [`TermGroup::kill_all`] waits for the killed processes to be gone.
pub(crate) const KILL_WAIT: Duration = Duration::from_secs(5);

/// Kills every process in the cgroup `dir` (`cgroup.kill`: SIGKILL to all, new forks
/// included), waits until it is empty, and removes it.
pub(crate) async fn end_cgroup(dir: &Path) {
    let killed = OpenOptions::new()
        .write(true)
        .open(dir.join("cgroup.kill"))
        .and_then(|mut kill| kill.write_all(b"1"));
    if let Err(error) = killed {
        tracing::warn!(cgroup = %dir.display(), %error, "cannot kill the command's cgroup");
    }
    if !wait_until(|| !populated(dir)).await {
        tracing::warn!(cgroup = %dir.display(), "processes left in the command's cgroup");
    }
    let _ = fs::remove_dir(dir);
}

/// Removes the empty term groups that `elect` processes which are gone left in `base` (one
/// killed with SIGKILL cannot remove its own; its guardian does, unless it died too).
fn sweep(base: &Path) {
    for entry in fs::read_dir(base).into_iter().flatten().flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("elect-"))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<i32>().ok())
        else {
            continue;
        };
        if kill(Pid::from_raw(pid), None).is_err() {
            let _ = fs::remove_dir(entry.path());
        }
    }
}

fn populated(dir: &Path) -> bool {
    fs::read_to_string(dir.join("cgroup.events"))
        .map(|events| events.lines().any(|line| line == "populated 1"))
        .unwrap_or(false)
}

/// Polls `done` every 5 ms for at most [`KILL_WAIT`] (a process's death in another cgroup or
/// session has no event we can wait on).
async fn wait_until(mut done: impl FnMut() -> bool) -> bool {
    let start = tokio::time::Instant::now();
    loop {
        if done() {
            return true;
        }
        if start.elapsed() > KILL_WAIT {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Our cgroup v2 directory: the `0::` line of `/proc/self/cgroup` under the cgroup2 mount.
fn own_cgroup() -> std::io::Result<PathBuf> {
    let not_here = |what: &str| std::io::Error::new(std::io::ErrorKind::NotFound, what.to_owned());
    let mountinfo = fs::read_to_string("/proc/self/mountinfo")?;
    // Fields: id parent major:minor root mount-point options ... - fstype source options
    let mount = mountinfo
        .lines()
        .find_map(|line| {
            let (fields, rest) = line.split_once(" - ")?;
            (rest.split_whitespace().next()? == "cgroup2")
                .then(|| fields.split_whitespace().nth(4).map(PathBuf::from))
                .flatten()
        })
        .ok_or_else(|| not_here("no cgroup2 file system is mounted"))?;
    let own = fs::read_to_string("/proc/self/cgroup")?
        .lines()
        .find_map(|line| line.strip_prefix("0::").map(str::to_owned))
        .ok_or_else(|| not_here("this process has no cgroup v2 path"))?;
    Ok(mount.join(own.trim_start_matches('/')))
}

/// Whether a child cgroup with `cgroup.kill` can be made in `dir`.
fn probe(dir: &Path) -> std::io::Result<()> {
    // Unique per call: two `run`s of one process probe at once.
    let probe = dir.join(unique_name("probe"));
    fs::create_dir(&probe)?;
    let has_kill = probe.join("cgroup.kill").exists();
    fs::remove_dir(&probe)?;
    if has_kill {
        Ok(())
    } else {
        Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "cgroup.kill is missing (Linux < 5.14)",
        ))
    }
}

/// Every live descendant of `root`, from `/proc` (children before their own children).
fn descendants(root: Pid) -> Vec<Pid> {
    let mut parents: Vec<(Pid, Pid)> = Vec::new();
    for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // After the command name: state, ppid, …
        let mut fields = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest)
            .unwrap_or("")
            .split_whitespace();
        let state = fields.next();
        let Some(ppid) = fields.next().and_then(|p| p.parse::<i32>().ok()) else {
            continue;
        };
        if state != Some("Z") || ppid == root.as_raw() {
            parents.push((Pid::from_raw(pid), Pid::from_raw(ppid)));
        }
    }
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(
            parents
                .iter()
                .filter(|(_, p)| *p == parent)
                .map(|(pid, _)| *pid),
        );
        i += 1;
    }
    found.remove(0);
    found
}

/// Collects the exit status of those of `pids` that are our children (re-parented orphans),
/// so that they do not stay zombies. Only these pids: the command's own status is tokio's.
fn reap(pids: &[Pid]) {
    let us = nix::unistd::getpid();
    for pid in pids {
        let ours = fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|stat| {
                let rest = stat.rsplit_once(')')?.1.to_owned();
                rest.split_whitespace().nth(1)?.parse::<i32>().ok()
            })
            == Some(us.as_raw());
        if ours {
            let _ = nix::sys::wait::waitpid(*pid, Some(nix::sys::wait::WaitPidFlag::WNOHANG));
        }
    }
}
