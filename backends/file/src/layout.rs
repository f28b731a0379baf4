//! What lies in the lock directory, and how to read and write it safely.
//!
//! For election `E` in directory `D`:
//!
//! | path | what |
//! | --- | --- |
//! | `D/E.lock` | `flock`ed (exclusive) by the leader, and holds its token (which tells the file from another that reuses its inode number); never deleted by `elect` |
//! | `D/E.token` | the last fencing token, written and fsynced under the lock |
//! | `D/E.leader` | JSON: the leader's id, value (hex), token, pid and pid start time, the lock file's device and inode, and how long it may take to stop |
//! | `D/E.candidates/<id>` | one per waiting candidate, `flock`ed by it while it waits |
//! | `D/E.data/<key>` | fenced writes |
//!
//! Every path of an election is derived here, in [`Layout`]. Whether a file is locked, and
//! by which pid, is read from `/proc/locks` (see [`crate::procfs`]).

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use elect_core::{ElectionName, Error, FencingToken, LeaderInfo};
use serde::{Deserialize, Serialize};

pub(crate) use crate::error::BACKEND;
use crate::error::{corrupt, io_error, FileError};
use crate::{directory, procfs};

/// Mode of the files `elect` creates.
const FILE_MODE: u32 = 0o600;

/// The paths of one election.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    pub(crate) dir: PathBuf,
    pub(crate) lock: PathBuf,
    pub(crate) token: PathBuf,
    pub(crate) leader: PathBuf,
    pub(crate) candidates: PathBuf,
    pub(crate) data: PathBuf,
}

impl Layout {
    pub(crate) fn new(dir: &Path, election: &ElectionName) -> Self {
        let name = election.as_str();
        Layout {
            dir: dir.to_path_buf(),
            lock: dir.join(format!("{name}.lock")),
            token: dir.join(format!("{name}.token")),
            leader: dir.join(format!("{name}.leader")),
            candidates: dir.join(format!("{name}.candidates")),
            data: dir.join(format!("{name}.data")),
        }
    }

    /// Opens (creates) the lock file, in a directory checked to be private (see
    /// [`directory`]).
    pub(crate) fn open_lock(&self) -> Result<File, Error> {
        directory::prepare(&self.dir)?;
        private_file()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&self.lock)
            .map_err(|e| io_error("open lock file", &self.lock, e))
    }

    /// Takes the next token, written and fsynced before it is used: one more than the last,
    /// and never less than the wall clock in microseconds since the epoch.
    ///
    /// The counter alone goes back to 1 when `E.token` is deleted, or when a reboot empties
    /// the directory (the default lies under `$TMPDIR`, a tmpfs on Debian trixie), and a
    /// ledger that keeps the highest token would refuse every later leader. The clock floor
    /// needs no other state: it holds after any deletion and any reboot, as long as the wall
    /// clock does not step back past the last token's time while the counter is gone (with
    /// the counter present, a clock stepping back changes nothing). A state directory
    /// elsewhere (`/var/lib`, `~/.local/state`) was the alternative; it is one more place
    /// that can be deleted, be read-only or be missing for a service user, and it would
    /// still need a floor when it is. Microsecond tokens stay exact in a JSON number (below
    /// 2^53) until the year 2255.
    pub(crate) fn next_token(&self) -> Result<FencingToken, Error> {
        self.next_token_above(wall_clock_floor())
    }

    /// [`Layout::next_token`] with the floor given.
    pub(crate) fn next_token_above(&self, floor: u64) -> Result<FencingToken, Error> {
        let operation = || format!("read token counter {}", self.token.display());
        let last = match read_small(&self.token) {
            Ok(bytes) => {
                let text = String::from_utf8_lossy(&bytes);
                text.trim().parse::<u64>().map_err(|source| {
                    let text = text.trim().chars().take(64).collect();
                    let path = self.token.clone();
                    corrupt(operation(), FileError::BadCounter { path, text, source })
                })?
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
            Err(e) => return Err(io_error("read token counter", &self.token, e)),
        };
        let after_last = last.checked_add(1).ok_or_else(|| {
            let path = self.token.clone();
            corrupt(operation(), FileError::CounterOverflow { path })
        })?;
        let next = after_last.max(floor);
        write_durably(&self.token, format!("{next}\n").as_bytes())?;
        Ok(FencingToken(next))
    }

    /// Writes `token` into our locked lock file `lock`. Not fsynced: it matters only while
    /// we hold the lock, to a successor reading it through `/proc`.
    pub(crate) fn write_lock_token(&self, lock: &File, token: FencingToken) -> Result<(), Error> {
        let text = format!("{token}\n");
        lock.set_len(0)
            .and_then(|()| lock.write_all_at(text.as_bytes(), 0))
            .map_err(|e| io_error("write lock file", &self.lock, e))
    }

    pub(crate) fn write_leader(&self, record: &LeaderRecord) -> Result<(), Error> {
        let json = serde_json::to_vec(record).expect("a leader record serializes");
        write_durably(&self.leader, &json)
    }

    pub(crate) fn read_leader(&self) -> Result<Option<LeaderRecord>, Error> {
        read_json(&self.leader)
    }

    /// Removes the leader record if it is still the one of `token`.
    pub(crate) fn clear_leader(&self, token: FencingToken) -> Result<(), Error> {
        match self.read_leader()? {
            Some(record) if record.token == token.get() => match fs::remove_file(&self.leader) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    Err(io_error("remove leader record", &self.leader, e))
                }
                _ => Ok(()),
            },
            _ => Ok(()),
        }
    }

    /// The leader as the directory shows it: the record, if the lock is held by its writer.
    pub(crate) fn leader(&self) -> Result<Option<LeaderInfo>, Error> {
        if !directory::check_existing(&self.dir)? {
            return Ok(None);
        }
        let Some(holder) = self.lock_holder()? else {
            return Ok(None);
        };
        let Some(record) = self.read_leader()? else {
            return Ok(None);
        };
        // A record of another pid is a crashed leader's, and the new one has not written its own
        // yet. (Two candidates in one process share a pid; then the record is trusted.)
        if holder != 0 && record.pid != holder {
            return Ok(None);
        }
        Ok(Some(record.into_info()?))
    }

    /// The pid holding the lock file, if anyone does (0 if the kernel does not say).
    pub(crate) fn lock_holder(&self) -> Result<Option<u32>, Error> {
        match fs::metadata(&self.lock) {
            Ok(meta) => holder_of(&meta),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error("stat lock file", &self.lock, e)),
        }
    }

    /// What `/proc/PID/fd` shows for a process that holds this election's lock file after
    /// it was deleted: its path, made absolute without symlinks, and " (deleted)". `None` if
    /// the directory cannot be resolved.
    pub(crate) fn lock_link_once_deleted(&self) -> Option<OsString> {
        let mut link = fs::canonicalize(&self.dir)
            .ok()?
            .join(self.lock.file_name()?)
            .into_os_string();
        link.push(" (deleted)");
        Some(link)
    }

    pub(crate) fn data_path(&self, key: &str) -> Result<PathBuf, Error> {
        let valid = !key.is_empty()
            && key.len() <= 255
            && key != "."
            && key != ".."
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !valid {
            return Err(elect_core::ConfigError::new(
                "key",
                key,
                "file backend keys are 1-255 characters of A-Z a-z 0-9 . _ -",
            )
            .into());
        }
        Ok(self.data.join(key))
    }
}

/// The leader record, `D/E.leader`.
///
/// Besides who leads, it says how a successor can tell whether this term still holds its
/// lock after the lock file was deleted: the lock file's device and inode, the pid with its
/// start time, and how long the leader may take to stop once it has noticed. The fields after
/// `pid` are absent in records of older versions.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct LeaderRecord {
    pub(crate) id: String,
    pub(crate) value_hex: String,
    pub(crate) token: u64,
    pub(crate) pid: u32,
    /// The leader's start time (clock ticks since boot), which tells a reused pid apart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) pid_start: Option<u64>,
    /// The device of the lock file the leader holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) lock_dev: Option<u64>,
    /// The inode of the lock file the leader holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) lock_ino: Option<u64>,
    /// How long the leader may take to stop its work once it noticed its lock file is gone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) stop_grace_ms: Option<u64>,
    /// How often the leader looks for its lock file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) poll_ms: Option<u64>,
}

impl LeaderRecord {
    pub(crate) fn into_info(self) -> Result<LeaderInfo, Error> {
        let value = hex::decode(&self.value_hex)
            .map_err(|e| Error::backend(BACKEND, "read leader record", e))?;
        Ok(LeaderInfo {
            id: self.id,
            value,
            token: FencingToken(self.token),
        })
    }

    /// The `/proc/locks` name of the lock file this leader holds, if the record says.
    pub(crate) fn lock_key(&self) -> Option<String> {
        Some(procfs::key_of(self.lock_dev?, self.lock_ino?))
    }

    /// How long the leader may take, at most, to stop after its lock file was deleted, if
    /// the record says: its poll interval (to notice) plus its stop grace.
    pub(crate) fn stop_within(&self) -> Option<Duration> {
        let ms = self.stop_grace_ms?.checked_add(self.poll_ms?)?;
        Some(Duration::from_millis(ms))
    }
}

/// A waiting candidate's record, `D/E.candidates/<id>`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct CandidateRecord {
    pub(crate) id: String,
    pub(crate) value_hex: String,
    pub(crate) pid: u32,
}

/// Whether `file` is still the one at `path` (an operator may have deleted or replaced it).
pub(crate) fn same_file(file: &File, path: &Path) -> bool {
    match (file.metadata(), fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// Who holds an flock on the file with metadata `meta`, from `/proc/locks`.
pub(crate) fn holder_of(meta: &fs::Metadata) -> Result<Option<u32>, Error> {
    let key = procfs::file_key(meta);
    Ok(procfs::flocks()?
        .into_iter()
        .find(|lock| lock.key == key)
        .map(|lock| lock.pid))
}

/// The wall clock in microseconds since the epoch; 0 if it reads before the epoch.
fn wall_clock_floor() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_micros()).unwrap_or(u64::MAX)
        })
}

/// Options that create a file 0600 and never follow a symlink at its name.
pub(crate) fn private_file() -> OpenOptions {
    let mut options = OpenOptions::new();
    options
        .mode(FILE_MODE)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC);
    options
}

/// The largest file of an election `elect` reads (records and the counter are far smaller).
const MAX_READ: u64 = 1 << 20;

/// Reads a small file without following a symlink, at most [`MAX_READ`] bytes.
fn read_small(path: &Path) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    private_file()
        .read(true)
        .open(path)?
        .take(MAX_READ)
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Writes `path` through a temporary file, fsync and rename, then fsyncs the directory, so
/// a crash leaves either the old or the new content. `path`'s directory is one of an election
/// (checked when its lock file was opened).
pub(crate) fn write_durably(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let dir = path.parent().unwrap_or(Path::new("."));
    directory::create_sub(dir)?;
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let create_tmp = || private_file().write(true).create_new(true).open(&tmp);
    let write = || -> io::Result<()> {
        // A temporary file of ours left by a crash (same pid after a reboot) goes first.
        let mut file = match create_tmp() {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                fs::remove_file(&tmp)?;
                create_tmp()?
            }
            other => other?,
        };
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&tmp);
        io_error("write", path, e)
    })
}

pub(crate) fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>, Error> {
    match read_small(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|source| {
            let path = path.to_path_buf();
            let operation = format!("parse {}", path.display());
            corrupt(operation, FileError::BadRecord { path, source })
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error("read", path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(dir: &Path) -> Layout {
        Layout::new(dir, &"t".parse().unwrap())
    }

    #[test]
    fn the_next_token_is_the_larger_of_the_counter_plus_one_and_the_floor() {
        let dir = tempfile::tempdir().unwrap();
        let layout = layout(dir.path());
        // No counter yet: the floor (the wall clock in production).
        assert_eq!(layout.next_token_above(1_000).unwrap().get(), 1_000);
        // A floor below the counter (a clock stepped back): the counter goes on.
        assert_eq!(layout.next_token_above(10).unwrap().get(), 1_001);
        assert_eq!(fs::read_to_string(&layout.token).unwrap(), "1001\n");
        // The counter deleted: the floor still keeps the token above every earlier one.
        fs::remove_file(&layout.token).unwrap();
        assert_eq!(layout.next_token_above(2_000).unwrap().get(), 2_000);
    }

    #[test]
    fn the_wall_clock_floor_is_microseconds_since_the_epoch() {
        let dir = tempfile::tempdir().unwrap();
        let layout = layout(dir.path());
        let before = wall_clock_floor();
        let token = layout.next_token().unwrap().get();
        assert!(token >= before && token <= wall_clock_floor(), "{token}");
        // 2026 in microseconds: about 1.8e15, below 2^53.
        assert!(token > 1_700_000_000_000_000 && token < 1 << 53, "{token}");
    }

    #[test]
    fn a_bad_or_full_counter_is_a_typed_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let layout = layout(dir.path());
        fs::write(&layout.token, "seven\n").unwrap();
        let error = layout.next_token_above(0).unwrap_err();
        let source = std::error::Error::source(&error)
            .and_then(|s| s.downcast_ref::<FileError>())
            .expect("a FileError source");
        assert!(
            matches!(source, FileError::BadCounter { path, text, .. } if *path == layout.token && text == "seven"),
            "{source:?}"
        );
        fs::write(&layout.token, format!("{}\n", u64::MAX)).unwrap();
        let error = layout.next_token_above(0).unwrap_err();
        assert!(
            error
                .to_string()
                .contains(&layout.token.display().to_string()),
            "{error}"
        );
        let source = std::error::Error::source(&error)
            .and_then(|s| s.downcast_ref::<FileError>())
            .expect("a FileError source");
        assert!(
            matches!(source, FileError::CounterOverflow { path } if *path == layout.token),
            "{source:?}"
        );
    }

    #[test]
    fn the_deleted_lock_link_is_the_absolute_lock_path() {
        let dir = tempfile::tempdir().unwrap();
        let layout = layout(dir.path());
        let link = layout.lock_link_once_deleted().unwrap();
        let expected = format!(
            "{}/t.lock (deleted)",
            fs::canonicalize(dir.path()).unwrap().display()
        );
        assert_eq!(link.to_string_lossy(), expected);
        // A directory that does not exist (yet): nothing to look for.
        assert!(Layout::new(&dir.path().join("nope"), &"t".parse().unwrap())
            .lock_link_once_deleted()
            .is_none());
    }
}
