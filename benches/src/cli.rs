//! CLI overhead on the file backend: from starting `elect run` to its command starting,
//! against `flock(1)` running the same command under the same kind of lock, and the bare
//! command as the floor. The command is `sh -c 'echo started'`; it has started when its line
//! is read.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio::time::Instant;

use crate::report::{median, percentile, Row, Series, Side};
use crate::{Ctx, Found};

const CHILD: [&str; 3] = ["sh", "-c", "echo started"];

/// Starts `program args… CHILD` (or CHILD alone without a program), returns the time (ms)
/// until the child's line is read; waits for the process to exit.
async fn once(program: Option<&Path>, args: &[String]) -> Result<f64> {
    let (program, args): (&Path, Vec<&str>) = match program {
        Some(p) => (p, args.iter().map(String::as_str).chain(CHILD).collect()),
        None => (Path::new(CHILD[0]), CHILD[1..].to_vec()),
    };
    let t0 = Instant::now();
    let mut child = Command::new(program)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("start {}", program.display()))?;
    let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
    let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .map_err(|_| {
            anyhow!(
                "{}: the command did not start within 10 s",
                program.display()
            )
        })??;
    let t1 = Instant::now();
    if line.as_deref() != Some("started") {
        bail!("{}: the command said {line:?}", program.display());
    }
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .map_err(|_| anyhow!("{} did not exit", program.display()))??;
    if !status.success() {
        bail!("{} exited with {status}", program.display());
    }
    Ok((t1 - t0).as_secs_f64() * 1e3)
}

/// `rounds` samples of each (after one warm-up round).
pub async fn run(ctx: &Ctx) -> Result<Found> {
    let rounds = ctx.plan.cli_rounds;
    let dir = ctx.dir.join("cli");
    std::fs::create_dir_all(&dir)?;
    let url = format!("file://{}/bench.lock", dir.display());
    let lock = dir.join("flock.lock");
    let elect_args = vec!["run".to_owned(), "--url".to_owned(), url, "--".to_owned()];
    let flock_args = vec![lock.display().to_string()];
    let (mut ours, mut peer, mut floor) = (Vec::new(), Vec::new(), Vec::new());
    eprintln!("cli: elect run, flock, sh: {rounds} rounds each");
    for round in 0..=rounds {
        let o = once(Some(&ctx.bins.elect), &elect_args).await?;
        let p = once(Some(&ctx.bins.flock), &flock_args).await?;
        let f = once(None, &[]).await?;
        if round > 0 {
            ours.push(o);
            peer.push(p);
            floor.push(f);
        }
    }
    let mut found = Found::default();
    for (side, tool, values) in [
        (Side::Ours, "elect run (file backend)", &ours),
        (Side::Peer, "flock(1)", &peer),
        (Side::Floor, "sh -c directly", &floor),
    ] {
        found.series.push(Series {
            measurement: "cli".into(),
            backend: "file".into(),
            setting: "start → child's first line".into(),
            side,
            tool: tool.into(),
            unit: "ms".into(),
            values: values.clone(),
        });
    }
    let row = Row::of("cli", "file", "flock(1) with the same command");
    let note = format!(
        "the command alone: median {:.2} ms",
        median(&floor).unwrap_or(0.0)
    );
    for (what, o, p) in [
        ("median", median(&ours), median(&peer)),
        ("p99", percentile(&ours, 99.0), percentile(&peer, 99.0)),
    ] {
        let what = format!("start → child started, {what} of {} rounds", ours.len());
        found
            .rows
            .push(row.figure(what, "ms", o, p).note(note.clone()));
    }
    Ok(found)
}
