//! Waiting out a term whose lock file was deleted by hand.
//!
//! A leader notices within one poll interval that its lock file is gone, and its term is
//! lost; but its work (under `elect run`, a command that may ignore SIGTERM for the whole
//! grace period) is still being stopped. So the leader keeps its `flock` on the deleted file
//! until the term is resigned (or its handles dropped, or the process ends), and a candidate
//! that locks a new lock file does not lead while such an old lock is still held. It finds
//! those old locks in what the kernel shows, which no deletion can remove:
//!
//! * the lock file the leader record names (device and inode), if `/proc/locks` shows it
//!   held by the recorded pid with the recorded start time (a reused pid does not count), and
//!   that pid has it open with the recorded token in it (a reused inode number does not count:
//!   the leader writes its token into the lock file);
//! * any held `flock` whose file `/proc/PID/fd` shows as this election's lock path plus
//!   " (deleted)": this finds the old term even when the record was deleted as well, or the
//!   whole directory. Only done when our lock file is empty, i.e. no term has led with it
//!   yet (every leader writes its token into it): a lock file that was not recreated since the
//!   last term needs no look, and an ordinary handover pays nothing.
//!
//! Each time we look again, the old term must still hold the lock *through the same open
//! file* (same `/proc/PID/fd/N`, same link, same inode): the old leader, once it let go,
//! may at once open and lock a new file that reuses the inode number (its candidate record,
//! when it campaigns again).
//!
//! The wait is bounded by what the old leader may take to stop: its stop grace plus its
//! poll interval (from its record, else our own settings) plus [`RELEASE_MARGIN`], counted
//! from when we first saw the old lock. A crashed leader's lock is gone at once (the kernel
//! drops it), so only a leader that is alive but does not resign can make us wait that long.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::File;
use std::path::PathBuf;
use std::time::Duration;

use elect_core::Error;
use tokio::time::Instant;

use crate::layout::Layout;
use crate::procfs::{self, Flocked};

/// What stopping takes beyond the grace period: the SIGKILL landing, reaping the command,
/// the resign.
pub(crate) const RELEASE_MARGIN: Duration = Duration::from_millis(500);

/// How often a successor looks whether the old term's lock is gone.
pub(crate) const RECHECK: Duration = Duration::from_millis(10);

/// The longest stop grace taken from a record; a larger one is read as this.
const MAX_STOP: Duration = Duration::from_secs(24 * 3600);

/// An earlier term of the election that still holds the lock of a deleted lock file.
#[derive(Debug, Clone)]
pub(crate) struct OldTerm {
    pub(crate) pid: u32,
    /// The pid's start time when we found it, to tell a reused pid apart.
    pub(crate) start: Option<u64>,
    /// The `/proc/locks` name of its lock file.
    pub(crate) key: String,
    /// Its open lock file, `/proc/PID/fd/N`, and what that link showed when we found it.
    pub(crate) fd: PathBuf,
    pub(crate) link: OsString,
    /// Its token, if its record was there.
    pub(crate) token: Option<u64>,
    /// How long we wait for it, at most, from when we found it.
    pub(crate) bound: Duration,
}

impl OldTerm {
    /// Whether it still holds its lock through the same open file, by `locks` (a fresh
    /// reading of `/proc/locks`).
    pub(crate) fn holds(&self, locks: &[Flocked]) -> bool {
        locks
            .iter()
            .any(|lock| lock.key == self.key && lock.pid == self.pid)
            && (self.start.is_none() || procfs::start_time(self.pid) == self.start)
            && procfs::fd_is(&self.fd, &self.link, &self.key)
    }
}

/// The earlier terms that still hold a lock on a deleted (or replaced) lock file of the
/// election `layout` describes, while we hold `ours`, the lock file now at its path.
/// `own_stop` is our own stop grace plus poll interval, used when no record says.
pub(crate) fn old_terms(
    layout: &Layout,
    ours: &File,
    own_stop: Duration,
) -> Result<Vec<OldTerm>, Error> {
    let meta = ours
        .metadata()
        .map_err(|e| crate::error::io_error("stat lock file", &layout.lock, e))?;
    let our_key = procfs::file_key(&meta);
    let record = match layout.read_leader() {
        Ok(record) => record,
        Err(error) => {
            // We are about to replace it; the scan below still finds an old lock.
            tracing::warn!(%error, "cannot read the leader record; looking for an old lock in /proc");
            None
        }
    };
    let record_key = record
        .as_ref()
        .and_then(|record| record.lock_key())
        .filter(|key| *key != our_key);
    // A lock file an earlier term led with holds its token. An empty one was created since:
    // the one before it may have been deleted while its leader still holds it, and only a
    // look through /proc can tell (this costs a few ms, so not on every handover).
    let fresh = meta.len() == 0;
    if record_key.is_none() && !fresh {
        return Ok(Vec::new());
    }
    let locks = procfs::flocks()?;
    let mut found: Vec<OldTerm> = Vec::new();
    let mut files: HashMap<u32, Vec<(PathBuf, OsString)>> = HashMap::new();
    let mut open_files = |pid: u32| {
        files
            .entry(pid)
            .or_insert_with(|| procfs::open_files(pid))
            .clone()
    };

    // The leader record, if it names another lock file than ours.
    if let (Some(record), Some(key)) = (&record, record_key) {
        let alive =
            record.pid_start.is_none() || procfs::start_time(record.pid) == record.pid_start;
        let locked = locks
            .iter()
            .any(|lock| lock.key == key && lock.pid == record.pid);
        if alive && locked {
            let token = record.token.to_string();
            let lock_file = open_files(record.pid).into_iter().find(|(fd, _)| {
                procfs::is_file(fd, &key)
                    && procfs::read_head(fd).is_some_and(|head| head.trim() == token)
            });
            if let Some((fd, link)) = lock_file {
                found.push(OldTerm {
                    pid: record.pid,
                    start: record.pid_start,
                    key,
                    fd,
                    link,
                    token: Some(record.token),
                    bound: bound(record.stop_within().unwrap_or(own_stop)),
                });
            }
        }
    }

    // Any process holding a deleted file of this election's lock path.
    if let Some(deleted) = layout.lock_link_once_deleted().filter(|_| fresh) {
        let device = procfs::device_of(&our_key);
        for lock in &locks {
            let candidate = lock.pid != 0
                && lock.key != our_key
                && lock.key.starts_with(device)
                && !found.iter().any(|term| term.key == lock.key);
            if !candidate {
                continue;
            }
            let lock_file = open_files(lock.pid)
                .into_iter()
                .find(|(fd, link)| *link == deleted && procfs::is_file(fd, &lock.key));
            if let Some((fd, link)) = lock_file {
                found.push(OldTerm {
                    pid: lock.pid,
                    start: procfs::start_time(lock.pid),
                    key: lock.key.clone(),
                    fd,
                    link,
                    token: None,
                    bound: bound(own_stop),
                });
            }
        }
    }
    Ok(found)
}

fn bound(stop_within: Duration) -> Duration {
    stop_within.min(MAX_STOP) + RELEASE_MARGIN
}

/// Keeps the terms of `old` that still hold their lock and whose bound (counted from
/// `since`) has not passed; logs each one that goes.
pub(crate) fn still_waiting(
    old: &mut Vec<OldTerm>,
    since: Instant,
    election: &str,
) -> Result<(), Error> {
    let locks = procfs::flocks()?;
    let waited = since.elapsed();
    old.retain(|term| {
        let waited_ms = waited.as_millis() as u64;
        if !term.holds(&locks) {
            tracing::info!(election, pid = term.pid, token = term.token, waited_ms, "the old term's lock is released");
            false
        } else if waited >= term.bound {
            tracing::warn!(
                election,
                pid = term.pid,
                token = term.token,
                waited_ms,
                "the old term still holds the lock of its deleted lock file past its stop bound; leading anyway"
            );
            false
        } else {
            true
        }
    });
    Ok(())
}
