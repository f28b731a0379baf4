//! The real-cluster harness itself (`tests/cluster/cluster`): each 3-node cluster (etcd, Consul,
//! ZooKeeper) reaches quorum, keeps it when one node dies — first a follower, then the cluster's
//! own raft/zab leader — and takes the node back when it is restarted on its old data.
//!
//! The servers come from `tests/cluster/cluster install` (which `up` runs when they are missing).
//! A missing server is a failure that says so, never a skip. Clusters that were already up when
//! the test started are left up (all nodes running again); clusters it started itself are taken
//! down at the end, also when it fails.
//!
//! The script is run as a child process, every call bounded by a timeout.

use std::thread;
use std::time::{Duration, Instant};

use elect_test_support::script::{run_cluster_script, ScriptRun};

const BACKENDS: [&str; 3] = ["etcd", "consul", "zookeeper"];

/// `up` may have to install the servers first (a download from Debian's archive).
const UP_TIMEOUT: Duration = Duration::from_secs(900);
/// Any other single call of the script.
const CALL_TIMEOUT: Duration = Duration::from_secs(120);
/// Quorum after a node dies (a leader's death costs an election: ~1–4 s on these settings).
const QUORUM_DEADLINE: Duration = Duration::from_secs(30);
/// A restarted node is running and healthy again.
const REJOIN_DEADLINE: Duration = Duration::from_secs(90);
/// Pause between two status polls.
const POLL: Duration = Duration::from_millis(250);

const INSTALL_HINT: &str = "the servers come from `tests/cluster/cluster install` \
     (etcd 3.5, Consul 1.8, ZooKeeper 3.8 from Debian's archive, and a Java runtime); \
     run it and read its message";

/// The summary line `<backend>: quorum healthy=3/3 running=3/3 leader=n2` of a `status` call.
fn summary<'a>(run: &'a ScriptRun, backend: &str) -> &'a str {
    let prefix = format!("{backend}: ");
    run.stdout
        .lines()
        .rev()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or("")
}

/// Runs the script with `args`, killing it at `timeout`.
fn cluster(args: &[&str], timeout: Duration) -> ScriptRun {
    run_cluster_script(&[], args, timeout)
}

/// Polls `status <backend>` until `done` accepts it or `deadline` passes; returns the last run.
fn poll_status(
    backend: &str,
    deadline: Duration,
    done: impl Fn(&ScriptRun) -> bool,
) -> Result<ScriptRun, ScriptRun> {
    let end = Instant::now() + deadline;
    loop {
        let run = cluster(&["status", backend], CALL_TIMEOUT);
        if done(&run) {
            return Ok(run);
        }
        if Instant::now() >= end {
            return Err(run);
        }
        thread::sleep(POLL);
    }
}

fn has_quorum(run: &ScriptRun, backend: &str) -> bool {
    run.ok() && summary(run, backend).contains(": quorum ")
}

fn all_back(run: &ScriptRun, backend: &str) -> bool {
    let s = summary(run, backend);
    has_quorum(run, backend) && s.contains("healthy=3/3") && s.contains("running=3/3")
}

fn leader(backend: &str) -> u32 {
    // right after a restart the cluster may still be settling on its leader
    let end = Instant::now() + QUORUM_DEADLINE;
    loop {
        let run = cluster(&["leader", backend], CALL_TIMEOUT);
        if run.ok() {
            let n: u32 = run.stdout.trim().parse().unwrap_or_else(|_| {
                panic!(
                    "`leader {backend}` printed no node index\n{}",
                    run.describe()
                )
            });
            assert!(
                (1..=3).contains(&n),
                "leader index out of range\n{}",
                run.describe()
            );
            return n;
        }
        assert!(
            Instant::now() < end,
            "{backend}: no leader within {QUORUM_DEADLINE:?}\n{}",
            run.describe()
        );
        thread::sleep(POLL);
    }
}

fn node_line(run: &ScriptRun, backend: &str, node: u32) -> String {
    let tag = format!("n{node}");
    run.stdout
        .lines()
        .find(|l| {
            let mut f = l.split_whitespace();
            f.next() == Some(backend) && f.next() == Some(tag.as_str())
        })
        .unwrap_or("")
        .to_string()
}

/// Takes down, on drop, a cluster that this test brought up.
struct Down(Option<&'static str>);

impl Drop for Down {
    fn drop(&mut self) {
        if let Some(backend) = self.0 {
            let run = cluster(&["down", backend], CALL_TIMEOUT);
            if !run.ok() {
                eprintln!("could not take {backend} down again: {}", run.describe());
            }
        }
    }
}

/// Runs `action` (`kill`, `start`) on node `victim`, then polls `status` until `done` accepts
/// it within `deadline`; `doing` names the step and `goal` what `done` waits for, in a failure.
/// Returns that status and how long it took after the action.
fn act_then_poll(
    backend: &str,
    action: &str,
    victim: u32,
    doing: &str,
    deadline: Duration,
    done: impl Fn(&ScriptRun) -> bool,
    goal: &str,
) -> (ScriptRun, Duration) {
    let acted = cluster(&[action, backend, &victim.to_string()], CALL_TIMEOUT);
    assert!(
        acted.ok(),
        "{backend}: {doing} failed\n{}",
        acted.describe()
    );
    let started = Instant::now();
    let run = poll_status(backend, deadline, done).unwrap_or_else(|r| {
        panic!(
            "{backend}: {goal} within {deadline:?} after {doing}\n{}",
            r.describe()
        )
    });
    (run, started.elapsed())
}

/// Kill node `victim` (`what` says which role it had), check the cluster keeps or regains
/// quorum, restart the node and wait until all three are running and healthy again.
fn kill_and_restart(backend: &str, victim: u32, what: &str) {
    let (after, took) = act_then_poll(
        backend,
        "kill",
        victim,
        &format!("killing {what} n{victim}"),
        QUORUM_DEADLINE,
        |r| has_quorum(r, backend),
        "no quorum (2 of 3 nodes must be enough)",
    );
    let line = node_line(&after, backend, victim);
    assert!(
        line.contains("stopped"),
        "{backend}: status does not show killed n{victim} as stopped: {line:?}\n{}",
        after.describe()
    );
    assert!(
        summary(&after, backend).contains("running=2/3"),
        "{backend}: expected 2 of 3 nodes running\n{}",
        after.describe()
    );
    eprintln!(
        "{backend}: {what} n{victim} killed; quorum after {took:?}: {}",
        summary(&after, backend)
    );
    if what == "leader" {
        let new = leader(backend);
        assert_ne!(
            new, victim,
            "{backend}: the killed node n{victim} is still reported as leader"
        );
    }

    let (back, took) = act_then_poll(
        backend,
        "start",
        victim,
        &format!("restarting n{victim}"),
        REJOIN_DEADLINE,
        |r| all_back(r, backend),
        "no rejoin (3/3 running and healthy)",
    );
    eprintln!(
        "{backend}: n{victim} restarted; rejoined after {took:?}: {}",
        summary(&back, backend)
    );
}

#[test]
fn clusters_keep_quorum_when_one_node_dies() {
    for backend in BACKENDS {
        let before = cluster(&["status", backend], CALL_TIMEOUT);
        let was_up = all_back(&before, backend);

        let up = cluster(&["up", backend], UP_TIMEOUT);
        let _down = Down(if was_up { None } else { Some(backend) });
        assert!(
            up.ok(),
            "{backend}: `tests/cluster/cluster up {backend}` failed; {INSTALL_HINT}\n{}",
            up.describe()
        );

        let status = cluster(&["status", backend], CALL_TIMEOUT);
        assert!(
            status.ok() && all_back(&status, backend),
            "{backend}: `status` after `up` must exit 0 with 3/3 healthy\n{}",
            status.describe()
        );
        eprintln!("{backend}: up: {}", summary(&status, backend));

        // a follower dies: the other two keep quorum without an election
        let lead = leader(backend);
        let follower = lead % 3 + 1;
        kill_and_restart(backend, follower, "follower");

        // the cluster's own leader dies: the other two elect a new one
        let lead = leader(backend);
        kill_and_restart(backend, lead, "leader");
    }
}
