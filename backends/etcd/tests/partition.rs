//! A waiting candidate whose predecessor watch sits on a member cut off from the quorum must
//! still be elected when the leader resigns (`docs/guarantees.md`, L2: "Every request and watch
//! requires a raft leader, so a watch on a member cut off from the quorum is cancelled by that
//! member instead of staying silent, and is made again through another member").
//!
//! On a netns cluster (each member in its own network namespace), with member X to be
//! isolated:
//! * the leader's client knows only the two members that stay in the majority;
//! * the waiter's client knows all three, and is placed so that its predecessor watch stream is
//!   on X while its lease keep-alive stream is elsewhere (found from the members' `/metrics`:
//!   streams started per member, and X's watcher gauge; a waiter that lands otherwise is
//!   withdrawn and made again);
//! * X is cut from both peers (clients still reach it), then the leader resigns.
//!
//! The waiter must lead within 10 s of the resign without healing: etcd's require-leader
//! monitor cancels a leaderless member's streams after ~3 election timeouts (3 s with this
//! cluster's 1 s election timeout), and the waiter looks again through a member with a leader.
//! A watch without require-leader stays open and silent on X, and the waiter wakes only after
//! the heal. Every wait is bounded. Needs root (network namespaces); see
//! `elect_test_support::netns`.

use std::sync::Arc;
use std::time::Duration;

use elect_core::config::{Endpoint, EtcdConfig};
use elect_core::{Candidate, ElectionName, Elector, Leadership};
use elect_etcd::EtcdElector;
use elect_test_support::NetnsCluster;
use tokio::task::{block_in_place, JoinHandle};
use tokio::time::{timeout, Instant};

/// The lease TTL: etcd's minimum with the test cluster's 1 s election timeout.
const TTL: Duration = Duration::from_secs(2);
/// How soon after the resign the waiter must lead.
const BOUND: Duration = Duration::from_secs(10);
/// Bound on every other single wait.
const STEP: Duration = Duration::from_secs(30);
/// Waiters made until one's watch lands on X with its keep-alive elsewhere (each has ~2/9).
const PLACEMENTS: usize = 40;

fn config(endpoints: &[String]) -> EtcdConfig {
    let endpoints: Vec<Endpoint> = endpoints
        .iter()
        .map(|e| e.parse().expect("host:port"))
        .collect();
    let mut config = EtcdConfig::new(endpoints);
    config.ttl = TTL;
    config
}

/// What one member's `/metrics` says about the streams opened on it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Streams {
    /// `etcdserverpb.Watch/Watch` streams started.
    watches: u64,
    /// `etcdserverpb.Lease/LeaseKeepAlive` streams started.
    keepalives: u64,
    /// Watchers registered now (`etcd_debugging_mvcc_watcher_total`).
    watchers: u64,
}

fn streams(endpoint: &str) -> Streams {
    let (status, body) =
        elect_test_support::try_http(endpoint, "GET", "/metrics", &[], "", Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("GET {endpoint}/metrics: {e}"));
    assert_eq!(status, 200, "GET {endpoint}/metrics: {body}");
    let value = |line: &str| -> u64 {
        let v = line.rsplit(' ').next().unwrap_or("0");
        v.parse::<f64>().unwrap_or_else(|_| panic!("{line}")) as u64
    };
    let mut s = Streams::default();
    for line in body.lines() {
        if line.starts_with("grpc_server_started_total{") {
            if line.contains("grpc_method=\"Watch\"")
                && line.contains("grpc_service=\"etcdserverpb.Watch\"")
            {
                s.watches += value(line);
            } else if line.contains("grpc_method=\"LeaseKeepAlive\"") {
                s.keepalives += value(line);
            }
        } else if line.starts_with("etcd_debugging_mvcc_watcher_total ") {
            s.watchers = value(line);
        }
    }
    s
}

fn all_streams(cluster: &NetnsCluster) -> Vec<Streams> {
    block_in_place(|| cluster.endpoints().iter().map(|e| streams(e)).collect())
}

/// A waiter campaigning in the background: its elector, and the campaign's task (which
/// yields when the campaign returned, and the leadership).
struct Waiter {
    elector: Arc<EtcdElector>,
    campaign: JoinHandle<(Instant, elect_core::Result<Leadership>)>,
    /// Member indexes (1..=3) its predecessor watch and its keep-alive stream went to.
    watch_on: Vec<usize>,
    keepalive_on: Vec<usize>,
}

/// Seconds from `from` to `t`, negative when `t` came first.
fn secs_since(from: Instant, t: Instant) -> f64 {
    if t >= from {
        (t - from).as_secs_f64()
    } else {
        -(from - t).as_secs_f64()
    }
}

async fn start_waiter(cluster: &NetnsCluster, election: &ElectionName, x: usize) -> Waiter {
    let before = all_streams(cluster);
    let elector = Arc::new(
        timeout(STEP, EtcdElector::connect(&config(cluster.endpoints())))
            .await
            .expect("the waiter connects within 30 s")
            .expect("the waiter connects"),
    );
    let campaign = {
        let (elector, election) = (elector.clone(), election.clone());
        tokio::spawn(async move {
            let leadership = elector
                .campaign(&election, &Candidate::new("waiter", "w").unwrap())
                .await;
            (Instant::now(), leadership)
        })
    };
    // until its predecessor watch is open somewhere (and registered, if on X)
    let placed = async {
        loop {
            let now = all_streams(cluster);
            let delta = |f: fn(&Streams) -> u64| -> Vec<usize> {
                (1..=3)
                    .filter(|&m| f(&now[m - 1]) > f(&before[m - 1]))
                    .collect()
            };
            let watch_on = delta(|s| s.watches);
            let registered = !watch_on.contains(&x) || now[x - 1].watchers > 0;
            if !watch_on.is_empty() && registered {
                return (watch_on, delta(|s| s.keepalives));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let (watch_on, keepalive_on) = timeout(STEP, placed)
        .await
        .expect("the waiter's predecessor watch opens within 30 s");
    Waiter {
        elector,
        campaign,
        watch_on,
        keepalive_on,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_whose_watch_sits_on_an_isolated_member_is_elected_without_a_heal() {
    let cluster = block_in_place(|| NetnsCluster::up("etcd"));
    let raft_leader = block_in_place(|| cluster.leader());
    // X: a follower, so the majority keeps its raft leader
    let x = cluster.others(raft_leader)[0];
    let majority = cluster.endpoints_except(x);
    let election: ElectionName = elect_test_support::unique_name("partition-etcd")
        .parse()
        .unwrap();

    let leader = timeout(STEP, EtcdElector::connect(&config(&majority)))
        .await
        .expect("the leader connects within 30 s")
        .expect("the leader connects to the majority");
    let leadership = timeout(
        STEP,
        leader.campaign(&election, &Candidate::new("leader", "l").unwrap()),
    )
    .await
    .expect("the leader's campaign returns within 30 s")
    .expect("the leader leads");

    let mut waiter = None;
    for attempt in 1..=PLACEMENTS {
        let w = start_waiter(&cluster, &election, x).await;
        if w.watch_on == [x] && !w.keepalive_on.contains(&x) && !w.campaign.is_finished() {
            eprintln!(
                "attempt {attempt}: the waiter's watch is on n{x} (to be isolated), its \
                 keep-alive on {:?}",
                w.keepalive_on
            );
            waiter = Some(w);
            break;
        }
        eprintln!(
            "attempt {attempt}: watch on {:?}, keep-alive on {:?}; withdrawing, placing again",
            w.watch_on, w.keepalive_on
        );
        w.campaign.abort();
        let _ = w.campaign.await;
        let _ = timeout(Duration::from_secs(5), w.elector.close()).await;
    }
    let Waiter {
        elector: waiter_elector,
        campaign: mut waiting,
        keepalive_on,
        ..
    } = waiter.unwrap_or_else(|| {
        panic!(
            "no waiter's watch landed on n{x} with its keep-alive elsewhere in {PLACEMENTS} tries"
        )
    });

    block_in_place(|| cluster.isolate(x));
    let cut = Instant::now();
    timeout(STEP, leadership.resign())
        .await
        .expect("the leader resigns within 30 s (through the majority)")
        .expect("the leader resigns");
    let resigned = Instant::now();
    eprintln!(
        "n{x} isolated; the leader resigned {:.3} s later",
        (resigned - cut).as_secs_f64()
    );

    let outcome = timeout(BOUND, &mut waiting).await;
    let failure = match outcome {
        Ok(joined) => {
            let (at, led) = joined.expect("the waiter's task");
            let led = led.expect("the waiter's campaign succeeds");
            eprintln!(
                "the waiter led {:.3} s after the resign ({:.3} s after the cut), without a heal",
                (at - resigned).as_secs_f64(),
                (at - cut).as_secs_f64()
            );
            let _ = timeout(Duration::from_secs(5), led.resign()).await;
            None
        }
        Err(_) => {
            // Today's behaviour, for the record: the watch on X wakes only once X is back.
            let waited = resigned.elapsed();
            let healing = Instant::now();
            block_in_place(|| cluster.heal());
            let healed = Instant::now();
            let after_heal = match timeout(STEP, &mut waiting).await {
                Ok(joined) => {
                    let (at, led) = joined.expect("the waiter's task");
                    if let Ok(led) = led {
                        let _ = timeout(Duration::from_secs(5), led.resign()).await;
                    }
                    format!(
                        "healed (the heal took {:.3} s), it led {:.3} s after the heal began \
                         ({:.3} s after the resign)",
                        (healed - healing).as_secs_f64(),
                        secs_since(healing, at),
                        secs_since(resigned, at)
                    )
                }
                Err(_) => {
                    waiting.abort();
                    format!("it did not lead within {STEP:?} of the heal either")
                }
            };
            Some(format!(
                "no leader after {:.1} s: the waiter, whose predecessor watch was on isolated n{x} \
                 (its keep-alive on {keepalive_on:?}), was not elected within {BOUND:?} of the \
                 leader's resign without a heal; {after_heal}",
                waited.as_secs_f64()
            ))
        }
    };
    let _ = timeout(Duration::from_secs(5), waiter_elector.close()).await;
    let _ = timeout(Duration::from_secs(5), leader.close()).await;
    if let Some(failure) = failure {
        panic!("{failure}");
    }
    block_in_place(|| cluster.heal());
}
