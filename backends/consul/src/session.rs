//! One Consul session per elector, renewed by our own task every TTL/2.
//!
//! The deadline counts from the *send* time of the last renewal the server answered, plus
//! the TTL, minus the margin: Consul never invalidates a session before its TTL (it may wait
//! up to twice as long). A renewal answered 404 means the session is gone — destroyed by an
//! operator or invalidated — and ends it at once.

use std::sync::Arc;
use std::time::Duration;

use elect_core::clock::{LeaseClock, LeasePhase};
use elect_core::config::ConsulConfig;
use elect_core::{Error, LossReason};
use tokio::task::JoinHandle;

use crate::agent::Agent;

#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) id: String,
    pub(crate) clock: LeaseClock,
    renewing: JoinHandle<()>,
}

impl elect_core::backend::Session for Session {
    fn is_over(&self) -> bool {
        matches!(self.clock.status().phase, LeasePhase::Ended(_))
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.renewing.abort();
    }
}

impl Session {
    pub(crate) async fn create(
        agent: &Arc<Agent>,
        config: &ConsulConfig,
        name: &str,
    ) -> Result<Self, Error> {
        let sent_at = elect_core::clock::now();
        let id = agent
            .create_session(name, config.ttl, config.lock_delay(), &config.health_checks)
            .await?;
        let clock = LeaseClock::new(sent_at, config.ttl, config.drift_margin(), config.ttl / 2);
        let renewing = tokio::spawn(renew(agent.clone(), id.clone(), clock.clone(), config.ttl));
        tracing::debug!(
            session = id.as_str(),
            ttl_s = config.ttl.as_secs(),
            "consul session"
        );
        Ok(Session {
            id,
            clock,
            renewing,
        })
    }

    /// Destroys the session: Consul releases every lock it holds at once.
    pub(crate) async fn destroy(&self, agent: &Agent) -> Result<(), Error> {
        self.renewing.abort();
        self.clock.end(LossReason::ShutDown);
        agent.destroy_session(&self.id).await
    }
}

async fn renew(agent: Arc<Agent>, id: String, clock: LeaseClock, ttl: Duration) {
    let mut ended = clock.watch();
    let mut pause = ttl / 2;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = elect_core::clock::lease_ended(&mut ended) => return,
        }
        let sent_at = elect_core::clock::now();
        let patience = clock
            .deadline()
            .map(|d| d.saturating_duration_since(sent_at))
            .unwrap_or(ttl)
            .max(Duration::from_millis(1));
        match agent.renew_session(&id, patience).await {
            Ok(Some(granted)) => {
                if !clock.confirm(sent_at, granted.max(Duration::from_secs(1))) {
                    return;
                }
                pause = ttl / 2;
            }
            Ok(None) => {
                tracing::warn!(
                    session = id.as_str(),
                    "the session is gone (destroyed or invalidated)"
                );
                clock.end(LossReason::Revoked);
                return;
            }
            Err(error) => {
                // Keep trying until the deadline; the clock ends the session by itself then.
                tracing::warn!(session = id.as_str(), %error, "session renewal failed; retrying");
                clock.suspend();
                pause = Duration::from_millis(500);
            }
        }
    }
}
