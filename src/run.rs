//! The engine of `elect run`: run a command only while leading.
//!
//! Campaign, with the command forked and waiting (`src/spawn.rs`); when elected, let it run
//! in its own process group with the term's fencing token in its environment; stop it when
//! leadership ends — early enough that the SIGKILL after the grace period lands before the
//! leadership deadline; campaign again (or exit with `--once`). When the command exits by
//! itself, resign at once and exit with its status. Signals to `elect` are forwarded to the
//! command's group.
//!
//! No child outlives its leadership: if `elect` is killed, the kernel's parent-death signal
//! kills the command, and a small guardian process (see [`guard_process_group`]) kills the
//! rest of its process group.

use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use elect_core::history::History;
use elect_core::{
    campaign_logged, log_state, resign_or_let_expire, Elector, Error, Leadership, LeadershipState,
    LossReason, Result,
};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};
use tokio::signal::unix::{signal, SignalKind};
use tokio::time::Instant;

pub use crate::containment::ContainMode;
use crate::containment::{end_cgroup, Containment, Registered, TermGroup};
use crate::settings::Settings;
use crate::status::RunStatus;
pub use crate::systemd::SystemdNotify;

/// Exit codes of `elect`, besides the command's own.
pub mod exit_code {
    /// Stopped by SIGTERM or SIGINT (and the command, if running, ended by that signal).
    pub const STOPPED: i32 = 0;
    /// The command-line usage is wrong (clap's code).
    pub const USAGE: i32 = 2;
    /// Internal error.
    pub const SOFTWARE: i32 = 70;
    /// The backend cannot be reached.
    pub const UNAVAILABLE: i32 = 69;
    /// The store cannot be used and trying again will not help (e.g. a read-only or corrupt
    /// lock directory).
    pub const IO_ERROR: i32 = 74;
    /// Leadership was lost and `--once` was given.
    pub const LOST: i32 = 75;
    /// The backend refused our credentials or the ACL forbids the operation.
    pub const NO_PERMISSION: i32 = 77;
    /// A configuration value is invalid, or the backend is not compiled in.
    pub const CONFIG: i32 = 78;
    /// Not elected within `--timeout` (the code of `timeout(1)`).
    pub const NOT_ELECTED: i32 = 124;
    /// The command exists but cannot be executed.
    pub const CANNOT_EXECUTE: i32 = 126;
    /// The command was not found.
    pub const NOT_FOUND: i32 = 127;
}

/// The exit code for an error, by its kind.
pub fn error_exit_code(error: &Error) -> i32 {
    match error {
        Error::Config(_) | Error::NotCompiled { .. } => exit_code::CONFIG,
        Error::Unavailable { .. } | Error::Timeout { .. } | Error::Closed { .. } => {
            exit_code::UNAVAILABLE
        }
        Error::PermissionDenied { .. } => exit_code::NO_PERMISSION,
        Error::Unusable { .. } => exit_code::IO_ERROR,
        _ => exit_code::SOFTWARE,
    }
}

/// Why `elect run` could not go on.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The backend or the configuration failed.
    #[error(transparent)]
    Elect(#[from] Error),
    /// The command could not be started.
    #[error("cannot start {program:?}: {source}")]
    Spawn {
        /// The program as given.
        program: String,
        /// Why `exec` failed.
        #[source]
        source: std::io::Error,
    },
}

impl RunError {
    /// The process exit code: 127 for a command not found, 126 for one that cannot be
    /// executed, else by the error's kind (see [`error_exit_code`]).
    pub fn exit_code(&self) -> i32 {
        match self {
            RunError::Elect(error) => error_exit_code(error),
            RunError::Spawn { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                exit_code::NOT_FOUND
            }
            RunError::Spawn { .. } => exit_code::CANNOT_EXECUTE,
        }
    }
}

/// Time kept between the SIGKILL and the deadline, for the signal to land.
pub const KILL_MARGIN: Duration = Duration::from_millis(100);

/// What `elect run` runs, and how it stops it.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The program and its arguments.
    pub command: Vec<OsString>,
    /// Time between SIGTERM and SIGKILL when the command must stop; shortened when the
    /// leadership deadline would come first.
    pub grace: Duration,
    /// Exit after the first term instead of campaigning again.
    pub once: bool,
    /// A guardian program and its arguments: started before each command as the leader of
    /// the process group the command joins, it reads its stdin until `elect` dies and then
    /// kills its own process group (see [`guard_process_group`]). `None` relies on the
    /// parent-death signal alone, which reaches the command but not its children.
    pub guardian: Option<Vec<OsString>>,
    /// A [`history`](elect_core::history) file: one JSON line when a term starts and when
    /// the command is gone at its end (before the resign is sent).
    pub history: Option<std::path::PathBuf>,
    /// Pass `elect`'s own credentials on to the command ([`CREDENTIAL_VARIABLES`], and
    /// `ELECT_URL` if it holds a password or token). Off by default: the command gets them
    /// only if asked for.
    pub pass_credentials: bool,
    /// How the command's descendants are kept from outliving the term (see [`ContainMode`]).
    pub contain: ContainMode,
    /// Give up a campaign not won within this long ([`RunExit::NotElected`]).
    pub campaign_timeout: Option<Duration>,
    /// systemd's notify protocol (`Type=notify`, `WatchdogSec=`), if `elect` runs under it.
    pub systemd: Option<SystemdNotify>,
    /// Serve `/healthz`, `/leader`, `/status` and `/metrics` here (`--metrics-addr`).
    pub metrics_addr: Option<std::net::SocketAddr>,
}

impl RunOptions {
    /// Runs `command` (program and arguments) term after term, as `elect run -- COMMAND` does
    /// with no other flag: a 10 s grace, no guardian, history, credentials, campaign timeout,
    /// systemd or metrics, and [`ContainMode::Auto`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use elect::run::RunOptions;
    /// let options = RunOptions {
    ///     once: true,
    ///     grace: Duration::from_secs(3),
    ///     ..RunOptions::new(vec!["billing-job".into()])
    /// };
    /// assert!(options.guardian.is_none());
    /// ```
    pub fn new(command: Vec<OsString>) -> Self {
        RunOptions {
            command,
            grace: Duration::from_secs(10),
            once: false,
            guardian: None,
            history: None,
            pass_credentials: false,
            contain: ContainMode::Auto,
            campaign_timeout: None,
            systemd: None,
            metrics_addr: None,
        }
    }
}

/// The environment variables that carry `elect`'s credentials; the command does not see them
/// unless [`RunOptions::pass_credentials`] is set.
pub const CREDENTIAL_VARIABLES: [&str; 3] =
    ["ELECT_ETCD_PASSWORD", "ELECT_CONSUL_TOKEN", "ELECT_ZK_AUTH"];

/// How `elect run` ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunExit {
    /// The command exited by itself (the term was resigned at once).
    Exited(ExitStatus),
    /// SIGTERM or SIGINT asked `elect` to stop; the command, if it ran, ended with this status.
    Stopped {
        /// The signal `elect` received.
        signal: Signal,
        /// The command's status, if it was running.
        status: Option<ExitStatus>,
    },
    /// Leadership was lost and `--once` was given; the command was stopped.
    Lost(LossReason),
    /// Not elected within [`RunOptions::campaign_timeout`]; the command never ran (this time).
    NotElected,
}

impl RunExit {
    /// The process exit code: the command's own, 128 + N for a command killed by signal N
    /// (0 if that was the signal `elect` forwarded to stop it), 75 for a loss with `--once`.
    pub fn code(&self) -> i32 {
        match self {
            RunExit::Exited(status) => status_code(*status),
            RunExit::Stopped { signal, status } => match status {
                Some(status) if status.signal() == Some(*signal as i32) => exit_code::STOPPED,
                Some(status) => status_code(*status),
                None => exit_code::STOPPED,
            },
            RunExit::Lost(_) => exit_code::LOST,
            RunExit::NotElected => exit_code::NOT_ELECTED,
        }
    }
}

fn status_code(status: ExitStatus) -> i32 {
    match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(signal)) => 128 + signal,
        (None, None) => exit_code::SOFTWARE,
    }
}

/// The signals `elect run` handles: SIGTERM and SIGINT stop it; SIGHUP, SIGQUIT, SIGUSR1 and
/// SIGUSR2 are passed on to the command.
#[derive(Debug)]
pub struct Signals {
    streams: Vec<(Signal, tokio::signal::unix::Signal)>,
}

impl Signals {
    /// Installs the handlers (from then on these signals no longer kill `elect`).
    pub fn install() -> std::io::Result<Self> {
        let kinds = [
            (Signal::SIGTERM, SignalKind::terminate()),
            (Signal::SIGINT, SignalKind::interrupt()),
            (Signal::SIGHUP, SignalKind::hangup()),
            (Signal::SIGQUIT, SignalKind::quit()),
            (Signal::SIGUSR1, SignalKind::user_defined1()),
            (Signal::SIGUSR2, SignalKind::user_defined2()),
        ];
        let streams = kinds
            .into_iter()
            .map(|(sig, kind)| signal(kind).map(|stream| (sig, stream)))
            .collect::<std::io::Result<_>>()?;
        Ok(Signals { streams })
    }

    /// The next signal received.
    pub async fn recv(&mut self) -> Signal {
        let next = futures::future::select_all(
            self.streams
                .iter_mut()
                .map(|(sig, stream)| Box::pin(async move { stream.recv().await.map(|_| *sig) })),
        );
        match next.await.0 {
            Some(sig) => sig,
            None => std::future::pending().await,
        }
    }
}

fn stops(signal: Signal) -> bool {
    matches!(signal, Signal::SIGTERM | Signal::SIGINT)
}

/// When to send SIGTERM (and SIGKILL) so that the SIGKILL lands before the deadline.
///
/// `window` is how long before the deadline the command must be told to stop: the grace
/// period plus [`KILL_MARGIN`], but never more than three quarters of the term's headroom,
/// so that a healthy leader is never stopped between two renewals.
pub fn stop_window(grace: Duration, headroom: Option<Duration>) -> Duration {
    let wanted = grace + KILL_MARGIN;
    match headroom {
        Some(headroom) => wanted.min(headroom * 3 / 4),
        None => wanted,
    }
}

/// When SIGKILL follows a SIGTERM sent at `now`: after the grace period, but no later than
/// the deadline minus [`KILL_MARGIN`], and not before `now`.
pub fn kill_time(now: Instant, grace: Duration, deadline: Option<Instant>) -> Instant {
    let after_grace = now + grace;
    match deadline {
        Some(deadline) => after_grace
            .min(deadline.checked_sub(KILL_MARGIN).unwrap_or(now))
            .max(now),
        None => after_grace,
    }
}

/// Runs `options.command` whenever this process leads `settings.election`.
pub async fn run(
    elector: &dyn Elector,
    settings: &Settings,
    options: &RunOptions,
    signals: &mut Signals,
) -> Result<RunExit, RunError> {
    let status = RunStatus::default();
    if options.metrics_addr.is_some() && !crate::histograms::install() {
        tracing::debug!("a metrics recorder is installed already: the histograms go to it");
    }
    let listener = match options.metrics_addr {
        Some(addr) => Some(crate::endpoints::bind(addr).await.map_err(|e| {
            Error::from(elect_core::ConfigError::new(
                "--metrics-addr",
                addr.to_string(),
                format!("cannot listen there: {e}"),
            ))
        })?),
        None => None,
    };
    let serving = async {
        match listener {
            Some(listener) => crate::endpoints::serve(listener, status.clone()).await,
            None => std::future::pending().await,
        }
    };
    let watchdog = async {
        match &options.systemd {
            Some(systemd) => systemd.watchdog(&status).await,
            None => std::future::pending().await,
        }
    };
    let exit = tokio::select! {
        exit = run_terms(elector, settings, options, signals, &status) => exit,
        () = watchdog => unreachable!("the watchdog runs until dropped"),
        () = serving => unreachable!("the endpoints are served until dropped"),
    };
    notify(options, "STATUS=stopped");
    exit
}

/// Tells systemd, if `elect` runs under it.
fn notify(options: &RunOptions, message: &str) {
    if let Some(systemd) = &options.systemd {
        systemd.send(message);
    }
}

/// [`run`] without its watchers: campaign, run the command while leading, again; `status`
/// tells the watchers where it stands.
async fn run_terms(
    elector: &dyn Elector,
    settings: &Settings,
    options: &RunOptions,
    signals: &mut Signals,
    status: &RunStatus,
) -> Result<RunExit, RunError> {
    let election = &settings.election;
    let candidate = &settings.candidate;
    let history = match &options.history {
        Some(path) => Some(History::open(path, candidate.id()).map_err(|e| {
            Error::from(elect_core::ConfigError::new(
                "--history",
                path.display().to_string(),
                format!("cannot open it for appending: {e}"),
            ))
        })?),
        None => None,
    };
    let containment = Containment::start(options.contain).map_err(|e| {
        Error::from(elect_core::ConfigError::new(
            "--contain",
            "cgroup",
            format!("no cgroup v2 group can be made here: {e}"),
        ))
    })?;
    let record = |result: std::io::Result<()>| {
        if let Err(error) = result {
            tracing::warn!(election = election.as_str(), %error, "cannot write the history");
        }
    };
    let identity = TermIdentity {
        election: election.as_str(),
        candidate: candidate.id(),
        backend: elector.backend(),
    };
    loop {
        // Everything of the command that can be made before the win is: the successor's
        // share of a handover is then a pipe write and the exec.
        let prepared = PreparedTerm::prepare(&identity, options, &containment)?;
        status.campaigning(election.as_str(), candidate.id());
        notify(
            options,
            &format!("READY=1\nSTATUS=campaigning in {election}"),
        );
        // One campaign future for the whole wait: a forwarded signal must not restart it.
        let campaign = campaign_logged(elector, election, candidate);
        tokio::pin!(campaign);
        let give_up = options
            .campaign_timeout
            .map(|t| elect_core::clock::now() + t);
        let leadership = loop {
            tokio::select! {
                sig = signals.recv() => {
                    if stops(sig) {
                        tracing::info!(election = election.as_str(), signal = %sig, "stopping before being elected");
                        return Ok(RunExit::Stopped { signal: sig, status: None });
                    }
                }
                won = &mut campaign => break won?,
                _ = sleep_until(give_up), if give_up.is_some() => {
                    tracing::warn!(
                        election = election.as_str(),
                        timeout_ms = options.campaign_timeout.unwrap_or_default().as_millis() as u64,
                        "not elected in time; giving up (--timeout)"
                    );
                    return Ok(RunExit::NotElected);
                }
            }
        };
        // Start only while leading with room to stop the command before the deadline: a term
        // can be granted suspended, or when the store took the claim while our renewals
        // were failing, with little of it left.
        let window = stop_window(options.grace, leadership.headroom());
        let ready = tokio::select! {
            ready = room_to_start(&leadership, window) => ready,
            sig = wait_for_stop(signals) => {
                resign_or_let_expire(&leadership).await;
                return Ok(RunExit::Stopped { signal: sig, status: None });
            }
        };
        if let Err(reason) = ready {
            tracing::warn!(
                election = election.as_str(),
                token = leadership.token().get(),
                reason = reason.as_str(),
                "the term ended before the command could be started safely"
            );
            resign_or_let_expire(&leadership).await;
            if options.once {
                return Ok(RunExit::Lost(reason));
            }
            continue;
        }
        if let Some(history) = &history {
            record(history.elected(&leadership));
        }
        let term = match prepared.start(&leadership) {
            Ok(term) => term,
            Err(error) => {
                resign_or_let_expire(&leadership).await;
                return Err(error);
            }
        };
        status.leading(&leadership);
        notify(
            options,
            &format!(
                "STATUS=leading {election} with fencing token {}",
                leadership.token()
            ),
        );
        let outcome = term.supervise(&leadership, options, signals).await;
        status.ended(match &outcome {
            Ok(TermEnd::Lost(reason)) => Some(*reason),
            _ => None,
        });
        notify(
            options,
            &format!("STATUS=term with fencing token {} over", leadership.token()),
        );
        if let Some(history) = &history {
            let reason = match &outcome {
                Ok(TermEnd::Exited(_)) => "command-exited",
                Ok(TermEnd::Stopped(..)) => "stopped",
                Ok(TermEnd::Lost(reason)) => reason.as_str(),
                Err(_) => "error",
            };
            record(history.lost(&leadership, reason));
        }
        resign_or_let_expire(&leadership).await;
        match outcome? {
            TermEnd::Exited(status) => return Ok(RunExit::Exited(status)),
            TermEnd::Stopped(signal, status) => {
                return Ok(RunExit::Stopped {
                    signal,
                    status: Some(status),
                })
            }
            TermEnd::Lost(reason) if options.once => return Ok(RunExit::Lost(reason)),
            TermEnd::Lost(_) => continue,
        }
    }
}

/// Waits until the term leads with at least `window` left before its deadline, so that the
/// command, once started, can be stopped in time; `Err` with the reason if it is lost first.
/// Without room, a renewal is asked for at once: waiting for the next one would add up to a
/// renewal period to the handover.
async fn room_to_start(leadership: &Leadership, window: Duration) -> Result<(), LossReason> {
    let has_room = || {
        leadership.deadline().is_none_or(|deadline| {
            deadline.saturating_duration_since(elect_core::clock::now()) >= window
        })
    };
    let mut states = leadership.subscribe();
    let mut told = false;
    loop {
        match leadership.state() {
            LeadershipState::Lost(reason) => return Err(reason),
            LeadershipState::Leading if has_room() => return Ok(()),
            state if !told => {
                told = true;
                leadership.renew_soon();
                tracing::info!(
                    election = leadership.election().as_str(),
                    token = leadership.token().get(),
                    ?state,
                    window_ms = window.as_millis() as u64,
                    "elected without room to stop the command before the deadline; asked for a renewal"
                );
            }
            _ => {}
        }
        // A renewal moves the deadline without changing the state.
        tokio::select! {
            _ = states.changed() => {}
            _ = leadership.lease_changed() => {}
        }
    }
}

/// The next signal that stops `elect` (SIGTERM, SIGINT); others are ignored while no command
/// runs.
async fn wait_for_stop(signals: &mut Signals) -> Signal {
    loop {
        let sig = signals.recv().await;
        if stops(sig) {
            return sig;
        }
    }
}

/// How one term's command ended.
enum TermEnd {
    Exited(ExitStatus),
    Stopped(Signal, ExitStatus),
    Lost(LossReason),
}

/// Why the command is being stopped.
#[derive(Debug, Clone, Copy)]
enum StopCause {
    Lost(LossReason),
    Unconfirmed,
    Signal(Signal),
}

/// What a term's command and its environment are known by before the win.
struct TermIdentity<'a> {
    election: &'a str,
    candidate: &'a str,
    backend: &'static str,
}

/// A term's group, guardian and command, made while campaigning: the command is forked and
/// waits for the fencing token ([`crate::spawn::Waiting`]). Dropped unstarted, the command
/// is killed, the guardian told to end, the group removed.
struct PreparedTerm {
    /// Dropped first: killed and reaped, so that the group can go.
    command: crate::spawn::Waiting,
    program: String,
    pgid: Pid,
    guardian: Option<Guardian>,
    registered: Registered,
    group: TermGroup,
}

impl PreparedTerm {
    fn prepare(
        identity: &TermIdentity<'_>,
        options: &RunOptions,
        containment: &Containment,
    ) -> Result<PreparedTerm, RunError> {
        let (program, args) = options.command.split_first().ok_or_else(|| {
            Error::from(elect_core::ConfigError::new(
                "command",
                "",
                "no command to run",
            ))
        })?;
        let group = containment
            .term_group()
            .map_err(|e| Error::backend("run", "make the command's cgroup", e))?;
        // The guardian comes first and leads the process group the command joins, so that
        // there is no moment when the command runs unguarded.
        let guardian = match &options.guardian {
            Some(guardian) => {
                let mut guardian = guardian.clone();
                guardian.extend(group.guardian_args());
                Some(Guardian::start(&guardian)?)
            }
            None => None,
        };
        let guardian_pid = guardian.as_ref().map_or(0, Guardian::pid);
        let leaving: &[&str] = if options.pass_credentials {
            &[]
        } else {
            &CREDENTIAL_VARIABLES
        };
        let url = std::env::var("ELECT_URL").unwrap_or_default();
        let url_has_secrets =
            !options.pass_credentials && elect_core::config::redact_url(&url) != url;
        let ours = [
            ("ELECT_ELECTION", identity.election),
            ("ELECT_CANDIDATE_ID", identity.candidate),
            ("ELECT_BACKEND", identity.backend),
        ];
        let env = std::env::vars_os()
            .filter(|(name, _)| {
                let name = name.to_string_lossy();
                let dropped = leaving.contains(&name.as_ref())
                    || (url_has_secrets && name == "ELECT_URL")
                    || name == TOKEN_VARIABLE
                    || ours.iter().any(|(ours, _)| *ours == name);
                !dropped
            })
            .chain(
                ours.iter()
                    .map(|(n, v)| (OsString::from(n), OsString::from(v))),
            );
        let prepared = crate::spawn::Launch::new(
            program.as_ref(),
            args,
            env,
            Some(TOKEN_VARIABLE),
            guardian_pid,
        )
        .and_then(|launch| launch.prepare(group.cgroup_dir()));
        let program = program.to_string_lossy().into_owned();
        let command = match prepared {
            Ok(command) => command,
            Err(source) => {
                if guardian_pid != 0 {
                    let _ = killpg(Pid::from_raw(guardian_pid as i32), Signal::SIGKILL);
                }
                return Err(RunError::Spawn { program, source });
            }
        };
        let pid = command.id();
        let pgid = Pid::from_raw(if guardian_pid != 0 { guardian_pid } else { pid } as i32);
        Ok(PreparedTerm {
            // Another term's subreaper (a second `run` in this process) leaves it alone.
            registered: Registered::new([pid]),
            command,
            program,
            pgid,
            guardian,
            group,
        })
    }

    /// Lets the command exec with the term's fencing token.
    fn start(self, leadership: &Leadership) -> Result<Term, RunError> {
        let PreparedTerm {
            command,
            program,
            pgid,
            guardian,
            registered,
            group,
        } = self;
        let pid = command.id();
        let child = match command.start(leadership.token().to_string().as_bytes()) {
            Ok(child) => child,
            Err(source) => {
                if guardian.is_some() {
                    let _ = killpg(pgid, Signal::SIGKILL);
                }
                return Err(RunError::Spawn { program, source });
            }
        };
        tracing::info!(
            election = leadership.election().as_str(),
            candidate = leadership.candidate_id(),
            token = leadership.token().get(),
            pid,
            "command started"
        );
        Ok(Term {
            child,
            pgid,
            guardian,
            group,
            registered,
        })
    }
}

/// The variable that holds the term's fencing token, the one known only once elected.
const TOKEN_VARIABLE: &str = "ELECT_FENCING_TOKEN";

/// One term's command and its guardian.
struct Term {
    child: crate::spawn::Spawned,
    pgid: Pid,
    guardian: Option<Guardian>,
    /// Where the command's descendants are kept (a cgroup, or the subreaper's list).
    group: TermGroup,
    /// The command's pid, registered as a running term's.
    registered: Registered,
}

impl Term {
    async fn supervise(
        mut self,
        leadership: &Leadership,
        options: &RunOptions,
        signals: &mut Signals,
    ) -> Result<TermEnd> {
        let fields = (
            leadership.election().as_str().to_owned(),
            leadership.candidate_id().to_owned(),
            leadership.token().get(),
        );
        let (election, candidate, token) = (fields.0.as_str(), fields.1.as_str(), fields.2);
        let window = stop_window(options.grace, leadership.headroom());
        if window < options.grace + KILL_MARGIN {
            tracing::info!(
                election,
                grace_ms = options.grace.as_millis() as u64,
                window_ms = window.as_millis() as u64,
                "if renewals stop, the command gets SIGTERM this long before the deadline (the TTL allows no more)"
            );
        }
        let mut states = leadership.subscribe();
        let mut previous = Some(LeadershipState::Leading);
        let mut stopping: Option<(StopCause, Instant)> = None;
        let mut killed = false;
        let end = loop {
            let term_at = match stopping {
                None => leadership
                    .deadline()
                    .map(|d| d.checked_sub(window).unwrap_or_else(elect_core::clock::now)),
                Some(_) => None,
            };
            let kill_at = stopping.filter(|_| !killed).map(|(_, at)| at);
            tokio::select! {
                status = self.child.wait() => {
                    let status = status.map_err(|e| Error::backend("run", "wait for the command", e))?;
                    tracing::info!(election, candidate, token, status = %status, "command exited");
                    break match stopping {
                        None => TermEnd::Exited(status),
                        Some((StopCause::Signal(sig), _)) => TermEnd::Stopped(sig, status),
                        Some((StopCause::Lost(reason), _)) => TermEnd::Lost(reason),
                        Some((StopCause::Unconfirmed, _)) => TermEnd::Lost(match leadership.state() {
                            LeadershipState::Lost(reason) => reason,
                            _ => LossReason::DeadlinePassed,
                        }),
                    };
                }
                // After Lost the watch answers at once, forever: stop asking.
                state = states.changed(), if !matches!(previous, Some(LeadershipState::Lost(_))) => {
                    if previous != Some(state) {
                        log_state(leadership, previous, state);
                        previous = Some(state);
                    }
                    if let (LeadershipState::Lost(reason), None) = (state, stopping) {
                        stopping = Some(self.stop(StopCause::Lost(reason), options.grace, leadership));
                    }
                }
                _ = sleep_until(term_at), if term_at.is_some() => {
                    // Wake-ups come at the old stop time; the deadline may have moved since.
                    let due = leadership
                        .deadline()
                        .is_some_and(|d| elect_core::clock::now() + window >= d);
                    if due {
                        tracing::warn!(election, candidate, token, "leadership not confirmed in time; stopping the command");
                        stopping = Some(self.stop(StopCause::Unconfirmed, options.grace, leadership));
                    }
                }
                _ = sleep_until(kill_at), if kill_at.is_some() => {
                    tracing::warn!(election, candidate, token, pgid = self.pgid.as_raw(), "sending SIGKILL to the command's process group");
                    self.signal_group(Signal::SIGKILL);
                    killed = true;
                }
                sig = signals.recv() => {
                    if stops(sig) && stopping.is_none() {
                        tracing::info!(election, candidate, token, signal = %sig, "stopping: signal forwarded to the command");
                        let kill_at = kill_time(elect_core::clock::now(), options.grace, leadership.deadline());
                        self.signal_group(sig);
                        stopping = Some((StopCause::Signal(sig), kill_at));
                    } else {
                        self.signal_group(sig);
                    }
                }
            }
        };
        // A term that ran out while its command was being stopped is still logged as lost.
        if let LeadershipState::Lost(reason) = leadership.state() {
            if !matches!(previous, Some(LeadershipState::Lost(_))) {
                log_state(leadership, previous, LeadershipState::Lost(reason));
            }
        }
        // Whatever the command left in its group goes with it (the guardian too).
        self.signal_group(Signal::SIGKILL);
        if let Some(guardian) = self.guardian.take() {
            guardian.end_in_background();
        }
        // And so does whatever left the group (setsid, setpgid): the term is over only once
        // nothing the command started runs.
        drop(self.registered);
        self.group.kill_all().await;
        Ok(end)
    }

    /// Sends SIGTERM now; returns the cause and when SIGKILL follows.
    fn stop(
        &mut self,
        cause: StopCause,
        grace: Duration,
        leadership: &Leadership,
    ) -> (StopCause, Instant) {
        let now = elect_core::clock::now();
        let kill_at = kill_time(now, grace, leadership.deadline());
        tracing::info!(
            election = leadership.election().as_str(),
            pgid = self.pgid.as_raw(),
            cause = ?cause,
            kill_in_ms = (kill_at - now).as_millis() as u64,
            "sending SIGTERM to the command's process group"
        );
        self.signal_group(Signal::SIGTERM);
        (cause, kill_at)
    }

    fn signal_group(&self, sig: Signal) {
        // ESRCH: the group is already gone.
        let _ = killpg(self.pgid, sig);
    }
}

/// Sleeps until `at` on the deadlines' timeline (see `elect_core::clock::now`).
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => elect_core::clock::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// A term's guardian process (see [`guard_process_group`]), registered as a running term's
/// until it is reaped.
struct Guardian {
    child: Child,
    registered: Registered,
}

impl Guardian {
    /// Starts `guardian` (a program and its arguments) as the leader of a new process group,
    /// which the command then joins.
    fn start(guardian: &[OsString]) -> Result<Guardian, RunError> {
        let (program, args) = guardian.split_first().ok_or_else(|| {
            Error::from(elect_core::ConfigError::new(
                "guardian",
                "",
                "empty guardian command",
            ))
        })?;
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(|e| Error::backend("run", "start the guardian", e))?;
        // Another term's subreaper (a second `run` in this process) leaves it alone.
        let registered = Registered::new(child.id());
        Ok(Guardian { child, registered })
    }

    fn pid(&self) -> u32 {
        self.child.id().unwrap_or(0)
    }

    /// Tells the guardian to end and reaps it in the background: it runs nothing of the
    /// command, and waiting for a process's teardown would delay the release.
    fn end_in_background(mut self) {
        drop(self.child.stdin.take());
        tokio::spawn(async move {
            let _ = self.child.wait().await;
            drop(self.registered);
        });
    }
}

/// The guardian's whole job: wait until `elect` (our stdin's writer) is gone, then kill the
/// command's cgroup if it has one, and our own process group — the command's. Signals that
/// `elect` forwards to the group do not end it. `elect` runs this as its hidden `__guard`
/// subcommand.
pub async fn guard_process_group(cgroup: Option<&std::path::Path>) {
    let ignored: Vec<_> = [
        SignalKind::terminate(),
        SignalKind::interrupt(),
        SignalKind::hangup(),
        SignalKind::quit(),
        SignalKind::user_defined1(),
        SignalKind::user_defined2(),
    ]
    .into_iter()
    .filter_map(|kind| signal(kind).ok())
    .collect();
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 64];
    while let Ok(n) = stdin.read(&mut buf).await {
        if n == 0 {
            break;
        }
    }
    drop(ignored);
    // The cgroup first: killing our own group kills us too.
    if let Some(cgroup) = cgroup {
        end_cgroup(cgroup).await;
    }
    let _ = killpg(nix::unistd::getpgrp(), Signal::SIGKILL);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stop_window_never_exceeds_three_quarters_of_the_headroom() {
        // etcd with a 10 s TTL and a 1.2 s margin: headroom 10 − 1.2 − 3.2 = 5.6 s.
        let headroom = Some(Duration::from_millis(5_600));
        assert_eq!(
            stop_window(Duration::from_secs(1), headroom),
            Duration::from_millis(1_100)
        );
        assert_eq!(
            stop_window(Duration::from_secs(10), headroom),
            Duration::from_millis(4_200)
        );
        assert_eq!(
            stop_window(Duration::from_secs(10), None),
            Duration::from_millis(10_100)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn sigkill_lands_before_the_deadline_and_never_in_the_past() {
        let now = Instant::now();
        let deadline = now + Duration::from_secs(3);
        // The grace period would end after the deadline: SIGKILL comes KILL_MARGIN before it.
        assert_eq!(
            kill_time(now, Duration::from_secs(10), Some(deadline)),
            deadline - KILL_MARGIN
        );
        // A short grace period is kept as it is.
        assert_eq!(
            kill_time(now, Duration::from_secs(1), Some(deadline)),
            now + Duration::from_secs(1)
        );
        // Past the deadline already: at once.
        assert_eq!(kill_time(now, Duration::from_secs(1), Some(now)), now);
        // No deadline (file backend): the grace period.
        assert_eq!(
            kill_time(now, Duration::from_secs(2), None),
            now + Duration::from_secs(2)
        );
    }

    #[test]
    fn exit_codes_pass_the_command_status_through() {
        let exited = |code: i32| ExitStatus::from_raw(code << 8);
        let killed = |sig: i32| ExitStatus::from_raw(sig);
        assert_eq!(RunExit::Exited(exited(3)).code(), 3);
        assert_eq!(RunExit::Exited(killed(9)).code(), 137);
        let stopped = |status| RunExit::Stopped {
            signal: Signal::SIGTERM,
            status,
        };
        assert_eq!(stopped(Some(killed(15))).code(), 0);
        assert_eq!(stopped(Some(exited(1))).code(), 1);
        assert_eq!(stopped(None).code(), 0);
        assert_eq!(RunExit::Lost(LossReason::Revoked).code(), exit_code::LOST);
    }
}
