//! `etcdctl elect` (from the same Debian etcd-client package as the servers) and `elect`
//! candidates in one election: each side sees the other lead, a resign on either side hands
//! over to the other, and the logged leadership intervals never overlap.

mod support;

use elect_test_support::{assert_no_overlap, Interval};

use std::process::Stdio;
use std::time::Duration;

use elect_core::{Candidate, ElectionName, Elector};
use support::{connect, etcdctl};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};
use tokio::time::Instant;

const SETTLE: Duration = Duration::from_millis(500);

fn election() -> ElectionName {
    elect_test_support::unique_name("interop").parse().unwrap()
}

/// `etcdctl elect <election> <proposal>`: prints its key and value once elected.
fn etcdctl_elect(
    election: &ElectionName,
    proposal: &str,
) -> (Child, Lines<BufReader<ChildStdout>>) {
    let mut command = Command::from(etcdctl());
    command
        .args(["elect", election.as_str(), proposal])
        .stdout(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn().expect("start etcdctl elect");
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    (child, lines)
}

/// The key `etcdctl elect` prints once it leads, within 5 s.
async fn elected_key(lines: &mut Lines<BufReader<ChildStdout>>, what: &str) -> String {
    tokio::time::timeout(Duration::from_secs(5), lines.next_line())
        .await
        .unwrap_or_else(|_| panic!("{what}: etcdctl did not lead within 5 s"))
        .unwrap()
        .expect("etcdctl's output ended")
}

#[tokio::test]
async fn etcdctl_elect_and_elect_share_one_election() {
    let elector = connect().await;
    let election = election();
    let mut intervals = Vec::new();

    // 1. etcdctl leads; elect sees it and waits; etcdctl resigns (SIGINT) and elect leads.
    let (mut first, mut lines) = etcdctl_elect(&election, "from-etcdctl");
    let key = elected_key(&mut lines, "etcdctl elected").await;
    let etcdctl_from = Instant::now();
    assert!(
        key.starts_with(&format!("{election}/")),
        "etcdctl's key {key:?}"
    );
    let seen = elector
        .leader(&election)
        .await
        .unwrap()
        .expect("elect sees etcdctl's leadership");
    assert_eq!(seen.value, b"from-etcdctl");
    let mut campaign = {
        let elector = connect().await;
        let election = election.clone();
        tokio::spawn(async move {
            let leadership = elector
                .campaign(&election, &Candidate::new("rust", "from-elect").unwrap())
                .await
                .unwrap();
            (Instant::now(), leadership, elector)
        })
    };
    tokio::time::sleep(SETTLE).await;
    assert!(!campaign.is_finished(), "elect won while etcdctl leads");
    let signalled = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(first.id().unwrap() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let (elected, leadership, other) = tokio::time::timeout(Duration::from_secs(5), &mut campaign)
        .await
        .expect("elect leads after etcdctl resigned")
        .unwrap();
    intervals.push(Interval::new("etcdctl", etcdctl_from, signalled));
    let _ = first.wait().await;
    eprintln!(
        "etcdctl resigned: elect led {:?} after the SIGINT",
        elected - signalled
    );

    // 2. elect leads; etcdctl waits and sees it; elect resigns and etcdctl leads.
    let (mut second, mut lines) = etcdctl_elect(&election, "from-etcdctl-2");
    let early = tokio::time::timeout(SETTLE, lines.next_line()).await;
    assert!(early.is_err(), "etcdctl won while elect leads: {early:?}");
    let observed = Command::from({
        let mut c = etcdctl();
        c.args([
            "get",
            "--prefix",
            &format!("{election}/"),
            "--sort-by=CREATE",
            "--limit=1",
        ]);
        c
    })
    .output()
    .await
    .unwrap();
    assert!(
        String::from_utf8_lossy(&observed.stdout).contains("from-elect"),
        "etcdctl does not see elect leading"
    );
    let resigned = Instant::now();
    leadership.resign().await.unwrap();
    intervals.push(Interval::new("elect", elected, resigned));
    let key = elected_key(&mut lines, "etcdctl leads after elect resigned").await;
    let etcdctl_from = Instant::now();
    assert!(key.starts_with(&format!("{election}/")));
    let seen = other.leader(&election).await.unwrap().expect("a leader");
    assert_eq!(seen.value, b"from-etcdctl-2");
    eprintln!(
        "elect resigned: etcdctl led {:?} later",
        etcdctl_from - resigned
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(second.id().unwrap() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    intervals.push(Interval::new("etcdctl", etcdctl_from, Instant::now()));
    let _ = second.wait().await;
    assert_no_overlap(&intervals);
}
