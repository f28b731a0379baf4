//! Faults against the real 3-node etcd cluster, each with the time it took measured and
//! bounded. The cases run one at a time: they freeze and kill the cluster's members.

mod support;

use std::time::Duration;

use elect_core::config::EtcdConfig;
use elect_core::testkit::{campaign_as, spawn_campaign_as, Won};
use elect_core::{Candidate, Elector, LeadershipState, LossReason};
use elect_test_support::cluster;
use elect_test_support::clusters::TestConfig;
use elect_test_support::faults::{self, election, lead, me, MemberFault};
use support::{connect, etcdctl, TTL};
use tokio::sync::Mutex;
use tokio::time::Instant;

/// The faults share one cluster: one at a time.
static SERIAL: Mutex<()> = Mutex::const_new(());

fn run_ok(mut command: std::process::Command) -> String {
    let output = elect_test_support::process::output_ok(&mut command);
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn lease_revoked_by_etcdctl_is_lost_within_a_second() {
    let _serial = SERIAL.lock().await;
    let elector = connect().await;
    let (election, leadership) = lead(&elector, "revoke").await;
    let lease = elector.lease_id().await.expect("a lease");
    let mut revoke = etcdctl();
    revoke.args(["lease", "revoke", &format!("{lease:x}")]);
    let started = Instant::now();
    run_ok(revoke);
    let reason = tokio::time::timeout(Duration::from_secs(1), leadership.lost())
        .await
        .expect("lost within 1 s of the revoke");
    let took = started.elapsed();
    assert_eq!(reason, LossReason::Revoked);
    assert!(!leadership.is_leader());
    eprintln!("lease revoked: lost after {took:?}");
    // The elector takes a new lease for its next campaign.
    let again = tokio::time::timeout(Duration::from_secs(5), elector.campaign(&election, &me()))
        .await
        .expect("campaign after a revoke")
        .unwrap();
    assert!(again.token() > leadership.token());
    again.resign().await.unwrap();
}

#[tokio::test]
async fn a_frozen_cluster_ends_leadership_by_the_deadline() {
    let _serial = SERIAL.lock().await;
    let elector = connect().await;
    let (_, leadership) = lead(&elector, "frozen").await;
    // Let a renewal or two through, so the deadline is a renewed one.
    tokio::time::sleep(TTL / 2).await;
    faults::frozen_cluster_ends_the_term_by_its_deadline("etcd", &leadership, TTL).await;
}

/// Killing a member costs at most a raft election (up to ~2 s with the test cluster's 1 s
/// election timeout) without answered keep-alives, so the TTL must leave more headroom than
/// that: TTL − TTL/3 − margin ≈ 3.4 s at 6 s.
#[tokio::test]
async fn a_killed_member_does_not_cost_the_leadership() {
    let _serial = SERIAL.lock().await;
    let mut config = EtcdConfig::for_tests();
    config.ttl = Duration::from_secs(6);
    for victim in ["follower", "raft leader"] {
        let elector = elect_etcd::EtcdElector::connect(&config).await.unwrap();
        let (_, leadership) = lead(&elector, "member").await;
        let raft_leader: u32 = String::from_utf8_lossy(&cluster(&["leader", "etcd"]).stdout)
            .trim()
            .parse()
            .unwrap();
        let node = if victim == "raft leader" {
            raft_leader
        } else {
            raft_leader % 3 + 1
        };
        let node = node.to_string();
        cluster(&["kill", "etcd", &node]);
        let mut states = leadership.subscribe();
        let watched = tokio::time::timeout(config.ttl * 2, async {
            loop {
                if let LeadershipState::Lost(reason) = states.changed().await {
                    return reason;
                }
            }
        })
        .await;
        cluster(&["start", "etcd", &node]);
        cluster(&["wait", "etcd", "all", "60"]);
        assert!(
            watched.is_err(),
            "killing the {victim} (member {node}) lost the leadership: {watched:?}"
        );
        assert!(
            leadership.is_leader(),
            "not leading after the {victim} died"
        );
        leadership.resign().await.unwrap();
        eprintln!(
            "{victim} (member {node}) killed: leadership kept for {:?}",
            config.ttl * 2
        );
    }
}

async fn next(
    observed: &mut elect_core::LeaderStream,
) -> elect_core::Result<Option<elect_core::LeaderInfo>> {
    let item = futures::StreamExt::next(observed);
    tokio::time::timeout(Duration::from_secs(30), item)
        .await
        .expect("an observation within 30 s")
        .expect("the observe stream stays open")
}

#[tokio::test]
async fn observers_resync_after_a_whole_cluster_restart_and_compaction() {
    let _serial = SERIAL.lock().await;
    let (a, b, watcher) = (connect().await, connect().await, connect().await);
    let election = election("resync");
    let mut observed = watcher.observe(&election).await.unwrap();
    assert!(next(&mut observed).await.unwrap().is_none());
    let leadership = campaign_as(&a, &election, "a").await;
    assert_eq!(next(&mut observed).await.unwrap().unwrap().id, "a");

    // Every member down at once: every watch stream breaks.
    {
        let _restart = MemberFault::kill("etcd", &["1", "2", "3"]);
    }
    // A restart quicker than the deadline's headroom costs a nothing; either way it steps down.
    eprintln!("after the restart a is {:?}", leadership.state());
    let b_campaign = {
        let election = election.clone();
        tokio::spawn(async move {
            b.campaign(&election, &Candidate::new("b", "b-0").unwrap())
                .await
                .map(|t| (t, b))
        })
    };
    leadership.resign().await.unwrap();
    let (b_term, b) = tokio::time::timeout(Duration::from_secs(30), b_campaign)
        .await
        .expect("b leads after a stepped down")
        .unwrap()
        .unwrap();
    // Churn, then compact everything the observer could have been watching from.
    for i in 1..=20 {
        b_term.proclaim(format!("b-{i}")).await.unwrap();
    }
    let mut client = b.client().clone();
    let revision = client
        .get("x", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    client
        .compact(
            revision,
            Some(etcd_client::CompactionOptions::new().with_physical()),
        )
        .await
        .unwrap();
    b_term.proclaim("b-final").await.unwrap();
    let truth = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Ok(Some(leader)) = next(&mut observed).await {
                if leader.value == b"b-final" {
                    return leader;
                }
            }
        }
    })
    .await
    .expect("the observer caught up with the truth after the restart and the compaction");
    assert_eq!((truth.id.as_str(), truth.token), ("b", b_term.token()));
    b_term.resign().await.unwrap();
}

/// etcd-io/etcd#19597: a campaign whose lease dies while it waits must not go on waiting
/// with a dead claim and then "win" — it takes a new lease and a new place in line.
#[tokio::test]
async fn a_waiting_campaign_whose_lease_is_revoked_is_no_zombie() {
    let _serial = SERIAL.lock().await;
    let (a, b) = (connect().await, connect().await);
    let election = election("zombie");
    let first = campaign_as(&a, &election, "a").await;
    let waiting = spawn_campaign_as(b, &election, "b");
    let lists_b = || async {
        a.candidates(&election)
            .await
            .unwrap()
            .into_iter()
            .any(|c| c.id == "b")
    };
    tokio::time::timeout(Duration::from_secs(5), async {
        while !lists_b().await {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("b waiting");
    // b's lease, from its claim's key.
    let old_key = {
        let mut client = a.client().clone();
        let listed = client
            .get(
                format!("{election}/"),
                Some(etcd_client::GetOptions::new().with_prefix().with_sort(
                    etcd_client::SortTarget::Create,
                    etcd_client::SortOrder::Ascend,
                )),
            )
            .await
            .unwrap();
        String::from_utf8(listed.kvs()[1].key().to_vec()).unwrap()
    };
    let old_lease = old_key.rsplit('/').next().unwrap().to_owned();
    let mut revoke = etcdctl();
    revoke.args(["lease", "revoke", &old_lease]);
    run_ok(revoke);
    // b comes back in line under a new lease, within a second.
    let rejoined = Instant::now();
    tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            let keys = a.candidates(&election).await.unwrap();
            if keys.iter().any(|c| c.id == "b") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("b campaigns again under a new lease");
    assert!(!waiting.is_finished(), "b won while a leads");
    first.resign().await.unwrap();
    let Won {
        leadership: won,
        elector: b,
        ..
    } = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("b leads")
        .unwrap();
    let leader = b.leader(&election).await.unwrap().expect("a leader");
    assert_eq!(
        (leader.id.as_str(), leader.token),
        ("b", won.token()),
        "b leads on a claim the store shows"
    );
    assert_ne!(
        format!("{:x}", b.lease_id().await.unwrap()),
        old_lease,
        "b leads on its revoked lease"
    );
    eprintln!(
        "revoked while waiting: back in line after {:?}",
        rejoined.elapsed()
    );
    won.resign().await.unwrap();
}

/// S2 when our key is still there at campaign time (a release that never landed, a campaign
/// retried after an uncertain create): the key is made again, so the new term's token is
/// greater — never the old key's revision taken over with the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_of_ours_left_from_an_earlier_term_is_made_again_with_a_greater_token() {
    let _serial = SERIAL.lock().await;
    let elector = connect().await;
    let (election, first) = lead(&elector, "leftover").await;
    first.resign().await.unwrap();
    // Put our key back by hand, under our own live lease: what a lost release leaves.
    let lease = elector.lease_id().await.expect("a lease");
    let key = format!("{election}/{lease:x}");
    let left = elector
        .client()
        .clone()
        .put(
            key.as_str(),
            "left over",
            Some(etcd_client::PutOptions::new().with_lease(lease)),
        )
        .await
        .expect("put the leftover key");
    let left_revision = left.header().map_or(0, |h| h.revision());
    let second = tokio::time::timeout(Duration::from_secs(5), elector.campaign(&election, &me()))
        .await
        .expect("campaign within 5 s")
        .unwrap();
    assert!(
        second.token().get() > left_revision as u64,
        "token {} taken over from the leftover key made at {left_revision}",
        second.token(),
    );
    assert!(second.is_leader());
    second.resign().await.unwrap();
}

/// The keys of `election`'s candidates, oldest first.
async fn claims(
    elector: &elect_etcd::EtcdElector,
    election: &elect_core::ElectionName,
) -> Vec<Vec<u8>> {
    let options = etcd_client::GetOptions::new()
        .with_prefix()
        .with_keys_only()
        .with_sort(
            etcd_client::SortTarget::Create,
            etcd_client::SortOrder::Ascend,
        );
    let mut client = elector.client().clone();
    let got = client
        .get(format!("{election}/"), Some(options))
        .await
        .unwrap();
    got.kvs().iter().map(|kv| kv.key().to_vec()).collect()
}

/// Waits until the candidate `id` has written its id key in `election` (with its claim).
async fn joined(elector: &elect_etcd::EtcdElector, election: &elect_core::ElectionName, id: &str) {
    let options = etcd_client::GetOptions::new().with_prefix();
    let mut client = elector.client().clone();
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let got = client
                .get(format!("{election}:id/"), Some(options.clone()))
                .await
                .unwrap();
            if got.kvs().iter().any(|kv| kv.value() == id.as_bytes()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{id} never joined {election}"));
}

/// The next in line watches its own key with its predecessor's and leads on the
/// predecessor's delete without another read: its own key deleted by hand meanwhile must
/// still keep it from leading. A newcomer joins after the delete — its only predecessor may
/// be the leader — and when the leader resigns, one of the two leads and the other does not
/// until that one resigns.
#[tokio::test]
async fn the_next_in_line_whose_key_was_deleted_by_hand_does_not_lead_beside_another() {
    let _serial = SERIAL.lock().await;
    let leader = connect().await;
    let (election, leadership) = lead(&leader, "next-deleted").await;
    let next = spawn_campaign_as(connect().await, &election, "next");
    joined(&leader, &election, "next").await;
    let next_key = claims(&leader, &election).await[1].clone();
    let mut client = leader.client().clone();
    client.delete(next_key, None).await.unwrap();
    let newcomer = spawn_campaign_as(connect().await, &election, "newcomer");
    joined(&leader, &election, "newcomer").await;
    leadership.resign().await.unwrap();
    let mut waiting = [next, newcomer];
    let (first, i, _) = tokio::time::timeout(
        Duration::from_secs(5),
        futures::future::select_all(waiting.iter_mut()),
    )
    .await
    .expect("one leads after the resign");
    let first = first.unwrap();
    let other = &mut waiting[1 - i];
    if let Ok(second) = tokio::time::timeout(Duration::from_secs(1), &mut *other).await {
        panic!(
            "{} led beside {}",
            second.unwrap().leadership.candidate_id(),
            first.leadership.candidate_id()
        );
    }
    first.leadership.resign().await.unwrap();
    let Won { leadership, .. } = tokio::time::timeout(Duration::from_secs(5), other)
        .await
        .expect("the other leads after the first resigned")
        .unwrap();
    leadership.resign().await.unwrap();
}
