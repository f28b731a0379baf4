//! Who leads, and every change of it.
//!
//! The leader is the key with the smallest create revision under the election's prefix. An
//! observer reads it, then watches only that key (a proclaim or its deletion is the next
//! change) — or, with no leader, the prefix for the first candidate. A broken, cancelled or
//! compacted watch is never trusted: the observer re-reads, so the last item is the truth.

use elect_core::observe::WatchLeader;
use elect_core::{ElectionName, FencingToken, LeaderInfo, LeaderStream, Result};
use etcd_client::{Client, GetOptions, SortOrder, SortTarget, WatchOptions};
use tokio::sync::watch;

use crate::error;
use crate::keys;

/// The leader as of the returned revision, and its key.
pub(crate) async fn read_leader(
    client: &Client,
    namespace: &str,
    election: &ElectionName,
) -> Result<(Option<LeaderInfo>, Option<Vec<u8>>, i64)> {
    let prefix = keys::prefix(namespace, election.as_str());
    let options = GetOptions::new()
        .with_prefix()
        .with_sort(SortTarget::Create, SortOrder::Ascend)
        .with_limit(1);
    let response = error::get(client, "read leader", prefix.as_str(), Some(options)).await?;
    let revision = response.header().map_or(0, |h| h.revision());
    let Some(kv) = response.kvs().first() else {
        return Ok((None, None, revision));
    };
    let lease = keys::lease_hex(&prefix, kv.key())
        .unwrap_or_default()
        .to_owned();
    let id_key = format!("{}{lease}", keys::id_prefix(namespace, election.as_str()));
    let id_options = GetOptions::new().with_revision(revision);
    let id = error::get(client, "read leader id", id_key.as_str(), Some(id_options)).await?;
    // A Go or etcdctl candidate has no id key: its lease stands for it.
    let id = id
        .kvs()
        .first()
        .map(|kv| String::from_utf8_lossy(kv.value()).into_owned())
        .unwrap_or(lease);
    let leader = LeaderInfo {
        id,
        value: kv.value().to_vec(),
        token: FencingToken(kv.create_revision() as u64),
    };
    Ok((Some(leader), Some(kv.key().to_vec()), revision))
}

pub(crate) fn observe(
    client: Client,
    namespace: String,
    election: ElectionName,
    closed: watch::Receiver<bool>,
) -> LeaderStream {
    let watcher = LeaderWatch {
        client,
        namespace,
        election,
        next: None,
    };
    elect_core::observe::leader_stream(closed, watcher)
}

/// Reads the leader, then watches only its key — or, with no leader, the prefix.
struct LeaderWatch {
    client: Client,
    namespace: String,
    election: ElectionName,
    /// What the last read said to watch, and from which revision.
    next: Option<(Vec<u8>, WatchOptions, i64)>,
}

#[async_trait::async_trait]
impl WatchLeader for LeaderWatch {
    async fn read(&mut self) -> Result<Option<LeaderInfo>> {
        let (leader, key, revision) =
            read_leader(&self.client, &self.namespace, &self.election).await?;
        self.next = Some(match key {
            Some(key) => (key, WatchOptions::new(), revision + 1),
            None => (
                keys::prefix(&self.namespace, self.election.as_str()).into_bytes(),
                WatchOptions::new().with_prefix(),
                revision + 1,
            ),
        });
        Ok(leader)
    }

    async fn changed(&mut self) -> Result<()> {
        match self.next.take() {
            Some((key, options, from)) => watch_once(&self.client, key, options, from).await,
            None => Ok(()),
        }
    }
}

/// Returns at the first event (or cancellation) after `from_revision`.
async fn watch_once(
    client: &Client,
    key: Vec<u8>,
    options: WatchOptions,
    from_revision: i64,
) -> Result<()> {
    let options = options.with_start_revision(from_revision);
    let mut watch = error::Watch::open(client, "observe".to_owned(), key, options).await?;
    loop {
        let message = watch.message().await?;
        if message.canceled() || !message.events().is_empty() {
            return Ok(());
        }
    }
}
