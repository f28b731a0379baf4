//! Issue 12, item 10.1: deleting the file backend's lock file by hand must not let a
//! successor's command start while the old holder's command is still being stopped.
//!
//! Each case runs two real `elect run` processes on a private lock directory. The leader's
//! command ignores SIGTERM, so only the SIGKILL after `--grace` ends it; both commands append
//! `<id> <date +%s%N>` stamps to one file every 10 ms. After the lock file (or the whole
//! directory) is deleted, the successor's first stamp must come after the old command's last
//! one. Every wait polls under a deadline; nothing sleeps to synchronise.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The old holder's grace period: the time its command runs on after the loss is noticed.
const GRACE: &str = "2s";
const GRACE_MS: u64 = 2_000;

/// `elect` with a private lock directory and none of the caller's `ELECT_*` variables.
fn elect(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_elect"));
    for (key, _) in std::env::vars() {
        if key.starts_with("ELECT_") {
            command.env_remove(key);
        }
    }
    command.env("ELECT_FILE_DIR", locks(dir));
    command
}

fn locks(dir: &Path) -> PathBuf {
    dir.join("locks")
}

/// Polls `check` every 5 ms until it returns `Some`, for at most `limit`.
fn wait_for<T>(limit: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        sleep(Duration::from_millis(5));
    }
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// A command that ignores SIGTERM and stamps the wall clock every 10 ms.
fn stamper(stamps: &Path) -> Vec<String> {
    let script = format!(
        "trap '' TERM; while :; do echo \"$ELECT_CANDIDATE_ID $(date +%s%N)\" >> {}; sleep 0.01; done",
        stamps.display()
    );
    vec!["sh".into(), "-c".into(), script]
}

/// The stamps of candidate `id`, in order.
fn stamps_of(stamps: &Path, id: &str) -> Vec<u128> {
    fs::read_to_string(stamps)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let (who, at) = line.split_once(' ')?;
            (who == id).then(|| at.trim().parse().ok()).flatten()
        })
        .collect()
}

/// `elect run --once --grace GRACE` of the stamper as candidate `id`.
fn spawn_run(dir: &Path, id: &str, stamps: &Path) -> Child {
    elect(dir)
        .args(["run", "--once", "--grace", GRACE, "--election", "del"])
        .args(["--id", id, "--"])
        .args(stamper(stamps))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start elect")
}

struct KillOnDrop(Vec<Child>);
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Linux's `/proc/locks` name of a file: `MAJOR:MINOR:INODE`, as in `layout::holder_of`.
fn proc_locks_key(path: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let meta = fs::metadata(path).ok()?;
    let dev = meta.dev();
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    Some(format!("{major:02x}:{minor:02x}:{}", meta.ino()))
}

/// Whether some process waits in `flock` on the file `key` names (a "->" line).
fn someone_waits_on(key: &str) -> bool {
    fs::read_to_string("/proc/locks")
        .unwrap_or_default()
        .lines()
        .any(|line| line.contains(" -> FLOCK ") && line.split_whitespace().any(|f| f == key))
}

/// How the lock goes away, and when the successor arrives.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// `rm <election>.lock` while the successor waits in `flock` on it (the reported case).
    RmLockWhileSuccessorWaits,
    /// `rm <election>.lock`, then a successor starts: it creates a new lock file.
    RmLockThenSuccessorStarts,
    /// `rm -r` of the whole lock directory (as a tmp cleaner would), then a successor starts:
    /// no file is left that names the old holder.
    RmDirThenSuccessorStarts,
}

/// Runs one fault; returns (the old command's last stamp, the successor's first stamp,
/// the instant of the deletion), all in ns since the epoch.
fn handover_after(fault: Fault) -> (u128, u128, u128) {
    let dir = tempfile::tempdir().unwrap();
    let stamps = dir.path().join("stamps");
    let lock = locks(dir.path()).join("del.lock");
    let mut runs = KillOnDrop(vec![spawn_run(dir.path(), "a", &stamps)]);
    wait_for(Duration::from_secs(10), "a's command stamping", || {
        (!stamps_of(&stamps, "a").is_empty()).then_some(())
    });
    if let Fault::RmLockWhileSuccessorWaits = fault {
        let key = proc_locks_key(&lock).expect("the lock file exists");
        runs.0.push(spawn_run(dir.path(), "b", &stamps));
        wait_for(
            Duration::from_secs(10),
            "b waiting in flock on a's lock file",
            || someone_waits_on(&key).then_some(()),
        );
    }
    let deleted_at = now_ns();
    match fault {
        Fault::RmDirThenSuccessorStarts => fs::remove_dir_all(locks(dir.path())).unwrap(),
        _ => fs::remove_file(&lock).unwrap(),
    }
    if !matches!(fault, Fault::RmLockWhileSuccessorWaits) {
        runs.0.push(spawn_run(dir.path(), "b", &stamps));
    }
    let limit = Duration::from_millis(GRACE_MS + 5_000);
    let b_first = wait_for(limit, "b's command stamping", || {
        stamps_of(&stamps, "b").first().copied()
    });
    // a runs with --once: it exits once its command is gone, after the grace period.
    let a = &mut runs.0[0];
    wait_for(limit, "a's elect exiting after the loss", || {
        a.try_wait().expect("try_wait")
    });
    let a_last = *stamps_of(&stamps, "a").last().unwrap();
    (a_last, b_first, deleted_at)
}

fn check(fault: Fault) {
    let (a_last, b_first, deleted_at) = handover_after(fault);
    let ms = |ns: i128| ns as f64 / 1e6;
    let overlap = a_last as i128 - b_first as i128;
    eprintln!(
        "{fault:?}: a's last stamp {:.1} ms after the deletion, b's first {:.1} ms after; overlap {:.1} ms",
        ms(a_last as i128 - deleted_at as i128),
        ms(b_first as i128 - deleted_at as i128),
        ms(overlap.max(0)),
    );
    assert!(
        b_first > a_last,
        "{fault:?}: the successor's command started {:.1} ms before the old command's last stamp",
        ms(overlap)
    );
    // And the successor does not wait much longer than the old command's grace period.
    let waited = b_first as i128 - deleted_at as i128;
    assert!(
        waited < (GRACE_MS as i128 + 1_500) * 1_000_000,
        "{fault:?}: the successor started {:.1} ms after the deletion",
        ms(waited)
    );
}

#[test]
fn rm_of_the_lock_file_never_lets_a_waiting_successor_overlap_the_old_command() {
    check(Fault::RmLockWhileSuccessorWaits);
}

#[test]
fn rm_of_the_lock_file_never_lets_a_new_successor_overlap_the_old_command() {
    check(Fault::RmLockThenSuccessorStarts);
}

#[test]
fn rm_of_the_lock_directory_never_lets_a_new_successor_overlap_the_old_command() {
    check(Fault::RmDirThenSuccessorStarts);
}
