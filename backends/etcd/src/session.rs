//! One etcd lease per elector, kept alive by our own task.
//!
//! etcd-client sends nothing on a timer: we send a keep-alive every TTL/3 and feed the
//! deadline clock with the *send* time of each request that got an answer. A reply with TTL 0
//! means the lease is gone — revoked, since it cannot have expired before our deadline — and
//! ends the session at once. A broken stream suspends the session and is reopened until the
//! deadline passes.

use std::time::Duration;

use elect_core::clock::{LeaseClock, LeasePhase};
use elect_core::{Error, LossReason};
use etcd_client::{Client, LeaseKeepAliveStream, LeaseKeeper};
use tokio::task::JoinHandle;

use crate::error::{self, BACKEND};

/// A granted lease, its deadline clock, and the task that keeps it alive.
#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) lease: i64,
    pub(crate) clock: LeaseClock,
    keepalive: JoinHandle<()>,
}

impl elect_core::backend::Session for Session {
    /// True once the lease is over (revoked, deadline passed, closed).
    fn is_over(&self) -> bool {
        matches!(self.clock.status().phase, LeasePhase::Ended(_))
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.keepalive.abort();
    }
}

impl Session {
    /// Grants a lease of `ttl` and starts keeping it alive.
    pub(crate) async fn grant(
        client: &Client,
        ttl: Duration,
        margin: Duration,
    ) -> Result<Self, Error> {
        let sent_at = elect_core::clock::now();
        // Retried like a read: a grant whose answer was lost leaves a lease nobody keeps
        // alive, which expires by its TTL.
        let secs = ttl.as_secs() as i64;
        let granted = error::retrying("grant lease", || {
            let mut client = client.clone();
            async move { client.lease_grant(secs, None).await }
        })
        .await?;
        let granted_ttl = Duration::from_secs(granted.ttl().max(0) as u64);
        let lease = granted.id();
        let renew_every = granted_ttl / 3;
        let clock = LeaseClock::new(sent_at, granted_ttl, margin, renew_every);
        let (keeper, replies) = open(client, lease, &clock, granted_ttl).await?;
        let keepalive = tokio::spawn(keep_alive(
            client.clone(),
            lease,
            clock.clone(),
            granted_ttl,
            keeper,
            replies,
        ));
        tracing::debug!(
            lease = format!("{lease:x}"),
            ttl_s = granted_ttl.as_secs(),
            "lease granted"
        );
        Ok(Session {
            lease,
            clock,
            keepalive,
        })
    }

    /// Revokes the lease: every key attached to it goes at once.
    pub(crate) async fn revoke(&self, client: &Client) -> Result<(), Error> {
        self.keepalive.abort();
        self.clock.end(LossReason::ShutDown);
        error::once("revoke lease", client.clone().lease_revoke(self.lease))
            .await
            .map(|_| ())
    }
}

/// Opens a keep-alive stream. etcd-client sends the first keep-alive itself and consumes its
/// reply (an error if the lease is gone), so a successful open is a confirmed renewal.
async fn open(
    client: &Client,
    lease: i64,
    clock: &LeaseClock,
    granted_ttl: Duration,
) -> Result<(LeaseKeeper, LeaseKeepAliveStream), Error> {
    let sent_at = elect_core::clock::now();
    match tokio::time::timeout(error::CALL_TIMEOUT, client.clone().lease_keep_alive(lease)).await {
        Ok(Ok(opened)) => {
            clock.confirm(sent_at, granted_ttl);
            Ok(opened)
        }
        Ok(Err(e)) if lease_is_gone(&e) => {
            clock.end(LossReason::Revoked);
            Err(Error::backend(
                BACKEND,
                format!("keep lease {lease:x} alive"),
                e,
            ))
        }
        Ok(Err(e)) => Err(error::map(format!("keep lease {lease:x} alive"), e)),
        Err(_) => Err(Error::Timeout {
            backend: BACKEND,
            operation: format!("keep lease {lease:x} alive"),
            after: error::CALL_TIMEOUT,
        }),
    }
}

fn lease_is_gone(error: &etcd_client::Error) -> bool {
    let text = error.to_string();
    text.contains("lease not found") || text.contains("requested lease not found")
}

/// Renews every TTL/3 until the lease ends; see the module docs.
async fn keep_alive(
    client: Client,
    lease: i64,
    clock: LeaseClock,
    granted_ttl: Duration,
    mut keeper: LeaseKeeper,
    mut replies: LeaseKeepAliveStream,
) {
    let renew_every = granted_ttl / 3;
    let mut ended = clock.watch();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(renew_every) => {}
            _ = elect_core::clock::lease_ended(&mut ended) => return,
        }
        let sent_at = elect_core::clock::now();
        // Wait for the answer no longer than the deadline allows.
        let patience = clock
            .deadline()
            .map(|d| d.saturating_duration_since(sent_at))
            .unwrap_or(renew_every)
            .max(Duration::from_millis(1));
        let answer = tokio::time::timeout(patience, async {
            keeper.keep_alive().await?;
            replies.message().await
        })
        .await;
        match answer {
            Ok(Ok(Some(reply))) if reply.ttl() > 0 => {
                if !clock.confirm(sent_at, Duration::from_secs(reply.ttl() as u64)) {
                    return;
                }
            }
            Ok(Ok(Some(_))) => {
                tracing::warn!(lease = format!("{lease:x}"), "the lease is gone (revoked)");
                clock.end(LossReason::Revoked);
                return;
            }
            Ok(Ok(None)) | Ok(Err(_)) | Err(_) => {
                tracing::warn!(
                    lease = format!("{lease:x}"),
                    "keep-alive not answered; reconnecting"
                );
                clock.suspend();
                match reopen(&client, lease, &clock, granted_ttl).await {
                    Some((k, r)) => (keeper, replies) = (k, r),
                    None => return,
                }
            }
        }
    }
}

/// Reopens the keep-alive stream until it works or the lease is over.
async fn reopen(
    client: &Client,
    lease: i64,
    clock: &LeaseClock,
    granted_ttl: Duration,
) -> Option<(LeaseKeeper, LeaseKeepAliveStream)> {
    let mut pause = Duration::from_millis(50);
    loop {
        if matches!(clock.status().phase, LeasePhase::Ended(_)) {
            return None;
        }
        match open(client, lease, clock, granted_ttl).await {
            Ok(opened) => {
                tracing::info!(lease = format!("{lease:x}"), "keep-alive resumed");
                return Some(opened);
            }
            Err(error) => {
                if matches!(clock.status().phase, LeasePhase::Ended(_)) {
                    return None;
                }
                tracing::debug!(%error, "keep-alive reopen failed");
            }
        }
        let until = clock
            .deadline()
            .unwrap_or_else(|| elect_core::clock::now() + pause);
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = elect_core::clock::sleep_until(until) => {}
        }
        pause = (pause * 2).min(Duration::from_millis(500));
    }
}
