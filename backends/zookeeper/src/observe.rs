//! Who leads, and every change of it: the lowest claim, its id (the claim's data) and value
//! (the value znode, or the id). An observer watches the leader's claim and value znodes — or,
//! with nobody leading, the election's children — and re-reads after every event, error or
//! reconnection, so its last item is the truth.

use std::sync::Arc;

use futures::future::BoxFuture;

use elect_core::clock::LeaseStatus;
use elect_core::observe::WatchLeader;
use elect_core::{CandidateInfo, FencingToken, LeaderInfo, LeaderStream, Result};
use tokio::sync::watch;
use zookeeper_client as zk;

use crate::error;
use crate::layout::{sorted_claims, Layout};
use crate::session::Session;

/// The elector's live session, made again once it is over.
pub(crate) type Sessions = Arc<dyn Fn() -> BoxFuture<'static, Result<Arc<Session>>> + Send + Sync>;

/// The leader and its claim's name.
pub(crate) async fn read_leader(
    client: &zk::Client,
    layout: &Layout,
) -> Result<Option<(LeaderInfo, String)>> {
    let children = match client.list_children(&layout.dir).await {
        Ok(children) => sorted_claims(children),
        Err(zk::Error::NoNode) => return Ok(None),
        Err(e) => return Err(error::map("list claims", e)),
    };
    for name in children {
        // The first claim may vanish between the list and the read: take the next.
        if let Some(info) = read_claim(client, layout, &name).await? {
            return Ok(Some((info, name)));
        }
    }
    Ok(None)
}

async fn read_claim(
    client: &zk::Client,
    layout: &Layout,
    name: &str,
) -> Result<Option<LeaderInfo>> {
    let (id, stat) = match client.get_data(&layout.claim(name)).await {
        Ok(read) => read,
        Err(zk::Error::NoNode) => return Ok(None),
        Err(e) => return Err(error::map("read claim", e)),
    };
    let value = match layout.value_of(name) {
        None => id.clone(),
        Some(path) => match client.get_data(&path).await {
            Ok((value, _)) => value,
            // Curator and kazoo candidates, and ours whose value is their id.
            Err(zk::Error::NoNode) => id.clone(),
            Err(e) => return Err(error::map("read value", e)),
        },
    };
    Ok(Some(LeaderInfo {
        id: String::from_utf8_lossy(&id).into_owned(),
        value,
        token: FencingToken(stat.czxid as u64),
    }))
}

pub(crate) async fn read_candidates(
    client: &zk::Client,
    layout: &Layout,
) -> Result<Vec<CandidateInfo>> {
    let children = match client.list_children(&layout.dir).await {
        Ok(children) => sorted_claims(children),
        Err(zk::Error::NoNode) => return Ok(Vec::new()),
        Err(e) => return Err(error::map("list claims", e)),
    };
    let mut list = Vec::with_capacity(children.len());
    for name in children {
        if let Some(info) = read_claim(client, layout, &name).await? {
            let leading = list.is_empty();
            list.push(CandidateInfo {
                id: info.id,
                value: info.value,
                leading,
            });
        }
    }
    Ok(list)
}

pub(crate) fn observe(
    sessions: Sessions,
    layout: Layout,
    closed: watch::Receiver<bool>,
) -> LeaderStream {
    let watcher = LeaderWatch {
        sessions,
        layout,
        armed: None,
    };
    elect_core::observe::leader_stream(closed, watcher)
}

/// Arms watches on the leader's znodes (or the election's children), then reads.
struct LeaderWatch {
    sessions: Sessions,
    layout: Layout,
    /// The watches the last read armed, and its session's clock.
    armed: Option<(Vec<zk::OneshotWatcher>, watch::Receiver<LeaseStatus>)>,
}

#[async_trait::async_trait]
impl WatchLeader for LeaderWatch {
    async fn read(&mut self) -> Result<Option<LeaderInfo>> {
        let session = (self.sessions)().await?;
        let client = session.client().map_err(|e| error::map("session", e))?;
        // Set the watches first, then read: a change in between fires them.
        let watches = arm(&client, &self.layout).await?;
        let leader = read_leader(&client, &self.layout).await?;
        self.armed = Some((watches, session.clock.watch()));
        Ok(leader.map(|(info, _)| info))
    }

    async fn changed(&mut self) -> Result<()> {
        if let Some((watches, mut lease)) = self.armed.take() {
            // Until a change, or the session is over (given up, expired): then the next one.
            tokio::select! {
                _ = futures::future::select_all(watches.into_iter().map(|w| Box::pin(w.changed()))) => {}
                _ = elect_core::clock::lease_ended(&mut lease) => {}
            }
        }
        Ok(())
    }
}

/// Watches on the election's children and on the first claim's znodes.
async fn arm(client: &zk::Client, layout: &Layout) -> Result<Vec<zk::OneshotWatcher>> {
    let mut watches = Vec::new();
    match client.list_and_watch_children(&layout.dir).await {
        Ok((children, watcher)) => {
            watches.push(watcher);
            if let Some(first) = sorted_claims(children).first() {
                for path in [Some(layout.claim(first)), layout.value_of(first)]
                    .into_iter()
                    .flatten()
                {
                    let (_, watcher) = client
                        .check_and_watch_stat(&path)
                        .await
                        .map_err(|e| error::map("watch leader", e))?;
                    watches.push(watcher);
                }
            }
        }
        Err(zk::Error::NoNode) => {
            let (_, watcher) = client
                .check_and_watch_stat(&layout.dir)
                .await
                .map_err(|e| error::map("watch election", e))?;
            watches.push(watcher);
        }
        Err(e) => return Err(error::map("watch claims", e)),
    }
    Ok(watches)
}
