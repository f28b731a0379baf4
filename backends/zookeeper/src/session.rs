//! One ZooKeeper session per elector, and the deadline clock it feeds.
//!
//! The deadline must never outlast the session at the ensemble's *leader*, which is who
//! expires it — not at the member we talk to. A follower cut off from the leader goes on
//! answering reads for up to syncLimit × tickTime, while the leader, no longer hearing of our
//! session, expires it after the session timeout and a rival takes the election (seen: two
//! leaders for up to 1.7 s). So the session is confirmed with `sync`, which the member
//! forwards to the leader and answers only once the leader has processed it.
//!
//! The leader hears that a session is alive from the member's replies to its pings (every
//! tickTime/2), not from the sync itself: a request the member saw just before its link broke
//! may never reach the leader. A sync answered therefore renews the deadline from the *send*
//! time of the previous request answered at least [`report_lag`] before this one was sent —
//! the member's pings in between carried that one to the leader, ahead of the forwarded sync
//! on the same link (or, after a reconnect, the leader revalidated the session later still).
//! The clock's headroom counts two renewal periods for it.
//!
//! zookeeper-client pings on its own but does not say when a ping was answered, so the
//! confirmations are our own requests, every third of the negotiated timeout. A disconnection
//! suspends the session (the deadline keeps running); `Expired` and `Closed` end it — an
//! expired client is final, and the elector builds a new one.

use std::sync::Arc;
use std::time::Duration;

use elect_core::clock::{LeaseClock, LeasePhase};
use elect_core::config::ZookeeperConfig;
use elect_core::{Error, LossReason};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use zookeeper_client as zk;

use crate::error;

/// ZooKeeper's default client port.
pub const DEFAULT_PORT: u16 = 2181;

#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) client: zk::Client,
    pub(crate) clock: LeaseClock,
    pub(crate) id: i64,
    tasks: Vec<JoinHandle<()>>,
}

impl elect_core::backend::Session for Session {
    fn is_over(&self) -> bool {
        matches!(self.clock.status().phase, LeasePhase::Ended(_))
            || self.client.state().is_terminated()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Session {
    pub(crate) async fn connect(config: &ZookeeperConfig) -> Result<Self, Error> {
        if config.tls.is_some() {
            // Refuse rather than connect in the clear.
            return Err(elect_core::ConfigError::new(
                "zookeeper.tls",
                "set",
                "TLS to ZooKeeper is not supported yet; use a TLS tunnel or leave it out",
            )
            .into());
        }
        let hosts: Vec<String> = config
            .endpoints
            .iter()
            .map(|e| e.with_default_port(DEFAULT_PORT))
            .collect();
        let mut connector = zk::Client::connector()
            .with_session_timeout(config.session_timeout)
            .with_fail_eagerly();
        if let Some(auth) = &config.auth {
            connector = connector.with_auth("digest", auth.as_bytes());
        }
        let sent_at = elect_core::clock::now();
        let client = error::call("connect", connector.connect(&hosts.join(","))).await?;
        Ok(Session::from_client(client, sent_at, config.drift_margin()))
    }

    /// Wraps a connected client; `sent_at` is when its connection request was sent.
    pub(crate) fn from_client(client: zk::Client, sent_at: Instant, margin: Duration) -> Self {
        let negotiated = client.session_timeout();
        let margin = margin.min(negotiated / 4);
        // A deadline counts from the request before the last one answered: two periods.
        let clock = LeaseClock::new(sent_at, negotiated, margin, 2 * renew_every(negotiated));
        let id = client.session_id().0;
        let confirmations = Arc::new(Confirmations::new(sent_at, negotiated));
        let tasks = vec![
            tokio::spawn(ping(client.clone(), clock.clone(), confirmations.clone())),
            tokio::spawn(follow_state(client.clone(), clock.clone(), confirmations)),
        ];
        tracing::debug!(
            session = format!("{id:x}"),
            timeout_ms = negotiated.as_millis() as u64,
            "zookeeper session"
        );
        Session {
            client,
            clock,
            id,
            tasks,
        }
    }
}

/// How often the session is confirmed: a third of the negotiated timeout.
fn renew_every(negotiated: Duration) -> Duration {
    negotiated / 3
}

/// How long before a sync's send the request it renews from must have been answered, so that
/// the member pinged the leader in between: tickTime/2 and some. The server is not asked its
/// tickTime; it negotiates session timeouts of at least 2 × tickTime (its default minimum),
/// so a quarter of the negotiated timeout covers tickTime/2.
fn report_lag(negotiated: Duration) -> Duration {
    negotiated / 4
}

/// The confirmations so far: the last request answered, which the next answered sync renews
/// from.
#[derive(Debug)]
struct Confirmations {
    negotiated: Duration,
    /// (sent, answered) of the last request answered: the session's creation at first.
    last: std::sync::Mutex<(Instant, Instant)>,
}

impl Confirmations {
    fn new(created: Instant, negotiated: Duration) -> Self {
        Confirmations {
            negotiated,
            last: std::sync::Mutex::new((created, created)),
        }
    }

    /// Sends one `sync` through the ensemble's leader; when it is answered, renews the deadline
    /// from the last request answered at least [`report_lag`] before this one was sent.
    /// Returns whether the deadline was renewed.
    async fn confirm(&self, client: &zk::Client, clock: &LeaseClock) -> bool {
        let sent_at = elect_core::clock::now();
        let patience = clock
            .deadline()
            .map(|d| d.saturating_duration_since(sent_at))
            .unwrap_or(self.negotiated)
            .max(Duration::from_millis(1));
        if !matches!(
            tokio::time::timeout(patience, client.sync("/")).await,
            Ok(Ok(()))
        ) {
            return false;
        }
        let answered_at = elect_core::clock::now();
        let mut last = self.last.lock().expect("confirmations poisoned");
        let (previous_sent, previous_answered) = *last;
        *last = (sent_at, answered_at);
        previous_answered + report_lag(self.negotiated) <= sent_at
            && clock.confirm(previous_sent, self.negotiated)
    }
}

async fn ping(client: zk::Client, clock: LeaseClock, confirmations: Arc<Confirmations>) {
    let mut ended = clock.watch();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(renew_every(confirmations.negotiated)) => {}
            _ = elect_core::clock::lease_ended(&mut ended) => return,
        }
        confirmations.confirm(&client, &clock).await;
    }
}

/// After a reconnection: a sync at once, and if it could not renew yet (the last answer was
/// too recent), another once it can — so a suspended term resumes within a report lag.
async fn resume(client: &zk::Client, clock: &LeaseClock, confirmations: &Confirmations) {
    if !confirmations.confirm(client, clock).await {
        tokio::time::sleep(report_lag(confirmations.negotiated)).await;
        confirmations.confirm(client, clock).await;
    }
}

async fn follow_state(client: zk::Client, clock: LeaseClock, confirmations: Arc<Confirmations>) {
    let mut states = client.state_watcher();
    loop {
        match states.changed().await {
            zk::SessionState::Disconnected | zk::SessionState::ConnectedReadOnly => {
                tracing::warn!(
                    session = format!("{:x}", client.session_id().0),
                    "zookeeper disconnected: suspended"
                );
                clock.suspend();
            }
            zk::SessionState::SyncConnected => resume(&client, &clock, &confirmations).await,
            zk::SessionState::Expired => {
                tracing::warn!(
                    session = format!("{:x}", client.session_id().0),
                    "zookeeper session expired"
                );
                clock.end(LossReason::Expired);
                return;
            }
            zk::SessionState::AuthFailed => {
                clock.end(LossReason::Revoked);
                return;
            }
            zk::SessionState::Closed => {
                clock.end(LossReason::ShutDown);
                return;
            }
        }
    }
}

/// Maps a request's error after checking whether the session is what failed.
pub(crate) fn is_session_gone(error: &zk::Error) -> bool {
    matches!(error, zk::Error::SessionExpired | zk::Error::ClientClosed)
}
