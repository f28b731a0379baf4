//! The no-herd check (L3) that the queue backends (etcd, ZooKeeper) run against the store's own
//! counters.

use std::time::Duration;

use elect_core::testkit::Won;
use elect_core::{Elector, Leadership};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::first_finished;

/// `leadership` resigns while `waiting` campaigns stand in line behind it: `next_in_line` must
/// win, every other campaign must go on waiting, and the store's `counter` (e.g. the watch
/// events its members sent, named by `counted`) must grow by `at_most`, a bound that does not
/// depend on the number of waiters. Ends the successor's term and the waiting campaigns.
pub async fn one_handover_wakes_only_the_successor<E: Elector + 'static>(
    leadership: Leadership,
    mut waiting: Vec<JoinHandle<Won<E>>>,
    next_in_line: &str,
    counter: impl Fn() -> u64,
    counted: &str,
    at_most: u64,
) {
    // Let every waiter's watch be established and settled.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = counter();
    let resigned = Instant::now();
    leadership.resign().await.unwrap();
    let Won {
        leadership: successor,
        at: elected,
        elector: _elector,
    } = tokio::time::timeout(Duration::from_secs(5), first_finished(&mut waiting))
        .await
        .expect("a successor leads");
    // Give any herd the time to show in the counters.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let count = counter() - before;
    assert_eq!(
        successor.candidate_id(),
        next_in_line,
        "the successor is the next in line"
    );
    assert!(
        waiting.iter().all(|t| !t.is_finished()),
        "more than one candidate won"
    );
    let waiters = waiting.len() + 1;
    assert!(
        count <= at_most,
        "one handover cost {count} {counted} for {waiters} waiting candidates"
    );
    eprintln!(
        "{waiters} waiting: successor led {:?} after the resign; {count} {counted}",
        elected - resigned
    );
    successor.resign().await.unwrap();
    for task in waiting {
        task.abort();
    }
}
