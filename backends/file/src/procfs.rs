//! What the kernel says about locks and processes on this host: `/proc/locks`,
//! `/proc/PID/stat` and `/proc/PID/fd`. Reading them neither takes nor disturbs a lock.
//!
//! The file backend elects among the processes of one host, so a pid is meaningful; the
//! start time from `/proc/PID/stat` tells a reused pid from the one we knew.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use elect_core::Error;

use crate::error::io_error;

/// A granted (not waited-for) `flock` from `/proc/locks`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Flocked {
    /// The pid that took the lock; 0 if the kernel does not say (another pid namespace).
    pub(crate) pid: u32,
    /// The locked file, as [`file_key`] names it.
    pub(crate) key: String,
}

/// The name `/proc/locks` gives the file with metadata `meta`: `MAJOR:MINOR:INODE`.
pub(crate) fn file_key(meta: &fs::Metadata) -> String {
    key_of(meta.dev(), meta.ino())
}

/// [`file_key`] from a device and an inode number.
pub(crate) fn key_of(dev: u64, ino: u64) -> String {
    // Linux's encoding of st_dev (see makedev(3)).
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    format!("{major:02x}:{minor:02x}:{ino}")
}

/// The device part of a key, with its trailing colon: `MAJOR:MINOR:`.
pub(crate) fn device_of(key: &str) -> &str {
    match key.rfind(':') {
        Some(colon) => &key[..=colon],
        None => key,
    }
}

/// Every granted `flock` on the host.
pub(crate) fn flocks() -> Result<Vec<Flocked>, Error> {
    let path = Path::new("/proc/locks");
    let text = fs::read_to_string(path).map_err(|e| io_error("read", path, e))?;
    Ok(parse_locks(&text))
}

/// Parses `/proc/locks`: "1: FLOCK  ADVISORY  WRITE 1234 fe:00:5341309 0 EOF". Waiters have
/// "->" after "1:" and are left out, as are POSIX and OFD locks.
fn parse_locks(text: &str) -> Vec<Flocked> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.get(1) != Some(&"FLOCK") {
                return None;
            }
            let pid = fields.get(4)?.parse::<i64>().unwrap_or(0);
            Some(Flocked {
                pid: u32::try_from(pid).unwrap_or(0),
                key: (*fields.get(5)?).to_owned(),
            })
        })
        .collect()
}

/// When process `pid` started, in clock ticks since boot (field 22 of `/proc/PID/stat`);
/// `None` if there is no such process (or it cannot be read).
pub(crate) fn start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_start_time(&stat)
}

fn parse_start_time(stat: &str) -> Option<u64> {
    // "PID (COMM) STATE PPID ...": COMM may hold spaces and ')', so count from the last ')'.
    // After it, field 3 (state) comes first: field 22 is the 20th.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// The open files of process `pid`: each `/proc/PID/fd/N` with what its link shows (for a
/// deleted file, its old path followed by " (deleted)"). Empty for a process we may not look
/// into (another user's) or that is gone.
pub(crate) fn open_files(pid: u32) -> Vec<(PathBuf, OsString)> {
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    fds.flatten()
        .filter_map(|fd| {
            let path = fd.path();
            let link = fs::read_link(&path).ok()?.into_os_string();
            Some((path, link))
        })
        .collect()
}

/// Whether the open file `fd` (a `/proc/PID/fd/N`) still shows `link` and is the file `key`
/// names: the same open file as when we looked before, not a reused fd or inode number.
pub(crate) fn fd_is(fd: &Path, link: &OsStr, key: &str) -> bool {
    fs::read_link(fd).is_ok_and(|now| now.as_os_str().as_bytes() == link.as_bytes())
        && is_file(fd, key)
}

/// Whether `path` (followed) is the file `key` names.
pub(crate) fn is_file(path: &Path, key: &str) -> bool {
    fs::metadata(path).is_ok_and(|meta| file_key(&meta) == key)
}

/// The first bytes (at most 64) of the file behind `path`, as text; for a `/proc/PID/fd/N`,
/// this reads another process's open file, deleted or not.
pub(crate) fn read_head(path: &Path) -> Option<String> {
    let mut head = Vec::with_capacity(64);
    fs::File::open(path)
        .ok()?
        .take(64)
        .read_to_end(&mut head)
        .ok()?;
    String::from_utf8(head).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_locks_lines_give_granted_flocks_only() {
        let text = "\
1: FLOCK  ADVISORY  WRITE 1234 fe:00:5341309 0 EOF
1: -> FLOCK  ADVISORY  WRITE 1235 fe:00:5341309 0 EOF
2: POSIX  ADVISORY  WRITE 99 fe:00:17 0 EOF
3: OFDLCK ADVISORY  READ  -1 00:05:12 0 EOF
4: FLOCK  ADVISORY  WRITE -1 00:2a:77 0 EOF
5: FLOCK  garbage
";
        assert_eq!(
            parse_locks(text),
            vec![
                Flocked {
                    pid: 1234,
                    key: "fe:00:5341309".into()
                },
                Flocked {
                    pid: 0,
                    key: "00:2a:77".into()
                },
            ]
        );
    }

    #[test]
    fn the_start_time_is_read_after_the_last_parenthesis() {
        let stat = "42 (a) b) c) S 1 42 42 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 987654 0 0";
        assert_eq!(parse_start_time(stat), Some(987654));
        assert_eq!(parse_start_time("42 (x"), None);
        assert_eq!(parse_start_time("42 (x) S 1"), None);
        let own = start_time(std::process::id()).expect("our own start time");
        assert_eq!(start_time(std::process::id()), Some(own));
    }

    #[test]
    fn keys_match_what_proc_locks_shows_for_a_flocked_file() {
        use nix::fcntl::{Flock, FlockArg};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = fs::File::create(&path).unwrap();
        let key = file_key(&file.metadata().unwrap());
        let _lock = Flock::lock(file, FlockArg::LockExclusiveNonblock).unwrap();
        assert!(
            flocks().unwrap().contains(&Flocked {
                pid: std::process::id(),
                key: key.clone()
            }),
            "{key} not in /proc/locks"
        );
        assert!(key.starts_with(device_of(&key)) && device_of(&key).ends_with(':'));
    }

    #[test]
    fn an_open_file_is_found_and_read_through_proc_after_it_was_deleted() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gone");
        let mut file = fs::File::create(&path).unwrap();
        file.write_all(b"42\n").unwrap();
        let key = file_key(&file.metadata().unwrap());
        fs::remove_file(&path).unwrap();
        let mut link = fs::canonicalize(dir.path())
            .unwrap()
            .join("gone")
            .into_os_string();
        link.push(" (deleted)");
        let (fd, shown) = open_files(std::process::id())
            .into_iter()
            .find(|(_, shown)| *shown == link)
            .expect("the deleted file among our open files");
        assert!(fd_is(&fd, &shown, &key));
        assert_eq!(read_head(&fd).as_deref(), Some("42\n"));
        drop(file);
        assert!(!fd_is(&fd, &shown, &key), "a closed file still shows");
    }
}
