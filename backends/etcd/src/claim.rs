//! The etcd side of a term: our key, guarded by its create revision.

use elect_core::{Claim, ElectionName, Error, LossReason, Result, TermControl};
use etcd_client::{Client, Compare, CompareOp, EventType, PutOptions, Txn, TxnOp, WatchOptions};
use tokio::sync::watch;

use crate::error;
use crate::keys::Keys;

/// Our claim in one election: the key `<prefix><lease hex>` created at `revision`.
pub(crate) struct EtcdClaim {
    pub(crate) client: Client,
    pub(crate) election: ElectionName,
    pub(crate) keys: Keys,
    pub(crate) lease: i64,
    pub(crate) revision: i64,
}

impl std::fmt::Debug for EtcdClaim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdClaim")
            .field("key", &self.keys.key)
            .field("revision", &self.revision)
            .finish_non_exhaustive()
    }
}

impl EtcdClaim {
    /// `create_revision(key) == revision`: this term's claim still stands.
    fn ours(&self) -> Compare {
        Compare::create_revision(self.keys.key.as_str(), CompareOp::Equal, self.revision)
    }

    fn rejected(&self) -> Error {
        Error::rejected_by_store(&self.election)
    }

    /// Deletes the claim (and its id key) if it is still this term's.
    pub(crate) async fn delete(&self) -> Result<()> {
        let txn = Txn::new().when([self.ours()]).and_then([
            TxnOp::delete(self.keys.key.as_str(), None),
            TxnOp::delete(self.keys.id_key.as_str(), None),
        ]);
        error::txn(&self.client, &format!("resign {}", self.keys.key), txn)
            .await
            .map(|_| ())
    }
}

#[async_trait::async_trait]
impl Claim for EtcdClaim {
    async fn proclaim(&self, value: &[u8]) -> Result<()> {
        let txn = Txn::new().when([self.ours()]).and_then([TxnOp::put(
            self.keys.key.as_str(),
            value,
            Some(PutOptions::new().with_lease(self.lease)),
        )]);
        let response =
            error::txn(&self.client, &format!("proclaim {}", self.keys.key), txn).await?;
        if response.succeeded() {
            Ok(())
        } else {
            Err(self.rejected())
        }
    }

    async fn release(&self) -> Result<()> {
        self.delete().await
    }

    async fn fenced_put(&self, key: &str, value: &[u8]) -> Result<()> {
        let txn = Txn::new()
            .when([self.ours()])
            .and_then([TxnOp::put(key, value, None)]);
        let response = error::txn(&self.client, &format!("fenced put {key}"), txn).await?;
        if response.succeeded() {
            Ok(())
        } else {
            Err(self.rejected())
        }
    }

    async fn fenced_get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let response = error::get(&self.client, &format!("get {key}"), key, None).await?;
        Ok(response.kvs().first().map(|kv| kv.value().to_vec()))
    }
}

/// Ends the term within one round trip when our key is deleted (by hand, or with a revoked
/// lease) — even while the lease is alive. Watches from `from_revision`; after a broken or
/// compacted watch it re-reads the key and goes on.
pub(crate) async fn watch_own_key(
    claim: std::sync::Arc<EtcdClaim>,
    term: TermControl,
    mut lease: watch::Receiver<elect_core::clock::LeaseStatus>,
    from_revision: i64,
) {
    let mut next = from_revision;
    loop {
        let gone = key_deleted(&claim, &mut next);
        tokio::pin!(gone);
        let gone = tokio::select! {
            _ = term.ended() => return elect_core::backend::linger(gone).await,
            _ = elect_core::clock::lease_ended(&mut lease) => return,
            gone = &mut gone => gone,
        };
        match gone {
            Ok(true) => {
                tracing::warn!(key = claim.keys.key.as_str(), "our claim was deleted");
                term.end(LossReason::Revoked);
                return;
            }
            Ok(false) => {}
            Err(error) => {
                tracing::debug!(%error, key = claim.keys.key.as_str(), "own-key watch broke; resuming");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

/// Watches our key from `*next`; returns true once it is deleted, false when the watch must
/// be re-created (compaction), an error when the stream broke. Advances `*next`.
async fn key_deleted(claim: &EtcdClaim, next: &mut i64) -> Result<bool> {
    let key = claim.keys.key.as_str();
    let options = WatchOptions::new().with_start_revision(*next);
    let mut watch = error::Watch::open(&claim.client, format!("watch {key}"), key, options).await?;
    loop {
        let message = watch.message().await?;
        if message.canceled() {
            // Compacted past `next`, or cancelled by the server: read the truth and resume.
            let response = error::get(&claim.client, &format!("get {key}"), key, None).await?;
            let still_ours = response
                .kvs()
                .first()
                .is_some_and(|kv| kv.create_revision() == claim.revision);
            if !still_ours {
                return Ok(true);
            }
            *next = response.header().map_or(*next, |h| h.revision() + 1);
            return Ok(false);
        }
        for event in message.events() {
            if let Some(kv) = event.kv() {
                *next = (*next).max(kv.mod_revision() + 1);
            }
            if event.event_type() == EventType::Delete {
                return Ok(true);
            }
        }
    }
}
