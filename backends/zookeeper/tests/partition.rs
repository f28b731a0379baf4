//! S1 under a partition *between* the ensemble's members (`docs/guarantees.md`, S1: "S1 holds
//! under partitions between the store's members"): a follower F is cut from its peers while the
//! leader's client reaches only F.
//!
//! A leads through a client that knows only F; B waits through the two other members. F is
//! isolated (`NetnsCluster::isolate`): the ensemble's leader stops hearing A's session and
//! expires it after the session timeout, so B leads; but F goes on answering A's plain reads
//! for syncLimit × tickTime (2 s here) before it drops its clients. A's leadership must end
//! (is_leader() false: suspended, lost, or past its deadline) before B's begins.
//!
//! Each trial records, on one clock (tokio's Instant), B's start = when B's campaign returned,
//! and two ends of A's belief:
//! * A's end = the earlier of the moment `lost()` resolved and A's deadline read at that
//!   moment. This is when `run_while_leader` (and `elect run`) stops A's work: it keeps the
//!   work running while the term is `Suspended`, until the term is lost or its deadline passes.
//!   The test fails if B starts before it.
//! * A's `is_leader()` end = the end of A's last `Leading` stretch (the moment its state left
//!   `Leading`, or the deadline read then if earlier), printed alongside.
//!
//! The trials run on a fresh netns ensemble (tickTime 200 ms, syncLimit 10), healed and
//! re-checked between trials. Every wait is bounded. Needs root (network namespaces); see
//! `elect_test_support::netns`.

use std::sync::Arc;
use std::time::Duration;

use elect_core::config::{Endpoint, ZookeeperConfig};
use elect_core::{Candidate, ElectionName, Elector, Leadership, LeadershipState};
use elect_test_support::NetnsCluster;
use elect_zookeeper::ZookeeperElector;
use tokio::task::block_in_place;
use tokio::time::{timeout, Instant};

const TRIALS: usize = 3;
/// Bound on every single wait (connect, campaign, a state change, B's election).
const STEP: Duration = Duration::from_secs(30);
/// Bound on the ensemble becoming whole again after a heal.
const REJOIN: Duration = Duration::from_secs(60);

fn config(endpoints: &[String], session: Duration) -> ZookeeperConfig {
    let endpoints: Vec<Endpoint> = endpoints
        .iter()
        .map(|e| e.parse().expect("host:port"))
        .collect();
    let mut config = ZookeeperConfig::new(endpoints);
    config.session_timeout = session;
    config
}

/// What one trial measured, relative to the moment the cut was in place.
#[derive(Debug)]
struct Trial {
    follower: usize,
    negotiated: Option<Duration>,
    /// A's states after the cut: (seconds since the cut, state).
    a_states: Vec<(f64, LeadershipState)>,
    /// A's end: `lost()` resolved, or its deadline if earlier; seconds since the cut.
    a_end: f64,
    /// The end of A's last `Leading` stretch, seconds since the cut.
    a_leading_end: f64,
    /// B's campaign returned, seconds since the cut.
    b_start: f64,
}

impl Trial {
    /// Seconds both acted as leaders (A's work still running under `run_while_leader`); 0 when
    /// none.
    fn overlap(&self) -> f64 {
        (self.a_end - self.b_start).max(0.0)
    }

    /// Seconds both `is_leader()` were true; 0 when none.
    fn is_leader_overlap(&self) -> f64 {
        (self.a_leading_end - self.b_start).max(0.0)
    }
}

/// How A's term ended, as [`follow`] saw it.
struct Followed {
    states: Vec<(Instant, LeadershipState)>,
    /// `lost()` resolved (the first `Lost` state), or the deadline read then if earlier.
    end: Instant,
    /// The end of the last `Leading` stretch.
    leading_end: Instant,
}

/// Follows A's term until `Lost`, reading the deadline at each observed change (after it, so
/// that it is the deadline as it stands when the state moved).
async fn follow(leadership: Leadership) -> Followed {
    let mut states = leadership.subscribe();
    let mut seen = Vec::new();
    let mut leading_end = None;
    let mut leading = true;
    loop {
        let state = states.changed().await;
        let now = Instant::now();
        let deadline = leadership.deadline().unwrap_or(now);
        seen.push((now, state));
        match state {
            LeadershipState::Leading => leading = true,
            _ if leading => {
                leading = false;
                leading_end = Some(now.min(deadline));
            }
            _ => {}
        }
        if let LeadershipState::Lost(_) = state {
            let end = now.min(deadline);
            return Followed {
                states: seen,
                end,
                leading_end: leading_end.unwrap_or(end),
            };
        }
    }
}

async fn trial(cluster: &NetnsCluster, session: Duration, n: usize) -> Trial {
    let leader = block_in_place(|| cluster.leader());
    let follower = cluster.others(leader)[n % 2];
    let election: ElectionName = elect_test_support::unique_name("partition-zk")
        .parse()
        .unwrap();

    let a = timeout(
        STEP,
        ZookeeperElector::connect(&config(&[cluster.endpoint(follower).to_owned()], session)),
    )
    .await
    .expect("A connects within 30 s")
    .expect("A connects to F");
    let negotiated = a.session_timeout().await;
    let a_lead = timeout(
        STEP,
        a.campaign(&election, &Candidate::new("a", "a").unwrap()),
    )
    .await
    .expect("A's campaign returns within 30 s")
    .expect("A leads");

    let b = Arc::new(
        timeout(
            STEP,
            ZookeeperElector::connect(&config(&cluster.endpoints_except(follower), session)),
        )
        .await
        .expect("B connects within 30 s")
        .expect("B connects to the two other members"),
    );
    let b_campaign = {
        let (b, election) = (b.clone(), election.clone());
        tokio::spawn(async move {
            let leadership = b
                .campaign(&election, &Candidate::new("b", "b").unwrap())
                .await;
            (Instant::now(), leadership)
        })
    };
    // B's claim is in: it waits on A's
    let waiting = async {
        while a.candidates(&election).await.map_or(0, |c| c.len()) < 2 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    timeout(STEP, waiting)
        .await
        .expect("B's claim shows within 30 s");
    assert!(a_lead.is_leader(), "A leads before the cut");
    assert!(!b_campaign.is_finished(), "B waits before the cut");

    let a_follow = tokio::spawn(follow(a_lead.clone()));
    block_in_place(|| cluster.isolate(follower));
    let cut = Instant::now();

    let followed = timeout(STEP, a_follow)
        .await
        .unwrap_or_else(|_| {
            panic!(
                "A (through isolated n{follower}) still not Lost 30 s after the cut: {:?}",
                a_lead.state()
            )
        })
        .expect("A's follower task");
    let (b_start, b_lead) = timeout(STEP, b_campaign)
        .await
        .expect("B leads within 30 s of the cut")
        .expect("B's campaign task");
    let b_lead = b_lead.expect("B's campaign succeeds");

    let since = |t: Instant| secs_since(cut, t);
    let trial = Trial {
        follower,
        negotiated,
        a_states: followed
            .states
            .into_iter()
            .map(|(t, s)| (since(t), s))
            .collect(),
        a_end: since(followed.end),
        a_leading_end: since(followed.leading_end),
        b_start: since(b_start),
    };

    // back to a whole ensemble for the next trial
    let _ = timeout(Duration::from_secs(5), b_lead.resign()).await;
    let _ = timeout(Duration::from_secs(5), b.close()).await;
    drop(a_lead);
    let _ = timeout(Duration::from_secs(5), a.close()).await;
    block_in_place(|| {
        cluster.heal();
        cluster.wait_all(REJOIN);
    });
    trial
}

/// Seconds from `cut` to `t`, negative when `t` came first.
fn secs_since(cut: Instant, t: Instant) -> f64 {
    if t >= cut {
        (t - cut).as_secs_f64()
    } else {
        -(cut - t).as_secs_f64()
    }
}

async fn s1_across_a_cut_follower(session: Duration) {
    let cluster = block_in_place(|| NetnsCluster::up("zookeeper"));
    let mut trials = Vec::new();
    for n in 0..TRIALS {
        let t = trial(&cluster, session, n).await;
        eprintln!(
            "session {session:?} (negotiated {:?}), trial {}: F = n{}; after the cut A went {}; \
             B led at {:+.3} s; A's end (lost or deadline) {:+.3} s: overlap {:.3} s; \
             A's is_leader() end {:+.3} s: overlap {:.3} s",
            t.negotiated,
            n + 1,
            t.follower,
            t.a_states
                .iter()
                .map(|(at, s)| format!("{s:?} at {at:+.3} s"))
                .collect::<Vec<_>>()
                .join(", "),
            t.b_start,
            t.a_end,
            t.overlap(),
            t.a_leading_end,
            t.is_leader_overlap()
        );
        trials.push(t);
    }
    let overlaps: Vec<String> = trials
        .iter()
        .map(|t| {
            format!(
                "{:.3} s (is_leader() {:.3} s)",
                t.overlap(),
                t.is_leader_overlap()
            )
        })
        .collect();
    assert!(
        trials
            .iter()
            .all(|t| t.overlap() == 0.0 && t.is_leader_overlap() == 0.0),
        "S1 violated with a {session:?} session: A, whose only member was cut from its peers, \
         had not lost its term (or passed its deadline) when B was elected; overlap per trial: \
         {} (each trial's timeline is printed above)",
        overlaps.join(", ")
    );
    eprintln!(
        "session {session:?}: no overlap in {TRIALS} trials ({})",
        overlaps.join(", ")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_through_a_follower_cut_from_its_peers_stops_before_the_next_leader_1s_session() {
    s1_across_a_cut_follower(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_through_a_follower_cut_from_its_peers_stops_before_the_next_leader_2s_session() {
    s1_across_a_cut_follower(Duration::from_secs(2)).await;
}
