//! `consul lock` (from the same Debian package as the servers) and `elect` candidates in one
//! election: each side sees the other hold the lock, a release on either side hands over to
//! the other, and the logged holding intervals never overlap.

mod support;

use elect_test_support::{assert_no_overlap, Interval};

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use elect_core::{Candidate, ElectionName, Elector};
use support::{connect, consul};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};
use tokio::time::Instant;

const SETTLE: Duration = Duration::from_millis(500);

/// `consul lock <election> <child>`: the child says "acquired", then holds until `stop` exists.
fn consul_lock(election: &ElectionName, stop: &Path) -> (Child, Lines<BufReader<ChildStdout>>) {
    let child = format!(
        "echo acquired; while [ ! -e {} ]; do sleep 0.02; done",
        stop.display()
    );
    let mut command = Command::from(consul());
    command
        .args(["lock", election.as_str(), &child])
        .stdout(Stdio::piped())
        .kill_on_drop(true);
    let mut process = command.spawn().expect("start consul lock");
    let lines = BufReader::new(process.stdout.take().unwrap()).lines();
    (process, lines)
}

async fn said(lines: &mut Lines<BufReader<ChildStdout>>, within: Duration) -> Option<String> {
    tokio::time::timeout(within, lines.next_line())
        .await
        .ok()
        .and_then(|l| l.unwrap())
}

#[tokio::test]
async fn consul_lock_and_elect_share_one_election() {
    let dir = tempfile::tempdir().unwrap();
    let elector = connect().await;
    let election: ElectionName = elect_test_support::unique_name("interop").parse().unwrap();
    let mut intervals = Vec::new();

    // 1. consul lock holds; elect sees a holder and waits; the child ends and elect leads.
    let stop = dir.path().join("stop-1");
    let (mut first, mut lines) = consul_lock(&election, &stop);
    assert_eq!(
        said(&mut lines, Duration::from_secs(10)).await.as_deref(),
        Some("acquired")
    );
    let held_from = Instant::now();
    let holder = elector
        .leader(&election)
        .await
        .unwrap()
        .expect("elect sees consul lock's holder");
    assert_ne!(holder.id, "rust");
    let mut campaign = {
        let elector = connect().await;
        let election = election.clone();
        tokio::spawn(async move {
            let leadership = elector
                .campaign(&election, &Candidate::new("rust", "rust").unwrap())
                .await
                .unwrap();
            (Instant::now(), leadership, elector)
        })
    };
    tokio::time::sleep(SETTLE).await;
    assert!(!campaign.is_finished(), "elect won while consul lock holds");
    let released = Instant::now();
    std::fs::write(&stop, "").unwrap();
    let (elected, leadership, _other) =
        tokio::time::timeout(Duration::from_secs(10), &mut campaign)
            .await
            .expect("elect leads after consul lock released")
            .unwrap();
    let _ = first.wait().await;
    // The child stops once it sees the file; its holding ends then, at the latest.
    intervals.push(Interval {
        who: "consul lock",
        from: held_from,
        to: released + Duration::from_millis(20),
    });
    eprintln!(
        "consul lock released: elect led {:?} after the child was told to stop",
        elected - released
    );

    // 2. elect leads; consul lock waits; elect resigns and consul lock's child runs.
    let stop = dir.path().join("stop-2");
    let (mut second, mut lines) = consul_lock(&election, &stop);
    assert_eq!(
        said(&mut lines, SETTLE).await,
        None,
        "consul lock acquired while elect leads"
    );
    let resigned = Instant::now();
    leadership.resign().await.unwrap();
    intervals.push(Interval {
        who: "elect",
        from: elected,
        to: resigned,
    });
    assert_eq!(
        said(&mut lines, Duration::from_secs(10)).await.as_deref(),
        Some("acquired")
    );
    let held_from = Instant::now();
    eprintln!(
        "elect resigned: consul lock's child ran {:?} later",
        held_from - resigned
    );
    let holder = elector.leader(&election).await.unwrap().expect("a holder");
    assert_ne!(holder.id, "rust");
    std::fs::write(&stop, "").unwrap();
    let _ = second.wait().await;
    intervals.push(Interval {
        who: "consul lock",
        from: held_from,
        to: Instant::now(),
    });

    let origin = intervals[0].from;
    for i in &intervals {
        eprintln!(
            "{:>12} held from {:?} to {:?}",
            i.who,
            i.from - origin,
            i.to - origin
        );
    }
    assert_no_overlap(&intervals);
}
