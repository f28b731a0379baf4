//! Faults against the real 3-node ZooKeeper ensemble, each with its time measured and
//! bounded. The cases run one at a time: they kill and freeze members.

mod support;

use std::time::Duration;

use elect_core::config::ZookeeperConfig;
use elect_core::{Candidate, Elector, LeadershipState, LossReason};
use elect_test_support::clusters::{TestCluster, TestConfig};
use elect_test_support::faults::{election, lead, me, MemberFault};
use elect_test_support::proxy::{Link, Proxy};
use elect_zookeeper::ZookeeperElector;
use support::{connect, member_of_session, watched_by};
use tokio::sync::Mutex;
use tokio::time::Instant;

static SERIAL: Mutex<()> = Mutex::const_new(());

/// The client moves to another member within its connection timeout; with a 4 s session
/// that is well inside the deadline's headroom.
#[tokio::test]
async fn killing_the_member_we_talk_to_suspends_and_resumes_without_loss() {
    let _serial = SERIAL.lock().await;
    let mut config = ZookeeperConfig::for_tests();
    config.session_timeout = Duration::from_secs(4);
    let elector = ZookeeperElector::connect(&config).await.unwrap();
    let (election, leadership) = lead(&elector, "member").await;
    let session = elector.session_id().await.unwrap();
    let member = member_of_session(session)
        .expect("a member holds our connection")
        .to_string();
    let mut states = leadership.subscribe();
    assert_eq!(states.changed().await, LeadershipState::Leading);
    let killed_at = Instant::now();
    let restart = MemberFault::kill("zookeeper", &[&member]);
    let suspended = tokio::time::timeout(Duration::from_secs(4), states.changed())
        .await
        .expect("suspended");
    assert_eq!(
        suspended,
        LeadershipState::Suspended,
        "after the member died"
    );
    let suspended_at = Instant::now();
    let resumed = tokio::time::timeout(Duration::from_secs(4), states.changed())
        .await
        .expect("leading again");
    assert_eq!(resumed, LeadershipState::Leading);
    let resumed_at = Instant::now();
    // No loss afterwards either, and our claim is the one the ensemble shows.
    let later = tokio::time::timeout(config.session_timeout * 2, states.changed()).await;
    assert!(later.is_err(), "the term changed again: {later:?}");
    assert!(leadership.is_leader());
    assert_eq!(
        elector.leader(&election).await.unwrap().unwrap().token,
        leadership.token()
    );
    drop(restart);
    eprintln!(
        "member {member} killed: suspended after {:?}, leading again after {:?}",
        suspended_at - killed_at,
        resumed_at - killed_at
    );
    leadership.resign().await.unwrap();
}

/// The member we talk to freezes while our claim is being created: the create's answer is
/// lost. The campaign goes on through another member and no second (ghost) claim of ours is
/// left in the election.
///
/// A 6 s session: the client leaves a frozen member only after 2 × 40 % of the timeout when it
/// tries that member again first, and a deadline renewed from before the freeze then needs a
/// second confirmation a report lag after the reconnection. With 4 s that left about 150 ms,
/// and the elector gave the session up (and its claim with it) in 2 of 15 runs. Two worker
/// threads: thawing the member blocks the test's thread on the cluster script.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_whose_answer_is_lost_leaves_no_ghost_claim() {
    let _serial = SERIAL.lock().await;
    let mut config = ZookeeperConfig::for_tests();
    config.session_timeout = Duration::from_secs(6);
    let elector = ZookeeperElector::connect(&config).await.unwrap();
    let election = election("ghost");
    let session = elector.session_id().await.unwrap();
    let member = member_of_session(session)
        .expect("a member holds our connection")
        .to_string();
    let thaw = MemberFault::freeze("zookeeper", &[&member]);
    let started = Instant::now();
    let leadership =
        tokio::time::timeout(Duration::from_secs(30), elector.campaign(&election, &me()))
            .await
            .expect("the campaign goes on through another member")
            .unwrap();
    let took = started.elapsed();
    drop(thaw);
    // Whatever the frozen member does with the request once it wakes, one claim remains.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let claims = elector.candidates(&election).await.unwrap();
    assert_eq!(claims.len(), 1, "claims left: {claims:?}");
    assert!(leadership.is_leader());
    eprintln!(
        "create during a frozen member: led after {took:?}, {} claim in the election",
        claims.len()
    );
    leadership.resign().await.unwrap();
}

/// A claim of our own session ahead of our campaign — a create that was still queued in the
/// client when a lookup gave up, so the campaign created a second one — is ours: the campaign
/// deletes it and leads, instead of waiting behind itself for as long as the session lives.
#[tokio::test]
async fn a_stray_claim_of_our_own_session_is_not_waited_for() {
    let _serial = SERIAL.lock().await;
    let elector = connect().await;
    let client = elector.client().await.expect("a session");
    let election = election("stray");
    let dir = format!("/{election}");
    let open = zookeeper_client::Acls::anyone_all();
    let _ = client
        .mkdir(
            &dir,
            &zookeeper_client::CreateMode::Persistent.with_acls(open),
        )
        .await;
    // The stray: a Curator-named claim under the elector's session, with a UUID of its own.
    let stray_name = "_c_00000000-0000-4000-8000-000000000000-latch-";
    let (_, sequence) = client
        .create(
            &format!("{dir}/{stray_name}"),
            b"leader",
            &zookeeper_client::CreateMode::EphemeralSequential.with_acls(open),
        )
        .await
        .expect("create the stray claim");
    let stray = format!("{dir}/{stray_name}{sequence}");
    let leadership =
        tokio::time::timeout(Duration::from_secs(3), elector.campaign(&election, &me()))
            .await
            .expect("leading within 3 s, not behind our own stray claim")
            .expect("campaign");
    assert!(leadership.is_leader());
    assert_eq!(
        client.check_stat(&stray).await.expect("stat"),
        None,
        "the stray claim was left standing"
    );
    leadership.resign().await.unwrap();
}

/// The claims of `dir`, by sequence, once there are `count` (a children watch wakes the wait).
async fn claims_once_there_are(
    client: &zookeeper_client::Client,
    dir: &str,
    count: usize,
) -> Vec<String> {
    let sequence = |name: &String| name.rsplit('-').next().unwrap_or("").to_owned();
    let wait = async {
        loop {
            let (mut children, _, watcher) = client
                .get_and_watch_children(dir)
                .await
                .expect("list the claims");
            if children.len() >= count {
                children.sort_by_key(sequence);
                return children;
            }
            watcher.changed().await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), wait)
        .await
        .unwrap_or_else(|_| panic!("{count} claims in {dir} within 5 s"))
}

/// A term won in the background: the elector (kept alive with it) and the term.
type Won = tokio::task::JoinHandle<(ZookeeperElector, elect_core::Leadership)>;

/// Three candidates in one election: the leader, and `next` and `last` waiting behind it.
struct InLine {
    client: zookeeper_client::Client,
    dir: String,
    /// The claims by sequence: the leader's, the next in line's, the last's.
    claims: Vec<String>,
    leader: elect_core::Leadership,
    next: Won,
    last: Won,
    _first: ZookeeperElector,
}

impl InLine {
    /// `next` waits behind a fresh leader of case `case`, and a third candidate behind it.
    async fn form(next: ZookeeperElector, case: &str) -> InLine {
        let (first, last) = (connect().await, connect().await);
        let (election, leader) = lead(&first, case).await;
        let client = first.client().await.expect("a session");
        let dir = format!("/{election}");
        let campaign = |elector: ZookeeperElector, id: &str| {
            let (election, candidate) = (election.clone(), Candidate::new(id, id).unwrap());
            tokio::spawn(async move {
                let term = elector
                    .campaign(&election, &candidate)
                    .await
                    .expect("campaign");
                (elector, term)
            })
        };
        let next = campaign(next, "next");
        claims_once_there_are(&client, &dir, 2).await;
        let last = campaign(last, "last");
        let claims = claims_once_there_are(&client, &dir, 3).await;
        InLine {
            client,
            dir,
            claims,
            leader,
            next,
            last,
            _first: first,
        }
    }

    /// Deletes the next in line's claim by hand and resigns the leader: the last in line
    /// leads, and (after `then`) the next in line does not beside it, only once it resigned.
    async fn the_last_leads_alone(mut self, then: impl FnOnce()) {
        let next_claim = format!("{}/{}", self.dir, self.claims[1]);
        self.client
            .delete(&next_claim, None)
            .await
            .expect("delete the next in line's claim by hand");
        self.leader.resign().await.unwrap();
        let (_last_elector, last_term) =
            tokio::time::timeout(Duration::from_secs(3), &mut self.last)
                .await
                .expect("the last in line leads within 3 s")
                .unwrap();
        then();
        // The next in line joins again behind it: not elected while `last` leads.
        let early = tokio::time::timeout(Duration::from_secs(2), &mut self.next).await;
        match early {
            Err(_) => {}
            Ok(Ok((_, term))) => panic!(
                "the next in line led beside the last with its claim deleted (token {})",
                term.token()
            ),
            Ok(Err(failed)) => panic!("the next in line's campaign failed: {failed}"),
        }
        assert!(last_term.is_leader());
        last_term.resign().await.unwrap();
        let (_next_elector, next_term) = tokio::time::timeout(Duration::from_secs(3), self.next)
            .await
            .expect("the next in line leads once the last resigned")
            .unwrap();
        assert!(next_term.token() > last_term.token());
        next_term.resign().await.unwrap();
    }
}

/// The candidate next in line, whose claim was deleted by hand while it waited, does not lead
/// when the leader goes: the one behind it leads, alone. The next in line learns of the leader's
/// claim going first; if it took that for its turn without knowing that its own claim still
/// stood, it would lead beside the one behind it, which saw that claim go and moved up.
#[tokio::test]
async fn the_next_in_line_whose_claim_was_deleted_by_hand_does_not_lead_when_the_leader_goes() {
    let _serial = SERIAL.lock().await;
    let line = InLine::form(connect().await, "deleted-next").await;
    line.the_last_leads_alone(|| {}).await;
}

/// The next in line leads on its predecessor's deletion without another look, and its term
/// goes on with the watch on its own claim that it set while waiting: deleting that claim by
/// hand still ends the term (`Revoked`) within a second, and the last in line leads.
#[tokio::test]
async fn the_next_in_line_that_led_without_a_look_loses_its_term_when_its_claim_is_deleted() {
    let _serial = SERIAL.lock().await;
    let mut line = InLine::form(connect().await, "led-next").await;
    line.leader.resign().await.unwrap();
    let (_next_elector, next_term) = tokio::time::timeout(Duration::from_secs(3), &mut line.next)
        .await
        .expect("the next in line leads within 3 s")
        .unwrap();
    let next_claim = format!("{}/{}", line.dir, line.claims[1]);
    line.client
        .delete(&next_claim, None)
        .await
        .expect("delete the new leader's claim by hand");
    let reason = tokio::time::timeout(Duration::from_secs(1), next_term.lost())
        .await
        .expect("the term ends within a second of its claim's deletion");
    assert_eq!(reason, LossReason::Revoked);
    let (_last_elector, last_term) = tokio::time::timeout(Duration::from_secs(3), line.last)
        .await
        .expect("the last in line leads within 3 s")
        .unwrap();
    assert!(last_term.token() > next_term.token());
    last_term.resign().await.unwrap();
}

/// The same across a reconnection: the next in line's link is down while its claim is deleted
/// by hand and the leader resigns. Once it is back, the watches the client sets again fire in
/// no promised order (the predecessor's deletion may come first), so the next in line must
/// look again rather than take its turn; the last in line leads alone.
#[tokio::test]
async fn the_next_in_line_looks_again_after_a_reconnection_before_it_leads() {
    let _serial = SERIAL.lock().await;
    let proxy = Proxy::in_front_of(&TestCluster::Zookeeper.addresses())
        .await
        .expect("a proxy in front of the ensemble");
    // A session long enough that the cut does not end it, nor the elector's deadline.
    let mut through_proxy = ZookeeperConfig::aimed_at(&proxy.list());
    through_proxy.session_timeout = Duration::from_secs(6);
    let next = ZookeeperElector::connect(&through_proxy).await.unwrap();
    let next_session = next.session_id().await.unwrap();
    let line = InLine::form(next, "reconnected-next").await;
    // The next in line waits with both watches set: on its own claim and on the leader's.
    let both = [0, 1].map(|i| format!("{}/{}", line.dir, line.claims[i]));
    let waiting = async {
        while !both
            .iter()
            .all(|path| watched_by(next_session).contains(path))
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("the next in line watches its own claim and the leader's within 5 s");
    proxy.set(Link::Down);
    line.the_last_leads_alone(|| proxy.set(Link::Up)).await;
}

/// A session the elector has given up on — its deadline passed while the client still talks
/// to the ensemble (here: a stated tickTime of half the session and a drift margin of a
/// quarter, which leave no headroom) —
/// is let go for real: the client pings it on its own, so a term lost but never resigned would
/// otherwise keep its claim ahead of every rival for as long as the elector lives.
#[tokio::test]
async fn a_session_the_elector_gave_up_is_closed_and_its_claim_goes() {
    let _serial = SERIAL.lock().await;
    let mut config = ZookeeperConfig::for_tests();
    config.session_timeout = Duration::from_secs(4);
    config.tick_time = Some(Duration::from_secs(2));
    config.drift_margin = Some(Duration::from_secs(1));
    let elector = ZookeeperElector::connect(&config).await.unwrap();
    let rival = connect().await;
    let (election, held) = lead(&elector, "given-up").await;
    let waiting = {
        let election = election.clone();
        tokio::spawn(async move {
            let leadership = rival
                .campaign(&election, &Candidate::new("rival", "rival").unwrap())
                .await;
            (leadership, rival)
        })
    };
    let reason = tokio::time::timeout(Duration::from_secs(10), held.lost())
        .await
        .expect("the term runs out of headroom within 10 s");
    assert_eq!(reason, LossReason::DeadlinePassed);
    let lost_at = Instant::now();
    // No resign: the term's handle is kept, as a careless caller would.
    let (won, _rival) = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("the rival leads within 10 s of the loss: the given-up session was closed")
        .unwrap();
    let won = won.unwrap();
    eprintln!(
        "given-up session: rival led {:?} after the loss",
        lost_at.elapsed()
    );
    assert!(won.token() > held.token());
    won.resign().await.unwrap();
    drop(held);
}
