//! L1, crash failover: the leading `elect run` is killed with SIGKILL; a waiting candidate
//! leads within the store's own expiry bound, with a greater token. Measured per backend, at
//! the shortest TTL each allows here.

use std::fs;
use std::process::{Command, Stdio};
use std::time::Duration;

use elect::{connect, Candidate, Config};
use elect_test_support::clusters;
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

async fn killed_leader(url: String, bound: Duration) -> Duration {
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
    let started = Instant::now();
    let token = loop {
        if let Some(token) = first_token(&log) {
            break token;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{url}: the leader's command never started"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
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
    failover
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_killed_leader() {
    let hosts = clusters::etcd_endpoints();
    // TTL 2 s + etcd's expiry check (500 ms) + a round trip.
    let failover = killed_leader(
        format!("etcd://{hosts}/killed-{}?ttl=2s", std::process::id()),
        Duration::from_secs(4),
    )
    .await;
    assert!(
        failover >= Duration::from_millis(1500),
        "failover {failover:?} is shorter than the lease could expire"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zookeeper_killed_leader() {
    let hosts = clusters::zookeeper_connect();
    // The session timeout (2 s) + a tick + a round trip.
    killed_leader(
        format!(
            "zk://{hosts}/killed-{}?session_timeout=2s",
            std::process::id()
        ),
        Duration::from_secs(4),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consul_killed_leader() {
    let hosts = clusters::consul_addresses();
    // Invalidation between TTL and 2 × TTL, then the lock delay (one TTL).
    let failover = killed_leader(
        format!("consul://{hosts}/killed-{}?ttl=10s", std::process::id()),
        Duration::from_secs(35),
    )
    .await;
    assert!(
        failover >= Duration::from_secs(10),
        "failover {failover:?} came before the TTL"
    );
}
