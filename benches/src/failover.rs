//! Failover: the leader is killed with SIGKILL, the waiting candidate leads once the store
//! has expired the dead leader's lease or session. Our leader is `elect run` (the process a
//! user would run), our successor the library; the peers' are both their processes.

use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use elect::Candidate;
use tokio::time::Instant;

use crate::cluster::{connect, connect_url, consul_agent, fresh, settle, wait_candidates, Backend};
use crate::peers::{Proc, Tool};
use crate::report::{median, percentile, Check, Row, Series, Side};
use crate::{Ctx, Found};

/// One failover comparison: our settings against a peer's.
#[derive(Debug, Clone)]
pub struct Case {
    /// The backend.
    pub backend: Backend,
    /// `shortest TTL` or `defaults`, for the report.
    pub setting: String,
    /// Our URL query (`ttl=2s`, …; empty for the defaults).
    pub ours_query: String,
    /// Our TTL (session timeout), for the targets.
    pub ours_ttl: Duration,
    /// Our lock delay (Consul), for the targets.
    pub ours_lock_delay: Duration,
    /// The peer.
    pub peer: Tool,
    /// Rounds per side.
    pub rounds: usize,
    /// At the shortest TTL (checked against the bounds) or at the defaults.
    pub shortest: bool,
}

/// The comparisons: each tool's shortest allowed TTL, and each tool's defaults.
pub fn cases(short_rounds: usize, default_rounds: usize) -> Vec<Case> {
    let s = Duration::from_secs;
    vec![
        Case {
            backend: Backend::Etcd,
            setting: "TTL 2 s (etcd's minimum)".into(),
            ours_query: "ttl=2s".into(),
            ours_ttl: s(2),
            ours_lock_delay: s(0),
            peer: Tool::EtcdctlLock { ttl: 2 },
            rounds: short_rounds,
            shortest: true,
        },
        Case {
            backend: Backend::Zookeeper,
            setting: "session 2 s".into(),
            ours_query: "session_timeout=2s".into(),
            ours_ttl: s(2),
            ours_lock_delay: s(0),
            peer: Tool::Kazoo { timeout: 2 },
            rounds: short_rounds,
            shortest: true,
        },
        Case {
            backend: Backend::Consul,
            setting: "defaults = shortest (TTL 10 s, lock delay 10 s)".into(),
            ours_query: String::new(),
            ours_ttl: s(10),
            ours_lock_delay: s(10),
            peer: Tool::ConsulLock,
            rounds: default_rounds,
            shortest: true,
        },
        Case {
            backend: Backend::Etcd,
            setting: "defaults (ours TTL 10 s)".into(),
            ours_query: String::new(),
            ours_ttl: s(10),
            ours_lock_delay: s(0),
            peer: Tool::EtcdctlElect,
            rounds: default_rounds,
            shortest: false,
        },
        Case {
            backend: Backend::Zookeeper,
            setting: "defaults (session 10 s)".into(),
            ours_query: String::new(),
            ours_ttl: s(10),
            ours_lock_delay: s(0),
            peer: Tool::Kazoo { timeout: 10 },
            rounds: default_rounds,
            shortest: false,
        },
    ]
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// A crash comes at any moment of the leader's renewal cycle, and the store expires the
/// session one TTL after the last renewal it heard: killing at a fixed delay after the
/// election would measure every round at one phase, lucky or unlucky, and differently per
/// tool. So the kill waits a uniformly random part of one renewal period.
async fn at_a_random_phase(renew_every: Duration) {
    tokio::time::sleep(renew_every.mul_f64(rand::random::<f64>())).await;
}

/// One round of ours: `elect run` leads, a library candidate waits, `elect run` is killed.
async fn ours_round(ctx: &Ctx, case: &Case) -> Result<f64> {
    let backend = case.backend;
    let election = fresh("failover");
    let url = backend.url(&election, &case.ours_query);
    let tool = Tool::ElectRun {
        backend,
        query: case.ours_query.clone(),
        contain: None,
    };
    let mut leader = Proc::spawn(&tool, &election, &ctx.dir, &ctx.bins)?;
    leader.leading(Duration::from_secs(30)).await?;
    let successor = std::sync::Arc::<dyn elect::Elector>::from(connect_url(&url).await?);
    let waiting = {
        let (elector, name) = (successor.clone(), election.clone());
        tokio::spawn(async move {
            let won = elector
                .campaign(&name, &Candidate::new("successor", "s")?)
                .await;
            Ok::<_, anyhow::Error>((Instant::now(), won?))
        })
    };
    wait_candidates(&*successor, backend, &election, 2, Duration::from_secs(30)).await?;
    tokio::time::sleep(settle(backend)).await;
    if waiting.is_finished() {
        bail!("{backend}: the successor led while `elect run` leads");
    }
    let bound = 2 * case.ours_ttl + case.ours_lock_delay + Duration::from_secs(15);
    let renew_every = match backend {
        Backend::Consul => case.ours_ttl / 2,
        _ => case.ours_ttl / 3,
    };
    at_a_random_phase(renew_every).await;
    let t0 = leader.kill();
    let (t1, won) = tokio::time::timeout(bound, waiting)
        .await
        .map_err(|_| anyhow!("{backend}: no successor within {bound:?} of the SIGKILL"))???;
    let _ = leader.exit(Duration::from_secs(5)).await;
    won.resign().await?;
    let _ = successor.close().await;
    Ok(secs(t1 - t0))
}

/// One round of the peer: one process leads, another waits, the leader is killed.
async fn peer_round(ctx: &Ctx, case: &Case) -> Result<f64> {
    let backend = case.backend;
    let election = fresh("failover-peer");
    let observer = connect(backend, &election, &backend.ttl_param(backend.short_ttl())).await?;
    let agent = match backend {
        Backend::Consul => Some(consul_agent().await?),
        _ => None,
    };
    let mut leader =
        Proc::spawn_with(&case.peer, &election, &ctx.dir, &ctx.bins, agent.as_deref())?;
    leader.leading(Duration::from_secs(30)).await?;
    let mut successor =
        Proc::spawn_with(&case.peer, &election, &ctx.dir, &ctx.bins, agent.as_deref())?;
    wait_candidates(&*observer, backend, &election, 2, Duration::from_secs(30)).await?;
    tokio::time::sleep(settle(backend)).await;
    at_a_random_phase(case.peer.renew_every()).await;
    let t0 = leader.kill();
    let t1 = successor.leading(case.peer.failover_bound()).await?;
    let _ = leader.exit(Duration::from_secs(5)).await;
    successor.resign().await?;
    successor.exit(Duration::from_secs(10)).await?;
    let _ = observer.close().await;
    Ok(secs(t1 - t0))
}

/// Every round of one case, both sides, with rows and (at the shortest TTL) the targets.
pub async fn run(ctx: &Ctx, case: &Case) -> Result<Found> {
    let backend = case.backend;
    let mut ours = Vec::new();
    let mut peer = Vec::new();
    for round in 0..case.rounds {
        eprintln!(
            "failover {backend} {}: round {}: elect",
            case.setting,
            round + 1
        );
        ours.push(ours_round(ctx, case).await?);
        eprintln!(
            "failover {backend} {}: round {}: {}",
            case.setting,
            round + 1,
            case.peer.name()
        );
        peer.push(peer_round(ctx, case).await?);
    }
    let mut found = Found::default();
    for (side, tool, values) in [
        (Side::Ours, "elect run → elect".to_owned(), &ours),
        (Side::Peer, case.peer.name(), &peer),
    ] {
        found.series.push(Series {
            measurement: "failover".into(),
            backend: backend.name().into(),
            setting: case.setting.clone(),
            side,
            tool,
            unit: "s".into(),
            values: values.clone(),
        });
    }
    let (om, pm) = (median(&ours), median(&peer));
    let row = Row::of("failover", backend.name(), case.peer.name());
    for (what, o, p) in [
        ("median", om, pm),
        ("max", percentile(&ours, 100.0), percentile(&peer, 100.0)),
    ] {
        let what = format!("{what} of {} rounds, {}", ours.len(), case.setting);
        found.rows.push(row.figure(what, "s", o, p));
    }
    let (Some(o), Some(p)) = (om, pm) else {
        return Ok(found);
    };
    let ttl = case.ours_ttl.as_secs_f64();
    match (backend, case.shortest) {
        (Backend::Consul, _) => {
            let delay = case.ours_lock_delay.as_secs_f64();
            found.checks.push(Check {
                target: format!(
                    "Consul failover median within [TTL, 2 × TTL] + lock delay = [{}, {}] s",
                    ttl + delay,
                    2.0 * ttl + delay
                ),
                figures: format!("elect {o:.2} s"),
                met: o >= ttl + delay && o <= 2.0 * ttl + delay,
            });
            found.checks.push(Check {
                target: "Consul failover median below `consul lock`'s at defaults".into(),
                figures: format!("elect {o:.2} s vs consul lock {p:.2} s"),
                met: o < p,
            });
        }
        (_, true) => {
            found.checks.push(Check {
                target: format!(
                    "{backend} failover median within TTL + 250 ms ({:.2} s)",
                    ttl + 0.25
                ),
                figures: format!("elect {o:.3} s"),
                met: o <= ttl + 0.25,
            });
            found.checks.push(Check {
                target: format!(
                    "{backend} failover median no slower than the peer at the same TTL"
                ),
                figures: format!("elect {o:.3} s vs {} {p:.3} s", case.peer.name()),
                met: o <= p,
            });
        }
        _ => {}
    }
    Ok(found)
}
