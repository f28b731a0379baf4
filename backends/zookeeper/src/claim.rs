//! The ZooKeeper side of a term: our ephemeral sequential znode.

use std::sync::Arc;

use crate::session::SessionClient;
use elect_core::{Claim, ElectionName, Error, LossReason, NotLeaderReason, Result, TermControl};
use zookeeper_client as zk;

use crate::error::{self, BACKEND};
use crate::layout::Layout;

/// Our claim in one election: `<dir>/<name>`, owned by our session.
#[derive(Debug)]
pub(crate) struct ZkClaim {
    pub(crate) client: SessionClient,
    pub(crate) election: ElectionName,
    pub(crate) layout: Layout,
    pub(crate) name: String,
    pub(crate) root: String,
    pub(crate) acls: Acls,
}

/// The ACL of the znodes we create: open without credentials; with digest auth, all rights
/// for our identity and read for everyone, so that no other identity can delete a claim.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Acls {
    Open,
    CreatorAllAnyoneRead,
}

static CREATOR_ALL_ANYONE_READ: [zk::Acl; 2] = [
    zk::Acl::new_const(zk::Permission::ALL, "auth", ""),
    zk::Acl::new_const(zk::Permission::READ, "world", "anyone"),
];

impl Acls {
    pub(crate) fn options(self, mode: zk::CreateMode) -> zk::CreateOptions<'static> {
        match self {
            Acls::Open => mode.with_acls(zk::Acls::anyone_all()),
            Acls::CreatorAllAnyoneRead => mode.with_acls(zk::Acls::new(&CREATOR_ALL_ANYONE_READ)),
        }
    }
}

impl ZkClaim {
    pub(crate) fn path(&self) -> String {
        self.layout.claim(&self.name)
    }

    fn rejected(&self) -> Error {
        Error::rejected_by_store(&self.election)
    }

    /// The session's client; a session given up has taken every claim of ours with it.
    fn client(&self) -> Result<zk::Client> {
        self.client.get().map_err(|_| Error::NotLeader {
            election: self.election.clone(),
            reason: NotLeaderReason::Lost(LossReason::Expired),
        })
    }

    fn data_path(&self, key: &str) -> Result<String> {
        let valid =
            !key.is_empty() && !key.starts_with('/') && !key.ends_with('/') && !key.contains("//");
        if !valid {
            return Err(elect_core::ConfigError::new(
                "key",
                key,
                "ZooKeeper keys are znode paths relative to the root, without leading or trailing '/'",
            )
            .into());
        }
        Ok(format!("{}/{key}", self.root.trim_end_matches('/')))
    }

    /// Deletes the claim, then its value node; a node already gone is fine, and so is a
    /// session given up (its ephemeral nodes go with it).
    pub(crate) async fn delete(&self) -> Result<()> {
        let Ok(client) = self.client.get() else {
            return Ok(());
        };
        for path in [Some(self.path()), self.layout.value_of(&self.name)]
            .into_iter()
            .flatten()
        {
            match error::call(&format!("delete {path}"), client.delete(&path, None)).await {
                Ok(()) => {}
                Err(Error::Backend { ref source, .. }) if is(source, &zk::Error::NoNode) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Writes `path` = `value` only while our claim exists (one `multi` with a check).
    async fn write_checked(&self, path: &str, value: &[u8], mode: zk::CreateMode) -> Result<()> {
        let claim = self.path();
        let client = self.client()?;
        for create in [false, true] {
            let mut writer = client
                .new_check_writer(&claim, None)
                .map_err(|e| error::map("fenced write", e))?;
            let added = if create {
                writer.add_create(path, value, &self.acls.options(mode))
            } else {
                writer.add_set_data(path, value, None)
            };
            added.map_err(|e| error::map(format!("fenced write {path}"), e))?;
            match tokio::time::timeout(error::CALL_TIMEOUT, writer.commit()).await {
                Ok(Ok(_)) => return Ok(()),
                Ok(Err(zk::CheckWriteError::CheckFailed { .. })) => return Err(self.rejected()),
                // set_data on a missing node: create it; create on a node that appeared: set it.
                Ok(Err(zk::CheckWriteError::OperationFailed {
                    source: zk::Error::NoNode,
                    ..
                })) if !create => continue,
                Ok(Err(zk::CheckWriteError::OperationFailed {
                    source: zk::Error::NodeExists,
                    ..
                })) if create => return Box::pin(self.write_checked(path, value, mode)).await,
                Ok(Err(zk::CheckWriteError::OperationFailed { source, .. }))
                | Ok(Err(zk::CheckWriteError::RequestFailed { source })) => {
                    return Err(error::map(format!("fenced write {path}"), source))
                }
                Err(_) => {
                    return Err(Error::Timeout {
                        backend: BACKEND,
                        operation: format!("fenced write {path}"),
                        after: error::CALL_TIMEOUT,
                    })
                }
            }
        }
        Err(Error::backend(
            BACKEND,
            format!("fenced write {path}"),
            "the node kept changing",
        ))
    }
}

pub(crate) fn is(source: &elect_core::BoxError, wanted: &zk::Error) -> bool {
    source.downcast_ref::<zk::Error>() == Some(wanted)
}

#[async_trait::async_trait]
impl Claim for ZkClaim {
    async fn proclaim(&self, value: &[u8]) -> Result<()> {
        let path = self
            .layout
            .value_of(&self.name)
            .expect("our claims are Curator-named");
        self.write_checked(&path, value, zk::CreateMode::Ephemeral)
            .await
    }

    async fn release(&self) -> Result<()> {
        self.delete().await
    }

    async fn fenced_put(&self, key: &str, value: &[u8]) -> Result<()> {
        let path = self.data_path(key)?;
        self.write_checked(&path, value, zk::CreateMode::Persistent)
            .await
    }

    async fn fenced_get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let path = self.data_path(key)?;
        let client = self
            .client
            .get()
            .map_err(|e| error::map(format!("get {path}"), e))?;
        match client.get_data(&path).await {
            Ok((data, _)) => Ok(Some(data)),
            Err(zk::Error::NoNode) => Ok(None),
            Err(e) => Err(error::map(format!("get {path}"), e)),
        }
    }
}

/// A pending watch on our own claim: resolves at its first change (or when the session breaks).
pub(crate) type OwnClaimChanged =
    std::pin::Pin<Box<dyn std::future::Future<Output = zk::WatchedEvent> + Send>>;

/// Ends the term when our znode is deleted (by hand) while the session lives. `armed`: a
/// watch on it already set (see [`OwnClaimChanged`]), used before any new one.
pub(crate) async fn watch_own_node(
    claim: Arc<ZkClaim>,
    term: TermControl,
    mut lease: tokio::sync::watch::Receiver<elect_core::clock::LeaseStatus>,
    mut armed: Option<OwnClaimChanged>,
) {
    let path = claim.path();
    loop {
        if let Some(mut changed) = armed.take() {
            // A watch set while waiting: once it fires, look again as below.
            tokio::select! {
                _ = term.ended() => return elect_core::backend::linger(changed).await,
                _ = elect_core::clock::lease_ended(&mut lease) => return,
                _ = &mut changed => continue,
            }
        }
        let Ok(client) = claim.client.get() else {
            return;
        };
        let watched = tokio::select! {
            _ = term.ended() => return,
            _ = elect_core::clock::lease_ended(&mut lease) => return,
            watched = client.check_and_watch_stat(&path) => watched,
        };
        drop(client);
        match watched {
            Ok((None, _)) => {
                tracing::warn!(path = path.as_str(), "our claim was deleted");
                term.end(LossReason::Revoked);
                return;
            }
            Ok((Some(_), watcher)) => {
                let changed = watcher.changed();
                tokio::pin!(changed);
                tokio::select! {
                    _ = term.ended() => return elect_core::backend::linger(changed).await,
                    _ = elect_core::clock::lease_ended(&mut lease) => return,
                    _ = &mut changed => {}
                }
            }
            Err(error) => {
                tracing::debug!(%error, path = path.as_str(), "own-node watch failed; retrying");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}
