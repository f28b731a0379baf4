//! One etcd lease per elector, kept alive by core's keep-alive loop.
//!
//! etcd-client sends nothing on a timer: the loop ([`KeepAlive`]) sends a keep-alive every
//! TTL/3 on our stream and feeds the deadline clock with the *send* time of each request that
//! got an answer. A reply with TTL 0 means the lease is gone — revoked, since it cannot have
//! expired before our deadline — and ends the session at once. A broken or silent stream
//! suspends the session and is reopened until the deadline passes.

use std::time::Duration;

use elect_core::clock::LeaseClock;
use elect_core::renewal::{KeepAlive, Renew, Renewal};
use elect_core::{Error, LossReason};
use etcd_client::{Client, LeaseKeepAliveStream, LeaseKeeper};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::error::{self, BACKEND};

/// A granted lease, its deadline clock, and the task that keeps it alive.
#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) lease: i64,
    pub(crate) clock: LeaseClock,
    keepalive: JoinHandle<()>,
}

impl elect_core::backend::Session for Session {
    fn clock(&self) -> &LeaseClock {
        &self.clock
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
        let stream = open_first(client, lease, &clock, granted_ttl).await?;
        // etcd expires a lease it hears nothing from by its TTL (a new etcd leader restarts
        // the count, hence the margin of one more).
        let keepalive = KeepAlive::new(BACKEND, clock.clone(), renew_every)
            .abandon_within(granted_ttl * 2)
            .spawn(LeaseRenewer {
                client: client.clone(),
                lease,
                granted_ttl,
                stream: Some(stream),
            });
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
        revoke_lease(client, self.lease).await
    }
}

/// Revokes `lease`: the keys attached to it go at once, not at its expiry. A lease already
/// gone counts as revoked.
async fn revoke_lease(client: &Client, lease: i64) -> Result<(), Error> {
    let revoke = async {
        match client.clone().lease_revoke(lease).await {
            Err(e) if lease_is_gone(&e) => Ok(()),
            answer => answer.map(|_| ()),
        }
    };
    error::once("revoke lease", revoke).await
}

type Stream = (LeaseKeeper, LeaseKeepAliveStream);

/// Opens the keep-alive stream of a new lease. etcd-client sends the first keep-alive itself
/// and consumes its reply (an error if the lease is gone), so a successful open is a
/// confirmed renewal.
async fn open_first(
    client: &Client,
    lease: i64,
    clock: &LeaseClock,
    granted_ttl: Duration,
) -> Result<Stream, Error> {
    let sent_at = elect_core::clock::now();
    let operation = || format!("keep lease {lease:x} alive");
    match tokio::time::timeout(error::CALL_TIMEOUT, client.clone().lease_keep_alive(lease)).await {
        Ok(Ok(opened)) => {
            clock.confirm(sent_at, granted_ttl);
            Ok(opened)
        }
        Ok(Err(e)) if lease_is_gone(&e) => {
            clock.end(LossReason::Revoked);
            Err(Error::backend(BACKEND, operation(), e))
        }
        Ok(Err(e)) => Err(error::map(operation(), e)),
        Err(_) => Err(Error::Timeout {
            backend: BACKEND,
            operation: operation(),
            after: error::CALL_TIMEOUT,
        }),
    }
}

fn lease_is_gone(error: &etcd_client::Error) -> bool {
    let text = error.to_string();
    text.contains("lease not found") || text.contains("requested lease not found")
}

/// One keep-alive on the lease's stream; the stream is opened again after a failure.
struct LeaseRenewer {
    client: Client,
    lease: i64,
    granted_ttl: Duration,
    /// Taken out while a keep-alive is in flight: a keep-alive given up on leaves its reply
    /// on the stream, which must not be read as the next one's.
    stream: Option<Stream>,
}

#[async_trait::async_trait]
impl Renew for LeaseRenewer {
    async fn renew(&mut self, sent_at: Instant, _patience: Duration) -> Renewal {
        let Some((mut keeper, mut replies)) = self.stream.take() else {
            return match self.client.clone().lease_keep_alive(self.lease).await {
                Ok(opened) => {
                    self.stream = Some(opened);
                    Renewal::Confirmed {
                        from: sent_at,
                        ttl: self.granted_ttl,
                    }
                }
                Err(e) if lease_is_gone(&e) => Renewal::Gone(LossReason::Revoked),
                Err(e) => Renewal::Failed(format!("reopen the keep-alive stream: {e}")),
            };
        };
        let reply = async {
            keeper.keep_alive().await?;
            replies.message().await
        }
        .await;
        match reply {
            Ok(Some(reply)) if reply.ttl() > 0 => {
                self.stream = Some((keeper, replies));
                Renewal::Confirmed {
                    from: sent_at,
                    ttl: Duration::from_secs(reply.ttl() as u64),
                }
            }
            Ok(Some(_)) => Renewal::Gone(LossReason::Revoked),
            Ok(None) => Renewal::Failed("the keep-alive stream closed".into()),
            Err(e) => Renewal::Failed(e.to_string()),
        }
    }

    /// Revokes the lease: the keys attached to it go at once, not at its expiry.
    async fn abandon(&mut self) -> Result<(), String> {
        revoke_lease(&self.client, self.lease)
            .await
            .map_err(|e| e.to_string())
    }
}
