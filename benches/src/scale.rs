//! Scale: what a waiting candidate costs inside one process (resident memory and tokio
//! tasks, for 1, 100 and 1,000 candidates), and one process leading 1,000 elections at once
//! through one elector — one lease or session, so its keep-alive traffic is that of a single
//! session, read from the servers' counters.

use std::time::Duration;

use anyhow::{anyhow, Result};
use elect::{Candidate, Leadership};
use futures::StreamExt;

use crate::cluster::{connect, fresh, Backend};
use crate::counters::{measure, Metric};
use crate::crowd::Crowd;
use crate::peers::proc_status;
use crate::report::{Check, Row};
use crate::{Ctx, Found, PeerFacts};

fn keepalive_metric(backend: Backend) -> Metric {
    match backend {
        Backend::Etcd => Metric::EtcdKeepAlives,
        Backend::Zookeeper => Metric::ZkPackets,
        Backend::Consul => Metric::ConsulRenews,
    }
}

/// Live heap (KiB), resident memory (KiB) and live tokio tasks of this process.
fn self_footprint() -> (f64, f64, f64) {
    let heap = crate::live_heap_bytes() as f64 / 1024.0;
    let rss = proc_status(std::process::id() as i32).map_or(0.0, |(kb, _)| kb as f64);
    let tasks = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks() as f64;
    (heap, rss, tasks)
}

/// Live heap (KiB), resident memory (KiB) and tasks per waiting candidate with `n` of them
/// in this process.
async fn per_candidate(backend: Backend, n: usize) -> Result<(f64, f64, f64)> {
    let election = fresh("scale");
    let electors = crate::herd::electors(backend, &election, n + 1).await?;
    let mut crowd = Crowd::lead(election, electors).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (heap0, rss0, tasks0) = self_footprint();
    crowd.join(|_| ());
    crowd.wait_joined(backend, Duration::from_secs(300)).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (heap1, rss1, tasks1) = self_footprint();
    crowd.end().await;
    let n = n as f64;
    Ok((
        (heap1 - heap0) / n,
        (rss1 - rss0) / n,
        (tasks1 - tasks0) / n,
    ))
}

/// Keep-alive requests/s of one elector leading 1 and then `k` elections (baseline
/// subtracted), and `k`.
async fn many_elections(ctx: &Ctx, backend: Backend, k: usize) -> Result<(f64, f64)> {
    let metric = [keepalive_metric(backend)];
    let window = ctx.plan.idle_window;
    eprintln!("scale {backend}: baseline");
    let base = measure(backend, window, &metric).await?[0];
    let elector = connect(backend, &fresh("many"), "").await?;
    let mut terms: Vec<Leadership> = Vec::new();
    let first = fresh("many");
    terms.push(
        elector
            .campaign(&first, &Candidate::new("many", "many")?)
            .await?,
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    eprintln!("scale {backend}: one elector leading 1 election");
    let one = measure(backend, window, &metric).await?[0] - base;
    let elector_ref = &*elector;
    let more: Vec<Result<Leadership>> = futures::stream::iter(1..k)
        .map(|_| async move {
            let name = fresh("many");
            elector_ref
                .campaign(&name, &Candidate::new("many", "many")?)
                .await
                .map_err(|e| anyhow!("{backend}: campaign {name}: {e}"))
        })
        .buffer_unordered(32)
        .collect()
        .await;
    for term in more {
        terms.push(term?);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    eprintln!("scale {backend}: one elector leading {k} elections");
    let all = measure(backend, window, &metric).await?[0] - base;
    let still = terms.iter().filter(|t| t.is_leader()).count();
    let _ = elector.close().await;
    if still != terms.len() {
        return Err(anyhow!(
            "{backend}: {} of {k} terms were lost while measured",
            terms.len() - still
        ));
    }
    Ok((one.max(0.0), all.max(0.0)))
}

/// Every scale figure of `backend`.
pub async fn run(ctx: &Ctx, backend: Backend, facts: &PeerFacts) -> Result<Found> {
    let plan = &ctx.plan;
    let cap = |n: usize| -> usize {
        if backend == Backend::Consul {
            n.min(plan.consul_conns_per_agent * 3)
        } else {
            n
        }
    };
    let mut found = Found::default();
    let peer = facts.footprint.iter().find(|f| f.0 == backend).cloned();
    let peer_tool = peer
        .as_ref()
        .map_or(String::new(), |p| format!("{}: one process each", p.1));
    let row = Row::of("scale", backend.name(), peer_tool);
    let mut sizes: Vec<usize> = plan.scale_sizes.iter().map(|&n| cap(n)).collect();
    sizes.dedup();
    for n in sizes {
        eprintln!("scale {backend}: {n} waiting candidates in this process");
        let (heap, rss, tasks) = per_candidate(backend, n).await?;
        found.rows.push(
            row.figure(
                format!("memory per waiting candidate, {n} in one process"),
                "KiB (ours: live heap; peer: RSS)",
                Some(heap),
                peer.as_ref().map(|p| p.2),
            )
            .note(format!("RSS grew {rss:.1} KiB per candidate")),
        );
        found.rows.push(row.figure(
            format!("tasks per waiting candidate, {n} in one process"),
            "tokio tasks (peer: OS threads)",
            Some(tasks),
            peer.as_ref().map(|p| p.3),
        ));
    }
    // A Consul term holds a blocking query (one connection) on the one agent its session
    // lives on, which takes a limited number per client address (see `Plan`).
    let k = if backend == Backend::Consul {
        plan.elections.min(plan.consul_conns_per_agent)
    } else {
        plan.elections
    };
    let (one, all) = many_elections(ctx, backend, k).await?;
    let peer_rate = facts.keepalive.iter().find(|f| f.0 == backend).cloned();
    let what = match backend {
        Backend::Zookeeper => "keep-alive (all packets)",
        Backend::Etcd => "keep-alive (LeaseKeepAlive messages)",
        Backend::Consul => "keep-alive (session renewals)",
    };
    let one_tool = peer_rate
        .as_ref()
        .map_or(String::new(), |p| format!("{} ({})", p.2, p.1));
    let k_tool = peer_rate.as_ref().map_or(String::new(), |p| {
        format!("{k} × {} (one session each)", p.2)
    });
    for (tool, what, ours, peer) in [
        (
            one_tool,
            format!("{what}/s, one process leading 1 election"),
            one,
            peer_rate.as_ref().map(|p| p.3),
        ),
        (
            k_tool,
            format!("{what}/s, one process leading {k} elections"),
            all,
            peer_rate.as_ref().map(|p| p.3 * k as f64),
        ),
    ] {
        let row = Row::of("scale", backend.name(), tool);
        found.rows.push(
            row.figure(what, "req/s", Some(ours), peer)
                .note("default TTL"),
        );
    }
    found.checks.push(Check {
        target: format!("{backend}: one process leading {k} elections sends the keep-alive traffic of one session"),
        figures: format!("{all:.3} req/s for {k} elections vs {one:.3} req/s for 1"),
        // One session's keep-alives, give or take the counting window's rounding.
        met: all <= one * 1.5 + 0.2,
    });
    Ok(found)
}
