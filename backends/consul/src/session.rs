//! One Consul session per elector, renewed every TTL/2 by core's keep-alive loop.
//!
//! The deadline counts from the *send* time of the last renewal the server answered, plus
//! the TTL, minus the margin: Consul never invalidates a session before its TTL (it may wait
//! up to twice as long). A renewal answered 404 means the session is gone — destroyed by an
//! operator or invalidated — and ends it at once.

use std::sync::Arc;
use std::time::Duration;

use elect_core::clock::LeaseClock;
use elect_core::config::ConsulConfig;
use elect_core::renewal::{KeepAlive, Renew, Renewal};
use elect_core::{Error, LossReason};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::agent::{Agent, BACKEND};
use crate::claim::Keys;

#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) id: String,
    pub(crate) clock: LeaseClock,
    renewing: JoinHandle<()>,
}

impl elect_core::backend::Session for Session {
    fn clock(&self) -> &LeaseClock {
        &self.clock
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
        // Consul invalidates a session it hears nothing from 2 × TTL after its last renewal.
        let renewing = KeepAlive::new(BACKEND, clock.clone(), config.ttl / 2)
            .abandon_within(config.ttl * 2)
            .spawn(SessionRenewer {
                agent: agent.clone(),
                id: id.clone(),
                prefix: config.prefix.clone(),
            });
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

/// One renewal of the session; `None` from Consul means the session is gone (destroyed by an
/// operator or invalidated).
struct SessionRenewer {
    agent: Arc<Agent>,
    id: String,
    /// Where the elector's elections live: what [`Renew::abandon`] looks through.
    prefix: String,
}

#[async_trait::async_trait]
impl Renew for SessionRenewer {
    async fn renew(&mut self, sent_at: Instant, patience: Duration) -> Renewal {
        match self.agent.renew_session(&self.id, patience).await {
            Ok(Some(granted)) => Renewal::Confirmed {
                from: sent_at,
                ttl: granted.max(Duration::from_secs(1)),
            },
            Ok(None) => Renewal::Gone(LossReason::Revoked),
            Err(error) => Renewal::Failed(elect_core::with_causes(&error)),
        }
    }

    /// Releases every lock the session holds, then destroys it. Releasing first: Consul holds
    /// the locks of a destroyed session back for the lock delay, which protects a holder that
    /// does not know it lost — ours ended its terms at the deadline.
    async fn abandon(&mut self) -> Result<(), String> {
        let failed = |error: Error| elect_core::with_causes(&error);
        let (entries, _) = self
            .agent
            .read(&self.prefix, true, None)
            .await
            .map_err(failed)?;
        let ours = entries.iter().filter(|e| e.holder() == Some(&self.id));
        for (keys, index) in ours.filter_map(|e| Some((Keys::of_lock(&e.key)?, e.modify_index))) {
            self.agent
                .txn(keys.release(&self.id, index, None))
                .await
                .map_err(failed)?;
            // Its places in line too: they would stay, unheld, until a waiter cleans them.
            self.agent
                .txn(keys.leave_line_all(&self.id))
                .await
                .map_err(failed)?;
        }
        self.agent.destroy_session(&self.id).await.map_err(failed)
    }
}
