//! L1, crash failover: the leading `elect run` is killed with SIGKILL; a waiting candidate
//! leads within the store's own expiry bound, with a greater token. Measured per backend, at
//! the shortest TTL each allows here.

use std::fs;
use std::process::{Command, Stdio};
use std::time::Duration;

use elect::{connect, Candidate, Config};
use elect_test_support::cli::block_on;
use elect_test_support::clusters::TestCluster;
use elect_test_support::process::wait_for_in_task;
use tokio::time::Instant;

fn first_token(log: &std::path::Path) -> Option<u64> {
    fs::read_to_string(log)
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}

/// This run's election on `backend`'s cluster.
fn url(backend: TestCluster) -> String {
    backend.url(&format!("killed-{}", std::process::id()))
}

/// Kills the leader at `url`; a successor must lead within `bound`, and not before `floor`
/// (when the store cannot have expired the session sooner).
async fn killed_leader(url: String, bound: Duration, floor: Option<Duration>) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("tokens");
    let script = format!(
        "echo $ELECT_FENCING_TOKEN >> {}; exec sleep 1000",
        log.display()
    );
    let mut elect = Command::new(env!("CARGO_BIN_EXE_elect"))
        .args([
            "run", "--id", "doomed", "--url", &url, "--", "sh", "-c", &script,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start elect");
    let token = wait_for_in_task(
        Duration::from_secs(20),
        &format!("{url}: the leader's command starting"),
        || first_token(&log),
    );
    let config = Config::from_url(&url).unwrap();
    let election = config.election.clone().unwrap();
    let successor = connect(&config).await.unwrap_or_else(|e| {
        panic!("{url}: {e}: start the clusters with `tests/cluster/cluster up`")
    });
    let waiting = tokio::spawn(async move {
        let term = successor
            .campaign(&election, &Candidate::new("successor", "s").unwrap())
            .await
            .unwrap();
        (Instant::now(), term)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !waiting.is_finished(),
        "{url}: the successor led while the leader lives"
    );
    elect.kill().unwrap();
    let killed_at = Instant::now();
    elect.wait().unwrap();
    let (elected, term) = tokio::time::timeout(bound, waiting)
        .await
        .unwrap_or_else(|_| panic!("{url}: no successor within {bound:?}"))
        .unwrap();
    assert!(term.token().get() > token);
    let failover = elected - killed_at;
    eprintln!("{url}: leader killed; successor led after {failover:?} (bound {bound:?})");
    term.resign().await.unwrap();
    if let Some(floor) = floor {
        assert!(
            failover >= floor,
            "{url}: failover {failover:?} came before the session could expire ({floor:?})"
        );
    }
}

elect_test_support::test_per_row! {
    /// TTL 2 s + etcd's expiry check (500 ms) + a round trip; the lease lives 1.5 s at least.
    etcd_killed_leader => block_on(killed_leader(url(TestCluster::Etcd), Duration::from_secs(4), Some(Duration::from_millis(1500))));
    /// The session timeout (2 s) + a tick + a round trip.
    zookeeper_killed_leader => block_on(killed_leader(url(TestCluster::Zookeeper), Duration::from_secs(4), None));
    /// Invalidation between TTL and 2 × TTL, then the lock delay (one TTL); never before the TTL.
    consul_killed_leader => block_on(killed_leader(url(TestCluster::Consul), Duration::from_secs(35), Some(Duration::from_secs(10))));
}
