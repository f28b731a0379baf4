//! The bounded fault suite CI runs: every fault — on the candidates, on the processes and on
//! the links between the members — twice, against a fresh 3-member cluster of each backend
//! in network namespaces, with the billing example as the workload (one replica campaigning
//! twice on one elector); the checker must find no violation of S1–S4, no double charge, and
//! failovers and handovers within the bounds of `docs/guarantees.md`. Needs root (network
//! namespaces).
//!
//! The replicas are the workspace's `elect` and `billing` binaries: `cargo test --workspace`
//! builds them (`cargo build --workspace --bins` before `cargo test -p elect-chaos`).

use elect_chaos::faults::Fault;
use elect_chaos::run::{run, Bins, RunConfig};
use elect_chaos::summary::table;
use elect_chaos::target::Backend;

async fn bounded(backend: Backend) {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/bounded-… → target/<profile>
    let dir = exe.parent().and_then(|d| d.parent()).unwrap();
    let bins = Bins::in_dir(dir).unwrap_or_else(|e| panic!("{e}"));
    let config = RunConfig {
        backend,
        faults: Fault::ALL.to_vec(),
        rounds: 2 * Fault::ALL.len(),
        out: dir.join("chaos-runs"),
        bins,
    };
    let outcome = run(&config)
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", backend.name()));
    eprintln!(
        "{}\n{}",
        outcome.report,
        table(std::slice::from_ref(&outcome))
    );
    assert!(
        outcome.report.is_clean(),
        "{}: violations (history and ledger in {}):\n{}",
        backend.name(),
        outcome.dir.display(),
        outcome.report
    );
    assert!(
        outcome.crashes.is_empty(),
        "{}: replicas exited with no fault stopping them (logs in {}):\n{}",
        backend.name(),
        outcome.dir.display(),
        outcome.crashes.join("\n")
    );
    assert_eq!(outcome.rounds.len(), config.rounds);
    assert!(outcome.report.charges > 0, "the leaders charged nothing");
    let freezes = outcome
        .rounds
        .iter()
        .filter(|r| r.fault == Fault::FreezeLeader)
        .count();
    assert!(
        outcome.report.fenced_after_freeze >= 1,
        "{}: {freezes} frozen leaders woke up and none had a late charge refused by the ledger",
        backend.name()
    );
    assert!(
        outcome.report.failovers.len() >= 3 * 2,
        "{}: not every kill/freeze/cut round measured a failover: {:?}",
        backend.name(),
        outcome.report.failovers
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_under_faults() {
    bounded(Backend::Etcd).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zookeeper_under_faults() {
    bounded(Backend::Zookeeper).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consul_under_faults() {
    bounded(Backend::Consul).await;
}
