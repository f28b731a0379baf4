//! Issue 12, item 10.2: the file backend's fencing tokens never go back — not after the
//! token file is deleted, not after the lock directory is emptied (as a reboot empties a
//! tmpfs `$TMPDIR`). A ledger that keeps the highest token would otherwise refuse every new
//! leader.
//!
//! Each term is one real `elect run` whose command prints `$ELECT_FENCING_TOKEN`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn locks(dir: &Path) -> PathBuf {
    dir.join("locks")
}

/// One term of election `tok`: the token its command saw.
fn one_term(dir: &Path) -> u64 {
    let mut command = Command::new(env!("CARGO_BIN_EXE_elect"));
    elect_test_support::process::without_elect_env(&mut command);
    let out = command
        .env("ELECT_FILE_DIR", locks(dir))
        .args(["run", "--election", "tok", "--", "sh", "-c"])
        .arg("echo $ELECT_FENCING_TOKEN")
        .output()
        .expect("run elect");
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("not a token: {stdout:?}: {e}"))
}

#[test]
fn tokens_grow_from_term_to_term() {
    let dir = tempfile::tempdir().unwrap();
    let first = one_term(dir.path());
    let second = one_term(dir.path());
    assert!(second > first, "{first} then {second}");
}

#[test]
fn deleting_the_token_file_never_lowers_the_next_token() {
    let dir = tempfile::tempdir().unwrap();
    let before = one_term(dir.path());
    let again = one_term(dir.path());
    fs::remove_file(locks(dir.path()).join("tok.token")).expect("remove the token file");
    let after = one_term(dir.path());
    eprintln!("tokens {before}, {again}; token file deleted; then {after}");
    assert!(
        after > again,
        "the token went back after the token file was deleted: {before}, {again}, then {after}"
    );
}

#[test]
fn emptying_the_lock_directory_never_lowers_the_next_token() {
    let dir = tempfile::tempdir().unwrap();
    let before = one_term(dir.path());
    let again = one_term(dir.path());
    // What a reboot does to a tmpfs $TMPDIR, or a tmp cleaner to an old directory.
    fs::remove_dir_all(locks(dir.path())).expect("empty the lock directory");
    let after = one_term(dir.path());
    eprintln!("tokens {before}, {again}; lock directory deleted; then {after}");
    assert!(
        after > again,
        "the token went back after the lock directory was emptied: {before}, {again}, then {after}"
    );
}
