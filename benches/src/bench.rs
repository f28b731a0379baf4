//! `bench`: elect's benchmarks (issue 7), against the real 3-node clusters, each figure beside
//! the peer tool's from the same run.
//!
//! Run it through `benches/run` (starts the clusters, builds `elect` and this binary in
//! release mode). It writes `benches/results/results.json` (every raw sample),
//! `benches/results/table.md` (ours, the peer's, the ratio; the targets; the machine
//! and the date) and `benches/results/plot.svg`.

#![warn(missing_docs)]

mod cli;
mod cluster;
mod counters;
mod crowd;
mod failover;
mod floor;
mod handover;
mod herd;
mod http;
mod idle;
mod peers;
mod report;
mod run_handover;
mod scale;

use std::alloc::{GlobalAlloc, Layout, System};
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

use anyhow::Result;
use clap::Parser;

use cluster::Backend;
use peers::Bins;
use report::{Check, Machine, Results, Row, Series};

/// The system allocator, counting the bytes live on the heap: what a candidate costs in
/// memory, exactly, whatever the allocator keeps cached.
struct Counting;

static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call goes to `System` unchanged; only a counter is added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            LIVE_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        LIVE_BYTES.fetch_sub(layout.size() as isize, Ordering::Relaxed);
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc_zeroed(layout);
        if !p.is_null() {
            LIVE_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = System.realloc(ptr, layout, new_size);
        if !p.is_null() {
            LIVE_BYTES.fetch_add(
                new_size as isize - layout.size() as isize,
                Ordering::Relaxed,
            );
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Bytes live on this process's heap now.
pub fn live_heap_bytes() -> isize {
    LIVE_BYTES.load(Ordering::Relaxed)
}

/// The measurements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Part {
    /// `elect run` start → child start, file backend.
    Cli,
    /// Leader resigns → successor leads.
    Handover,
    /// The leader's wrapped command ends → the successor's command starts (`elect run`
    /// against the peers' wrappers).
    RunHandover,
    /// Leader SIGKILLed → successor leads.
    Failover,
    /// Server requests per second per waiting candidate.
    Idle,
    /// One handover among many waiting candidates.
    Herd,
    /// Memory and tasks per candidate; 1,000 elections on one session.
    Scale,
}

/// elect's benchmarks against the real clusters (issue 7).
#[derive(Debug, Parser)]
#[command(name = "bench")]
struct Args {
    /// Few rounds and short windows: minutes instead of half an hour; for development.
    #[arg(long)]
    quick: bool,
    /// Handover rounds per side (default 30; 5 with --quick).
    #[arg(long)]
    rounds: Option<usize>,
    /// Only these measurements (default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Part>,
    /// Only these backends (default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    backends: Vec<Backend>,
    /// Where results.json, table.md and plot.svg go (default: benches/results for a full run,
    /// target/bench-partial with --quick, --rounds, --only or --backends).
    #[arg(long)]
    out: Option<PathBuf>,
}

/// Rounds, windows and sizes of one run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Handover rounds per side (after one warm-up round).
    pub handover_rounds: usize,
    /// Failover rounds per side at the shortest TTL.
    pub failover_short_rounds: usize,
    /// Failover rounds per side at the defaults (up to a minute each).
    pub failover_default_rounds: usize,
    /// Counting window of idle and keep-alive rates (Consul: whole 10 s intervals).
    pub idle_window: Duration,
    /// Waiting candidates per side in the idle windows.
    pub idle_candidates: usize,
    /// Waiting candidates of ours (and kazoo's, in one process) in the herd.
    pub herd_candidates: usize,
    /// Waiting peer processes (`etcdctl elect`, `consul lock`) in the herd: each is ~20 MB.
    pub herd_peer_processes: usize,
    /// Connections we may hold to one Consul agent, shared with anything else on this host
    /// (the test clusters take 4,096 per client address; Consul's default is 200).
    pub consul_conns_per_agent: usize,
    /// Waiting candidates in one process for the memory and task counts.
    pub scale_sizes: Vec<usize>,
    /// Elections led at once by one elector.
    pub elections: usize,
    /// CLI overhead rounds.
    pub cli_rounds: usize,
}

impl Plan {
    fn new(quick: bool, rounds: Option<usize>) -> Plan {
        if quick {
            Plan {
                handover_rounds: rounds.unwrap_or(5),
                failover_short_rounds: 2,
                failover_default_rounds: 1,
                idle_window: Duration::from_secs(10),
                idle_candidates: 5,
                herd_candidates: 100,
                herd_peer_processes: 20,
                consul_conns_per_agent: 40,
                scale_sizes: vec![1, 100, 1000],
                elections: 1000,
                cli_rounds: 10,
            }
        } else {
            Plan {
                handover_rounds: rounds.unwrap_or(30),
                failover_short_rounds: 30,
                failover_default_rounds: 3,
                idle_window: Duration::from_secs(30),
                idle_candidates: 10,
                herd_candidates: 1000,
                herd_peer_processes: 100,
                consul_conns_per_agent: 400,
                scale_sizes: vec![1, 100, 1000],
                elections: 1000,
                cli_rounds: 50,
            }
        }
    }
}

/// What every measurement needs.
#[derive(Debug)]
pub struct Ctx {
    /// Rounds and sizes.
    pub plan: Plan,
    /// The programs.
    pub bins: Bins,
    /// A scratch folder (FIFOs, peers' stderr, lock files).
    pub dir: PathBuf,
}

/// What one measurement found.
#[derive(Debug, Default)]
pub struct Found {
    /// Table rows.
    pub rows: Vec<Row>,
    /// Raw samples.
    pub series: Vec<Series>,
    /// The targets.
    pub checks: Vec<Check>,
}

/// What the idle measurement learnt about the peers, for the scale rows.
#[derive(Debug, Default, Clone)]
pub struct PeerFacts {
    /// (backend, tool, RSS KiB of one waiting process, its threads).
    pub footprint: Vec<(Backend, String, f64, f64)>,
    /// (backend, setting, tool, keep-alive requests/s of one candidate).
    pub keepalive: Vec<(Backend, String, String, f64)>,
}

const NOTES: &[&str] = &[
    "**handover**: two candidates take turns; the leader resigns (ours: `Leadership::resign` through the library, each candidate its own elector and session; `etcdctl elect`: SIGINT; kazoo `Election`: a line on stdin; `consul lock`: its child ends) and the time runs until the successor leads (ours: its `campaign` resolves; peers: the line they print when elected is read). A round starts once the store shows the waiter's claim (Consul shows none) and 100 ms (Consul 300 ms) more for its watch. One warm-up round is dropped.",
    "**run handover**: what a user of `elect run` sees. Every tool wraps the same command, `sh -c 'echo leading; read x < FIFO'` (`elect run --url URL -- CMD`, `etcdctl lock --ttl=N NAME CMD`, a kazoo `Lock` whose holder runs CMD with `subprocess.run`, `consul lock PREFIX CMD`); the leader's command ends when its FIFO is written and the time runs until the successor's command's line is read. The wrappers' own work on both sides counts: the leader's release after its command exited, the successor's start of its command after it was elected. Rounds start as in the handover.",
    "**physical floor**: one client deletes a key, another has a watch on it (etcd: a watch created from the next revision; ZooKeeper: an `exists` watch; Consul: a blocking query), time from the delete request to the event — one delete committed plus one watch event delivered. Each delete comes after the same quiet time as a handover's resign (100 ms, Consul 300 ms): the members are slower to commit after a pause (etcd: about 1 ms).",
    "**failover**: our leader is `elect run` (its command started), killed with SIGKILL; the successor is a library candidate. Peers: a leader process and a waiting one of the same tool, the leader SIGKILLed (`consul lock` with its child). The kill comes at a uniformly random moment of the leader's renewal period (ours: etcd and ZooKeeper TTL/3, Consul TTL/2; Go's session TTL/3, kazoo timeout/3, `consul lock` TTL/2): the store expires a session one TTL after the last renewal it heard, so a kill at a fixed delay after the election would measure one phase only. `etcdctl elect` has no TTL flag (its session TTL is 60 s), so the same-TTL comparison uses `etcdctl lock --ttl` (the same Go session code); `consul lock`'s TTL (15 s) and lock delay (15 s) are fixed too.",
    "**idle**: server requests per second per candidate from the servers' counters, summed over the 3 members: etcd `grpc_server_msg_received_total` (keep-alives: its `LeaseKeepAlive` series), ZooKeeper `mntr` `zk_packets_received` (pings included), Consul `/v1/agent/metrics` `consul.http.*` samples (keep-alives: `consul.http.PUT.v1.session.renew`), counted over whole 10 s intervals because Consul shows the last finished one. A window with a leader and N waiting candidates (each its own session, as separate processes) minus the mean of the baseline windows without them just before and after, divided by N + 1. Settings are matched between the sides.",
    "**herd**: one handover among many waiting candidates. Ours in one process (etcd: 1 client, each elector its own lease; ZooKeeper: 1 client and session); kazoo: as many `Election`s on one client; `etcdctl elect` and `consul lock`: separate processes (fewer, ~20 MB each). The round starts once the store shows every claim and the servers' watch gauges (`etcd_debugging_mvcc_watcher_total`, `zk_watch_count`) show every waiter's watch. Server work and wake-ups are counter differences from just before the resign to 1 s after the successor led (Consul: the 10 s interval with the handover minus the one before it). Each waiting Consul candidate holds a connection to its agent, and an agent takes a limited number per client address (the test clusters: 4,096; Consul's default: 200), so Consul herds are capped at the plan's connections per agent. Consul's waiters also re-issue their blocking queries in step (ours every 30 s, `consul lock` every 15 s): a burst of those in the interval before the handover can hide the handover's own count (shown as 0).",
    "**scale**: live heap bytes (a counting global allocator: exact, whatever the allocator caches; the growth of `VmRSS` is in the note) and live tokio tasks of this process, before and after N candidates join (each its own elector; etcd's share one client, ZooKeeper's one client and session), per candidate; peers: one process per candidate (mean `VmRSS` and threads of a waiting process from the idle run). Then one elector leads 1 and then K elections at once: keep-alive requests/s from the servers' counters, baseline subtracted; the peer's figure is K sessions, one per election, as its tools run.",
    "**cli**: `elect run --url file:///…/bench.lock -- sh -c 'echo started'` from spawn to the command's line read; `flock FILE sh -c 'echo started'` the same; the bare `sh -c` for reference.",
    "Each measurement is retried (up to 3 times) if a cluster member was down or restarted meanwhile (another suite may be faulting the same clusters); a member missing from a counter window makes it measured again.",
];

async fn attempt<F, Fut, T>(what: &str, backend: Option<Backend>, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut last = None;
    for i in 1..=3 {
        if let Some(b) = backend {
            if let Err(e) = b.wait_healthy(Duration::from_secs(180)).await {
                eprintln!("{what}: {e}");
            }
        }
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) => {
                eprintln!("{what}: attempt {i} failed: {e:#}");
                last = Some(e);
            }
        }
    }
    Err(last.expect("three attempts"))
}

fn utc_now() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

async fn main_inner() -> Result<bool> {
    let args = Args::parse();
    let plan = Plan::new(args.quick, args.rounds);
    let bins = Bins::find()?;
    let parts = if args.only.is_empty() {
        vec![
            Part::Cli,
            Part::Handover,
            Part::RunHandover,
            Part::Failover,
            Part::Idle,
            Part::Herd,
            Part::Scale,
        ]
    } else {
        args.only.clone()
    };
    let backends = if args.backends.is_empty() {
        Backend::ALL.to_vec()
    } else {
        args.backends.clone()
    };
    // Only a full run replaces the published figures; a partial one goes beside the build.
    let partial =
        args.quick || args.rounds.is_some() || !args.only.is_empty() || !args.backends.is_empty();
    let out = args.out.clone().unwrap_or_else(|| {
        elect_test_support::repo().join(if partial {
            "target/bench-partial"
        } else {
            "benches/results"
        })
    });
    std::fs::create_dir_all(&out)?;
    let out = out.canonicalize().unwrap_or(out);
    let dir = std::env::temp_dir().join(format!("elect-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let ctx = Ctx { plan, bins, dir };
    let command = std::iter::once("benches/run".to_owned())
        .chain(std::env::args().skip(1))
        .collect::<Vec<_>>()
        .join(" ");
    let p = &ctx.plan;
    let mut results = Results {
        machine: Machine::this(),
        date: utc_now(),
        command,
        mode: format!(
            "{} ({} handover rounds, {}/{} failover rounds at the shortest TTL/defaults, {:?} counter windows, {} idle candidates, herd {} (peer processes {}), Consul capped at {} connections per agent)",
            if args.quick { "quick" } else { "full" },
            p.handover_rounds,
            p.failover_short_rounds,
            p.failover_default_rounds,
            p.idle_window,
            p.idle_candidates,
            p.herd_candidates,
            p.herd_peer_processes,
            p.consul_conns_per_agent
        ),
        rows: Vec::new(),
        series: Vec::new(),
        checks: Vec::new(),
        failures: Vec::new(),
        notes: NOTES.iter().map(|n| (*n).to_owned()).collect(),
    };
    let add = |results: &mut Results, what: String, found: Result<Found>| match found {
        Ok(found) => {
            results.rows.extend(found.rows);
            results.series.extend(found.series);
            results.checks.extend(found.checks);
        }
        Err(e) => {
            eprintln!("FAILED: {what}: {e:#}");
            results.failures.push(format!("{what}: {e:#}"));
        }
    };
    let mut facts = PeerFacts::default();
    for part in &parts {
        match part {
            Part::Cli => {
                let found = attempt("cli", None, || cli::run(&ctx)).await;
                add(&mut results, "cli".into(), found);
            }
            Part::Handover => {
                for &b in &backends {
                    let found =
                        attempt(&format!("handover {b}"), Some(b), || handover::run(&ctx, b)).await;
                    add(&mut results, format!("handover {b}"), found);
                }
            }
            Part::RunHandover => {
                for &b in &backends {
                    let what = format!("run handover {b}");
                    let found = attempt(&what, Some(b), || run_handover::run(&ctx, b)).await;
                    add(&mut results, what, found);
                }
            }
            Part::Failover => {
                let cases: Vec<_> =
                    failover::cases(p.failover_short_rounds, p.failover_default_rounds)
                        .into_iter()
                        .filter(|c| backends.contains(&c.backend))
                        .collect();
                // The shortest TTLs one at a time (their bounds are tight); the defaults, a
                // minute per round, all at once.
                for case in cases
                    .iter()
                    .filter(|c| c.shortest && c.backend != Backend::Consul)
                {
                    let what = format!("failover {} {}", case.backend, case.setting);
                    let found =
                        attempt(&what, Some(case.backend), || failover::run(&ctx, case)).await;
                    add(&mut results, what, found);
                }
                let slow: Vec<_> = cases
                    .iter()
                    .filter(|c| !c.shortest || c.backend == Backend::Consul)
                    .collect();
                let runs = slow.iter().map(|case| {
                    let ctx = &ctx;
                    async move {
                        let what = format!("failover {} {}", case.backend, case.setting);
                        let found =
                            attempt(&what, Some(case.backend), || failover::run(ctx, case)).await;
                        (what, found)
                    }
                });
                for (what, found) in futures::future::join_all(runs).await {
                    add(&mut results, what, found);
                }
            }
            Part::Idle => {
                for &b in &backends {
                    let found = attempt(&format!("idle {b}"), Some(b), || idle::run(&ctx, b)).await;
                    match found {
                        Ok((found, f)) => {
                            facts.footprint.extend(f.footprint);
                            facts.keepalive.extend(f.keepalive);
                            add(&mut results, format!("idle {b}"), Ok(found));
                        }
                        Err(e) => add(&mut results, format!("idle {b}"), Err(e)),
                    }
                }
            }
            Part::Herd => {
                for &b in &backends {
                    let found = attempt(&format!("herd {b}"), Some(b), || herd::run(&ctx, b)).await;
                    add(&mut results, format!("herd {b}"), found);
                }
            }
            Part::Scale => {
                for &b in &backends {
                    let found = attempt(&format!("scale {b}"), Some(b), || {
                        scale::run(&ctx, b, &facts)
                    })
                    .await;
                    add(&mut results, format!("scale {b}"), found);
                }
            }
        }
        // Write what there is after every part, so that an interrupted run leaves something.
        results.write(&out)?;
    }
    results.write(&out)?;
    let _ = std::fs::remove_dir_all(&ctx.dir);
    println!("{}", results.table());
    eprintln!(
        "wrote {}, {} and {}",
        out.join("results.json").display(),
        out.join("table.md").display(),
        out.join("plot.svg").display()
    );
    Ok(results.failures.is_empty())
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    match main_inner().await {
        Ok(true) => {}
        Ok(false) => {
            eprintln!("some measurements failed: see the table's \"Measurements that failed\"");
            std::process::exit(1);
        }
        Err(e) => {
            eprintln!("bench: {e:#}");
            std::process::exit(2);
        }
    }
}
