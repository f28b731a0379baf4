//! Issue 14, items 1 and 2: the file backend's lock directory cannot be hijacked by another
//! local user, and errors that trying again cannot mend end `elect run` at once.
//!
//! The attacker is `nobody` (uid 65534, through `setpriv`), preparing a directory for a root
//! `elect run`: these tests need root, as CI runs them.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use elect_test_support::cli::assert_exit;

const NOBODY: u32 = 65534;

fn need_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "these tests play a root `elect` against an unprivileged local user: run them as root \
         (CI does)"
    );
}

/// Runs `script` as `nobody`.
fn as_nobody(script: &str) {
    let status = Command::new("setpriv")
        .args([
            &format!("--reuid={NOBODY}"),
            &format!("--regid={NOBODY}"),
            "--clear-groups",
            "sh",
            "-ec",
            script,
        ])
        .status()
        .expect("setpriv (util-linux) runs");
    assert!(status.success(), "as nobody: {script}: {status}");
}

/// `elect run` of election `demo` in lock directory `dir` (None: the default) with `args`
/// before `--`, running `true`; killed if it runs longer than `bound`. Returns its output
/// and how long it ran.
fn elect_run(dir: Option<&Path>, args: &[&str], bound: Duration) -> (Output, Duration) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_elect"));
    elect_test_support::process::without_elect_env(&mut command);
    if let Some(dir) = dir {
        command.env("ELECT_FILE_DIR", dir);
    }
    let start = Instant::now();
    let mut child = command
        .args(["run", "--election", "demo"])
        .args(args)
        .args(["--", "true"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run elect");
    while child.try_wait().unwrap().is_none() && start.elapsed() < bound {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let took = start.elapsed();
    (child.wait_with_output().unwrap(), took)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A new empty directory `name`, in a temporary one that takes it along when dropped.
fn new_dir(name: &str) -> (tempfile::TempDir, PathBuf) {
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join(name);
    fs::create_dir(&dir).unwrap();
    (base, dir)
}

/// A directory like `/tmp`: root's, writable by all, sticky.
fn shared_tmp() -> tempfile::TempDir {
    let base = tempfile::tempdir().unwrap();
    fs::set_permissions(base.path(), fs::Permissions::from_mode(0o1777)).unwrap();
    base
}

#[test]
fn a_lock_directory_made_by_another_user_is_refused_and_nothing_in_it_is_written() {
    need_root();
    let base = shared_tmp();
    let victim = base.path().join("victim");
    fs::write(&victim, "precious\n").unwrap();
    fs::set_permissions(&victim, fs::Permissions::from_mode(0o644)).unwrap();
    let dir = base.path().join("elect");
    // The attack of the old default, /tmp/elect: made first, with links to root's file.
    as_nobody(&format!(
        "mkdir -m 0777 {dir}; for f in demo.lock demo.token demo.leader demo.tmp.1; do \
         ln -s {victim} {dir}/$f; done; mkdir -m 0777 {dir}/demo.candidates",
        dir = dir.display(),
        victim = victim.display()
    ));
    let (out, took) = elect_run(Some(&dir), &[], Duration::from_secs(10));
    eprintln!("{:?} after {took:?}: {}", out.status, stderr(&out));
    // The refusal names the directory and what is wrong.
    assert_exit(
        "a lock directory of nobody's",
        &out,
        77,
        &[
            &dir.display().to_string(),
            &format!("owned by uid {NOBODY}"),
        ],
    );
    assert_eq!(fs::read_to_string(&victim).unwrap(), "precious\n");
    assert!(took < Duration::from_secs(2), "{took:?}");
}

#[test]
fn a_root_owned_directory_that_others_can_write_is_refused() {
    need_root();
    let (_base, dir) = new_dir("open");
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
    let (out, _) = elect_run(Some(&dir), &[], Duration::from_secs(10));
    assert_exit(
        "a lock directory open to all",
        &out,
        77,
        &["writable by others"],
    );
    assert!(!dir.join("demo.lock").exists());
}

#[test]
fn files_and_directories_are_private_whatever_the_umask() {
    need_root();
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("a/locks");
    let out = Command::new("sh")
        .args(["-c", "umask 000; exec \"$0\" run --election demo -- true"])
        .arg(env!("CARGO_BIN_EXE_elect"))
        .env("ELECT_FILE_DIR", &dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let mode = |path: &Path| fs::metadata(path).unwrap().mode() & 0o7777;
    assert_eq!(mode(&base.path().join("a")), 0o700);
    assert_eq!(mode(&dir), 0o700);
    for file in ["demo.lock", "demo.token"] {
        assert_eq!(mode(&dir.join(file)), 0o600, "{file}");
    }
}

#[test]
fn the_default_directory_for_root_is_private_and_not_in_tmp() {
    need_root();
    let election = format!("default-dir-{}", std::process::id());
    let out = Command::new(env!("CARGO_BIN_EXE_elect"))
        .env_remove("ELECT_FILE_DIR")
        .env_remove("ELECT_URL")
        .env_remove("ELECT_CONFIG")
        .args(["run", "--election", &election, "--", "true"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let lock = Path::new("/run/elect").join(format!("{election}.lock"));
    assert!(lock.exists(), "{} missing", lock.display());
    let dir = fs::metadata("/run/elect").unwrap();
    assert_eq!((dir.uid(), dir.mode() & 0o022), (0, 0));
    for suffix in ["lock", "token"] {
        let _ = fs::remove_file(format!("/run/elect/{election}.{suffix}"));
    }
    let _ = fs::remove_dir(format!("/run/elect/{election}.candidates"));
}

/// Each case: what is wrong, how it is set up in the lock directory `dir`, the extra
/// arguments, the exit code and a piece of the message.
#[test]
fn permanent_errors_end_elect_run_within_a_second() {
    need_root();
    let base = tempfile::tempdir().unwrap();
    let long_id = "i".repeat(200);
    type Setup = fn(&Path);
    let cases: [(&str, Setup, Vec<&str>, i32, &str); 6] = [
        (
            "an id too long for a file name",
            |_| {},
            vec!["--id", &long_id],
            78,
            "id",
        ),
        (
            "the lock directory is a regular file",
            |dir| fs::write(dir, "").unwrap(),
            vec![],
            74,
            "Not a directory",
        ),
        (
            "the lock path is a directory",
            |dir| fs::create_dir_all(dir.join("demo.lock")).unwrap(),
            vec![],
            74,
            "demo.lock",
        ),
        (
            "a garbage token file",
            |dir| {
                fs::create_dir_all(dir).unwrap();
                fs::write(dir.join("demo.token"), "garbage\n").unwrap();
            },
            vec![],
            74,
            "demo.token",
        ),
        (
            "an overflowed token file",
            |dir| {
                fs::create_dir_all(dir).unwrap();
                fs::write(dir.join("demo.token"), format!("{}\n", u64::MAX)).unwrap();
            },
            vec![],
            74,
            "demo.token",
        ),
        ("a lock directory under /proc", |_| {}, vec![], 74, "/proc/"),
    ];
    let mut failures = Vec::new();
    for (i, (what, setup, args, code, names)) in cases.iter().enumerate() {
        let dir = if what.contains("/proc") {
            Path::new("/proc/elect-test").to_path_buf()
        } else {
            base.path().join(format!("case{i}"))
        };
        setup(&dir);
        let (out, took) = elect_run(Some(&dir), args, Duration::from_secs(5));
        let message = stderr(&out);
        eprintln!("{what}: {:?} after {took:?}", out.status.code());
        if out.status.code() != Some(*code)
            || !message.contains(names)
            || took > Duration::from_secs(1)
        {
            failures.push(format!(
                "{what}: exit {:?} after {took:?} (want {code} within 1 s, naming {names:?}): {message}",
                out.status.code()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_read_only_lock_directory_ends_elect_run_within_a_second() {
    need_root();
    let (_base, ro) = new_dir("ro");
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "ro,size=1m", "tmpfs"])
        .arg(&ro)
        .status()
        .unwrap();
    assert!(mounted.success(), "mount a read-only tmpfs (needs root)");
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(self.0).status();
        }
    }
    let _unmount = Unmount(&ro);
    let (out, took) = elect_run(Some(&ro.join("elect")), &[], Duration::from_secs(5));
    eprintln!(
        "read-only: {:?} after {took:?}: {}",
        out.status.code(),
        stderr(&out)
    );
    assert_exit("a read-only lock directory", &out, 74, &["Read-only"]);
    assert!(took < Duration::from_secs(1), "{took:?}");
}
