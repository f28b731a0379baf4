//! Issue 12, item 10.1: deleting the file backend's lock file by hand must not let a
//! successor's command start while the old holder's command is still being stopped.
//!
//! Each case runs two real `elect run` processes on a private lock directory. The leader's
//! command ignores SIGTERM, so only the SIGKILL after `--grace` ends it; both commands append
//! `<id> <shell pid> <date +%s%N>` stamps to one file every 10 ms. After the lock file (or the
//! whole directory) is deleted, the successor's first stamp must come after the old command's
//! last one. Every wait polls under a deadline; nothing sleeps to synchronise.

use elect_test_support::cli::{elect_on_files, sh};
use elect_test_support::process::{alive, wait_for, KillOnDrop};
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The old holder's grace period: the time its command runs on after the loss is noticed.
const GRACE: &str = "2s";
const GRACE_MS: u64 = 2_000;

/// `elect` with a private lock directory and none of the caller's `ELECT_*` variables.
fn elect(dir: &Path) -> Command {
    elect_on_files(env!("CARGO_BIN_EXE_elect"), &locks(dir))
}

fn locks(dir: &Path) -> PathBuf {
    dir.join("locks")
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// A command that ignores SIGTERM and stamps the wall clock every 10 ms.
fn stamper(stamps: &Path) -> Vec<String> {
    sh(format!(
        "trap '' TERM; while :; do echo \"$ELECT_CANDIDATE_ID $$ $(date +%s%N)\" >> {}; sleep 0.01; done",
        stamps.display()
    ))
}

/// The stamps of candidate `id`, in order: (the command's pid, ns since the epoch).
fn stamps_of(stamps: &Path, id: &str) -> Vec<(i32, u128)> {
    fs::read_to_string(stamps)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            if fields.next()? != id {
                return None;
            }
            Some((fields.next()?.parse().ok()?, fields.next()?.parse().ok()?))
        })
        .collect()
}

/// `elect run --grace GRACE` of the stamper as candidate `id` (with `--once` if `once`).
fn spawn_run(dir: &Path, id: &str, stamps: &Path, once: bool, grace: &str) -> Child {
    elect(dir)
        .args(["run", "--grace", grace, "--election", "del"])
        .args(once.then_some("--once"))
        .args(["--id", id, "--"])
        .args(stamper(stamps))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start elect")
}

/// Collects a child's stderr lines in the background.
fn collect_stderr(child: &mut Child) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let stderr = child.stderr.take().expect("stderr piped");
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    lines
}

/// Waits up to 5 s until a line of `log` (see [`collect_stderr`]) contains `needle`.
fn wait_logged(log: &Mutex<Vec<String>>, needle: &str, what: &str) {
    wait_for(Duration::from_secs(5), what, || {
        log.lock()
            .unwrap()
            .iter()
            .any(|line| line.contains(needle))
            .then_some(())
    });
}

/// Linux's `/proc/locks` name of a file: `MAJOR:MINOR:INODE`, as elect-file's `procfs::file_key` makes it.
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

/// What the operator removes (`rm`), and when the successor arrives.
#[derive(Debug, Clone, Copy)]
enum Removed {
    /// `rm <election>.lock` while the successor waits in `flock` on it (the reported case).
    LockFileWhileSuccessorWaits,
    /// The same, but the old leader campaigns again once its command is gone (no `--once`):
    /// it must let go of the old lock when it resigns, not only when it exits. Either
    /// candidate may lead next.
    LockFileWhileBothCampaign,
    /// `rm <election>.lock`, then a successor starts: it creates a new lock file.
    LockFileThenSuccessorStarts,
    /// `rm -r` of the whole lock directory (as a tmp cleaner would), then a successor starts:
    /// no file is left that names the old holder.
    DirectoryThenSuccessorStarts,
}

/// Runs one fault; returns (the old command's last stamp, the next command's first stamp,
/// the instant of the deletion), all in ns since the epoch.
fn handover_after(fault: Removed) -> (u128, u128, u128) {
    let dir = tempfile::tempdir().unwrap();
    let stamps = dir.path().join("stamps");
    let lock = locks(dir.path()).join("del.lock");
    let once = !matches!(fault, Removed::LockFileWhileBothCampaign);
    let mut runs = vec![KillOnDrop(spawn_run(dir.path(), "a", &stamps, once, GRACE))];
    let (a_pid, _) = wait_for(Duration::from_secs(10), "a's command stamping", || {
        stamps_of(&stamps, "a").first().copied()
    });
    let successor_waits = matches!(
        fault,
        Removed::LockFileWhileSuccessorWaits | Removed::LockFileWhileBothCampaign
    );
    if successor_waits {
        let key = proc_locks_key(&lock).expect("the lock file exists");
        runs.push(KillOnDrop(spawn_run(dir.path(), "b", &stamps, once, GRACE)));
        wait_for(
            Duration::from_secs(10),
            "b waiting in flock on a's lock file",
            || someone_waits_on(&key).then_some(()),
        );
    }
    let deleted_at = now_ns();
    match fault {
        Removed::DirectoryThenSuccessorStarts => fs::remove_dir_all(locks(dir.path())).unwrap(),
        _ => fs::remove_file(&lock).unwrap(),
    }
    if !successor_waits {
        runs.push(KillOnDrop(spawn_run(dir.path(), "b", &stamps, once, GRACE)));
    }
    let limit = Duration::from_millis(GRACE_MS + 5_000);
    // The next command: b's, or (campaigning again) a's second one.
    let next_first = wait_for(limit, "the next command stamping", || {
        let b = stamps_of(&stamps, "b").first().map(|&(_, at)| at);
        let a_again = stamps_of(&stamps, "a")
            .into_iter()
            .find(|&(pid, _)| pid != a_pid)
            .map(|(_, at)| at);
        b.into_iter().chain(a_again).min()
    });
    wait_for(limit, "a's command gone after the grace period", || {
        (!alive(a_pid)).then_some(())
    });
    let a_last = stamps_of(&stamps, "a")
        .into_iter()
        .filter(|&(pid, _)| pid == a_pid)
        .map(|(_, at)| at)
        .max()
        .unwrap();
    (a_last, next_first, deleted_at)
}

fn check(fault: Removed) {
    let (a_last, next_first, deleted_at) = handover_after(fault);
    let ms = |ns: i128| ns as f64 / 1e6;
    let overlap = a_last as i128 - next_first as i128;
    eprintln!(
        "{fault:?}: the old command's last stamp {:.1} ms after the deletion, the next command's first {:.1} ms after; overlap {:.1} ms (gap {:.1} ms)",
        ms(a_last as i128 - deleted_at as i128),
        ms(next_first as i128 - deleted_at as i128),
        ms(overlap.max(0)),
        ms((-overlap).max(0)),
    );
    assert!(
        next_first > a_last,
        "{fault:?}: the next command started {:.1} ms before the old command's last stamp",
        ms(overlap)
    );
    // And the next term does not wait much longer than the old command's grace period.
    let waited = next_first as i128 - deleted_at as i128;
    assert!(
        waited < (GRACE_MS as i128 + 1_500) * 1_000_000,
        "{fault:?}: the next command started {:.1} ms after the deletion",
        ms(waited)
    );
}

elect_test_support::test_per_row! {
    rm_of_the_lock_file_never_lets_a_waiting_successor_overlap_the_old_command => check(Removed::LockFileWhileSuccessorWaits);
    rm_of_the_lock_file_never_lets_the_next_term_overlap_when_the_old_leader_campaigns_again => check(Removed::LockFileWhileBothCampaign);
    rm_of_the_lock_file_never_lets_a_new_successor_overlap_the_old_command => check(Removed::LockFileThenSuccessorStarts);
    rm_of_the_lock_directory_never_lets_a_new_successor_overlap_the_old_command => check(Removed::DirectoryThenSuccessorStarts);
}

/// A leader whose lock file was deleted, killed with SIGKILL while it is stopping its
/// command (grace 30 s): the successor does not wait out the 30 s, and still starts after the
/// old command's last stamp (the kernel drops the dead leader's lock, and the parent-death
/// signal ends its command).
#[test]
fn a_leader_killed_while_stopping_never_makes_its_successor_wait_its_grace() {
    let dir = tempfile::tempdir().unwrap();
    let stamps = dir.path().join("stamps");
    let lock = locks(dir.path()).join("del.lock");
    let mut runs = vec![KillOnDrop(spawn_run(dir.path(), "a", &stamps, true, "30s"))];
    let a_log = collect_stderr(&mut runs[0].0);
    let (a_pid, _) = wait_for(Duration::from_secs(10), "a's command stamping", || {
        stamps_of(&stamps, "a").first().copied()
    });
    fs::remove_file(&lock).unwrap();
    runs.push(KillOnDrop(spawn_run(dir.path(), "b", &stamps, true, "30s")));
    let b_log = collect_stderr(&mut runs[1].0);
    wait_logged(
        &a_log,
        "sending SIGTERM",
        "a sending SIGTERM to its command",
    );
    wait_logged(
        &b_log,
        "waiting until it lets go of its lock",
        "b waiting for a's old lock",
    );
    assert!(
        stamps_of(&stamps, "b").is_empty(),
        "b started before a died"
    );
    let killed_at = now_ns();
    runs[0].0.kill().expect("kill -9 a");
    runs[0].0.wait().unwrap();
    let (_, b_first) = wait_for(Duration::from_secs(2), "b's command stamping", || {
        stamps_of(&stamps, "b").first().copied()
    });
    wait_for(Duration::from_secs(1), "a's command gone", || {
        (!alive(a_pid)).then_some(())
    });
    let (_, a_last) = *stamps_of(&stamps, "a").last().unwrap();
    eprintln!(
        "kill -9 of a stopping leader: b's first stamp {:.1} ms after the kill, {:.1} ms after a's last",
        (b_first as f64 - killed_at as f64) / 1e6,
        (b_first as f64 - a_last as f64) / 1e6,
    );
    assert!(b_first > a_last, "b's command overlapped a's");
}
