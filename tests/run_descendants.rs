//! Issue 14, item 4: a descendant that leaves the command's process group (`setsid`) does not
//! outlive the term — in either containment mode when the command ends, and in the cgroup
//! mode even when `elect` itself is killed with SIGKILL. Needs root for the cgroup (CI is).

use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use elect_test_support::cli::{elect_on_files, sh};
use elect_test_support::process::{alive, wait_for};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// `elect run` of election `desc` in mode `contain`, up to the `--` before its command.
fn run_args(contain: &str) -> [&str; 6] {
    ["run", "--election", "desc", "--contain", contain, "--"]
}

fn elect(dir: &Path, contain: &str) -> Command {
    let mut command = elect_on_files(env!("CARGO_BIN_EXE_elect"), &dir.join("locks"));
    command.args(run_args(contain));
    command
}

/// A command that starts a descendant in a session of its own, writes its pid to `pid_file`,
/// waits until it runs, then `then` (a shell command).
fn escaping(pid_file: &Path, then: &str) -> Vec<String> {
    let file = pid_file.display();
    sh(format!(
        "setsid sh -c 'echo $$ > {file}.tmp; mv {file}.tmp {file}; exec sleep 1000' & \
         while [ ! -s {file} ]; do sleep 0.01; done; {then}"
    ))
}

fn read_pid(pid_file: &Path) -> i32 {
    wait_for(
        Duration::from_secs(10),
        "the escaped descendant's pid",
        || fs::read_to_string(pid_file).ok()?.trim().parse().ok(),
    )
}

/// Kills a pid left alive by a failed test.
struct Reap(i32);
impl Drop for Reap {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.0), Signal::SIGKILL);
    }
}

#[test]
fn an_escaped_descendant_is_gone_when_elect_run_returns() {
    for mode in ["cgroup", "subreaper"] {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("escaped.pid");
        let out = elect(dir.path(), mode)
            .args(escaping(&pid_file, "exit 0"))
            .output()
            .unwrap();
        let log = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{mode}: {log}");
        assert!(
            log.contains(&format!(
                "containment: {}",
                if mode == "cgroup" {
                    "each command runs in a cgroup"
                } else {
                    "subreaper"
                }
            )),
            "{mode}: the mode is logged at start: {log}"
        );
        let pid = read_pid(&pid_file);
        let _reap = Reap(pid);
        assert!(
            !alive(pid),
            "{mode}: the descendant that left the process group (pid {pid}) outlived the term"
        );
    }
}

#[test]
fn an_escaped_descendant_is_gone_after_kill_9_of_elect_in_a_cgroup() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("escaped.pid");
    let mut run: Child = elect(dir.path(), "cgroup")
        .args(escaping(&pid_file, "exec sleep 1000"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = read_pid(&pid_file);
    let _reap = Reap(pid);
    assert!(alive(pid));
    run.kill().unwrap();
    run.wait().unwrap();
    wait_for(
        Duration::from_secs(5),
        "the escaped descendant gone",
        || (!alive(pid)).then_some(()),
    );
}

#[test]
fn cgroup_mode_is_refused_where_no_cgroup_can_be_made() {
    // As nobody, the cgroup tree is not writable: `--contain cgroup` is a config error;
    // `auto` falls back to the subreaper and runs.
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o1777),
    )
    .unwrap();
    let run_as_nobody = |contain: &str| {
        let mut command = Command::new("setpriv");
        command
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_elect"))
            .env(
                "ELECT_FILE_DIR",
                dir.path().join(format!("locks-{contain}")),
            )
            .args(run_args(contain))
            .arg("true");
        command.output().unwrap()
    };
    let refused = run_as_nobody("cgroup");
    assert_eq!(
        refused.status.code(),
        Some(78),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let fallback = run_as_nobody("auto");
    let log = String::from_utf8_lossy(&fallback.stderr);
    assert!(fallback.status.success(), "{log}");
    assert!(log.contains("falling back to the subreaper"), "{log}");
}

/// Two `run`s in one process (a library host), subreaper mode: the term that ends first kills
/// what its own command left, not the other term's command, though both are descendants of
/// the same process. (CI saw one run's cleanup reap the other's command.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_terms_cleanup_leaves_another_terms_command_alone() {
    use elect::run::{run, RunOptions, Signals};
    use elect::settings::Settings;
    use elect::{Candidate, Config, MemoryStore};

    let dir = tempfile::tempdir().unwrap();
    let store = MemoryStore::new();
    let options = |script: String| RunOptions {
        once: true,
        grace: Duration::from_secs(1),
        contain: elect::ContainMode::Subreaper,
        ..RunOptions::new(sh(script))
    };
    let settings = |election: &str| Settings {
        config: Config::file_default(),
        election: election.parse().unwrap(),
        candidate: Candidate::new("me", "me").unwrap(),
    };
    let started = dir.path().join("short-started");
    let long_pid = dir.path().join("long.pid");
    // The short term starts first, so the long term's command is not in its "before".
    let short = options(format!(
        "touch {}; while [ ! -s {} ]; do sleep 0.01; done",
        started.display(),
        long_pid.display()
    ));
    let long = options(format!("echo $$ > {}; exec sleep 1000", long_pid.display()));
    let (short_elector, long_elector) = (
        store.elector(Duration::from_secs(10), Duration::from_secs(1)),
        store.elector(Duration::from_secs(10), Duration::from_secs(1)),
    );
    let (short_settings, long_settings) = (settings("short"), settings("long"));
    let mut signals = Signals::install().unwrap();
    let mut other_signals = Signals::install().unwrap();
    let long_run = async {
        while !started.exists() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        run(&long_elector, &long_settings, &long, &mut other_signals).await
    };
    tokio::pin!(long_run);
    let short_exit = tokio::select! {
        exit = run(&short_elector, &short_settings, &short, &mut signals) => exit.unwrap(),
        exit = &mut long_run => panic!("the long term ended first: {exit:?}"),
    };
    eprintln!("short term: {short_exit:?}");
    let pid = read_pid(&long_pid);
    let _reap = Reap(pid);
    assert!(
        alive(pid),
        "the short term's cleanup killed the long term's command (pid {pid})"
    );
}
