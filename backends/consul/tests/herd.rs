//! No herd (L3) on Consul: waiting `elect` candidates line up under `<election>/.queue/`, each
//! watching the place before its own and only the head the lock key, so a handover costs a
//! few requests and wakes one waiter, whatever the number waiting. Counted at a proxy that
//! every elector of the test talks through.

mod support;

use std::sync::Arc;
use std::time::Duration;

use elect_consul::ConsulElector;
use elect_core::config::ConsulConfig;
use elect_core::testkit::{campaign_as, spawn_campaign_as};
use elect_core::{ElectionName, Elector, LossReason};
use elect_test_support::clusters::{TestCluster, TestConfig};
use elect_test_support::herd::one_handover_wakes_only_the_successor;
use elect_test_support::proxy::{Link, Proxy};

/// Each waiter holds a connection for its blocking query, and Consul takes 200 connections
/// per client address by default (the test clusters take more; a cluster the tests are
/// pointed at may not).
const WAITING: usize = 40;

/// Waits until `election`'s line holds `n` places.
async fn line_holds(election: &ElectionName, n: usize) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while places(election) != n {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the line holds {} places, not {n}", places(election)));
}

/// Places in line of `election`, as `consul kv get -keys` shows them.
fn places(election: &ElectionName) -> usize {
    let (status, body) = support::http("GET", &format!("/v1/kv/{election}/.queue/?keys"));
    match status {
        404 => 0,
        200 => body.matches(".queue/").count(),
        _ => panic!("list the line: {status} {body}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handover_among_40_waiting_candidates_wakes_only_the_successor() {
    let proxy = Proxy::in_front_of(&TestCluster::Consul.addresses())
        .await
        .unwrap();
    let config = ConsulConfig::aimed_at(&proxy.list());
    let election: ElectionName = elect_test_support::unique_name("herd").parse().unwrap();
    let leader = ConsulElector::connect(&config).await.unwrap();
    let leadership = campaign_as(&leader, &election, "leader").await;
    let mut waiting = Vec::new();
    for i in 0..WAITING {
        let elector = ConsulElector::connect(&config).await.unwrap();
        waiting.push(spawn_campaign_as(elector, &election, &format!("c{i}")));
        // Join one at a time, so that the order is known.
        line_holds(&election, i + 1).await;
    }
    // What the electors asked of the store, session renewals aside (they run on their own
    // clock, whatever the handover).
    let asked = || {
        proxy
            .requests()
            .iter()
            .filter(|request| !request.contains("/v1/session/renew/"))
            .count() as u64
    };
    // The leader's read of its successor, the hand-over, and the new leader's watch on its
    // lock. The waiter behind the leader blocks on the lock key and is woken by the hand-over
    // itself; a leader keeps its place in line while it leads, so the waiter behind the
    // successor is not woken at all.
    one_handover_wakes_only_the_successor(
        leadership,
        waiting,
        "c0",
        asked,
        "requests to the agents",
        3,
    )
    .await;
}

/// A leader keeps its place in line, and the waiter behind it waits on that place. When an
/// operator deletes the lock (`consul kv delete`), nobody resigns the revoked term, yet its
/// place must go: the waiter behind it leads, not after the leader's session ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_waiter_behind_a_leader_whose_lock_was_deleted_by_hand_leads() {
    let config = ConsulConfig::aimed_at(&TestCluster::Consul.addresses());
    let election: ElectionName = elect_test_support::unique_name("revoked").parse().unwrap();
    let first = ConsulElector::connect(&config).await.unwrap();
    let first_term = campaign_as(&first, &election, "first").await;
    let a = ConsulElector::connect(&config).await.unwrap();
    let a_task = spawn_campaign_as(a, &election, "a");
    line_holds(&election, 1).await;
    first_term.resign().await.unwrap();
    let a_won = tokio::time::timeout(Duration::from_secs(5), a_task)
        .await
        .expect("a leads after the resign")
        .unwrap();
    let b = ConsulElector::connect(&config).await.unwrap();
    let b_task = spawn_campaign_as(b, &election, "b");
    // a's place, kept while it leads, and b's behind it.
    line_holds(&election, 2).await;

    let (status, body) = support::http("DELETE", &format!("/v1/kv/{election}/.lock"));
    assert_eq!(status, 200, "delete the lock key: {body}");
    let reason = tokio::time::timeout(Duration::from_secs(2), a_won.leadership.lost())
        .await
        .expect("a notices its lock was deleted");
    assert_eq!(reason, LossReason::Revoked);
    let b_won = tokio::time::timeout(Duration::from_secs(5), b_task)
        .await
        .expect("b leads while a's session lives on")
        .unwrap();
    assert_eq!(places(&election), 1, "only b's place is left");
    b_won.leadership.resign().await.unwrap();
    line_holds(&election, 0).await;
}

/// Waits until the waiter `id` wrote itself in as the successor of the one before it (into
/// that one's place, or `.next` for a holder without one), so that a release hands it the lock.
async fn registered(election: &ElectionName, id: &str) {
    registered_behind(election, id, None).await;
}

/// [`registered`], into the place that `session` holds if one is given.
async fn registered_behind(election: &ElectionName, id: &str, session: Option<&str>) {
    use base64::Engine as _;
    let written = format!("\"id\":\"{id}\"");
    let shown = || {
        let (status, body) = support::http("GET", &format!("/v1/kv/{election}/?recurse"));
        let entries: Vec<serde_json::Value> = match status {
            200 => serde_json::from_str(&body).expect("a list of entries"),
            _ => Vec::new(),
        };
        entries.iter().any(|entry| {
            if session.is_some_and(|session| entry["Session"].as_str() != Some(session)) {
                return false;
            }
            let value = entry["Value"].as_str().unwrap_or("");
            let bytes = base64::engine::general_purpose::STANDARD.decode(value);
            String::from_utf8_lossy(&bytes.unwrap_or_default()).contains(&written)
        })
    };
    tokio::time::timeout(Duration::from_secs(10), async {
        while !shown() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{id} did not write itself in as a successor"));
}

/// Every place in `election`'s line still carries the lock flags it was taken with (a waiter
/// that wrote itself into one must not reset them: the waiter behind checks them).
fn places_are_locks(election: &ElectionName) {
    let (status, body) = support::http("GET", &format!("/v1/kv/{election}/.queue/?recurse"));
    assert_eq!(status, 200, "list the line: {body}");
    let entries: Vec<serde_json::Value> = serde_json::from_str(&body).expect("a list of entries");
    for entry in entries {
        assert_eq!(
            entry["Flags"].as_u64(),
            Some(elect_consul::LOCK_FLAGS),
            "{} lost its lock flags",
            entry["Key"]
        );
    }
}

/// The leader hands the lock to the next in line in its release: one write for the whole
/// handover, not a release and then the successor's acquire; from a leader that won without
/// waiting (its successor wrote itself into `.next`) and from one that waited in line (its
/// successor wrote itself into its place). Each successor's token and name are what the
/// store shows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handover_to_the_next_in_line_is_one_write() {
    let proxy = Proxy::in_front_of(&TestCluster::Consul.addresses())
        .await
        .unwrap();
    let config = ConsulConfig::aimed_at(&proxy.list());
    let election: ElectionName = elect_test_support::unique_name("handed").parse().unwrap();
    let first = ConsulElector::connect(&config).await.unwrap();
    let mut term = campaign_as(&first, &election, "first").await;
    let mut electors = vec![first];
    for id in ["second", "third"] {
        let next = ConsulElector::connect(&config).await.unwrap();
        let next_task = spawn_campaign_as(next, &election, id);
        registered(&election, id).await;
        places_are_locks(&election);
        let writes = || {
            proxy
                .requests()
                .iter()
                .filter(|request| request.contains("/v1/txn"))
                .count()
        };
        let before = writes();
        term.resign().await.unwrap();
        let won = tokio::time::timeout(Duration::from_secs(5), next_task)
            .await
            .unwrap_or_else(|_| panic!("{id} leads after the resign"))
            .unwrap();
        assert_eq!(writes() - before, 1, "writes for the handover to {id}");
        let shown = electors[0]
            .leader(&election)
            .await
            .unwrap()
            .expect("a leader");
        assert_eq!(shown.id, id);
        assert_eq!(
            shown.token,
            won.leadership.token(),
            "{id}'s token is the lock's ModifyIndex"
        );
        assert!(shown.token > term.token());
        term = won.leadership;
        electors.push(won.elector);
    }
    term.resign().await.unwrap();
    line_holds(&election, 0).await;
}

/// A waiter that wrote itself into the leader's place and then left the line (its campaign
/// dropped, its elector and session alive) is not handed the lock: the leader's release
/// leaves it free, and a newcomer leads at once, not when the waiter's session ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_that_left_the_line_is_not_handed_the_lock() {
    let config = ConsulConfig::aimed_at(&TestCluster::Consul.addresses());
    let election: ElectionName = elect_test_support::unique_name("left").parse().unwrap();
    let leader = ConsulElector::connect(&config).await.unwrap();
    let leadership = campaign_as(&leader, &election, "leader").await;
    let gone = Arc::new(ConsulElector::connect(&config).await.unwrap());
    let campaign = tokio::spawn({
        let (gone, election) = (gone.clone(), election.clone());
        async move { campaign_as(&*gone, &election, "gone").await }
    });
    registered(&election, "gone").await;
    campaign.abort();
    assert!(campaign.await.unwrap_err().is_cancelled());
    // A new try of the same elector starts once the dropped campaign's withdrawal is done
    // (the leader still holds the lock): its place is gone, the leader's none.
    let tried = tokio::time::timeout(
        Duration::from_secs(5),
        gone.try_campaign(
            &election,
            &elect_core::Candidate::new("gone", "gone").unwrap(),
        ),
    )
    .await
    .expect("the withdrawal ends")
    .unwrap();
    assert!(tried.is_none(), "the leader holds the lock");
    line_holds(&election, 0).await;
    leadership.resign().await.unwrap();
    let newcomer = ConsulElector::connect(&config).await.unwrap();
    let won = tokio::time::timeout(
        Duration::from_secs(2),
        campaign_as(&newcomer, &election, "newcomer"),
    )
    .await
    .expect("a newcomer leads: the lock was not handed to the waiter that left");
    assert!(
        gone.session_id().await.is_some(),
        "the waiter's session lives on"
    );
    won.resign().await.unwrap();
}

/// A waiter that wrote itself in as the successor, left the line and came back to a place
/// further back is not handed the lock on the strength of what it wrote before: there it
/// watches the place before its new one, not the lock, and would hold the lock without
/// knowing it while everyone else waits (its session lives on). Here `back` writes itself
/// into `.next` at the head, `slow` lines up behind it and is cut off, `back` leaves and comes
/// back behind `slow` before `slow` can write itself into `.next`, and the leader resigns:
/// someone must lead once `slow` is heard again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_that_came_back_further_back_is_not_handed_the_lock() {
    let config = ConsulConfig::aimed_at(&TestCluster::Consul.addresses());
    let election: ElectionName = elect_test_support::unique_name("back").parse().unwrap();
    let leader = ConsulElector::connect(&config).await.unwrap();
    let leadership = campaign_as(&leader, &election, "leader").await;

    let back = Arc::new(ConsulElector::connect(&config).await.unwrap());
    let spawn_back = || {
        let (back, election) = (back.clone(), election.clone());
        tokio::spawn(async move { campaign_as(&*back, &election, "back").await })
    };
    let first_try = spawn_back();
    registered(&election, "back").await;

    let proxy = Proxy::in_front_of(&TestCluster::Consul.addresses())
        .await
        .unwrap();
    let slow = ConsulElector::connect(&ConsulConfig::aimed_at(&proxy.list()))
        .await
        .unwrap();
    let slow_task = spawn_campaign_as(slow, &election, "slow");
    registered(&election, "slow").await;
    // Cut for less than the TTL: slow's session and place live on.
    proxy.set(Link::Cut);

    first_try.abort();
    assert!(first_try.await.unwrap_err().is_cancelled());
    line_holds(&election, 1).await;
    let second_try = spawn_back();
    line_holds(&election, 2).await;
    let slow_session = {
        let (status, body) = support::http("GET", &format!("/v1/kv/{election}/.queue/?recurse"));
        assert_eq!(status, 200, "list the line: {body}");
        let entries: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
        let first = entries
            .iter()
            .min_by_key(|e| e["CreateIndex"].as_u64())
            .expect("a place");
        first["Session"].as_str().expect("held").to_owned()
    };
    registered_behind(&election, "back", Some(&slow_session)).await;

    leadership.resign().await.unwrap();
    proxy.set(Link::Up);
    let first = tokio::time::timeout(
        Duration::from_secs(5),
        futures::future::select(slow_task, second_try),
    )
    .await
    .expect("someone leads after the resign: the lock went to a waiter not watching for it");
    let futures::future::Either::Left((slow_won, back_task)) = first else {
        panic!("back led before slow, which is at the head of the line");
    };
    slow_won.unwrap().leadership.resign().await.unwrap();
    let back_won = tokio::time::timeout(Duration::from_secs(5), back_task)
        .await
        .expect("back leads after slow")
        .unwrap();
    back_won.resign().await.unwrap();
    line_holds(&election, 0).await;
}

/// A release that lands between a waiter's read of the line and its write of itself as the
/// successor frees the lock before anyone can be handed it: the waiter must see that release
/// on its watch of the lock, not wait from its own later write, past the release, until the
/// blocking query's 30 s run out. The waiter talks through a slow link, so that the leader's
/// resign, sent as soon as the waiter's write leaves it, lands on the server first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_between_a_waiters_read_and_its_write_wakes_it() {
    let config = ConsulConfig::aimed_at(&TestCluster::Consul.addresses());
    let election: ElectionName = elect_test_support::unique_name("between").parse().unwrap();
    let leader = ConsulElector::connect(&config).await.unwrap();
    let leadership = campaign_as(&leader, &election, "leader").await;

    let proxy = Proxy::in_front_of(&TestCluster::Consul.addresses())
        .await
        .unwrap();
    proxy.set(Link::Slow(Duration::from_millis(300)));
    let waiter = ConsulElector::connect(&ConsulConfig::aimed_at(&proxy.list()))
        .await
        .unwrap();
    let waiter_task = spawn_campaign_as(waiter, &election, "waiter");
    // The waiter's read of the line, then its write of itself into `.next`: the write is on
    // its way (300 ms) when the leader resigns.
    let wrote_after_reading = || {
        let requests = proxy.requests();
        requests
            .iter()
            .position(|r| r.starts_with("GET ") && r.contains("recurse"))
            .is_some_and(|read| requests[read..].iter().any(|r| r.contains("/v1/txn")))
    };
    tokio::time::timeout(Duration::from_secs(10), async {
        while !wrote_after_reading() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
    .expect("the waiter reads the line and writes itself in");
    leadership.resign().await.unwrap();
    let won = tokio::time::timeout(Duration::from_secs(5), waiter_task)
        .await
        .expect("the waiter leads after the resign, not when its blocking query runs out")
        .unwrap();
    assert_eq!(won.leadership.candidate_id(), "waiter");
    won.leadership.resign().await.unwrap();
    line_holds(&election, 0).await;
}
