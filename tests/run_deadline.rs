//! `elect run`'s engine against a backend with a deadline (the in-memory one): when renewals
//! stop getting through, the command is SIGKILLed before the leadership deadline, even if it
//! ignores SIGTERM; while renewals get through, it is never disturbed.

use std::fs;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::time::Duration;

use elect::run::{run, RunError, RunExit, RunOptions, Signals, KILL_MARGIN};
use elect::settings::Settings;
use elect::{Candidate, Config, LossReason, MemoryElector, MemoryStore};
use elect_test_support::cli::sh;
use elect_test_support::process::alive;
use tokio::time::Instant;

const TTL: Duration = Duration::from_millis(2000);
const MARGIN: Duration = Duration::from_millis(200);

fn settings(election: &str) -> Settings {
    Settings {
        config: Config::file_default(),
        election: election.parse().unwrap(),
        candidate: Candidate::new("runner", "runner").unwrap(),
    }
}

/// A command that writes its pid, ignores SIGTERM and works until killed.
fn stubborn(pid_file: &Path) -> RunOptions {
    let script = format!(
        "trap '' TERM; echo $$ > {}; while :; do sleep 0.02; done",
        pid_file.display()
    );
    RunOptions {
        once: true,
        ..RunOptions::new(sh(script))
    }
}

async fn wait_for_pid(pid_file: &Path) -> i32 {
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Some(pid) = fs::read_to_string(pid_file)
                .ok()
                .and_then(|s| s.trim().parse().ok())
            {
                return pid;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the command started")
}

/// `run` of the stubborn command as the leader of `election` on `elector`, polled until the
/// command wrote its pid: (that pid, the `run` going on, which owns the pid file's folder).
async fn started<'a>(
    elector: &'a MemoryElector,
    election: &str,
) -> (
    i32,
    Pin<Box<impl Future<Output = Result<RunExit, RunError>> + 'a>>,
) {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pid");
    let options = stubborn(&pid_file);
    let settings = settings(election);
    let mut signals = Signals::install().unwrap();
    let mut supervisor = Box::pin(async move {
        let _dir = dir;
        run(elector, &settings, &options, &mut signals).await
    });
    let pid = tokio::select! {
        pid = wait_for_pid(&pid_file) => pid,
        exit = &mut supervisor => panic!("run ended early: {exit:?}"),
    };
    (pid, supervisor)
}

#[tokio::test(flavor = "current_thread")]
async fn a_silent_store_gets_the_command_killed_before_the_deadline() {
    let elector = MemoryStore::new().elector(TTL, MARGIN);
    let (pid, mut supervisor) = started(&elector, "silent").await;
    elector.set_partitioned(true);
    let cut_at = Instant::now();
    // The last renewal that got through was sent before the cut: the deadline is no later.
    let latest_deadline = cut_at + TTL - MARGIN;
    let watch_pid = async {
        while alive(pid) {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        Instant::now()
    };
    tokio::pin!(watch_pid);
    let (dead_at, exit) = tokio::select! {
        dead_at = &mut watch_pid => (dead_at, (&mut supervisor).await),
        exit = &mut supervisor => (watch_pid.await, exit),
    };
    let exit = exit.expect("run");
    assert!(
        dead_at < latest_deadline,
        "the command died {:?} after the deadline",
        dead_at - latest_deadline
    );
    assert!(
        latest_deadline - dead_at < Duration::from_millis(1500),
        "the command was killed {:?} before the deadline: earlier than needed",
        latest_deadline - dead_at
    );
    assert_eq!(exit, RunExit::Lost(LossReason::DeadlinePassed));
    eprintln!(
        "cut at 0 ms; command SIGKILLed and gone at {} ms; deadline at most {} ms (kill margin {} ms)",
        (dead_at - cut_at).as_millis(),
        (latest_deadline - cut_at).as_millis(),
        KILL_MARGIN.as_millis()
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_healthy_leader_keeps_its_command_running() {
    let elector = MemoryStore::new().elector(TTL, MARGIN);
    let (pid, mut supervisor) = started(&elector, "healthy").await;
    // Three TTLs of renewals: the stop window must never open.
    tokio::select! {
        exit = &mut supervisor => panic!("run ended while healthy: {exit:?}"),
        _ = tokio::time::sleep(TTL * 3) => {}
    }
    assert!(alive(pid), "a healthy leader's command was stopped");
    nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let exit = tokio::time::timeout(Duration::from_secs(5), supervisor)
        .await
        .expect("run ends")
        .unwrap();
    assert!(
        matches!(exit, RunExit::Exited(status) if status.code().is_none()),
        "{exit:?}"
    );
}
