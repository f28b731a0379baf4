//! `elect`: run a command only while this process leads an election.

use std::ffi::OsString;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use elect::config::parse_duration;
use elect::run::{error_exit_code, exit_code, RunOptions, Signals};
use elect::settings::{Flags, Settings};
use elect::{connect, BackendConfig, CandidateInfo, ConfigError, Elector, LeaderInfo};
use futures::StreamExt;

const EXIT_CODES: &str = "\
Exit codes:
  N        run: the command's own exit status when it exits by itself (128+S if killed by signal S)
  0        stopped by SIGTERM or SIGINT (forwarded to the command, which ended by it)
  1        status --exit-code: nobody leads
  2        wrong command-line usage
  69       the backend cannot be reached
  70       internal error
  74       the store cannot be used, and trying again will not help (e.g. the lock
           directory is read-only or not a directory, or its token file is corrupt)
  75       run --once: leadership was lost (the command was stopped)
  124      run --timeout: not elected in time
  77       the backend refused the credentials or the operation
  78       a configuration value is invalid, or the backend is not compiled in
  126/127  the command cannot be executed / was not found

Environment: ELECT_URL, ELECT_CONFIG, ELECT_ID, ELECT_VALUE, ELECT_TTL, ELECT_DRIFT_MARGIN,
ELECT_ENDPOINTS, ELECT_ETCD_USERNAME, ELECT_ETCD_PASSWORD, ELECT_CONSUL_TOKEN,
ELECT_CONSUL_LOCK_DELAY, ELECT_ZK_AUTH, ELECT_TLS_CA, ELECT_TLS_CERT, ELECT_TLS_KEY, ELECT_FILE_DIR
override the config; ELECT_LOG sets the log filter (default info).
The command gets ELECT_FENCING_TOKEN, ELECT_ELECTION, ELECT_CANDIDATE_ID and ELECT_BACKEND.";

/// Leader election through etcd, Consul, ZooKeeper or a local file lock.
///
/// With neither --config nor --url, elections live in lock files on this host
/// (/run/elect for root, $XDG_RUNTIME_DIR/elect for others, or ELECT_FILE_DIR).
#[derive(Debug, Parser)]
#[command(name = "elect", version, after_help = EXIT_CODES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Write logs (to stderr) as JSON lines.
    #[arg(long, global = true, env = "ELECT_LOG_JSON")]
    log_json: bool,
}

// Parsed once per process: the size of `Run` costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Command {
    /// Campaign, and run CMD only while leading; campaign again after a loss.
    #[command(after_help = EXIT_CODES)]
    Run {
        #[command(flatten)]
        target: Target,
        /// This candidate's id (default <hostname>-<pid>-<random>).
        #[arg(long)]
        id: Option<String>,
        #[command(flatten)]
        campaign: CampaignArgs,
        /// Time between SIGTERM and SIGKILL when CMD must stop (shortened so that SIGKILL
        /// lands before the leadership deadline).
        #[arg(long, default_value = "10s", value_parser = parse_grace)]
        grace: Duration,
        /// Exit after the first term instead of campaigning again.
        #[arg(long)]
        once: bool,
        /// Append one JSON line per term start and end to FILE (CLOCK_MONOTONIC
        /// nanoseconds; see elect_core::history), for audits and the fault suite.
        #[arg(long, value_name = "FILE")]
        history: Option<PathBuf>,
        /// How CMD's descendants are kept from outliving the term: cgroup (a cgroup v2 group
        /// per term, ended with cgroup.kill; needs root or a delegated cgroup), subreaper
        /// (orphans re-parented to elect and killed at the term's end), or auto (cgroup if
        /// possible).
        #[arg(
            long,
            env = "ELECT_CONTAIN",
            default_value = "auto",
            value_name = "MODE"
        )]
        contain: elect::ContainMode,
        /// Serve /healthz, /leader (200 while leading, else 503), /status (JSON) and /metrics
        /// (Prometheus) on ADDR, e.g. 127.0.0.1:9464.
        #[arg(long, env = "ELECT_METRICS_ADDR", value_name = "ADDR")]
        metrics_addr: Option<std::net::SocketAddr>,
        /// Pass elect's credentials on to CMD: ELECT_ETCD_PASSWORD, ELECT_CONSUL_TOKEN,
        /// ELECT_ZK_AUTH and an ELECT_URL holding a password or token (removed by default).
        #[arg(long, env = "ELECT_PASS_CREDENTIALS")]
        pass_credentials: bool,
        /// The command and its arguments.
        #[arg(last = true, required = true, value_name = "CMD")]
        command: Vec<OsString>,
    },
    /// Print the leader, its token and the waiting candidates.
    #[command(after_help = EXIT_CODES)]
    Status {
        #[command(flatten)]
        target: Target,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Exit with 1 when nobody leads (for scripts and health checks).
        #[arg(long)]
        exit_code: bool,
    },
    /// Print one line per leader change, until interrupted.
    #[command(after_help = EXIT_CODES)]
    Observe {
        #[command(flatten)]
        target: Target,
        /// Print JSON lines.
        #[arg(long)]
        json: bool,
    },
    /// Print a shell completion script: `elect completions bash > /etc/bash_completion.d/elect`.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff): `elect man > /usr/local/share/man/man1/elect.1`.
    Man,
    /// Kill our own process group once stdin closes (elect's guardian; not for direct use).
    #[command(name = "__guard", hide = true)]
    Guard {
        /// The command's cgroup, killed too.
        #[arg(long)]
        cgroup: Option<PathBuf>,
    },
}

/// How `run` campaigns (the flags of `consul lock` and `etcdctl lock` that people miss).
#[derive(Debug, Args)]
struct CampaignArgs {
    /// What this candidate proclaims while it leads (default: its id).
    #[arg(long)]
    value: Option<String>,
    /// The lease TTL or session timeout (etcd, Consul, ZooKeeper), e.g. 10s or 1m30s.
    #[arg(long, value_name = "DURATION")]
    ttl: Option<String>,
    /// Consul's lock delay, 0s to 60s.
    #[arg(long, value_name = "DURATION")]
    lock_delay: Option<String>,
    /// Give up if not elected within DURATION, with exit code 124 (`consul lock -timeout`);
    /// 0s tries once.
    #[arg(long, value_name = "DURATION", value_parser = parse_timeout)]
    timeout: Option<Duration>,
}

#[derive(Debug, Args)]
struct Target {
    /// A TOML config file.
    #[arg(long, env = "ELECT_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// The backend as a URL, e.g. etcd://127.0.0.1:2379/billing; its path names the election.
    #[arg(long, env = "ELECT_URL", value_name = "URL")]
    url: Option<String>,
    /// The election (overrides the config's or the URL's).
    #[arg(long, value_name = "NAME")]
    election: Option<String>,
}

fn parse_timeout(text: &str) -> Result<Duration, ConfigError> {
    parse_duration(text).map_err(|problem| ConfigError::new("--timeout", text, problem))
}

fn parse_grace(text: &str) -> Result<Duration, ConfigError> {
    let grace =
        parse_duration(text).map_err(|problem| ConfigError::new("--grace", text, problem))?;
    if grace > Duration::from_secs(3600) {
        return Err(ConfigError::new("--grace", text, "must be at most 1h"));
    }
    Ok(grace)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_json);
    // One thread: the command's parent-death signal follows the thread that spawned it.
    let code = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(dispatch(cli.command)),
        Err(error) => fail(&error, exit_code::SOFTWARE),
    };
    ExitCode::from(code.clamp(0, 255) as u8)
}

async fn dispatch(command: Command) -> i32 {
    match command {
        Command::Run {
            target,
            id,
            campaign,
            grace,
            once,
            history,
            pass_credentials,
            contain,
            metrics_addr,
            command,
        } => {
            let flags = Flags {
                value: campaign.value,
                ttl: campaign.ttl,
                lock_delay: campaign.lock_delay,
                ..target.flags(id)
            };
            let options = RunOptions {
                command,
                grace,
                once,
                guardian: std::env::current_exe()
                    .ok()
                    .map(|exe| vec![exe.into_os_string(), "__guard".into()]),
                history,
                pass_credentials,
                contain,
                campaign_timeout: campaign.timeout,
                systemd: elect::run::SystemdNotify::from_env(),
                metrics_addr,
            };
            with_elector(&flags, Some(grace), |elector, settings| async move {
                let mut signals = match Signals::install() {
                    Ok(signals) => signals,
                    Err(error) => return fail(&error, exit_code::SOFTWARE),
                };
                match elect::run::run(&*elector, &settings, &options, &mut signals).await {
                    Ok(exit) => {
                        let _ = elector.close().await;
                        exit.code()
                    }
                    Err(error) => {
                        let _ = elector.close().await;
                        fail(&error, error.exit_code())
                    }
                }
            })
            .await
        }
        Command::Status {
            target,
            json,
            exit_code,
        } => {
            with_elector(&target.flags(None), None, |elector, settings| async move {
                let status = async {
                    let leader = elector.leader(&settings.election).await?;
                    let candidates = elector.candidates(&settings.election).await?;
                    Ok::<_, elect::Error>((leader, candidates))
                };
                match status.await {
                    Ok((leader, candidates)) => {
                        let nobody = leader.is_none();
                        print_status(&settings, elector.backend(), leader, &candidates, json);
                        i32::from(exit_code && nobody)
                    }
                    Err(error) => fail(&error, error_exit_code(&error)),
                }
            })
            .await
        }
        Command::Observe { target, json } => {
            with_elector(&target.flags(None), None, |elector, settings| async move {
                let mut stream = match elector.observe(&settings.election).await {
                    Ok(stream) => stream,
                    Err(error) => return fail(&error, error_exit_code(&error)),
                };
                let ctrl_c = tokio::signal::ctrl_c();
                tokio::pin!(ctrl_c);
                loop {
                    tokio::select! {
                        _ = &mut ctrl_c => return 0,
                        item = stream.next() => match item {
                            Some(Ok(leader)) => print_change(&settings, leader.as_ref(), json),
                            Some(Err(error)) => tracing::warn!(%error, "observe: the store did not answer; retrying"),
                            None => return 0,
                        },
                    }
                }
            })
            .await
        }
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "elect", &mut std::io::stdout());
            0
        }
        Command::Man => {
            use clap::CommandFactory;
            match clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout()) {
                Ok(()) => 0,
                Err(error) => fail(&error, exit_code::SOFTWARE),
            }
        }
        Command::Guard { cgroup } => {
            elect::run::guard_process_group(cgroup.as_deref()).await;
            0
        }
    }
}

impl Target {
    fn flags(self, id: Option<String>) -> Flags {
        Flags {
            config: self.config,
            url: self.url,
            election: self.election,
            id,
            ..Flags::default()
        }
    }
}

/// Resolves the settings, connects, and runs `f`; config and connection errors become
/// exit codes. `grace` is `run`'s: the file backend's successors wait that long at most for
/// a leader whose lock file was deleted to stop its command.
async fn with_elector<F, Fut>(flags: &Flags, grace: Option<Duration>, f: F) -> i32
where
    F: FnOnce(Box<dyn Elector>, Settings) -> Fut,
    Fut: std::future::Future<Output = i32>,
{
    let mut settings = match Settings::resolve(flags, std::env::vars()) {
        Ok(settings) => settings,
        Err(error) => return fail(&error, exit_code::CONFIG),
    };
    if let (BackendConfig::File(file), Some(grace)) = (&mut settings.config.backend, grace) {
        file.stop_grace.get_or_insert(grace);
    }
    match connect(&settings.config).await {
        Ok(elector) => f(elector, settings).await,
        Err(error) => fail(&error, error_exit_code(&error)),
    }
}

fn fail(error: &(dyn std::error::Error + 'static), code: i32) -> i32 {
    eprintln!("elect: {}", elect_core::with_causes(error));
    code
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("ELECT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    if json {
        builder.json().flatten_event(true).init();
    } else {
        builder.compact().init();
    }
}

fn value_json(value: &[u8]) -> serde_json::Value {
    match std::str::from_utf8(value) {
        Ok(text) => serde_json::json!({ "value": text, "value_hex": hex::encode(value) }),
        Err(_) => serde_json::json!({ "value": null, "value_hex": hex::encode(value) }),
    }
}

fn leader_json(leader: Option<&LeaderInfo>) -> serde_json::Value {
    leader.map_or(serde_json::Value::Null, |l| {
        let mut object = value_json(&l.value);
        object["id"] = l.id.clone().into();
        object["token"] = l.token.get().into();
        object
    })
}

/// What a store holds, safe to print on a terminal: ids and values come from the store, where
/// anyone who can write could put newlines (forging `leader` or `token` lines), escape codes
/// or bidirectional overrides. Those are escaped as `\n`, `\u{1b}`, …; so is `\` itself.
fn printable(bytes: &[u8]) -> String {
    let mut out = String::new();
    for c in String::from_utf8_lossy(bytes).chars() {
        let invisible = matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
        if c.is_control() || c == '\\' || invisible {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

fn print_status(
    settings: &Settings,
    backend: &str,
    leader: Option<LeaderInfo>,
    candidates: &[CandidateInfo],
    json: bool,
) {
    let mut out = std::io::stdout().lock();
    if json {
        let candidates: Vec<_> = candidates
            .iter()
            .map(|c| {
                let mut object = value_json(&c.value);
                object["id"] = c.id.clone().into();
                object["leading"] = c.leading.into();
                object
            })
            .collect();
        let status = serde_json::json!({
            "election": settings.election.as_str(),
            "backend": backend,
            "leader": leader_json(leader.as_ref()),
            "candidates": candidates,
        });
        let _ = writeln!(out, "{status}");
        return;
    }
    let _ = writeln!(out, "election  {}", settings.election);
    let _ = writeln!(out, "backend   {backend}");
    match &leader {
        Some(l) => {
            let _ = writeln!(out, "leader    {}", printable(l.id.as_bytes()));
            let _ = writeln!(out, "token     {}", l.token);
            let _ = writeln!(out, "value     {}", printable(&l.value));
        }
        None => {
            let _ = writeln!(out, "leader    (none)");
        }
    }
    let waiting: Vec<_> = candidates
        .iter()
        .filter(|c| !c.leading)
        .map(|c| printable(c.id.as_bytes()))
        .collect();
    let waiting = if waiting.is_empty() {
        "(none)".to_owned()
    } else {
        waiting.join(" ")
    };
    let _ = writeln!(out, "waiting   {waiting}");
}

fn print_change(settings: &Settings, leader: Option<&LeaderInfo>, json: bool) {
    let mut out = std::io::stdout().lock();
    let line = if json {
        serde_json::json!({ "election": settings.election.as_str(), "leader": leader_json(leader) })
            .to_string()
    } else {
        match leader {
            Some(l) => format!(
                "{} leader {} token {} value {}",
                settings.election,
                printable(l.id.as_bytes()),
                l.token,
                printable(&l.value)
            ),
            None => format!("{} no leader", settings.election),
        }
    };
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}
