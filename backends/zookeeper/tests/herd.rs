//! No herd (L3): with 200 candidates waiting, a handover notifies only the successor: each
//! waiter watches its predecessor alone, so the ensemble fires O(1) watches for one handover —
//! read from its own counters.

mod support;

use std::time::Duration;

use elect_core::{Candidate, ElectionName, Elector};
use elect_zookeeper::ZookeeperElector;
use support::{config, connect, watches_fired};
use tokio::time::Instant;

const WAITING: usize = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handover_among_200_waiting_candidates_notifies_only_the_successor() {
    let election: ElectionName = format!("herd-{}", std::process::id()).parse().unwrap();
    let leader = connect().await;
    let leadership = leader
        .campaign(&election, &Candidate::new("leader", "leader").unwrap())
        .await
        .unwrap();
    // 200 candidates on one shared client (one session, like one process with many electors).
    let client = zookeeper_client::Client::connector()
        .with_session_timeout(Duration::from_secs(10))
        .connect(&support::connect_string())
        .await
        .unwrap();
    let mut waiting = Vec::new();
    for i in 0..WAITING {
        let elector = ZookeeperElector::with_client(client.clone(), &config()).unwrap();
        let name = election.clone();
        waiting.push(tokio::spawn(async move {
            let won = elector
                .campaign(
                    &name,
                    &Candidate::new(format!("c{i}"), format!("c{i}")).unwrap(),
                )
                .await
                .unwrap();
            (Instant::now(), won, elector)
        }));
    }
    let queue = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let queue = leader.candidates(&election).await.unwrap();
            if queue.len() == WAITING + 1 {
                return queue;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("every candidate joined");
    let next_in_line = queue[1].id.clone();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = watches_fired();
    let resigned = Instant::now();
    leadership.resign().await.unwrap();
    let (elected, successor, _elector) = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Some(i) = waiting.iter().position(|t| t.is_finished()) {
                return waiting.remove(i).await.unwrap();
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
    .expect("a successor leads");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let fired = watches_fired() - before;
    assert_eq!(
        successor.candidate_id(),
        next_in_line,
        "the successor is the next in line"
    );
    assert!(
        waiting.iter().all(|t| !t.is_finished()),
        "more than one candidate won"
    );
    assert!(
        fired <= 5,
        "one handover fired {fired} watches for {WAITING} waiting candidates"
    );
    eprintln!("{WAITING} waiting: successor led {:?} after the resign; the ensemble fired {fired} watches", elected - resigned);
    successor.resign().await.unwrap();
    for task in waiting {
        task.abort();
    }
}
