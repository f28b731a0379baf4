//! A leader process frozen (SIGSTOP, like a long GC pause) past its TTL, on the real
//! clusters: the store expires its session and a successor leads; when the frozen process
//! wakes, it finds itself lost at once, kills its command, and campaigns again with a new
//! claim; every term's token is greater than the one before.
//!
//! The clusters come from `tests/cluster/cluster up` (or `tests/run`).

use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use elect::{connect, Candidate, Config, Elector};
use elect_test_support::cli::block_on;
use elect_test_support::clusters::TestCluster;
use elect_test_support::process::{alive, pgrp_of, wait_for_in_task as poll};
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use tokio::time::Instant;

/// `(token, pid)` of each command start, from the command's own log.
fn starts(log: &Path) -> Vec<(u64, i32)> {
    fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut parts = l.split_whitespace();
            Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
        })
        .collect()
}

struct Stop(Child);
impl Drop for Stop {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.0.id() as i32), Signal::SIGCONT);
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// This run's election on `backend`'s cluster.
fn url(backend: TestCluster) -> String {
    backend.url(&format!("frozen-{}", std::process::id()))
}

async fn frozen_leader(url: String, expiry_bound: Duration) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("starts");
    let script = format!(
        "echo \"$ELECT_FENCING_TOKEN $$\" >> {}; while :; do sleep 0.05; done",
        log.display()
    );
    let elect = Command::new(env!("CARGO_BIN_EXE_elect"))
        .args([
            "run",
            "--log-json",
            "--grace",
            "1s",
            "--id",
            "frozen",
            "--url",
            &url,
            "--",
            "sh",
            "-c",
            &script,
        ])
        .stdout(Stdio::null())
        .stderr(fs::File::create(dir.path().join("elect.log")).unwrap())
        .spawn()
        .expect("start elect");
    let elect = Stop(elect);
    let (token, command) = poll(
        Duration::from_secs(20),
        "the frozen-to-be leader's command",
        || starts(&log).first().copied(),
    );

    let config = Config::from_url(&url).unwrap();
    let election = config.election.clone().unwrap();
    let successor = connect(&config).await.unwrap_or_else(|e| {
        panic!("{url}: {e}: start the clusters with `tests/cluster/cluster up`")
    });
    let successor: std::sync::Arc<dyn Elector> = std::sync::Arc::from(successor);
    let waiting = {
        let (successor, election) = (successor.clone(), election.clone());
        tokio::spawn(async move {
            successor
                .campaign(&election, &Candidate::new("successor", "s").unwrap())
                .await
                .unwrap()
        })
    };
    poll(Duration::from_secs(5), "the successor waiting", || {
        Some(()).filter(|_| !waiting.is_finished())
    });

    // Freeze the whole leader: elect and its command's process group.
    let elect_pid = Pid::from_raw(elect.0.id() as i32);
    let group = Pid::from_raw(pgrp_of(command));
    kill(elect_pid, Signal::SIGSTOP).unwrap();
    killpg(group, Signal::SIGSTOP).unwrap();
    let frozen_at = Instant::now();
    let term = tokio::time::timeout(expiry_bound, waiting)
        .await
        .expect("a successor leads once the session expired")
        .unwrap();
    let failover = frozen_at.elapsed();
    assert!(
        term.token().get() > token,
        "the successor's token {} is not above {token}",
        term.token()
    );

    // Wake the old leader: it must find itself lost at once and stop its command.
    killpg(group, Signal::SIGCONT).unwrap();
    kill(elect_pid, Signal::SIGCONT).unwrap();
    let thawed_at = Instant::now();
    poll(
        Duration::from_secs(2),
        "the woken leader's command killed",
        || Some(()).filter(|_| !alive(command)),
    );
    let stopped = thawed_at.elapsed();
    // The loss is logged as the term ends, which may come a moment after the command died.
    let elect_log = dir.path().join("elect.log");
    let lost = poll(
        Duration::from_secs(2),
        "the woken leader logs its loss",
        || {
            fs::read_to_string(&elect_log)
                .unwrap_or_default()
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .find(|e| e["message"] == "lost")
        },
    );
    let reason = lost["reason"].as_str().unwrap().to_owned();
    assert!(
        ["deadline-passed", "expired", "revoked"].contains(&reason.as_str()),
        "reason {reason}"
    );

    // It campaigns again with a new claim (Consul does not show waiters, so the proof is
    // that it leads once the successor resigns).
    term.resign().await.unwrap();
    let (again, _) = poll(
        Duration::from_secs(10),
        "the woken leader's next term",
        || starts(&log).get(1).copied(),
    );
    assert!(
        again > term.token().get(),
        "its new token {again} is not above the successor's {}",
        term.token()
    );
    eprintln!(
        "{url}: frozen leader: successor led {failover:?} after the freeze; woken leader lost ({reason}) and its command gone {stopped:?} after the thaw"
    );
    drop(elect);
}

elect_test_support::test_per_row! {
    /// Session timeout 2 s (negotiated within the ensemble's bounds) plus the expiry tick.
    zookeeper_frozen_leader => block_on(frozen_leader(url(TestCluster::Zookeeper), Duration::from_secs(6)));
    /// TTL 2 s plus etcd's expiry check.
    etcd_frozen_leader => block_on(frozen_leader(url(TestCluster::Etcd), Duration::from_secs(6)));
    /// Consul invalidates between TTL and 2 × TTL; then the lock delay (one TTL) runs.
    consul_frozen_leader => block_on(frozen_leader(url(TestCluster::Consul), Duration::from_secs(40)));
}
