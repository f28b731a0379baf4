//! `elect run` starts its command only while the term leads with room for `--grace` before
//! the deadline: a term can be granted already suspended, or so close to its deadline that
//! the command could not be stopped in time (a store that took the claim while our renewals
//! were failing). Such a term must not start the command; a renewal that makes room does.

use std::fs;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use elect::run::{run, RunExit, RunOptions, Signals};
use elect::settings::Settings;
use elect::{
    Candidate, CandidateInfo, Config, ElectionName, Elector, FencingToken, LeaderInfo,
    LeaderStream, Leadership, LossReason, Result,
};
use elect_core::clock::LeaseClock;
use elect_core::testkit::{capture_logs, AcceptingClaim};
use elect_test_support::cli::sh;
use tokio::time::Instant;

const GRACE: Duration = Duration::from_secs(1);

/// An elector whose one campaign grants a term on a clock the test drives.
#[derive(Debug)]
struct Granting {
    clock: LeaseClock,
    granted: Mutex<Option<Leadership>>,
}

#[async_trait::async_trait]
impl Elector for Granting {
    fn backend(&self) -> &'static str {
        "test"
    }
    async fn campaign(&self, election: &ElectionName, candidate: &Candidate) -> Result<Leadership> {
        let already = self.granted.lock().unwrap().is_some();
        if already {
            // One term only: a second campaign waits for ever.
            std::future::pending::<()>().await;
        }
        let (leadership, _control) = Leadership::new(
            "test",
            election.clone(),
            candidate.id().to_owned(),
            FencingToken(7),
            &self.clock,
            Arc::new(AcceptingClaim::default()),
        );
        *self.granted.lock().unwrap() = Some(leadership.clone());
        Ok(leadership)
    }
    async fn try_campaign(&self, _: &ElectionName, _: &Candidate) -> Result<Option<Leadership>> {
        Ok(None)
    }
    async fn leader(&self, _: &ElectionName) -> Result<Option<LeaderInfo>> {
        Ok(None)
    }
    async fn candidates(&self, _: &ElectionName) -> Result<Vec<CandidateInfo>> {
        Ok(Vec::new())
    }
    async fn observe(&self, _: &ElectionName) -> Result<LeaderStream> {
        Ok(Box::pin(futures::stream::empty()))
    }
    async fn close(&self) -> Result<()> {
        Ok(())
    }
}

fn settings() -> Settings {
    Settings {
        config: Config::file_default(),
        election: "check".parse().unwrap(),
        candidate: Candidate::new("runner", "runner").unwrap(),
    }
}

/// A command that only leaves a mark that it ran.
fn marking(mark: &Path) -> RunOptions {
    RunOptions {
        once: true,
        grace: GRACE,
        ..RunOptions::new(sh(format!("echo ran > {}", mark.display())))
    }
}

async fn run_once(elector: &Granting, options: &RunOptions) -> RunExit {
    let mut signals = Signals::install().unwrap();
    tokio::time::timeout(
        Duration::from_secs(10),
        run(elector, &settings(), options, &mut signals),
    )
    .await
    .expect("run ends within 10 s")
    .expect("run")
}

/// Granted with 300 ms left (TTL 5 s, so the stop window is the whole grace): no room to
/// stop the command in time, and no renewal comes: the command is never spawned. (A spawned
/// command would be stopped at once, but may have acted by then.)
#[tokio::test]
async fn a_term_granted_too_close_to_its_deadline_never_starts_the_command() {
    let (_logging, logs) = capture_logs();
    let dir = tempfile::tempdir().unwrap();
    let mark = dir.path().join("mark");
    let ttl = Duration::from_secs(5);
    let sent = Instant::now() - (ttl - Duration::from_millis(300));
    let elector = Granting {
        clock: LeaseClock::new(sent, ttl, Duration::ZERO, ttl / 3),
        granted: Mutex::new(None),
    };
    let exit = run_once(&elector, &marking(&mark)).await;
    let logged = logs.text();
    assert!(
        !logged.contains("command started") && !mark.exists(),
        "the command was started on a term with 300 ms left and a {GRACE:?} grace:\n{logged}"
    );
    assert!(
        matches!(exit, RunExit::Lost(LossReason::DeadlinePassed)),
        "{exit:?}"
    );
}

/// Granted with 300 ms left, as above, but with a keep-alive that answers when asked: the
/// renewal is asked for at once (not at its time, a renewal period later), and its answer
/// makes room for the command.
#[tokio::test]
async fn a_term_granted_without_room_asks_for_a_renewal_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let mark = dir.path().join("mark");
    let ttl = Duration::from_secs(5);
    let sent = Instant::now() - (ttl - Duration::from_millis(300));
    let clock = LeaseClock::new(sent, ttl, Duration::ZERO, ttl / 3);
    let renew_now = clock.renew_now();
    let answering = {
        let clock = clock.clone();
        tokio::spawn(async move {
            renew_now.notified().await;
            clock.confirm(Instant::now(), ttl);
        })
    };
    let elector = Granting {
        clock,
        granted: Mutex::new(None),
    };
    let exit = run_once(&elector, &marking(&mark)).await;
    assert!(answering.is_finished(), "no renewal was asked for");
    assert!(matches!(exit, RunExit::Exited(_)), "{exit:?}");
    assert_eq!(fs::read_to_string(&mark).unwrap().trim(), "ran");
}

/// Granted suspended: the command waits; a renewal confirmed in time makes it leading with
/// room, and only then does the command run.
#[tokio::test]
async fn a_term_granted_suspended_starts_the_command_only_once_confirmed() {
    let dir = tempfile::tempdir().unwrap();
    let mark = dir.path().join("mark");
    let ttl = Duration::from_secs(5);
    let clock = LeaseClock::new(Instant::now(), ttl, Duration::ZERO, ttl / 3);
    clock.suspend();
    let elector = Arc::new(Granting {
        clock: clock.clone(),
        granted: Mutex::new(None),
    });
    let options = marking(&mark);
    let running = {
        let (elector, options) = (elector.clone(), options.clone());
        tokio::spawn(async move { run_once(&elector, &options).await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !mark.exists(),
        "the command ran while the term was suspended"
    );
    let confirmed = Instant::now();
    clock.confirm(confirmed, ttl);
    let exit = running.await.unwrap();
    assert!(matches!(exit, RunExit::Exited(_)), "{exit:?}");
    assert_eq!(fs::read_to_string(&mark).unwrap().trim(), "ran");
}
