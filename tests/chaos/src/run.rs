//! One fault run against one backend: a fresh 3-member cluster with every member in its own
//! network namespace ([`NetnsCluster`], so that members can be cut from each other), three
//! replicas of the billing example (two that campaign themselves — one of them campaigning
//! twice on one elector — and one wrapped by `elect run`), each behind its own [`Proxy`], a
//! shared history and ledger, and rounds of faults; then the checker's verdict.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use elect::history::{self, Event, History};
use elect::{Config, ElectionName, LeaderInfo};
use futures::StreamExt;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::process::{Child, Command};
use tokio::sync::watch;

use crate::check::{check, Report};
use crate::faults::{operator_revoke, Fault};
use crate::target::{bounds, url, Backend};
use elect_test_support::proxy::{Link, Proxy};
use elect_test_support::NetnsCluster;

/// How many replicas run.
pub const REPLICAS: usize = 3;
/// The replica that campaigns twice on one elector (`billing --twice`).
const TWICE: usize = 1;
/// How long a frozen or cut-off leader stays so after its successor has logged its
/// election, so that the successor has opened its term and charged before the old one wakes.
const HOLD_AFTER_SUCCESSOR: Duration = Duration::from_secs(1);
/// The delay each way of [`Fault::SlowNetwork`].
const SLOW_LINK: Duration = Duration::from_millis(50);
/// How long [`Fault::Flap`] keeps a state before switching.
const FLAP_EVERY: Duration = Duration::from_millis(300);

/// What to run.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// The backend under test.
    pub backend: Backend,
    /// The faults, cycled through round by round.
    pub faults: Vec<Fault>,
    /// Rounds in all.
    pub rounds: usize,
    /// Where each run's directory (history, ledger, replica logs) goes.
    pub out: PathBuf,
    /// The `elect` and `billing` binaries.
    pub bins: Bins,
}

/// The binaries the replicas run.
#[derive(Debug, Clone)]
pub struct Bins {
    /// `elect`.
    pub elect: PathBuf,
    /// `billing` (examples/billing).
    pub billing: PathBuf,
}

impl Bins {
    /// The binaries in the cargo target folder `dir` (`target/debug`, `target/release`);
    /// a missing one is an error that says how to build it.
    pub fn in_dir(dir: &Path) -> Result<Bins, String> {
        let bins = Bins {
            elect: dir.join("elect"),
            billing: dir.join("billing"),
        };
        for bin in [&bins.elect, &bins.billing] {
            if !bin.exists() {
                return Err(format!(
                    "{} is missing: build it with `cargo build --workspace --bins` \
                     (add --release for a release folder)",
                    bin.display()
                ));
            }
        }
        Ok(bins)
    }
}

/// One round: which fault, and when it ran (`history::monotonic_ns`).
#[derive(Debug, Clone)]
pub struct Round {
    /// The fault injected.
    pub fault: Fault,
    /// When the round started.
    pub from: u64,
    /// When it ended (the cluster healed and a leader stood).
    pub to: u64,
    /// What happened, for the log.
    pub note: String,
}

/// A finished run.
#[derive(Debug)]
pub struct RunOutcome {
    /// The backend.
    pub backend: Backend,
    /// The run's directory.
    pub dir: PathBuf,
    /// Its rounds.
    pub rounds: Vec<Round>,
    /// The checker's verdict on the whole history and ledger.
    pub report: Report,
    /// Replicas that exited when no fault stopped them (a crash of the workload or of
    /// `elect`): how each ended and the last line of its log.
    pub crashes: Vec<String>,
}

struct Replica {
    index: usize,
    generation: usize,
    supervised: bool,
    /// Campaigns twice on one elector, the second time as `<id>.twin`.
    twice: bool,
    proxy: Proxy,
    id: String,
    child: Option<Child>,
    /// A fault (resign, kill) is stopping this replica's process.
    stopped_by_fault: bool,
}

impl Replica {
    /// The candidate ids this replica campaigns as.
    fn ids(&self) -> Vec<String> {
        let mut ids = vec![self.id.clone()];
        if self.twice {
            ids.push(format!("{}.twin", self.id));
        }
        ids
    }
}

struct Run<'a> {
    config: &'a RunConfig,
    election: ElectionName,
    dir: PathBuf,
    cluster: std::sync::Arc<NetnsCluster>,
    members: Vec<std::net::SocketAddr>,
    history: History,
    replicas: Vec<Replica>,
    leader: watch::Receiver<Option<LeaderInfo>>,
    observer: tokio::task::JoinHandle<()>,
    elected: ElectedTail,
    crashes: Vec<String>,
}

/// The terms the replicas have logged as won, read from the end of the shared history as it
/// grows: the store names a leader a moment before the leader itself knows it.
struct ElectedTail {
    file: std::fs::File,
    partial: Vec<u8>,
    elected: std::collections::HashSet<(String, u64)>,
    working: std::collections::HashSet<(String, u64)>,
}

impl ElectedTail {
    fn open(path: &Path) -> Result<ElectedTail, String> {
        Ok(ElectedTail {
            file: std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?,
            partial: Vec::new(),
            elected: Default::default(),
            working: Default::default(),
        })
    }

    fn read_new(&mut self) {
        use std::io::Read;
        let _ = self.file.read_to_end(&mut self.partial);
        let Some(end) = self.partial.iter().rposition(|&b| b == b'\n') else {
            return;
        };
        let complete: Vec<u8> = self.partial.drain(..=end).collect();
        for line in complete.split(|&b| b == b'\n') {
            match serde_json::from_slice(line) {
                Ok(history::Record {
                    who,
                    event: Event::Elected { token, .. },
                    ..
                }) => {
                    self.elected.insert((who, token));
                }
                Ok(history::Record {
                    who,
                    event: Event::Action { token, .. },
                    ..
                }) => {
                    self.working.insert((who, token));
                }
                _ => {}
            }
        }
    }

    /// Waits until `leader` has logged its election, and with `working` its first action.
    async fn wait_for(
        &mut self,
        leader: &LeaderInfo,
        working: bool,
        bound: Duration,
    ) -> Result<(), String> {
        let started = tokio::time::Instant::now();
        let term = (leader.id.clone(), leader.token.get());
        loop {
            self.read_new();
            if self.elected.contains(&term) && (!working || self.working.contains(&term)) {
                return Ok(());
            }
            if started.elapsed() > bound {
                return Err(format!(
                    "{} leads in the store (token {}) but logged no election{} within {bound:?}",
                    leader.id,
                    leader.token,
                    if working { " and no action" } else { "" }
                ));
            }
            // A file has no change event worth the machinery here; this poll is bounded.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Runs `config.rounds` rounds and checks the result.
pub async fn run(config: &RunConfig) -> Result<RunOutcome, String> {
    let backend = config.backend;
    let name = elect_test_support::unique_name(&format!("chaos-{}", backend.name()));
    let election = ElectionName::parse_field("election", &name).map_err(|e| e.to_string())?;
    let dir = config.out.join(&name);
    std::fs::create_dir_all(dir.join("logs")).map_err(|e| format!("{}: {e}", dir.display()))?;
    let cluster = tokio::task::spawn_blocking(move || NetnsCluster::up(backend.name()))
        .await
        .map_err(|e| format!("{}: the netns cluster did not come up: {e}", backend.name()))?;
    let members = cluster
        .endpoints()
        .iter()
        .map(|e| e.parse().map_err(|_| format!("member address {e:?}")))
        .collect::<Result<Vec<std::net::SocketAddr>, String>>()?;
    let cluster = std::sync::Arc::new(cluster);
    let history = History::open(dir.join("history.jsonl"), "chaos").map_err(|e| e.to_string())?;
    let (leader, observer) = observe(backend, &members, &election).await?;
    let elected = ElectedTail::open(&dir.join("history.jsonl"))?;
    let mut replicas = Vec::new();
    for index in 0..REPLICAS {
        replicas.push(Replica {
            index,
            generation: 0,
            supervised: index == REPLICAS - 1,
            twice: index == TWICE,
            proxy: Proxy::start(&members)
                .await
                .map_err(|e| format!("proxy: {e}"))?,
            id: String::new(),
            child: None,
            stopped_by_fault: false,
        });
    }
    let mut run = Run {
        config,
        election,
        dir,
        cluster,
        members,
        history,
        replicas,
        leader,
        observer,
        elected,
        crashes: Vec::new(),
    };
    let result = run.rounds().await;
    run.stop_all().await;
    run.observer.abort();
    let rounds = result.map_err(|e| format!("{e} (history and logs in {})", run.dir.display()))?;
    let report = check_dir(&run.dir, backend)?;
    Ok(RunOutcome {
        backend,
        dir: run.dir,
        rounds,
        report,
        crashes: run.crashes,
    })
}

/// A finished run read back from the directory it left (`chaos --check`): the rounds from the
/// history's fault records (each until the next), and the checker's verdict.
pub fn outcome_of_dir(dir: &Path, backend: Backend) -> Result<RunOutcome, String> {
    let records = history::read(dir.join("history.jsonl")).map_err(|e| e.to_string())?;
    let mut faults: Vec<(u64, Fault)> = records
        .iter()
        .filter_map(|r| match &r.event {
            Event::Fault { kind, .. } => Fault::parse(kind).map(|f| (r.t, f)),
            _ => None,
        })
        .collect();
    faults.sort_by_key(|(t, _)| *t);
    let rounds = faults
        .iter()
        .enumerate()
        .map(|(i, &(from, fault))| Round {
            fault,
            from,
            to: faults.get(i + 1).map_or(u64::MAX, |(next, _)| next - 1),
            note: String::new(),
        })
        .collect();
    Ok(RunOutcome {
        backend,
        dir: dir.to_path_buf(),
        rounds,
        report: check_dir(dir, backend)?,
        crashes: Vec::new(),
    })
}

/// Checks the history and ledger a run left in `dir`, against `backend`'s bounds.
pub fn check_dir(dir: &Path, backend: Backend) -> Result<Report, String> {
    let records = history::read(dir.join("history.jsonl")).map_err(|e| e.to_string())?;
    let journal = billing::ledger::Ledger::open(dir.join("ledger.db"))
        .and_then(|l| l.journal())
        .map_err(|e| e.to_string())?;
    Ok(check(&records, &journal, &bounds(backend)))
}

/// Follows the election's leader as the store reports it, re-observing after errors (a
/// restarted cluster breaks the stream).
async fn observe(
    backend: Backend,
    members: &[std::net::SocketAddr],
    election: &ElectionName,
) -> Result<
    (
        watch::Receiver<Option<LeaderInfo>>,
        tokio::task::JoinHandle<()>,
    ),
    String,
> {
    let config =
        Config::from_url(&url(backend, members, election.as_str())).map_err(|e| e.to_string())?;
    let elector = elect::connect(&config)
        .await
        .map_err(|e| format!("no {} cluster at {members:?}: {e}", backend.name()))?;
    let (tx, rx) = watch::channel(None);
    let election = election.clone();
    let task = tokio::spawn(async move {
        loop {
            if let Ok(mut stream) = elector.observe(&election).await {
                while let Some(Ok(leader)) = stream.next().await {
                    tx.send_replace(leader);
                }
            }
            // The stream broke (a member or the whole cluster went away): look again soon.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    Ok((rx, task))
}

impl Run<'_> {
    async fn rounds(&mut self) -> Result<Vec<Round>, String> {
        let mut rounds = Vec::new();
        for round in 0..self.config.rounds {
            let fault = self.config.faults[round % self.config.faults.len()];
            let leader = self.ready().await?;
            let from = history::monotonic_ns();
            let note = self.inject(fault, &leader, round).await?;
            self.ready().await?;
            let to = history::monotonic_ns();
            if fault.disturbs_cluster() {
                // A quiet TTL before the next fault: a member restarted or links slowed
                // leave clients reconnecting for a while, and each fault is measured from
                // a settled start.
                tokio::time::sleep(self.config.backend.ttl()).await;
            }
            tracing::info!(
                backend = self.config.backend.name(),
                round,
                fault = fault.kind(),
                took_ms = (to - from) / 1_000_000,
                "{note}"
            );
            rounds.push(Round {
                fault,
                from,
                to,
                note,
            });
        }
        Ok(rounds)
    }

    fn record(&self, event: Event) {
        if let Err(error) = self.history.record(event) {
            tracing::warn!(%error, "cannot write the history");
        }
    }

    /// Starts the replicas that are not running, then waits for one of them to lead, as the
    /// store says and as it has logged itself.
    async fn ready(&mut self) -> Result<LeaderInfo, String> {
        let bound = bounds(self.config.backend).failover * 3 + Duration::from_secs(60);
        let deadline = tokio::time::Instant::now() + bound;
        loop {
            for index in 0..self.replicas.len() {
                let replica = &mut self.replicas[index];
                let status = match &mut replica.child {
                    Some(child) => child.try_wait().map_err(|e| e.to_string())?,
                    None => None,
                };
                // `elect run` ends with its command, and the command ends when the ledger
                // fences it off: that is the fencing at work, not a crash.
                let fenced = |status: &std::process::ExitStatus| {
                    replica.supervised
                        && status.code() == Some(i32::from(billing::FENCED_EXIT_CODE))
                };
                if let Some(status) = status.filter(|s| !replica.stopped_by_fault && !fenced(s)) {
                    let crash = self.ended(index, status);
                    tracing::warn!("{crash}");
                    self.crashes.push(crash);
                }
                if status.is_some() || self.replicas[index].child.is_none() {
                    self.spawn(index)?;
                }
            }
            let ids: Vec<String> = self.replicas.iter().flat_map(Replica::ids).collect();
            let leader = tokio::time::timeout_at(
                deadline,
                self.leader
                    .wait_for(|l| l.as_ref().is_some_and(|l| ids.contains(&l.id))),
            )
            .await
            .map_err(|_| format!("no replica led within {bound:?} (replicas {ids:?})"))?
            .map_err(|_| "the observer stopped".to_owned())?
            .clone()
            .expect("waited for Some");
            // Faults hit a leader at work, not one still starting its command; a leader
            // that falls before it works is replaced, and the next one waited for.
            match self
                .elected
                .wait_for(&leader, true, Duration::from_secs(5))
                .await
            {
                Ok(()) => return Ok(leader),
                Err(error) if tokio::time::Instant::now() >= deadline => return Err(error),
                Err(error) => tracing::info!(%error, "waiting for the next leader"),
            }
        }
    }

    fn spawn(&mut self, index: usize) -> Result<(), String> {
        let backend = self.config.backend;
        let bins = &self.config.bins;
        let replica = &mut self.replicas[index];
        replica.stopped_by_fault = false;
        replica.generation += 1;
        replica.id = format!("r{}g{}", replica.index, replica.generation);
        let url = url(backend, replica.proxy.addresses(), self.election.as_str());
        let history = self.dir.join("history.jsonl");
        let ledger = self.dir.join("ledger.db");
        let log = std::fs::File::create(self.dir.join("logs").join(format!("{}.log", replica.id)))
            .map_err(|e| e.to_string())?;
        let billing_args = [
            "--ledger".as_ref(),
            ledger.as_os_str(),
            "--history".as_ref(),
            history.as_os_str(),
            "--subscriptions".as_ref(),
            "40".as_ref(),
            "--period-ms".as_ref(),
            "2000".as_ref(),
            "--work-ms".as_ref(),
            "100".as_ref(),
        ];
        let mut command = if replica.supervised {
            let mut command = Command::new(&bins.elect);
            command
                .args(["run", "--url", &url, "--id", &replica.id, "--grace", "1s"])
                .arg("--history")
                .arg(&history)
                .arg("--")
                .arg(&bins.billing)
                .arg("--under-elect")
                .args(billing_args);
            command
        } else {
            let mut command = Command::new(&bins.billing);
            command
                .args(["--url", &url, "--id", &replica.id])
                .args(billing_args);
            if replica.twice {
                command.arg("--twice");
            }
            command
        };
        command
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .process_group(0)
            .kill_on_drop(true);
        let child = command
            .spawn()
            .map_err(|e| format!("start replica {}: {e}", replica.id))?;
        replica.child = Some(child);
        Ok(())
    }

    fn replica_of(&self, leader: &LeaderInfo) -> Result<usize, String> {
        self.replicas
            .iter()
            .position(|r| r.ids().contains(&leader.id))
            .ok_or_else(|| format!("the leader {} is no replica", leader.id))
    }

    fn pid(&self, index: usize) -> Result<Pid, String> {
        self.replicas[index]
            .child
            .as_ref()
            .and_then(Child::id)
            .map(|pid| Pid::from_raw(pid as i32))
            .ok_or_else(|| format!("replica {} is not running", self.replicas[index].id))
    }

    /// Waits until a term newer than `old` leads, in the store and in its own log; how long
    /// the store took.
    async fn successor(&mut self, old: &LeaderInfo, bound: Duration) -> Result<Duration, String> {
        let started = tokio::time::Instant::now();
        let token = old.token;
        let waited = tokio::time::timeout(
            bound,
            self.leader
                .wait_for(|l| l.as_ref().is_some_and(|l| l.token > token)),
        )
        .await
        .map(|seen| seen.map(|leader| leader.clone()));
        let Ok(next) = waited else {
            let exited = self.exited();
            return Err(format!(
                "no successor to {} within {bound:?}{exited}",
                old.id
            ));
        };
        let next = next
            .map_err(|_| "the observer stopped".to_owned())?
            .expect("waited for Some");
        let took = started.elapsed();
        // A successor that falls before it logs is the next round's business.
        if let Err(error) = self
            .elected
            .wait_for(&next, false, Duration::from_secs(10))
            .await
        {
            tracing::warn!(%error, "the successor did not log its election");
        }
        Ok(took)
    }

    /// The replicas that have exited, with their status and the end of their log: a wait
    /// that timed out says whether anyone was left to take over, and why not.
    fn exited(&mut self) -> String {
        let mut exited = String::new();
        for index in 0..self.replicas.len() {
            if let Some(Ok(Some(status))) = self.replicas[index].child.as_mut().map(Child::try_wait)
            {
                exited += &format!("; {}", self.ended(index, status));
            }
        }
        exited
    }

    /// How replica `index` ended: its status and the last line of its log.
    fn ended(&self, index: usize, status: std::process::ExitStatus) -> String {
        let id = &self.replicas[index].id;
        let log = std::fs::read_to_string(self.dir.join("logs").join(format!("{id}.log")))
            .unwrap_or_default();
        let last = log.lines().rev().find(|l| !l.trim().is_empty());
        format!(
            "{id} exited ({status}), its log ends: {}",
            last.unwrap_or("(empty)")
        )
    }

    /// Runs `f` on the cluster, off the runtime (the script blocks).
    async fn with_cluster<T, F>(&self, f: F) -> Result<T, String>
    where
        T: Send + 'static,
        F: FnOnce(&NetnsCluster) -> T + Send + 'static,
    {
        let cluster = self.cluster.clone();
        tokio::task::spawn_blocking(move || f(&cluster))
            .await
            .map_err(|e| format!("the cluster script failed: {e}"))
    }

    /// The cluster script with `args` (`kill B N`, `start B N`, `wait B all 60`, …).
    async fn cluster(&self, args: Vec<String>) -> Result<(), String> {
        self.with_cluster(move |c| {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            c.script(&args);
        })
        .await
    }

    async fn cluster_leader(&self) -> Result<usize, String> {
        self.with_cluster(NetnsCluster::leader).await
    }

    /// Heals every cut between the members and waits until all three are whole again.
    async fn heal(&self) -> Result<(), String> {
        self.with_cluster(|c| {
            c.heal();
            c.wait_all(Duration::from_secs(60));
        })
        .await
    }

    /// The member (1..=3) replica `index`'s client talks to most: its proxy's busiest link
    /// over one renewal period (or so far, when that period carried nothing).
    async fn member_of(&self, index: usize) -> usize {
        let proxy = &self.replicas[index].proxy;
        let before = proxy.carried();
        tokio::time::sleep(self.config.backend.ttl() / 2).await;
        let after = proxy.carried();
        let recent: Vec<u64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
        let counts = if recent.iter().any(|&c| c > 0) {
            recent
        } else {
            after
        };
        let busiest = (0..counts.len()).max_by_key(|&i| counts[i]).unwrap_or(0);
        busiest + 1
    }

    async fn inject(
        &mut self,
        fault: Fault,
        leader: &LeaderInfo,
        round: usize,
    ) -> Result<String, String> {
        let backend = self.config.backend;
        let bounds = bounds(backend);
        // Bounded waits: generous, since the checker judges the times.
        let wait = bounds.failover * 2 + Duration::from_secs(10);
        let kind = fault.kind().to_owned();
        let name = backend.name().to_owned();
        let target = if fault.targets_leader() {
            Some(leader.id.clone())
        } else {
            None
        };
        let index = self.replica_of(leader)?;
        match fault {
            Fault::Resign | Fault::KillLeader => {
                let pid = self.pid(index)?;
                self.replicas[index].stopped_by_fault = true;
                self.record(Event::Fault { kind, target });
                let signal = if fault == Fault::Resign {
                    Signal::SIGTERM
                } else {
                    Signal::SIGKILL
                };
                kill(pid, signal).map_err(|e| format!("{signal} to {pid}: {e}"))?;
                let took = self.successor(leader, wait).await?;
                Ok(format!(
                    "{} {}: successor after {took:?}",
                    fault.kind(),
                    leader.id
                ))
            }
            Fault::FreezeLeader => {
                // The replica's own process: for `elect run`, the supervisor alone, so its
                // command runs on with a token that is going stale — the ledger must stop it.
                let pid = self.pid(index)?;
                self.record(Event::Fault {
                    kind: kind.clone(),
                    target: target.clone(),
                });
                kill(pid, Signal::SIGSTOP).map_err(|e| format!("SIGSTOP to {pid}: {e}"))?;
                let took = self.successor(leader, wait).await;
                tokio::time::sleep(HOLD_AFTER_SUCCESSOR).await;
                // Recorded first: what the woken process does comes after.
                self.record(Event::Healed { kind, target });
                kill(pid, Signal::SIGCONT).map_err(|e| format!("SIGCONT to {pid}: {e}"))?;
                Ok(format!("froze {}: successor after {:?}", leader.id, took?))
            }
            Fault::CutLeader => {
                self.record(Event::Fault {
                    kind: kind.clone(),
                    target: target.clone(),
                });
                self.replicas[index].proxy.set(Link::Cut);
                let took = self.successor(leader, wait).await;
                tokio::time::sleep(HOLD_AFTER_SUCCESSOR).await;
                self.record(Event::Healed { kind, target });
                self.replicas[index].proxy.set(Link::Up);
                Ok(format!(
                    "cut {} off: successor after {:?}",
                    leader.id, took?
                ))
            }
            Fault::OperatorRevoke => {
                self.record(Event::Fault { kind, target });
                let done = operator_revoke(
                    backend,
                    &self.members,
                    self.election.as_str(),
                    &leader.id,
                    round,
                )
                .await?;
                let took = self.successor(leader, wait).await?;
                Ok(format!(
                    "{done} (leader {}): next term after {took:?}",
                    leader.id
                ))
            }
            Fault::KillServer | Fault::KillClusterLeader => {
                let raft_leader = self.cluster_leader().await?;
                let node = if fault == Fault::KillClusterLeader {
                    raft_leader
                } else {
                    raft_leader % 3 + 1
                };
                let target = Some(format!("n{node}"));
                self.record(Event::Fault {
                    kind: kind.clone(),
                    target: target.clone(),
                });
                self.cluster(vec!["kill".into(), name.clone(), node.to_string()])
                    .await?;
                // The fault's length: one TTL with a member down.
                tokio::time::sleep(backend.ttl()).await;
                self.cluster(vec!["start".into(), name.clone(), node.to_string()])
                    .await?;
                self.cluster(vec!["wait".into(), name, "all".into(), "60".into()])
                    .await?;
                self.record(Event::Healed { kind, target });
                Ok(format!(
                    "killed and restarted n{node} (raft/zab leader: n{raft_leader})"
                ))
            }
            Fault::RestartCluster => {
                self.record(Event::Fault {
                    kind: kind.clone(),
                    target: None,
                });
                for node in 1..=3 {
                    self.cluster(vec!["kill".into(), name.clone(), node.to_string()])
                        .await?;
                }
                for node in 1..=3 {
                    self.cluster(vec!["start".into(), name.clone(), node.to_string()])
                        .await?;
                }
                self.cluster(vec!["wait".into(), name, "all".into(), "60".into()])
                    .await?;
                self.record(Event::Healed { kind, target: None });
                Ok("restarted every member".to_owned())
            }
            Fault::IsolateMemberOfLeader | Fault::Flap | Fault::OneWay => {
                let member = self.member_of(index).await;
                let target = Some(format!("n{member}"));
                self.record(Event::Fault {
                    kind: kind.clone(),
                    target: target.clone(),
                });
                let hold = backend.ttl() * 2;
                match fault {
                    Fault::IsolateMemberOfLeader => {
                        self.with_cluster(move |c| c.isolate(member)).await?;
                        tokio::time::sleep(hold).await;
                    }
                    Fault::OneWay => {
                        self.with_cluster(move |c| {
                            for other in c.others(member) {
                                c.cut_one_way(member, other);
                            }
                        })
                        .await?;
                        tokio::time::sleep(hold).await;
                    }
                    _ => {
                        let end = tokio::time::Instant::now() + hold;
                        while tokio::time::Instant::now() < end {
                            self.with_cluster(move |c| c.isolate(member)).await?;
                            tokio::time::sleep(FLAP_EVERY).await;
                            self.with_cluster(NetnsCluster::heal).await?;
                            tokio::time::sleep(FLAP_EVERY).await;
                        }
                    }
                }
                self.heal().await?;
                self.record(Event::Healed { kind, target });
                Ok(format!(
                    "{} n{member}, the member {} talked to most, for {hold:?}",
                    fault.kind(),
                    leader.id
                ))
            }
            Fault::IsolateClusterLeader | Fault::Bridge => {
                let raft_leader = self.cluster_leader().await?;
                // Bridge: Jepsen picks the bridging member at random; we take turns.
                let member = if fault == Fault::Bridge {
                    round % 3 + 1
                } else {
                    raft_leader
                };
                let target = Some(format!("n{member}"));
                self.record(Event::Fault {
                    kind: kind.clone(),
                    target: target.clone(),
                });
                if fault == Fault::Bridge {
                    self.with_cluster(move |c| c.bridge(member)).await?;
                } else {
                    self.with_cluster(move |c| c.isolate(member)).await?;
                }
                tokio::time::sleep(backend.ttl() * 2).await;
                self.heal().await?;
                self.record(Event::Healed { kind, target });
                Ok(format!(
                    "{} n{member} for {:?} (raft/zab leader: n{raft_leader})",
                    fault.kind(),
                    backend.ttl() * 2
                ))
            }
            Fault::Split => {
                // The minority: one member, reached by the leader and the next replica; the
                // majority: the two others, reached by the third replica.
                let minority = self.member_of(index).await;
                let target = Some(format!("n{minority}"));
                self.record(Event::Fault {
                    kind: kind.clone(),
                    target: target.clone(),
                });
                self.with_cluster(move |c| c.isolate(minority)).await?;
                let with_minority = [index, (index + 1) % self.replicas.len()];
                for (i, replica) in self.replicas.iter().enumerate() {
                    for member in 1..=3 {
                        let same_side = (member == minority) == with_minority.contains(&i);
                        if !same_side {
                            replica.proxy.set_one(member - 1, Link::Cut);
                        }
                    }
                }
                tokio::time::sleep(backend.ttl() * 2).await;
                for replica in &self.replicas {
                    replica.proxy.set(Link::Up);
                }
                self.heal().await?;
                self.record(Event::Healed { kind, target });
                let minority_ids: Vec<&str> = with_minority
                    .iter()
                    .map(|&i| self.replicas[i].id.as_str())
                    .collect();
                Ok(format!(
                    "split for {:?}: n{minority} with {minority_ids:?}, the others with the rest",
                    backend.ttl() * 2
                ))
            }
            Fault::SlowNetwork => {
                self.record(Event::Fault {
                    kind: kind.clone(),
                    target: None,
                });
                for replica in &self.replicas {
                    replica.proxy.set(Link::Slow(SLOW_LINK));
                }
                // The fault's length: two TTLs of renewals over the slow links.
                tokio::time::sleep(backend.ttl() * 2).await;
                for replica in &self.replicas {
                    replica.proxy.set(Link::Up);
                }
                self.record(Event::Healed { kind, target: None });
                Ok(format!(
                    "{SLOW_LINK:?} each way for {:?}",
                    backend.ttl() * 2
                ))
            }
        }
    }

    /// SIGTERM to every replica (they resign), SIGKILL to those still there after a while.
    async fn stop_all(&mut self) {
        for replica in &mut self.replicas {
            replica.proxy.set(Link::Up);
            if let Some(pid) = replica.child.as_ref().and_then(Child::id) {
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
            }
        }
        for replica in &mut self.replicas {
            if let Some(child) = replica.child.as_mut() {
                if tokio::time::timeout(Duration::from_secs(15), child.wait())
                    .await
                    .is_err()
                {
                    tracing::warn!(replica = replica.id, "did not stop on SIGTERM; killing it");
                    let _ = child.kill().await;
                }
            }
        }
    }
}
