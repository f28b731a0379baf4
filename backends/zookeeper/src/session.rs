//! One ZooKeeper session per elector, and the deadline clock it feeds.
//!
//! zookeeper-client pings on its own but does not say when a ping was answered, so we send a
//! cheap request of our own every third of the negotiated timeout and feed the clock with its
//! *send* time: the server counts the session from when it heard us, never earlier. A
//! disconnection suspends the session (the deadline keeps running); `Expired` and `Closed`
//! end it — an expired client is final, and the elector builds a new one.

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
        let sent_at = Instant::now();
        let client = error::call("connect", connector.connect(&hosts.join(","))).await?;
        Ok(Session::from_client(client, sent_at, config.drift_margin()))
    }

    /// Wraps a connected client; `sent_at` is when its connection request was sent.
    pub(crate) fn from_client(client: zk::Client, sent_at: Instant, margin: Duration) -> Self {
        let negotiated = client.session_timeout();
        let margin = margin.min(negotiated / 4);
        let clock = LeaseClock::new(sent_at, negotiated, margin, negotiated / 3);
        let id = client.session_id().0;
        let tasks = vec![
            tokio::spawn(ping(client.clone(), clock.clone(), negotiated)),
            tokio::spawn(follow_state(client.clone(), clock.clone(), negotiated)),
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

/// A request the server must answer; its send time renews the deadline.
async fn confirm(client: &zk::Client, clock: &LeaseClock, negotiated: Duration) {
    let sent_at = Instant::now();
    let patience = clock
        .deadline()
        .map(|d| d.saturating_duration_since(sent_at))
        .unwrap_or(negotiated)
        .max(Duration::from_millis(1));
    if let Ok(Ok(_)) = tokio::time::timeout(patience, client.check_stat("/")).await {
        clock.confirm(sent_at, negotiated);
    }
}

async fn ping(client: zk::Client, clock: LeaseClock, negotiated: Duration) {
    let mut ended = clock.watch();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(negotiated / 3) => {}
            _ = elect_core::clock::lease_ended(&mut ended) => return,
        }
        confirm(&client, &clock, negotiated).await;
    }
}

async fn follow_state(client: zk::Client, clock: LeaseClock, negotiated: Duration) {
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
            zk::SessionState::SyncConnected => confirm(&client, &clock, negotiated).await,
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
