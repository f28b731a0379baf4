//! Handover: the leader resigns, the waiting candidate leads. Ours through the library (two
//! electors, each its own session, taking turns); the peer's through its processes; and the
//! physical floor, all in the same run.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use elect::{Candidate, Elector};
use futures::future::BoxFuture;
use futures::FutureExt as _;
use tokio::time::Instant;

use crate::cluster::{connect, fresh, settle, wait_candidates, Backend};
use crate::peers::{Proc, Tool};
use crate::report::{median, percentile, Check, Row, Series, Side};
use crate::{floor, Ctx, Found};

const WITHIN: Duration = Duration::from_secs(10);

/// Rounds in one turn of [`in_turns`].
const TURN: usize = 7;

/// One contender of a comparison: its name and how to measure `n` rounds of it.
pub type Contender<'a> = (
    String,
    Box<dyn FnMut(usize) -> BoxFuture<'a, Result<Vec<f64>>> + 'a>,
);

/// Measures `contenders` by turns of [`TURN`] rounds, the order rotating from turn to turn, until
/// each has `rounds` samples; returns them in the order of `contenders`. The machine is a shared
/// VM whose speed drifts over minutes: taking turns lays that drift on every contender alike,
/// where measuring one after the other laid it on whichever came last.
pub async fn in_turns(rounds: usize, mut contenders: Vec<Contender<'_>>) -> Result<Vec<Vec<f64>>> {
    let mut samples = vec![Vec::new(); contenders.len()];
    let turns = rounds.div_ceil(TURN);
    for turn in 0..turns {
        let n = TURN.min(rounds - turn * TURN);
        for k in 0..contenders.len() {
            let i = (turn + k) % contenders.len();
            let (name, measure) = &mut contenders[i];
            eprintln!("  {name}: turn {}/{turns}", turn + 1);
            samples[i].extend(measure(n).await?);
        }
    }
    Ok(samples)
}

/// The peer tool of each backend for handovers.
pub fn peer_tool(backend: Backend) -> Tool {
    match backend {
        Backend::Etcd => Tool::EtcdctlElect,
        Backend::Zookeeper => Tool::Kazoo { timeout: 2 },
        Backend::Consul => Tool::ConsulLock,
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Our handovers: `rounds` samples (ms) after one warm-up round.
pub async fn ours(backend: Backend, rounds: usize) -> Result<Vec<f64>> {
    let election = fresh("handover");
    let query = backend.ttl_param(backend.short_ttl());
    let observer = connect(backend, &election, &query).await?;
    let electors: [Arc<dyn Elector>; 2] = [
        connect(backend, &election, &query).await?.into(),
        connect(backend, &election, &query).await?.into(),
    ];
    let mut leader = tokio::time::timeout(
        Duration::from_secs(30),
        electors[0].campaign(&election, &Candidate::new("c0", "c0")?),
    )
    .await
    .map_err(|_| anyhow!("{backend}: the first candidate did not lead"))??;
    let mut at = 0;
    let mut samples = Vec::new();
    for round in 0..=rounds {
        let next = 1 - at;
        let waiting = {
            let (elector, name) = (electors[next].clone(), election.clone());
            tokio::spawn(async move {
                let candidate = Candidate::new(format!("c{next}"), format!("c{next}"))?;
                let won = elector.campaign(&name, &candidate).await;
                Ok::<_, anyhow::Error>((Instant::now(), won?))
            })
        };
        wait_candidates(&*observer, backend, &election, 2, WITHIN).await?;
        tokio::time::sleep(settle(backend)).await;
        if waiting.is_finished() {
            bail!("{backend}: the successor led while the leader leads");
        }
        let t0 = Instant::now();
        leader.resign().await?;
        let (t1, won) = tokio::time::timeout(WITHIN, waiting)
            .await
            .map_err(|_| anyhow!("{backend}: no successor within {WITHIN:?} of the resign"))???;
        if round > 0 {
            samples.push(ms(t1 - t0));
        }
        leader = won;
        at = next;
    }
    leader.resign().await?;
    for e in electors.iter() {
        let _ = e.close().await;
    }
    let _ = observer.close().await;
    Ok(samples)
}

/// The handovers of a tool's processes (a peer's, or `elect run`): a leader process and a
/// fresh waiting one each round, the leader told to let go its tool's way; `rounds` samples
/// (ms) after one warm-up round.
pub async fn peer(ctx: &Ctx, tool: &Tool, backend: Backend, rounds: usize) -> Result<Vec<f64>> {
    let election = fresh("handover-peer");
    let observer = connect(backend, &election, &backend.ttl_param(backend.short_ttl())).await?;
    let agent = match backend {
        Backend::Consul => Some(crate::cluster::consul_agent().await?),
        _ => None,
    };
    let spawn = || Proc::spawn_with(tool, &election, &ctx.dir, &ctx.bins, agent.as_deref());
    let mut leader = spawn()?;
    leader.leading(Duration::from_secs(30)).await?;
    let mut samples = Vec::new();
    for round in 0..=rounds {
        let mut next = spawn()?;
        wait_candidates(&*observer, backend, &election, 2, Duration::from_secs(30)).await?;
        tokio::time::sleep(settle(backend)).await;
        let t0 = leader.resign().await?;
        let t1 = next.leading(WITHIN).await?;
        if round > 0 {
            samples.push(ms(t1 - t0));
        }
        leader.exit(Duration::from_secs(10)).await?;
        leader = next;
    }
    leader.resign().await?;
    leader.exit(Duration::from_secs(10)).await?;
    let _ = observer.close().await;
    Ok(samples)
}

/// Floor, ours and peer on one backend, with the rows and the handover targets.
pub async fn run(ctx: &Ctx, backend: Backend) -> Result<Found> {
    let rounds = ctx.plan.handover_rounds;
    let tool = peer_tool(backend);
    eprintln!(
        "handover {backend}: floor, elect and {} by turns",
        tool.name()
    );
    let contenders: Vec<Contender<'_>> = vec![
        (
            "floor".to_owned(),
            Box::new(move |n| floor::measure(backend, n).boxed()),
        ),
        (
            "elect".to_owned(),
            Box::new(move |n| ours(backend, n).boxed()),
        ),
        (
            tool.name(),
            Box::new(|n| peer(ctx, &tool, backend, n).boxed()),
        ),
    ];
    let [floor, ours, peer] =
        <[Vec<f64>; 3]>::try_from(in_turns(rounds, contenders).await?).expect("three contenders");
    let setting = match backend {
        Backend::Consul => "TTL 10 s".to_owned(),
        _ => format!("TTL {} s", backend.short_ttl().as_secs()),
    };
    let mut found = Found::default();
    for (side, who, values) in [
        (
            Side::Floor,
            "floor: delete + watch event".to_owned(),
            &floor,
        ),
        (Side::Ours, "elect".to_owned(), &ours),
        (Side::Peer, tool.name(), &peer),
    ] {
        found.series.push(Series {
            measurement: "handover".into(),
            backend: backend.name().into(),
            setting: setting.clone(),
            side,
            tool: who,
            unit: "ms".into(),
            values: values.clone(),
        });
    }
    let (om, pm, fm) = (median(&ours), median(&peer), median(&floor));
    let row = Row::of("handover", backend.name(), tool.name());
    for (what, o, p) in [
        ("median", om, pm),
        ("p99", percentile(&ours, 99.0), percentile(&peer, 99.0)),
    ] {
        found
            .rows
            .push(row.figure(format!("{what} of {} rounds", ours.len()), "ms", o, p));
    }
    let floor_row = Row::of(
        "handover",
        backend.name(),
        "floor: one delete committed + one watch event delivered",
    );
    found
        .rows
        .push(floor_row.figure("median vs the physical floor", "ms", om, fm));
    let f = |v: Option<f64>| v.map_or("—".to_owned(), |v| format!("{v:.2} ms"));
    match (backend, om, pm, fm) {
        (Backend::Consul, Some(o), Some(p), _) => found.checks.push(Check {
            target: "Consul handover median at most half of `consul lock`'s".into(),
            figures: format!("elect {} vs consul lock {}", f(om), f(pm)),
            met: o <= p / 2.0,
        }),
        (_, Some(o), Some(p), Some(fl)) => {
            found.checks.push(Check {
                target: format!("{backend} handover median no slower than the best peer"),
                figures: format!("elect {} vs {} {}", f(om), tool.name(), f(pm)),
                met: o <= p,
            });
            found.checks.push(Check {
                target: format!("{backend} handover median within 1.5× the physical floor"),
                figures: format!("elect {} vs floor {} ({:.2}×)", f(om), f(fm), o / fl),
                met: o <= 1.5 * fl,
            });
        }
        _ => {}
    }
    if let (Some(o), Some(fl)) = (om, fm) {
        found.checks.push(Check {
            target: format!("{backend} handover median within 2× the quiet floor (issue 16)"),
            figures: format!("elect {} vs floor {} ({:.2}×)", f(om), f(fm), o / fl),
            met: o <= 2.0 * fl,
        });
    }
    Ok(found)
}
