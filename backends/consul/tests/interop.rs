//! `consul lock` (from the same Debian package as the servers) and `elect` candidates in one
//! election: each side sees the other hold the lock, a release on either side hands over to
//! the other, and the logged holding intervals never overlap.
//!
//! Intervals are wall-clock nanoseconds: `consul lock`'s child stamps its own first and last
//! moment with `date +%s%N`, because when the test reads the child's output, or sees
//! `consul lock` exit, can be later than when `elect` takes over (a past run guessed the child's
//! end from its poll period and saw a false overlap of 4 ms).

mod support;

use elect_test_support::{assert_no_overlap, Interval};

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use elect_core::testkit::campaign_as;
use elect_core::{ElectionName, Elector};
use support::{connect, consul};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

const SETTLE: Duration = Duration::from_millis(500);

/// `consul lock <election> <child>`: the child stamps `<stop>.from`, says "acquired", holds
/// until `stop` exists, and stamps `<stop>.to` as its last act.
fn consul_lock(election: &ElectionName, stop: &Path) -> (Child, Lines<BufReader<ChildStdout>>) {
    let stop = stop.display();
    let child = format!(
        "date +%s%N > {stop}.from; echo acquired; while [ ! -e {stop} ]; do sleep 0.02; done; date +%s%N > {stop}.to"
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

/// Now, on the wall clock that `date +%s%N` reads (since the epoch).
fn now() -> Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970")
}

/// The stamp the child wrote to `<stop>.<end>` (`date +%s%N`).
fn stamp(stop: &Path, end: &str) -> Duration {
    let path = stop.with_extension(end);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let nanos: u64 = text
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("{}: {e}: {text:?}", path.display()));
    Duration::from_nanos(nanos)
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
            let leadership = campaign_as(&elector, &election, "rust").await;
            (now(), leadership, elector)
        })
    };
    tokio::time::sleep(SETTLE).await;
    assert!(!campaign.is_finished(), "elect won while consul lock holds");
    let released = now();
    std::fs::write(&stop, "").unwrap();
    let (elected, leadership, _other) =
        tokio::time::timeout(Duration::from_secs(10), &mut campaign)
            .await
            .expect("elect leads after consul lock released")
            .unwrap();
    let _ = first.wait().await;
    intervals.push(Interval::new(
        "consul lock",
        stamp(&stop, "from"),
        stamp(&stop, "to"),
    ));
    eprintln!(
        "consul lock released: elect led {:?} after the child was told to stop",
        elected.saturating_sub(released)
    );

    // 2. elect leads; consul lock waits; elect resigns and consul lock's child runs.
    let stop = dir.path().join("stop-2");
    let (mut second, mut lines) = consul_lock(&election, &stop);
    assert_eq!(
        said(&mut lines, SETTLE).await,
        None,
        "consul lock acquired while elect leads"
    );
    let resigned = now();
    leadership.resign().await.unwrap();
    intervals.push(Interval::new("elect", elected, resigned));
    assert_eq!(
        said(&mut lines, Duration::from_secs(10)).await.as_deref(),
        Some("acquired")
    );
    let held_from = stamp(&stop, "from");
    eprintln!(
        "elect resigned: consul lock's child ran {:?} later",
        held_from.saturating_sub(resigned)
    );
    let holder = elector.leader(&election).await.unwrap().expect("a holder");
    assert_ne!(holder.id, "rust");
    std::fs::write(&stop, "").unwrap();
    let _ = second.wait().await;
    intervals.push(Interval::new("consul lock", held_from, stamp(&stop, "to")));

    assert_no_overlap(&intervals);
}
