//! `billing`: one replica of the billing job. Start several; one charges.
//!
//! ```text
//! billing --url etcd://127.0.0.1:2379/billing --ledger ledger.db      # campaigns itself
//! billing --url … --ledger ledger.db --twice                          # …twice, on one elector
//! elect run --url … -- billing --under-elect --ledger ledger.db      # led by `elect run`
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use billing::ledger::Ledger;
use billing::{charge_due, open_term, Schedule, Stop, SupervisedTerm};
use clap::Parser;
use elect::history::History;
use elect::settings::{Flags, Settings};
use elect::{campaign_logged, LeadershipState};
use tokio::signal::unix::{signal, SignalKind};

#[derive(Debug, Parser)]
#[command(about = "One replica of a billing job: only the leader charges.")]
struct Args {
    /// The backend as a URL (default: the file backend); its path names the election.
    #[arg(long, value_name = "URL")]
    url: Option<String>,
    /// A TOML config file instead of --url.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The election (default: the URL's or config's, else `billing`).
    #[arg(long)]
    election: Option<String>,
    /// This replica's candidate id.
    #[arg(long)]
    id: Option<String>,
    /// The SQLite ledger shared by the replicas.
    #[arg(long, value_name = "FILE")]
    ledger: PathBuf,
    /// Append what this replica believed and did to FILE (JSON lines).
    #[arg(long, value_name = "FILE")]
    history: Option<PathBuf>,
    /// Subscriptions in the ledger (added if missing).
    #[arg(long, default_value_t = 40)]
    subscriptions: usize,
    /// Every subscription is charged once per period, in milliseconds.
    #[arg(long, default_value_t = 2_000)]
    period_ms: u64,
    /// Time spent preparing each charge, in milliseconds.
    #[arg(long, default_value_t = 100)]
    work_ms: u64,
    /// Run under `elect run`: the token comes from ELECT_FENCING_TOKEN, and the process is
    /// stopped when the term ends.
    #[arg(long)]
    under_elect: bool,
    /// Campaign twice in the election on one elector, the second time as `<id>.twin`: the
    /// elector must refuse the second candidacy while the first campaigns or leads (the fault
    /// suite checks that no two terms of this process ever overlap).
    #[arg(long, conflicts_with = "under_elect")]
    twice: bool,
}

/// How soon a candidacy refused because the other one of this elector is running asks again.
const TWIN_RETRY: Duration = Duration::from_millis(250);

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let result = if args.under_elect {
        under_elect(&args).await
    } else {
        campaigning(&args).await
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            eprintln!("billing: {error}");
            ExitCode::FAILURE
        }
    }
}

type AnyError = Box<dyn std::error::Error + Send + Sync>;

fn schedule(args: &Args) -> Schedule {
    Schedule {
        period: Duration::from_millis(args.period_ms),
        work: Duration::from_millis(args.work_ms),
    }
}

fn open_ledger(args: &Args) -> Result<Ledger, AnyError> {
    let ledger = Ledger::open(&args.ledger)?;
    ledger.seed(args.subscriptions)?;
    Ok(ledger)
}

/// Under `elect run`: charge until stopped, or until the ledger says a newer term wrote.
async fn under_elect(args: &Args) -> Result<u8, AnyError> {
    let token: u64 = std::env::var("ELECT_FENCING_TOKEN")?.parse()?;
    let who = std::env::var("ELECT_CANDIDATE_ID")?;
    let history = args
        .history
        .as_ref()
        .map(|path| History::open(path, who.clone()))
        .transpose()?;
    let mut ledger = open_ledger(args)?;
    let term = SupervisedTerm(token);
    if let Some(Stop::Fenced { .. }) = open_term(&mut ledger, &term, &who, history.as_ref())? {
        return Ok(billing::FENCED_EXIT_CODE);
    }
    loop {
        if let Some(Stop::Fenced { .. }) =
            charge_due(&mut ledger, &term, &who, schedule(args), history.as_ref()).await?
        {
            return Ok(billing::FENCED_EXIT_CODE);
        }
        tokio::time::sleep(schedule(args).period / 10).await;
    }
}

/// Campaigns, charges while leading, campaigns again after a loss; SIGTERM or SIGINT resign.
/// With `--twice`, two candidacies on one elector do so side by side.
async fn campaigning(args: &Args) -> Result<u8, AnyError> {
    let flags = Flags {
        config: args.config.clone(),
        url: args.url.clone(),
        election: match (&args.election, &args.url, &args.config) {
            (None, None, None) => Some("billing".to_owned()),
            (election, _, _) => election.clone(),
        },
        id: args.id.clone(),
        ..Flags::default()
    };
    let settings = Settings::resolve(&flags, std::env::vars())?;
    let elector: Arc<dyn elect::Elector> = Arc::from(elect::connect(&settings.config).await?);
    if !args.twice {
        return candidacy(args, &settings, &*elector).await;
    }
    let mut twin = settings.clone();
    twin.candidate = elect::Candidate::new(
        format!("{}.twin", settings.candidate.id()),
        settings.candidate.value().to_vec(),
    )?;
    let (first, second) = tokio::join!(
        candidacy(args, &settings, &*elector),
        candidacy(args, &twin, &*elector)
    );
    first.and(second)
}

/// One candidacy's loop; see [`campaigning`].
async fn candidacy(
    args: &Args,
    settings: &Settings,
    elector: &dyn elect::Elector,
) -> Result<u8, AnyError> {
    let who = settings.candidate.id().to_owned();
    let history = args
        .history
        .as_ref()
        .map(|path| History::open(path, who.clone()))
        .transpose()?
        .map(Arc::new);
    let mut ledger = open_ledger(args)?;
    let mut stop = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    loop {
        let leadership = tokio::select! {
            won = campaign_when_free(elector, settings) => won?,
            _ = stop.recv() => return Ok(0),
            _ = interrupt.recv() => return Ok(0),
        };
        if let Some(history) = &history {
            let _ = history.elected(&leadership);
        }
        // The loss is recorded once: the moment it is noticed, or before a resign is sent.
        let loss = LossRecord::new(history.clone(), &leadership);
        let watcher = {
            let (loss, leadership) = (loss.clone(), leadership.clone());
            tokio::spawn(async move { loss.record(leadership.lost().await.as_str()) })
        };
        let mut states = leadership.subscribe();
        // A term can come back already over (granted as our renewals failed): it does nothing.
        let mut fenced = if leadership.is_leader() {
            open_term(&mut ledger, &leadership, &who, history.as_deref())?
        } else {
            None
        };
        let stopping = loop {
            if fenced.is_some() {
                break false;
            }
            match leadership.state() {
                LeadershipState::Lost(_) => break false,
                LeadershipState::Suspended => {
                    tokio::select! {
                        _ = states.changed() => continue,
                        _ = stop.recv() => break true,
                        _ = interrupt.recv() => break true,
                    }
                }
                LeadershipState::Leading => {}
            }
            let sched = schedule(args);
            // A charge in progress is not cancelled by a loss: like any real job it finishes
            // what it checked for, and the ledger is what refuses it when it came too late.
            tokio::select! {
                done = charge_due(&mut ledger, &leadership, &who, sched, history.as_deref()) => {
                    match done? {
                        Some(Stop::Fenced { highest }) => fenced = Some(Stop::Fenced { highest }),
                        Some(Stop::NotLeading) => {}
                        None => tokio::select! {
                            _ = tokio::time::sleep(sched.period / 10) => {}
                            _ = stop.recv() => break true,
                            _ = interrupt.recv() => break true,
                        },
                    }
                }
                _ = stop.recv() => break true,
                _ = interrupt.recv() => break true,
            }
        };
        loss.record(match leadership.state() {
            LeadershipState::Lost(reason) => reason.as_str(),
            _ if fenced.is_some() => "fenced",
            _ => "resigned",
        });
        elect::resign_or_let_expire(&leadership).await;
        watcher.abort();
        if stopping {
            return Ok(0);
        }
    }
}

/// Campaigns; while the elector's other candidacy in the election runs (`--twice`), asks
/// again every [`TWIN_RETRY`].
async fn campaign_when_free(
    elector: &dyn elect::Elector,
    settings: &Settings,
) -> elect::Result<elect::Leadership> {
    loop {
        match campaign_logged(elector, &settings.election, &settings.candidate).await {
            Err(elect::Error::AlreadyCampaigning { .. }) => tokio::time::sleep(TWIN_RETRY).await,
            won => return won,
        }
    }
}

/// Writes a term's `lost` record once, whoever notices the loss first.
#[derive(Clone)]
struct LossRecord {
    history: Option<Arc<History>>,
    leadership: elect::Leadership,
    written: Arc<std::sync::atomic::AtomicBool>,
}

impl LossRecord {
    fn new(history: Option<Arc<History>>, leadership: &elect::Leadership) -> LossRecord {
        LossRecord {
            history,
            leadership: leadership.clone(),
            written: Arc::default(),
        }
    }

    fn record(&self, reason: &str) {
        let first = !self.written.swap(true, std::sync::atomic::Ordering::SeqCst);
        if let (Some(history), true) = (&self.history, first) {
            let _ = history.lost(&self.leadership, reason);
        }
    }
}
