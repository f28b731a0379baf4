//! # elect-file: leader election among the processes of one host
//!
//! The embedded default backend of [`elect`](https://docs.rs/elect): the leader holds an
//! exclusive `flock` on `<dir>/<election>.lock`. The kernel releases the lock the instant the
//! holder dies, so failover needs no TTL; the fencing token is a counter kept beside the
//! lock, incremented and fsynced under it. It lets `elect run` and the examples work with no
//! cluster at all; for more than one machine, use etcd, Consul or ZooKeeper.
//!
//! Because `elect` uses plain `flock(2)`, `flock(1)` takes part too:
//! `flock /run/elect/demo.lock cmd` holds the same lock (without a token).
//!
//! The directory is trusted only if no one but the running user and root can change it or any
//! directory above it (see the `directory` module); otherwise every call fails with
//! [`Error::PermissionDenied`] naming it. Files are created 0600, directories 0700, and no
//! symlink is followed at a file's name. I/O errors that trying again cannot mend (a name too
//! long, a read-only file system, a corrupt token file) are [`Error::Unusable`], never retried.
//!
//! The file layout is described in the `layout` module; loss is noticed by polling (default
//! every 100 ms) whether the lock file was deleted or replaced by hand.
//!
//! # Deleted files and reboots
//!
//! * **Lock file deleted** (or replaced): the leader notices within one poll interval and its
//!   term is lost (`Revoked`). It keeps its lock on the deleted file until the term is
//!   resigned — `elect run` resigns once the command is gone, after at most `--grace` — or
//!   its handles are dropped, or it exits. A candidate that locks a new lock file meanwhile
//!   does not lead until that old lock is released: it finds it through the leader record and
//!   through `/proc` (so deleting the record or the whole directory as well does not hide
//!   it), and waits at most the old leader's stop grace ([`FileElector::with_stop_grace`])
//!   plus its poll interval plus half a second. A crashed leader's lock is gone at once.
//! * **Token file deleted, directory emptied, reboot**: tokens never go back, because each
//!   one is also at least the wall clock in microseconds since the epoch — unless the wall
//!   clock steps back past the last token's time while the counter file is gone.
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

mod claim;
mod directory;
mod error;
mod handover;
mod layout;
mod procfs;

pub use error::FileError;

use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use elect_core::backend::Candidacies;
use elect_core::clock::LeaseClock;
use elect_core::config::FileConfig;
use elect_core::observe::WatchLeader;
use elect_core::{
    Candidate, CandidateInfo, ElectionName, Elector, Error, LeaderInfo, LeaderStream, Leadership,
    LossReason, Result, TermControl,
};
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use tokio::sync::{oneshot, watch};

use claim::FileClaim;
use error::io_error;
use layout::{
    holder_of, private_file, read_json, same_file, CandidateRecord, Layout, LeaderRecord, BACKEND,
};

/// How often the file backend looks for a deleted lock file and for leader changes.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(100);

/// The default stop grace (see [`FileElector::with_stop_grace`]): one hour, the longest
/// `--grace` that `elect run` accepts, so that no `elect run` command is still being stopped
/// when a successor stops waiting for it. The wait normally ends long before: as soon as the
/// old term is resigned.
pub const DEFAULT_STOP_GRACE: Duration = Duration::from_secs(3600);

/// The longest candidate id the file backend takes, in bytes: a waiting candidate's record is
/// named after its id in hex, and a file name has at most 255 bytes.
pub const MAX_ID_LEN: usize = 127;

/// The longest stop grace [`FileElector::with_stop_grace`] takes.
pub const MAX_STOP_GRACE: Duration = Duration::from_secs(24 * 3600);

/// Leader election through `flock` on files in one directory.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> elect_core::Result<()> {
/// use elect_core::{Candidate, Elector};
/// use elect_file::FileElector;
/// # let dir = std::env::temp_dir().join(format!("elect-doc-{}", std::process::id()));
/// let elector = FileElector::new(&dir);
/// let election = "compactor".parse()?;
/// let leadership = elector.campaign(&election, &Candidate::generated()).await?;
/// println!("leading with token {}", leadership.token());
/// leadership.resign().await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct FileElector {
    dir: PathBuf,
    poll: Duration,
    stop_grace: Duration,
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    closed: watch::Sender<bool>,
    /// The terms granted, to end and release on close. A live term's claim is also held by
    /// its lock watcher, so it stands until resigned or closed, even with every handle
    /// dropped; a revoked term's claim goes (and lets go of its old lock) with its handles.
    terms: Mutex<Vec<(TermControl, Weak<FileClaim>)>>,
    candidacies: Candidacies,
}

impl FileElector {
    /// An elector for elections in `dir` (created when first used).
    pub fn new(dir: impl AsRef<Path>) -> Self {
        FileElector {
            dir: dir.as_ref().to_path_buf(),
            poll: DEFAULT_POLL_INTERVAL,
            stop_grace: DEFAULT_STOP_GRACE,
            inner: Arc::new(Inner {
                closed: watch::channel(false).0,
                terms: Mutex::new(Vec::new()),
                candidacies: Candidacies::default(),
            }),
        }
    }

    /// An elector configured by `config`, checked as [`FileConfig::validate`] does.
    pub fn from_config(config: &FileConfig) -> Result<Self> {
        config.validate()?;
        let elector = FileElector::new(&config.dir);
        Ok(match config.stop_grace {
            Some(grace) => elector.with_stop_grace(grace),
            None => elector,
        })
    }

    /// Sets how often observers and leaders look at the files (default 100 ms).
    pub fn with_poll_interval(mut self, poll: Duration) -> Self {
        self.poll = poll.max(Duration::from_millis(1));
        self
    }

    /// Sets how long, at most, this elector's leaders take to stop their work once they
    /// have noticed that their lock file was deleted (default [`DEFAULT_STOP_GRACE`], at most
    /// [`MAX_STOP_GRACE`]). It is written in the leader record; a successor that finds the
    /// old term still holding the lock of the deleted file waits for it to be resigned, but
    /// no longer than this plus the old leader's poll interval plus half a second. `elect run`
    /// should pass its `--grace`.
    pub fn with_stop_grace(mut self, grace: Duration) -> Self {
        self.stop_grace = grace.min(MAX_STOP_GRACE);
        self
    }

    /// The directory that holds the lock files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// How long a successor waits for our revoked terms: poll + stop grace.
    fn stop_within(&self) -> Duration {
        self.poll + self.stop_grace
    }

    /// Waits until no earlier term still holds the lock of a deleted lock file of this
    /// election (see [`handover`]). Returns false if our own lock file was deleted meanwhile
    /// (then lock again).
    async fn wait_for_old_terms(
        &self,
        layout: &Layout,
        election: &ElectionName,
        lock: &Flock<File>,
        closed: &mut watch::Receiver<bool>,
    ) -> Result<bool> {
        let mut old = handover::old_terms(layout, lock, self.stop_within())?;
        if old.is_empty() {
            return Ok(true);
        }
        for term in &old {
            tracing::info!(
                election = election.as_str(),
                pid = term.pid,
                token = term.token,
                at_most_ms = term.bound.as_millis() as u64,
                "an earlier term whose lock file was deleted may still be stopping; waiting until it lets go of its lock"
            );
        }
        let since = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(handover::RECHECK) => {}
                _ = closed.wait_for(|closed| *closed) => return Err(Error::Closed { backend: BACKEND }),
            }
            if !same_file(lock, &layout.lock) {
                return Ok(false);
            }
            handover::still_waiting(&mut old, since, election.as_str())?;
            if old.is_empty() {
                return Ok(true);
            }
        }
    }

    fn check_open(&self) -> Result<()> {
        if *self.inner.closed.borrow() {
            return Err(Error::Closed { backend: BACKEND });
        }
        Ok(())
    }

    /// Turns a held lock into a term: next token, leader record, watcher.
    fn grant(
        &self,
        layout: Layout,
        election: &ElectionName,
        candidate: &Candidate,
        lock: Flock<File>,
    ) -> Result<Leadership> {
        let meta = lock
            .metadata()
            .map_err(|e| io_error("stat lock file", &layout.lock, e))?;
        let token = layout.next_token()?;
        layout.write_lock_token(&lock, token)?;
        let pid = std::process::id();
        layout.write_leader(&LeaderRecord {
            id: candidate.id().to_owned(),
            value_hex: hex::encode(candidate.value()),
            token: token.get(),
            pid,
            pid_start: own_start_time(),
            lock_dev: Some(meta.dev()),
            lock_ino: Some(meta.ino()),
            stop_grace_ms: Some(self.stop_grace.as_millis() as u64),
            poll_ms: Some(self.poll.as_millis() as u64),
        })?;
        // The kernel lock does not expire by time: each term's lease ends only when its lock
        // file is deleted (or the term is resigned or closed).
        let lease = LeaseClock::unbounded();
        let claim = Arc::new(FileClaim::new(
            layout,
            election.clone(),
            token,
            lock,
            lease.clone(),
        ));
        let (leadership, term) = Leadership::new(
            BACKEND,
            election.clone(),
            candidate.id().to_owned(),
            token,
            &lease,
            claim.clone(),
        );
        let mut terms = self.inner.terms.lock().expect("file elector poisoned");
        terms.retain(|(term, claim)| !term.is_ended() && claim.strong_count() > 0);
        terms.push((term.clone(), Arc::downgrade(&claim)));
        drop(terms);
        tokio::spawn(claim::watch_lock_file(claim, term, self.poll));
        Ok(leadership)
    }

    /// Takes every registered term whose claim is still alive out of the registry, ending it
    /// with `ShutDown` unless it was revoked (a revoked term keeps its reason).
    fn take_terms(&self) -> Vec<Arc<FileClaim>> {
        let terms = std::mem::take(&mut *self.inner.terms.lock().expect("file elector poisoned"));
        let mut claims = Vec::with_capacity(terms.len());
        for (term, claim) in terms {
            let Some(claim) = claim.upgrade() else {
                continue;
            };
            if !claim.is_revoked() {
                term.end(LossReason::ShutDown);
            }
            claims.push(claim);
        }
        claims
    }

    fn end_all_terms(&self) {
        for claim in self.take_terms() {
            claim.unlock();
        }
    }
}

/// Our own start time, read once.
fn own_start_time() -> Option<u64> {
    static START: OnceLock<Option<u64>> = OnceLock::new();
    *START.get_or_init(|| procfs::start_time(std::process::id()))
}

impl Drop for FileElector {
    fn drop(&mut self) {
        // As at a process exit, the kernel's locks go with their files.
        self.end_all_terms();
    }
}

/// Opens and locks the election's lock file; `None` if `blocking` is false and it is held.
/// Retries when the file was replaced between open and lock (someone deleted it).
fn lock_exclusive(layout: &Layout, blocking: bool) -> Result<Option<Flock<File>>> {
    let arg = if blocking {
        FlockArg::LockExclusive
    } else {
        FlockArg::LockExclusiveNonblock
    };
    loop {
        let file = layout.open_lock()?;
        match Flock::lock(file, arg) {
            Ok(lock) if same_file(&lock, &layout.lock) => return Ok(Some(lock)),
            Ok(_replaced) => continue,
            Err((_, Errno::EWOULDBLOCK)) => return Ok(None),
            Err((_, Errno::EINTR)) => continue,
            Err((_, errno)) => return Err(io_error("flock", &layout.lock, errno.into())),
        }
    }
}

/// Waits for the lock in a thread of its own (a blocked `flock` cannot be cancelled). If the
/// campaign is dropped meanwhile, the thread's lock is released as soon as it is taken.
async fn lock_blocking(layout: &Layout) -> Result<Flock<File>> {
    let (tx, rx) = oneshot::channel();
    let layout = layout.clone();
    std::thread::Builder::new()
        .name("elect-file-lock".to_owned())
        .spawn(move || {
            let _ = tx.send(lock_exclusive(&layout, true));
        })
        .map_err(|e| Error::backend(BACKEND, "spawn lock thread", e))?;
    match rx.await {
        Ok(locked) => Ok(locked?.expect("a blocking flock returns a lock")),
        Err(_) => Err(Error::backend(
            BACKEND,
            "lock thread",
            "ended without an answer",
        )),
    }
}

/// Refuses an id too long for the name of a candidate record.
fn check_id(candidate: &Candidate) -> Result<()> {
    if candidate.id().len() > MAX_ID_LEN {
        return Err(elect_core::ConfigError::new(
            "id",
            candidate.id(),
            format!(
                "the file backend takes candidate ids of at most {MAX_ID_LEN} bytes, this one \
                 has {}",
                candidate.id().len()
            ),
        )
        .into());
    }
    Ok(())
}

/// A waiting candidate's record, locked while it waits so that listings can tell it lives.
struct Registration {
    path: PathBuf,
    _lock: Flock<File>,
}

impl Registration {
    fn create(layout: &Layout, candidate: &Candidate) -> Result<Self> {
        directory::prepare(&layout.dir)?;
        directory::create_sub(&layout.candidates)?;
        let path = layout.candidates.join(hex::encode(candidate.id()));
        let file = private_file()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| io_error("create candidate record", &path, e))?;
        let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => lock,
            Err((_, Errno::EWOULDBLOCK)) => {
                return Err(elect_core::ConfigError::new(
                    "id",
                    candidate.id(),
                    "another candidate with this id is already campaigning in this election",
                )
                .into())
            }
            Err((_, errno)) => return Err(io_error("flock", &path, errno.into())),
        };
        let record = CandidateRecord {
            id: candidate.id().to_owned(),
            value_hex: hex::encode(candidate.value()),
            pid: std::process::id(),
        };
        let json = serde_json::to_vec(&record).expect("a candidate record serializes");
        lock.set_len(0)
            .and_then(|()| lock.write_all(&json))
            .map_err(|e| io_error("write candidate record", &path, e))?;
        Ok(Registration { path, _lock: lock })
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        // Unlink while still locked, so that nobody lists a record that is going away.
        let _ = fs::remove_file(&self.path);
    }
}

/// Polls the election's lock file: the kernel tells nobody when a lock changes hands.
struct LeaderPoll {
    layout: Layout,
    interval: tokio::time::Interval,
}

#[async_trait::async_trait]
impl WatchLeader for LeaderPoll {
    async fn read(&mut self) -> Result<Option<LeaderInfo>> {
        self.layout.leader()
    }

    async fn changed(&mut self) -> Result<()> {
        self.interval.tick().await;
        Ok(())
    }
}

#[async_trait::async_trait]
impl Elector for FileElector {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    async fn campaign(&self, election: &ElectionName, candidate: &Candidate) -> Result<Leadership> {
        self.check_open()?;
        check_id(candidate)?;
        let candidacy = self.inner.candidacies.enter(election).await?;
        let layout = Layout::new(&self.dir, election);
        let registration = Registration::create(&layout, candidate)?;
        let mut closed = self.inner.closed.subscribe();
        let lock = loop {
            let lock = tokio::select! {
                lock = lock_blocking(&layout) => lock?,
                _ = closed.wait_for(|closed| *closed) => return Err(Error::Closed { backend: BACKEND }),
            };
            if self
                .wait_for_old_terms(&layout, election, &lock, &mut closed)
                .await?
            {
                break lock;
            }
        };
        drop(registration);
        self.check_open()?;
        Ok(candidacy.lead(self.grant(layout, election, candidate, lock)?))
    }

    async fn try_campaign(
        &self,
        election: &ElectionName,
        candidate: &Candidate,
    ) -> Result<Option<Leadership>> {
        self.check_open()?;
        check_id(candidate)?;
        let candidacy = self.inner.candidacies.enter(election).await?;
        let layout = Layout::new(&self.dir, election);
        match lock_exclusive(&layout, false)? {
            // An earlier term whose lock file was deleted may still be stopping: not yet.
            Some(lock) if !handover::old_terms(&layout, &lock, self.stop_within())?.is_empty() => {
                Ok(None)
            }
            Some(lock) => Ok(Some(
                candidacy.lead(self.grant(layout, election, candidate, lock)?),
            )),
            None => Ok(None),
        }
    }

    async fn leader(&self, election: &ElectionName) -> Result<Option<LeaderInfo>> {
        self.check_open()?;
        Layout::new(&self.dir, election).leader()
    }

    async fn candidates(&self, election: &ElectionName) -> Result<Vec<CandidateInfo>> {
        self.check_open()?;
        let layout = Layout::new(&self.dir, election);
        let mut list = Vec::new();
        if let Some(leader) = layout.leader()? {
            list.push(CandidateInfo {
                id: leader.id,
                value: leader.value,
                leading: true,
            });
        }
        let entries = match fs::read_dir(&layout.candidates) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(list),
            Err(e) => return Err(io_error("list", &layout.candidates, e)),
        };
        let mut waiting = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            // A record whose file is not locked was left by a crashed candidate.
            let Ok(meta) = fs::metadata(&path) else {
                continue;
            };
            if holder_of(&meta)?.is_none() {
                continue;
            }
            // A record being rewritten may not parse yet; its candidate is listed next time.
            let Ok(Some(record)) = read_json::<CandidateRecord>(&path) else {
                continue;
            };
            if list.iter().any(|c| c.id == record.id) {
                continue;
            }
            let value = hex::decode(&record.value_hex).unwrap_or_default();
            waiting.push((meta.modified().ok(), record.id, value));
        }
        waiting.sort();
        list.extend(waiting.into_iter().map(|(_, id, value)| CandidateInfo {
            id,
            value,
            leading: false,
        }));
        Ok(list)
    }

    async fn observe(&self, election: &ElectionName) -> Result<LeaderStream> {
        self.check_open()?;
        let first = tokio::time::Instant::now() + self.poll;
        let mut interval = tokio::time::interval_at(first, self.poll);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let watcher = LeaderPoll {
            layout: Layout::new(&self.dir, election),
            interval,
        };
        Ok(elect_core::observe::leader_stream(
            self.inner.closed.subscribe(),
            watcher,
        ))
    }

    async fn close(&self) -> Result<()> {
        self.inner.closed.send_replace(true);
        for claim in self.take_terms() {
            // A revoked term's old lock goes now too.
            claim.release_now()?;
        }
        Ok(())
    }
}
