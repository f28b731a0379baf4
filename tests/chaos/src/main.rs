//! `chaos`: rounds of faults against real clusters (a fresh 3-member cluster per backend, in
//! network namespaces: needs root), then the checker's verdict and a summary table. The bounded suite (`cargo test -p elect-chaos`) runs a few rounds; the
//! soak is `tests/chaos/soak` (hundreds).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use elect_chaos::faults::Fault;
use elect_chaos::run::{run, Bins, RunConfig};
use elect_chaos::summary::table;
use elect_chaos::target::Backend;

#[derive(Debug, Parser)]
#[command(
    about = "Inject faults into elections on real clusters (in network namespaces: needs root) and check the histories."
)]
struct Args {
    /// Backends, comma-separated (etcd, zookeeper, consul); each runs at the same time.
    #[arg(long, default_value = "etcd,zookeeper,consul", value_delimiter = ',')]
    backend: Vec<String>,
    /// Rounds per backend; the faults are cycled through.
    #[arg(long, default_value_t = 9)]
    rounds: usize,
    /// Faults, comma-separated (default: all).
    #[arg(long, value_delimiter = ',')]
    faults: Vec<String>,
    /// Where each run's history, ledger and logs go.
    #[arg(long, default_value = "target/chaos")]
    out: PathBuf,
    /// Write the summary table to this file too.
    #[arg(long)]
    summary: Option<PathBuf>,
    /// Inject nothing: check the history and ledger an earlier run left in DIR (with the
    /// bounds of the one --backend given).
    #[arg(long, value_name = "DIR")]
    check: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match main_result(Args::parse()).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("chaos: {error}");
            ExitCode::from(2)
        }
    }
}

async fn main_result(args: Args) -> Result<bool, String> {
    let backends = args
        .backend
        .iter()
        .map(|b| Backend::parse(b).ok_or_else(|| format!("--backend {b}: unknown backend")))
        .collect::<Result<Vec<_>, _>>()?;
    let faults = if args.faults.is_empty() {
        Fault::ALL.to_vec()
    } else {
        args.faults
            .iter()
            .map(|f| Fault::parse(f).ok_or_else(|| format!("--faults {f}: unknown fault")))
            .collect::<Result<Vec<_>, _>>()?
    };
    if let Some(dir) = &args.check {
        let [backend] = backends[..] else {
            return Err("--check needs exactly one --backend".to_owned());
        };
        let outcome = elect_chaos::run::outcome_of_dir(dir, backend)?;
        println!(
            "{}\n\n{}",
            outcome.report,
            table(std::slice::from_ref(&outcome))
        );
        return Ok(outcome.report.is_clean());
    }
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let bins = Bins::in_dir(exe.parent().ok_or("no folder for this binary")?)?;
    let runs = backends.into_iter().map(|backend| {
        let config = RunConfig {
            backend,
            faults: faults.clone(),
            rounds: args.rounds,
            out: args.out.clone(),
            bins: bins.clone(),
        };
        async move { run(&config).await }
    });
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| e.to_string())?;
    // Interrupted, the runs are dropped, and with them their replicas (killed on drop).
    let results = tokio::select! {
        results = futures::future::join_all(runs) => results,
        _ = tokio::signal::ctrl_c() => return Err("interrupted".to_owned()),
        _ = terminate.recv() => return Err("terminated".to_owned()),
    };
    let mut outcomes = Vec::new();
    for result in results {
        outcomes.push(result?);
    }
    let mut clean = true;
    for outcome in &outcomes {
        println!(
            "## {} ({})\n{}\n",
            outcome.backend.name(),
            outcome.dir.display(),
            outcome.report
        );
        for crash in &outcome.crashes {
            println!("crash: {crash}");
        }
        clean &= outcome.report.is_clean() && outcome.crashes.is_empty();
    }
    let summary = table(&outcomes);
    println!("{summary}");
    if let Some(path) = &args.summary {
        std::fs::write(path, &summary).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(clean)
}
