//! What lies in the lock directory, and how to read and write it safely.
//!
//! For election `E` in directory `D`:
//!
//! | path | what |
//! | --- | --- |
//! | `D/E.lock` | `flock`ed (exclusive) by the leader; never deleted by `elect` |
//! | `D/E.token` | the last fencing token, written and fsynced under the lock |
//! | `D/E.leader` | JSON: the leader's id, value (hex), token and pid |
//! | `D/E.candidates/<id>` | one per waiting candidate, `flock`ed by it while it waits |
//! | `D/E.data/<key>` | fenced writes |
//!
//! Whether a file is locked, and by which pid, is read from `/proc/locks`, which neither
//! takes nor disturbs a lock.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use elect_core::{ElectionName, Error, FencingToken, LeaderInfo};
use serde::{Deserialize, Serialize};

pub(crate) const BACKEND: &str = "file";

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

    pub(crate) fn open_lock(&self) -> Result<File, Error> {
        fs::create_dir_all(&self.dir).map_err(|e| io_error("create directory", &self.dir, e))?;
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&self.lock)
            .map_err(|e| io_error("open lock file", &self.lock, e))
    }

    /// Takes the next token: one more than the last, written and fsynced before it is used.
    pub(crate) fn next_token(&self) -> Result<FencingToken, Error> {
        let last = match fs::read_to_string(&self.token) {
            Ok(text) => text.trim().parse::<u64>().map_err(|e| {
                Error::backend(
                    BACKEND,
                    format!("read token counter {}", self.token.display()),
                    e,
                )
            })?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
            Err(e) => return Err(io_error("read token counter", &self.token, e)),
        };
        let next = last.checked_add(1).ok_or_else(|| {
            Error::backend(
                BACKEND,
                format!("token counter {}", self.token.display()),
                "overflow",
            )
        })?;
        write_durably(&self.token, format!("{next}\n").as_bytes())?;
        Ok(FencingToken(next))
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
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct LeaderRecord {
    pub(crate) id: String,
    pub(crate) value_hex: String,
    pub(crate) token: u64,
    pub(crate) pid: u32,
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
    let locks = fs::read_to_string("/proc/locks")
        .map_err(|e| io_error("read", Path::new("/proc/locks"), e))?;
    let dev = meta.dev();
    // Linux's encoding of st_dev (see makedev(3)).
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    let wanted = format!("{major:02x}:{minor:02x}:{}", meta.ino());
    for line in locks.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // "1: FLOCK  ADVISORY  WRITE 1234 fe:00:5341309 0 EOF"; waiters have "->" after "1:".
        if fields.get(1) != Some(&"FLOCK") || fields.get(5) != Some(&wanted.as_str()) {
            continue;
        }
        let pid = fields[4].parse::<i64>().unwrap_or(0).max(0) as u32;
        return Ok(Some(pid));
    }
    Ok(None)
}

/// Writes `path` through a temporary file, fsync and rename, then fsyncs the directory, so
/// a crash leaves either the old or the new content.
pub(crate) fn write_durably(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(|e| io_error("create directory", dir, e))?;
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let write = || -> io::Result<()> {
        let mut file = File::create(&tmp)?;
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
    let mut text = String::new();
    match File::open(path).and_then(|mut f| f.read_to_string(&mut text)) {
        Ok(_) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| Error::backend(BACKEND, format!("parse {}", path.display()), e)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error("read", path, e)),
    }
}

pub(crate) fn io_error(operation: &str, path: &Path, error: io::Error) -> Error {
    let operation = format!("{operation} {}", path.display());
    if error.kind() == io::ErrorKind::PermissionDenied {
        Error::PermissionDenied {
            backend: BACKEND,
            operation,
            source: error.into(),
        }
    } else {
        Error::backend(BACKEND, operation, error)
    }
}
