//! The handover a user of `elect run` sees (issue 16): every tool wraps the same command,
//! which says `leading` and ends by itself once its FIFO is written; the time runs from that
//! write until the successor's command has said `leading`. The leader's own share (command
//! exited → release sent) and the successor's (elected → command started) count, as they do
//! for the user. Ours: `elect run`, and with `--contain subreaper` beside it (a cgroup per
//! term is the default where one can be made, and moving the command into it costs); peers:
//! `etcdctl lock NAME CMD`, a kazoo `Lock` running CMD, `consul lock PREFIX CMD`, each
//! through [`handover::peer`]'s rounds, by turns ([`handover::in_turns`]).

use anyhow::Result;
use futures::FutureExt as _;

use crate::cluster::Backend;
use crate::handover;
use crate::peers::Tool;
use crate::report::{median, percentile, Check, Row, Series, Side};
use crate::{Ctx, Found};

/// The peer tool that wraps a command on each backend, with settings matched to ours.
fn peer_tool(backend: Backend) -> Tool {
    match backend {
        Backend::Etcd => Tool::EtcdctlLockRun {
            ttl: backend.short_ttl().as_secs(),
        },
        Backend::Zookeeper => Tool::KazooLockRun {
            timeout: backend.short_ttl().as_secs(),
        },
        Backend::Consul => Tool::ConsulLock,
    }
}

/// The target: ours at most this share of the peer's median.
fn target(backend: Backend) -> f64 {
    match backend {
        Backend::Consul => 0.7,
        _ => 0.85,
    }
}

/// `elect run` and the peer's wrapper on one backend, with the rows and the target.
pub async fn run(ctx: &Ctx, backend: Backend) -> Result<Found> {
    let rounds = ctx.plan.handover_rounds;
    let ttl = match backend {
        Backend::Consul => std::time::Duration::from_secs(10),
        _ => backend.short_ttl(),
    };
    let elect_run = |contain| Tool::ElectRun {
        backend,
        query: backend.ttl_param(ttl),
        contain,
    };
    let (ours_tool, subreaper_tool) = (elect_run(None), elect_run(Some("subreaper")));
    let peer_tool = peer_tool(backend);
    eprintln!("run handover {backend}: by turns");
    let contenders: Vec<handover::Contender<'_>> = [&ours_tool, &subreaper_tool, &peer_tool]
        .into_iter()
        .map(|tool| -> handover::Contender<'_> {
            (
                tool.name(),
                Box::new(move |n| handover::peer(ctx, tool, backend, n).boxed()),
            )
        })
        .collect();
    let measured = handover::in_turns(rounds, contenders).await?;
    let [ours, subreaper, peer] = <[Vec<f64>; 3]>::try_from(measured).expect("three tools");
    let setting = format!("TTL {} s", ttl.as_secs());
    let mut found = Found::default();
    for (side, tool, values) in [
        (Side::Ours, ours_tool.name(), &ours),
        (Side::Ours, subreaper_tool.name(), &subreaper),
        (Side::Peer, peer_tool.name(), &peer),
    ] {
        found.series.push(Series {
            measurement: "run handover".into(),
            backend: backend.name().into(),
            setting: setting.clone(),
            side,
            tool,
            unit: "ms".into(),
            values: values.clone(),
        });
    }
    let row = Row::of("run handover", backend.name(), peer_tool.name());
    let (om, pm) = (median(&ours), median(&peer));
    for (what, o, p) in [
        ("median", om, pm),
        ("p99", percentile(&ours, 99.0), percentile(&peer, 99.0)),
    ] {
        let what = format!(
            "command ended → successor's command started, {what} of {} rounds",
            ours.len()
        );
        found.rows.push(row.figure(what, "ms", o, p));
    }
    let what = format!(
        "the same with `--contain subreaper`, median of {} rounds",
        subreaper.len()
    );
    found
        .rows
        .push(row.figure(what, "ms", median(&subreaper), pm));
    if let (Some(o), Some(p)) = (om, pm) {
        let share = target(backend);
        found.checks.push(Check {
            target: format!(
                "{backend}: `elect run` hands over in at most {share}× {}'s median",
                peer_tool.name()
            ),
            figures: format!("elect run {o:.2} ms vs {p:.2} ms ({:.2}×)", o / p),
            met: o <= share * p,
        });
    }
    Ok(found)
}
