//! Idle cost: what waiting candidates cost the servers while nothing happens, read from the
//! servers' own counters. One window per side with a leader and N waiting candidates, each
//! candidate its own session (as separate processes would be), between baseline windows
//! without them; the difference from the mean of the two baselines around it, per candidate.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Result};
use elect::Elector;

use crate::cluster::{connect_url, consul_live_agents, fresh, wait_candidates, Backend};
use crate::counters::{measure, Metric};
use crate::crowd::{Crowd, PeerCrowd};
use crate::peers::Tool;
use crate::report::{Check, Row};
use crate::{Ctx, Found, PeerFacts};

/// Traffic of a joining candidate (grant, create, first reads) that is not idle cost.
const AFTER_JOIN: Duration = Duration::from_secs(2);

/// One side-by-side comparison at equal settings.
#[derive(Debug, Clone)]
struct Case {
    setting: &'static str,
    ours_query: &'static str,
    peer: Tool,
}

fn cases(backend: Backend) -> Vec<Case> {
    match backend {
        Backend::Etcd => vec![
            Case {
                setting: "TTL 10 s",
                ours_query: "ttl=10s",
                peer: Tool::EtcdctlLock { ttl: 10 },
            },
            Case {
                setting: "TTL 60 s",
                ours_query: "ttl=60s",
                peer: Tool::EtcdctlElect,
            },
        ],
        Backend::Zookeeper => vec![Case {
            setting: "session 10 s",
            ours_query: "session_timeout=10s",
            peer: Tool::Kazoo { timeout: 10 },
        }],
        Backend::Consul => vec![Case {
            setting: "TTL 15 s, lock delay 15 s",
            ours_query: "ttl=15s&lock_delay=15s",
            peer: Tool::ConsulLock,
        }],
    }
}

/// The metrics of one window: all requests, and keep-alives alone.
fn metrics(backend: Backend) -> [Metric; 2] {
    match backend {
        Backend::Etcd => [Metric::EtcdRequests, Metric::EtcdKeepAlives],
        Backend::Zookeeper => [Metric::ZkPackets, Metric::ZkPackets],
        Backend::Consul => [Metric::ConsulRequests, Metric::ConsulRenews],
    }
}

/// Spreads candidates over the live Consul agents (each agent takes at most 200
/// connections per client address); other backends list every member.
async fn hosts_for(backend: Backend, i: usize) -> String {
    if backend != Backend::Consul {
        return backend.hosts();
    }
    let mut agents = consul_live_agents().await;
    if agents.is_empty() {
        agents = backend.members();
    }
    let k = i % agents.len();
    agents.rotate_left(k);
    agents.join(",")
}

/// Our side: a leader and `n` waiting candidates, each its own elector; the rates while
/// they wait.
async fn ours(ctx: &Ctx, backend: Backend, case: &Case, n: usize) -> Result<Vec<f64>> {
    let election = fresh("idle");
    let mut electors: Vec<Arc<dyn Elector>> = Vec::new();
    for i in 0..=n {
        let url = backend.url_with_hosts(&hosts_for(backend, i).await, &election, case.ours_query);
        electors.push(connect_url(&url).await?.into());
    }
    let mut crowd = Crowd::lead(election, electors).await?;
    crowd.join(|_| ());
    crowd.wait_joined(backend, Duration::from_secs(60)).await?;
    tokio::time::sleep(AFTER_JOIN).await;
    let rates = measure(backend, ctx.plan.idle_window, &metrics(backend)).await;
    crowd.end().await;
    rates
}

/// The peer's side: a leader process and `n` waiting ones; the rates, and the mean
/// footprint (RSS KiB, threads) of a waiting process.
async fn peer(ctx: &Ctx, backend: Backend, case: &Case, n: usize) -> Result<(Vec<f64>, f64, f64)> {
    let election = fresh("idle-peer");
    let observer = crate::cluster::connect(backend, &election, "").await?;
    let peers = PeerCrowd::new(ctx, &case.peer, &election).await;
    let mut leader = peers.spawn(0)?;
    leader.leading(Duration::from_secs(30)).await?;
    let waiting = (1..=n)
        .map(|i| peers.spawn(i))
        .collect::<Result<Vec<_>>>()?;
    wait_candidates(
        &*observer,
        backend,
        &election,
        n + 1,
        Duration::from_secs(60),
    )
    .await?;
    let _ = observer.close().await;
    tokio::time::sleep(AFTER_JOIN).await;
    let rates = measure(backend, ctx.plan.idle_window, &metrics(backend)).await?;
    let footprints: Vec<(u64, u64)> = waiting.iter().filter_map(|p| p.footprint()).collect();
    if footprints.is_empty() {
        return Err(anyhow!(
            "{}: no waiting process left to read",
            case.peer.name()
        ));
    }
    let count = footprints.len() as f64;
    let rss = footprints.iter().map(|f| f.0 as f64).sum::<f64>() / count;
    let threads = footprints.iter().map(|f| f.1 as f64).sum::<f64>() / count;
    drop(waiting);
    drop(leader);
    Ok((rates, rss, threads))
}

/// Baseline, ours and the peer's for every case of `backend`.
pub async fn run(ctx: &Ctx, backend: Backend) -> Result<(Found, PeerFacts)> {
    let n = ctx.plan.idle_candidates;
    let mut found = Found::default();
    let mut facts = PeerFacts::default();
    let names = ["all requests", "keep-alives"];
    for case in cases(backend) {
        // Baselines right before and after each side: other clients' traffic drifts.
        eprintln!("idle {backend} {}: baseline", case.setting);
        let base1 = measure(backend, ctx.plan.idle_window, &metrics(backend)).await?;
        eprintln!("idle {backend} {}: elect, {n} waiting", case.setting);
        let ours = ours(ctx, backend, &case, n).await?;
        eprintln!("idle {backend} {}: baseline", case.setting);
        let base2 = measure(backend, ctx.plan.idle_window, &metrics(backend)).await?;
        eprintln!(
            "idle {backend} {}: {}, {n} waiting",
            case.setting,
            case.peer.name()
        );
        let (peer, rss, threads) = peer(ctx, backend, &case, n).await?;
        eprintln!("idle {backend} {}: baseline", case.setting);
        let base3 = measure(backend, ctx.plan.idle_window, &metrics(backend)).await?;
        let mean = |a: &[f64], b: &[f64]| -> Vec<f64> {
            a.iter().zip(b).map(|(x, y)| (x + y) / 2.0).collect()
        };
        let (base_ours, base_peer) = (mean(&base1, &base2), mean(&base2, &base3));
        let per = |rates: &[f64], base: &[f64], i: usize| {
            ((rates[i] - base[i]) / (n + 1) as f64).max(0.0)
        };
        let row = Row::of("idle", backend.name(), case.peer.name());
        for (i, name) in names.iter().enumerate() {
            if backend == Backend::Zookeeper && i == 1 {
                continue; // ZooKeeper's packets are the keep-alives (pings) and the requests at once
            }
            let what = format!("{name}/s per candidate, {}", case.setting);
            let (o, p) = (per(&ours, &base_ours, i), per(&peer, &base_peer, i));
            let note = format!(
                "{n} waiting + the leader, {:?} window",
                ctx.plan.idle_window
            );
            if backend == Backend::Zookeeper && i == 0 {
                found.checks.push(Check {
                    target: format!(
                        "ZooKeeper idle requests/s per waiting candidate at most {}'s (issue 16)",
                        case.peer.name()
                    ),
                    figures: format!("elect {o:.3} vs {p:.3} req/s ({:.2}×)", o / p),
                    met: o <= p,
                });
            }
            found
                .rows
                .push(row.figure(what, "req/s", Some(o), Some(p)).note(note));
        }
        facts
            .footprint
            .push((backend, case.peer.name(), rss, threads));
        facts.keepalive.push((
            backend,
            case.setting.to_owned(),
            case.peer.name(),
            per(&peer, &base_peer, 1),
        ));
    }
    Ok((found, facts))
}
