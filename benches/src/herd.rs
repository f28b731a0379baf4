//! Herd: with many candidates waiting, one handover — what it costs the servers, how many
//! clients it wakes, and how long until the successor leads.
//!
//! Ours: 1,000 electors in this process (etcd and ZooKeeper share one client, as the herd
//! tests do — each etcd elector still has its own lease; ZooKeeper's share one session, as a
//! ZooKeeper process must: 60 connections per address); the peers: kazoo with as many
//! `Election`s on one client, `etcdctl elect` and `consul lock` as processes (fewer: each is
//! ~20 MB). Every waiting Consul candidate holds a connection (its blocking query) and an
//! agent takes a limited number per client address (200 by default, 4,096 in the test
//! clusters), so Consul herds are capped at what the plan allows per agent.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use elect::{BackendConfig, Config, ElectionName, Elector, EtcdElector, ZookeeperElector};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;
use tokio::sync::mpsc;
use tokio::time::Instant;
use zookeeper_client as zk;

use crate::cluster::{connect, connect_url, consul_live_agents, fresh, wait_candidates, Backend};
use crate::counters::{
    consul_sum_interval, next_consul_boundary, sleep_until_wall, snapshot, Metric, CONSUL_INTERVAL,
};
use crate::crowd::{Crowd, PeerCrowd};
use crate::peers::Tool;
use crate::report::{Check, Row};
use crate::{Ctx, Found};

/// How long after the successor leads the counters are read: time for a herd to show.
const TAIL: Duration = Duration::from_secs(1);
/// Time for joining traffic to pass before the handover.
const AFTER_JOIN: Duration = Duration::from_secs(1);
/// How long a herd's waiters may take to show in the store.
const JOIN_WITHIN: Duration = Duration::from_secs(300);

/// What one handover among many waiters did.
#[derive(Debug, Clone, Copy)]
struct Outcome {
    waiting: usize,
    successor_ms: f64,
    server_requests: f64,
    wakeups: f64,
    extra_winners: usize,
}

/// The metrics: (server work, client wake-ups, a gauge that shows waiters' watches).
fn metrics(backend: Backend) -> (Metric, Metric, Option<Metric>) {
    match backend {
        Backend::Etcd => (
            Metric::EtcdRequestsButKeepAlives,
            Metric::EtcdEventsSent,
            Some(Metric::EtcdWatchers),
        ),
        Backend::Zookeeper => (
            Metric::ZkPackets,
            Metric::ZkWatchesFired,
            Some(Metric::ZkWatches),
        ),
        Backend::Consul => (Metric::ConsulRequests, Metric::ConsulKvReads, None),
    }
}

/// The servers' watch count before waiters join behind a leader, to tell when all their
/// watches are set.
struct Joining {
    backend: Backend,
    gauge: Option<Metric>,
    before: f64,
}

impl Joining {
    /// Reads `gauge` (none: nothing to wait for) now.
    async fn start(backend: Backend, gauge: Option<Metric>) -> Joining {
        let before = match gauge {
            Some(g) => snapshot(backend).await.value(g),
            None => 0.0,
        };
        Joining {
            backend,
            gauge,
            before,
        }
    }

    /// Once `n` waiters were started: waits until `observer` sees them behind the leader and
    /// the servers show their watches, then lets their joining traffic pass.
    async fn done(self, observer: &dyn Elector, election: &ElectionName, n: usize) -> Result<()> {
        let backend = self.backend;
        wait_candidates(observer, backend, election, n + 1, JOIN_WITHIN).await?;
        wait_watches(backend, self.gauge, self.before, n).await?;
        tokio::time::sleep(AFTER_JOIN).await;
        Ok(())
    }
}

/// Waits until the servers show `more` watches than `before` (each waiter's watch on its
/// predecessor is registered), up to a minute. The first waiter's watch on the leader's node
/// may coincide with the leader's own watch on it (one client, one path: one watch), so one
/// fewer is enough.
async fn wait_watches(
    backend: Backend,
    gauge: Option<Metric>,
    before: f64,
    more: usize,
) -> Result<()> {
    let Some(gauge) = gauge else {
        return Ok(());
    };
    let started = Instant::now();
    loop {
        let now = snapshot(backend).await.value(gauge);
        if now >= before + more.saturating_sub(1) as f64 {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(60) {
            bail!("{backend}: the servers show {now} watches, wanted {before} + {more}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Measures one handover: `resign` is called at t0; `winner` yields the successor's
/// instant; `extra` counts any further winner after the tail.
async fn handover<R, W>(backend: Backend, waiting: usize, resign: R, winner: W) -> Result<Outcome>
where
    R: std::future::Future<Output = Result<Instant>>,
    W: std::future::Future<Output = Result<Instant>>,
{
    let (work, wakes, _) = metrics(backend);
    if backend == Backend::Consul {
        // Whole 10 s intervals: the one before the handover (same load, no handover, and
        // none of the joining traffic: it starts after now) is the baseline of the one with it.
        let boundary = next_consul_boundary() + CONSUL_INTERVAL;
        sleep_until_wall(boundary as f64 + 0.5).await;
        let t0 = resign.await?;
        let t1 = tokio::time::timeout(Duration::from_secs(8), winner)
            .await
            .map_err(|_| anyhow!("{backend}: no successor within 8 s"))??;
        let before = consul_sum_interval(boundary - CONSUL_INTERVAL, &[work, wakes]).await?;
        let during = consul_sum_interval(boundary, &[work, wakes]).await?;
        return Ok(Outcome {
            waiting,
            successor_ms: (t1 - t0).as_secs_f64() * 1e3,
            server_requests: (during[0] - before[0]).max(0.0),
            wakeups: (during[1] - before[1]).max(0.0),
            extra_winners: 0,
        });
    }
    let before = snapshot(backend).await;
    let t0 = resign.await?;
    let t1 = tokio::time::timeout(Duration::from_secs(10), winner)
        .await
        .map_err(|_| anyhow!("{backend}: no successor within 10 s"))??;
    tokio::time::sleep(TAIL).await;
    let after = snapshot(backend).await;
    Ok(Outcome {
        waiting,
        successor_ms: (t1 - t0).as_secs_f64() * 1e3,
        server_requests: before.delta(&after, work)?,
        wakeups: before.delta(&after, wakes)?,
        extra_winners: 0,
    })
}

/// `count` electors of `backend` for `election` in this process: etcd's on one shared client
/// (each its own lease), ZooKeeper's on one shared client and session, Consul's each its own
/// session, spread over the live agents.
pub async fn electors(
    backend: Backend,
    election: &ElectionName,
    count: usize,
) -> Result<Vec<Arc<dyn Elector>>> {
    let url = backend.url(election, "");
    let config = Config::from_url(&url).map_err(|e| anyhow!("{url}: {e}"))?;
    let mut electors: Vec<Arc<dyn Elector>> = Vec::with_capacity(count);
    match &config.backend {
        BackendConfig::Etcd(etcd) => {
            let client = etcd_client::Client::connect(backend.members(), None).await?;
            for _ in 0..count {
                electors.push(Arc::new(EtcdElector::with_client(client.clone(), etcd)?));
            }
        }
        BackendConfig::Zookeeper(zoo) => {
            let client = zk::Client::connector()
                .with_session_timeout(zoo.session_timeout)
                .connect(&backend.hosts())
                .await?;
            for _ in 0..count {
                electors.push(Arc::new(ZookeeperElector::with_client(
                    client.clone(),
                    zoo,
                )?));
            }
        }
        _ => {
            let agents = consul_live_agents().await;
            if agents.is_empty() {
                bail!("no Consul agent answers: start them with `tests/cluster/cluster up consul`");
            }
            for i in 0..count {
                let mut hosts = agents.clone();
                hosts.rotate_left(i % agents.len());
                let url = backend.url_with_hosts(&hosts.join(","), election, "");
                electors.push(connect_url(&url).await?.into());
            }
        }
    }
    Ok(electors)
}

/// Our herd: a leader and `n` waiting electors in this process.
async fn ours(backend: Backend, n: usize) -> Result<Outcome> {
    let election = fresh("herd");
    let electors = electors(backend, &election, n + 1).await?;
    let mut crowd = Crowd::lead(election, electors).await?;
    let joining = Joining::start(backend, metrics(backend).2).await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    crowd.join(move |won| {
        let _ = tx.send((Instant::now(), won));
    });
    joining
        .done(&*crowd.electors[0], &crowd.election, n)
        .await?;
    let mut winners = Vec::new();
    let outcome = handover(
        backend,
        n,
        async {
            let t0 = Instant::now();
            crowd.leader.resign().await?;
            Ok(t0)
        },
        async {
            let (t1, won) = rx
                .recv()
                .await
                .ok_or_else(|| anyhow!("every campaign ended"))?;
            winners.push(won);
            Ok(t1)
        },
    )
    .await;
    let mut extra = 0;
    while let Ok((_, won)) = rx.try_recv() {
        extra += 1;
        winners.push(won);
    }
    for w in &winners {
        let _ = w.resign().await;
    }
    crowd.end().await;
    let mut outcome = outcome?;
    outcome.extra_winners = extra;
    Ok(outcome)
}

/// kazoo: one client, a leader `Election` and `n` waiting ones, each in its thread; says
/// `leading <i>` when candidate i runs; `join`, then `release` on its standard input.
const KAZOO_HERD: &str = r#"
import sys, threading, os
from kazoo.client import KazooClient
hosts, path, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
zk = KazooClient(hosts=hosts, timeout=10.0)
zk.start(timeout=30)
release = threading.Event()
def candidate(i):
    def lead():
        print("leading %d" % i, flush=True)
        (release if i == 0 else threading.Event()).wait()
    zk.Election(path, "c%d" % i).run(lead)
threading.Thread(target=candidate, args=(0,), daemon=True).start()
sys.stdin.readline()
for i in range(1, n + 1):
    threading.Thread(target=candidate, args=(i,), daemon=True).start()
sys.stdin.readline()
release.set()
sys.stdin.readline()
os._exit(0)
"#;

/// kazoo's herd, in one process.
async fn kazoo(ctx: &Ctx, n: usize) -> Result<Outcome> {
    let backend = Backend::Zookeeper;
    let election = fresh("herd-kazoo");
    let observer = connect(backend, &election, "").await?;
    let mut child = Command::new(&ctx.bins.python)
        .args([
            "-c",
            KAZOO_HERD,
            &backend.hosts(),
            &format!("/{election}"),
            &n.to_string(),
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(ctx.dir.join("kazoo-herd.stderr"))?)
        .kill_on_drop(true)
        .spawn()?;
    let mut stdin = child.stdin.take().expect("piped");
    let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
    let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .map_err(|_| anyhow!("kazoo's herd leader did not lead"))??;
    if first.as_deref() != Some("leading 0") {
        bail!("kazoo's herd said {first:?}");
    }
    let joining = Joining::start(backend, Some(Metric::ZkWatches)).await;
    stdin.write_all(b"join\n").await?;
    joining.done(&*observer, &election, n).await?;
    let outcome = handover(
        backend,
        n,
        async {
            let t0 = Instant::now();
            stdin.write_all(b"release\n").await?;
            stdin.flush().await?;
            Ok(t0)
        },
        async {
            match lines.next_line().await? {
                Some(l) if l.starts_with("leading") => Ok(Instant::now()),
                other => bail!("kazoo's herd said {other:?}"),
            }
        },
    )
    .await?;
    let _ = observer.close().await;
    drop(child);
    Ok(outcome)
}

/// A herd of peer processes (`etcdctl elect`, `consul lock`).
async fn processes(ctx: &Ctx, backend: Backend, tool: &Tool, n: usize) -> Result<Outcome> {
    let election = fresh("herd-peer");
    let observer = connect(backend, &election, "").await?;
    let peers = PeerCrowd::new(ctx, tool, &election).await;
    let mut leader = peers.spawn(0)?;
    leader.leading(Duration::from_secs(30)).await?;
    let joining = Joining::start(backend, metrics(backend).2).await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut readers = Vec::new();
    for i in 1..=n {
        let mut p = peers.spawn(i)?;
        let tx = tx.clone();
        readers.push(tokio::spawn(async move {
            if let Ok(at) = p.leading(Duration::from_secs(3600)).await {
                let _ = tx.send(at);
            }
            // The process lives until the reader is aborted.
            let _hold = p;
            std::future::pending::<()>().await
        }));
    }
    joining.done(&*observer, &election, n).await?;
    let outcome = handover(backend, n, leader.resign(), async {
        rx.recv().await.ok_or_else(|| anyhow!("every peer ended"))
    })
    .await;
    let mut extra = 0;
    while rx.try_recv().is_ok() {
        extra += 1;
    }
    for r in &readers {
        r.abort();
    }
    let _ = observer.close().await;
    let mut outcome = outcome?;
    outcome.extra_winners = extra;
    Ok(outcome)
}

/// Our herd and the peer's on `backend`.
pub async fn run(ctx: &Ctx, backend: Backend) -> Result<Found> {
    let plan = &ctx.plan;
    let cap = |n: usize| -> usize {
        if backend == Backend::Consul {
            n.min(plan.consul_conns_per_agent * 3)
        } else {
            n
        }
    };
    let n_ours = cap(plan.herd_candidates);
    eprintln!("herd {backend}: elect, {n_ours} waiting");
    let ours = ours(backend, n_ours).await?;
    let (tool_name, peer) = match backend {
        Backend::Zookeeper => {
            eprintln!("herd {backend}: kazoo, {} waiting", plan.herd_candidates);
            (
                "kazoo Election, one client".to_owned(),
                kazoo(ctx, plan.herd_candidates).await?,
            )
        }
        _ => {
            let tool = if backend == Backend::Etcd {
                Tool::EtcdctlElect
            } else {
                Tool::ConsulLock
            };
            let n = cap(plan.herd_peer_processes);
            eprintln!("herd {backend}: {}, {n} waiting processes", tool.name());
            (
                format!("{} ×{n} processes", tool.name()),
                processes(ctx, backend, &tool, n).await?,
            )
        }
    };
    let wake = match backend {
        Backend::Etcd => "watch events sent (etcd_debugging_mvcc_events_total)",
        Backend::Zookeeper => "watches fired (mntr zk_sum_node_*_watch_count)",
        Backend::Consul => "KV reads answered (blocking queries returned + re-reads)",
    };
    let work = match backend {
        Backend::Etcd => "gRPC messages received, keep-alives excluded",
        Backend::Zookeeper => "packets received (mntr zk_packets_received)",
        Backend::Consul => "HTTP requests answered, minus the interval before",
    };
    let mut found = Found::default();
    let row = Row::of("herd", backend.name(), tool_name);
    let label = format!("{} waiting (peer: {})", ours.waiting, peer.waiting);
    for (what, unit, o, p, note) in [
        (
            "successor leads after",
            "ms",
            ours.successor_ms,
            peer.successor_ms,
            String::new(),
        ),
        (
            "server work for one handover",
            "requests",
            ours.server_requests,
            peer.server_requests,
            work.to_owned(),
        ),
        (
            "client wake-ups for one handover",
            "wake-ups",
            ours.wakeups,
            peer.wakeups,
            wake.to_owned(),
        ),
    ] {
        let what = format!("{what}, {label}");
        found
            .rows
            .push(row.figure(what, unit, Some(o), Some(p)).note(note));
    }
    if backend == Backend::Consul {
        // Every waiting Consul candidate wakes: per waiter, as the two sides' counts differ.
        for (what, o, p) in [
            (
                "server work per waiting candidate",
                ours.server_requests,
                peer.server_requests,
            ),
            (
                "client wake-ups per waiting candidate",
                ours.wakeups,
                peer.wakeups,
            ),
        ] {
            let (o, p) = (o / ours.waiting as f64, p / peer.waiting as f64);
            let what = format!("{what}, {label}");
            found
                .rows
                .push(row.figure(what, "requests", Some(o), Some(p)));
        }
    }
    // Issue 16's targets at the full plan's 1,000 waiting.
    let at = format!("{} waiting", ours.waiting);
    match backend {
        Backend::Consul => {
            found.checks.push(Check {
                target: format!("Consul: one handover costs at most 5 server requests, {at} (issue 16)"),
                figures: format!("{} HTTP requests", ours.server_requests),
                // 0: the waiters' re-issue burst hid the handover (see the notes), not met.
                met: ours.server_requests > 0.0 && ours.server_requests <= 5.0,
            });
            found.checks.push(Check {
                target: format!("Consul: one handover costs at most 2 wake-ups, {at} (issue 16)"),
                figures: format!(
                    "{} KV reads answered (the leader's read of its successor counts as one)",
                    ours.wakeups
                ),
                met: ours.wakeups > 0.0 && ours.wakeups <= 2.0,
            });
        }
        Backend::Zookeeper => found.checks.push(Check {
            target: format!(
                "ZooKeeper: one handover costs a constant number of server requests, at most 10, {at} (issue 16)"
            ),
            figures: format!(
                "{} packets (kazoo: {})",
                ours.server_requests, peer.server_requests
            ),
            met: ours.server_requests <= 10.0,
        }),
        Backend::Etcd => {}
    }
    if ours.extra_winners > 0 || peer.extra_winners > 0 {
        found.rows.push(row.figure(
            "candidates that led after the one handover (must be 0)",
            "candidates",
            Some(ours.extra_winners as f64),
            Some(peer.extra_winners as f64),
        ));
    }
    Ok(found)
}
