//! kazoo's `Lock` (configured with `extra_lock_patterns=("-latch-",)`, the way kazoo joins a
//! Curator latch) and `elect` candidates in one election directory: each side sees the other
//! lead, a release on either side hands over to the other, and the logged leadership
//! intervals never overlap.

mod support;

use elect_test_support::{assert_no_overlap, Interval};

use std::process::Stdio;
use std::time::Duration;

use elect_core::testkit::{spawn_campaign_as, Won};
use elect_core::{ElectionName, Elector};
use elect_test_support::clusters::TestCluster;
use support::connect;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};
use tokio::time::Instant;

const SETTLE: Duration = Duration::from_millis(500);

/// Acquires a kazoo lock, says so, releases it when told to.
const KAZOO: &str = r#"
import sys
from kazoo.client import KazooClient
hosts, path, identifier = sys.argv[1:4]
zk = KazooClient(hosts=hosts)
zk.start()
lock = zk.Lock(path, identifier, extra_lock_patterns=("-latch-",))
lock.acquire()
print("acquired", flush=True)
sys.stdin.readline()
lock.release()
print("released", flush=True)
zk.stop()
"#;

struct Kazoo {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Kazoo {
    fn start(election: &ElectionName, identifier: &str) -> Kazoo {
        let mut child = Command::new(elect_test_support::python())
            .args([
                "-c",
                KAZOO,
                &TestCluster::Zookeeper.addresses(),
                &format!("/{election}"),
                identifier,
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start kazoo");
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Kazoo { child, lines }
    }

    async fn said(&mut self, within: Duration) -> Option<String> {
        tokio::time::timeout(within, self.lines.next_line())
            .await
            .ok()
            .map(|l| l.unwrap().unwrap())
    }

    async fn release(&mut self) {
        self.child
            .stdin
            .as_mut()
            .unwrap()
            .write_all(b"release\n")
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn kazoo_and_elect_share_one_election() {
    let elector = connect().await;
    let election: ElectionName = elect_test_support::unique_name("interop").parse().unwrap();
    let mut intervals = Vec::new();

    // 1. kazoo leads; elect sees it and waits; kazoo releases and elect leads.
    let mut first = Kazoo::start(&election, "kazoo-1");
    assert_eq!(
        first.said(Duration::from_secs(10)).await.as_deref(),
        Some("acquired")
    );
    let kazoo_from = Instant::now();
    let seen = elector
        .leader(&election)
        .await
        .unwrap()
        .expect("elect sees kazoo's lock");
    assert_eq!(seen.id, "kazoo-1");
    let mut campaign = spawn_campaign_as(connect().await, &election, "rust");
    tokio::time::sleep(SETTLE).await;
    assert!(
        !campaign.is_finished(),
        "elect won while kazoo holds the lock"
    );
    let released = Instant::now();
    first.release().await;
    let Won {
        leadership,
        at: elected,
        elector: _other,
    } = tokio::time::timeout(Duration::from_secs(5), &mut campaign)
        .await
        .expect("elect leads after kazoo released")
        .unwrap();
    intervals.push(Interval::new("kazoo", kazoo_from, released));
    eprintln!("kazoo released: elect led {:?} later", elected - released);

    // 2. elect leads; kazoo waits and sees it; elect resigns and kazoo acquires.
    let mut second = Kazoo::start(&election, "kazoo-2");
    assert_eq!(
        second.said(SETTLE).await,
        None,
        "kazoo acquired while elect leads"
    );
    let resigned = Instant::now();
    leadership.resign().await.unwrap();
    intervals.push(Interval::new("elect", elected, resigned));
    assert_eq!(
        second.said(Duration::from_secs(5)).await.as_deref(),
        Some("acquired")
    );
    let kazoo_from = Instant::now();
    eprintln!(
        "elect resigned: kazoo acquired {:?} later",
        kazoo_from - resigned
    );
    assert_eq!(
        elector
            .leader(&election)
            .await
            .unwrap()
            .expect("a leader")
            .id,
        "kazoo-2"
    );
    let released = Instant::now();
    second.release().await;
    assert_eq!(
        second.said(Duration::from_secs(5)).await.as_deref(),
        Some("released")
    );
    intervals.push(Interval::new("kazoo", kazoo_from, released));

    assert_no_overlap(&intervals);
}
