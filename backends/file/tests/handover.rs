//! A term whose lock file was deleted (or renamed) by hand: the successor does not lead until
//! the old term lets go of the old file's lock — by resign, by dropping its handles — or its
//! stop bound passes. Each way the successor finds the old lock is tested on its own: the
//! leader record alone (lock file renamed: no "(deleted)" file in /proc), /proc alone (lock
//! file and record deleted, or the whole directory).
//!
//! Two electors in one process stand for two processes: the lock is per open file, the record
//! carries pid and start time either way. Every wait is bounded by a timeout.

use std::fs;
use std::path::Path;
use std::time::Duration;

use elect_core::{Candidate, ElectionName, Elector, Leadership, LossReason};
use elect_file::FileElector;
use tokio::time::{timeout, Instant};

const POLL: Duration = Duration::from_millis(20);
/// Long enough that "not before the old term resigned" is seen, short enough for a test.
const SETTLE: Duration = Duration::from_millis(400);

fn elector(dir: &Path) -> FileElector {
    FileElector::new(dir).with_poll_interval(POLL)
}

fn candidate(id: &str) -> Candidate {
    Candidate::new(id, id.as_bytes().to_vec()).unwrap()
}

async fn lead(elector: &FileElector, election: &ElectionName, id: &str) -> Leadership {
    timeout(
        Duration::from_secs(2),
        elector.campaign(election, &candidate(id)),
    )
    .await
    .expect("campaign within 2 s")
    .expect("campaign")
}

async fn revoked(leadership: &Leadership) {
    let reason = timeout(Duration::from_secs(2), leadership.lost())
        .await
        .expect("the deletion noticed within 2 s");
    assert_eq!(reason, LossReason::Revoked);
}

/// `elector` leads `election` (in `dir`) as "a", then an operator deletes the lock file: the
/// term is revoked.
async fn lead_then_delete_the_lock(
    elector: &FileElector,
    dir: &Path,
    election: &ElectionName,
) -> Leadership {
    let a = lead(elector, election, "a").await;
    fs::remove_file(dir.join(format!("{election}.lock"))).unwrap();
    revoked(&a).await;
    a
}

/// How the operator takes the lock away.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// `mv E.lock E.moved`: only the leader record can tell the old lock is still held.
    RenameLock,
    /// `rm E.lock E.leader`: only /proc can tell.
    RemoveLockAndRecord,
    /// `rm -r D`: only /proc can tell.
    RemoveDirectory,
}

fn apply(fault: Fault, dir: &Path, election: &str) {
    let lock = dir.join(format!("{election}.lock"));
    match fault {
        Fault::RenameLock => fs::rename(&lock, dir.join(format!("{election}.moved"))).unwrap(),
        Fault::RemoveLockAndRecord => {
            fs::remove_file(&lock).unwrap();
            fs::remove_file(dir.join(format!("{election}.leader"))).unwrap();
        }
        Fault::RemoveDirectory => fs::remove_dir_all(dir).unwrap(),
    }
}

/// The successor waits while the revoked term is unresigned, and leads promptly once it is.
async fn successor_waits_for_the_resign(fault: Fault) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("locks");
    let election: ElectionName = "ho".parse().unwrap();
    let (ea, eb, ec) = (elector(&dir), elector(&dir), elector(&dir));
    let a = lead(&ea, &election, "a").await;
    apply(fault, &dir, "ho");
    revoked(&a).await;

    let b_candidate = candidate("b");
    let b_campaign = eb.campaign(&election, &b_candidate);
    tokio::pin!(b_campaign);
    assert!(
        timeout(SETTLE, &mut b_campaign).await.is_err(),
        "{fault:?}: b led while a's revoked term was not resigned"
    );
    assert!(
        ec.try_campaign(&election, &candidate("c"))
            .await
            .unwrap()
            .is_none(),
        "{fault:?}: try_campaign led while a's revoked term was not resigned"
    );
    let resigned = Instant::now();
    a.resign().await.unwrap();
    let b = timeout(Duration::from_secs(1), b_campaign)
        .await
        .unwrap_or_else(|_| panic!("{fault:?}: b not leading within 1 s of a's resign"))
        .unwrap();
    eprintln!("{fault:?}: b led {:?} after a resigned", resigned.elapsed());
    assert!(b.token() > a.token());
    b.resign().await.unwrap();
}

#[tokio::test]
async fn a_renamed_lock_file_is_found_through_the_leader_record() {
    successor_waits_for_the_resign(Fault::RenameLock).await;
}

#[tokio::test]
async fn a_deleted_lock_file_and_record_are_found_through_proc() {
    successor_waits_for_the_resign(Fault::RemoveLockAndRecord).await;
}

#[tokio::test]
async fn a_deleted_directory_is_found_through_proc() {
    successor_waits_for_the_resign(Fault::RemoveDirectory).await;
}

/// Dropping every handle of a revoked term lets go of its old lock, as a resign does.
#[tokio::test]
async fn dropping_a_revoked_term_lets_the_successor_lead() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let election: ElectionName = "drop".parse().unwrap();
    let (ea, eb) = (elector(dir), elector(dir));
    let a = lead_then_delete_the_lock(&ea, dir, &election).await;
    drop(a);
    let b = lead(&eb, &election, "b").await;
    b.resign().await.unwrap();
}

/// An old term that is never resigned holds the successor up for its stop grace (from its
/// record) plus its poll interval plus 500 ms, and no longer.
#[tokio::test]
async fn the_wait_for_an_unresigned_term_is_bounded_by_its_stop_grace() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let election: ElectionName = "bound".parse().unwrap();
    let grace = Duration::from_millis(300);
    let ea = elector(dir).with_stop_grace(grace);
    // The successor's own stop grace is the default hour: the bound must come from a's record.
    let eb = elector(dir);
    let a = lead_then_delete_the_lock(&ea, dir, &election).await;
    let started = Instant::now();
    let b = timeout(
        Duration::from_secs(3),
        eb.campaign(&election, &candidate("b")),
    )
    .await
    .expect("b leading within 3 s")
    .unwrap();
    let waited = started.elapsed();
    let bound = grace + POLL + Duration::from_millis(500);
    eprintln!("b waited {waited:?} for a's unresigned term (bound {bound:?})");
    assert!(
        waited >= bound,
        "b led after {waited:?}, before the bound {bound:?}"
    );
    assert!(waited < bound + Duration::from_secs(1), "{waited:?}");
    assert!(!a.is_leader());
    b.resign().await.unwrap();
    drop(a);
}

/// Closing the elector of a revoked term lets go of its old lock, and keeps its reason.
#[tokio::test]
async fn closing_the_elector_of_a_revoked_term_lets_the_successor_lead() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let election: ElectionName = "close".parse().unwrap();
    let (ea, eb) = (elector(dir), elector(dir));
    let a = lead_then_delete_the_lock(&ea, dir, &election).await;
    ea.close().await.unwrap();
    assert_eq!(a.lost().await, LossReason::Revoked);
    let b = lead(&eb, &election, "b").await;
    b.resign().await.unwrap();
}

/// A leader record names an old term only while its pid (with the recorded start time) holds
/// the lock of the recorded file *and* that file still holds the recorded token: a reused pid,
/// or a reused inode number (the old leader's next candidate record, say), holds up nobody.
#[tokio::test]
async fn a_record_whose_pid_or_inode_was_reused_is_not_waited_for() {
    use nix::fcntl::{Flock, FlockArg};
    use std::io::Write;
    use std::os::unix::fs::MetadataExt;

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // A file this process holds locked, standing for the lock file of an old term.
    let mut old = fs::File::create(dir.join("old-lock")).unwrap();
    old.write_all(b"7\n").unwrap();
    let meta = old.metadata().unwrap();
    let mut held = Flock::lock(old, FlockArg::LockExclusiveNonblock).unwrap();
    let stat = fs::read_to_string("/proc/self/stat").unwrap();
    let start: u64 = stat[stat.rfind(')').unwrap() + 1..]
        .split_whitespace()
        .nth(19)
        .unwrap()
        .parse()
        .unwrap();
    let record = |pid_start: u64| {
        serde_json::json!({
            "id": "old", "value_hex": "", "token": 7, "pid": std::process::id(),
            "pid_start": pid_start, "lock_dev": meta.dev(), "lock_ino": meta.ino(),
            "stop_grace_ms": 3_600_000u64, "poll_ms": 100,
        })
        .to_string()
    };
    let election: ElectionName = "reuse".parse().unwrap();
    let e = elector(dir);
    let try_lead = || async {
        e.try_campaign(&election, &candidate("b"))
            .await
            .unwrap()
            .map(|b| async move { b.resign().await.unwrap() })
    };

    // The recorded pid with its start time holds the recorded file with the token: wait.
    fs::write(dir.join("reuse.leader"), record(start)).unwrap();
    assert!(
        try_lead().await.is_none(),
        "led while the recorded old term holds its lock"
    );
    // The same pid with another start time: a reused pid, the old term is long gone.
    fs::write(dir.join("reuse.leader"), record(start + 1)).unwrap();
    try_lead()
        .await
        .expect("a reused pid holds up nobody")
        .await;
    // The right pid, but the file behind the inode holds no such token: a reused inode.
    fs::write(dir.join("reuse.leader"), record(start)).unwrap();
    held.set_len(0).unwrap();
    held.write_all(b"{\"id\":\"someone else\"}").unwrap();
    try_lead()
        .await
        .expect("a reused inode number holds up nobody")
        .await;
}
