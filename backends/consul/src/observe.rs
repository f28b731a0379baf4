//! Who holds the lock, and every change of it: a blocking query on the election's keys
//! (`.lock` and `.value`), re-read after every change or error.

use std::collections::HashMap;
use std::sync::Arc;

use elect_core::observe::WatchLeader;
use elect_core::{FencingToken, LeaderInfo, LeaderStream, Result};
use tokio::sync::watch;

use crate::agent::{Agent, KvEntry};
use crate::claim::Keys;

/// The leader shown by `entries` (the election's keys). The id is `.id`'s when it was written
/// with the lock (same `ModifyIndex`), else the holder session's name (`consul lock`, and
/// `elect` before `.id`, name sessions after their candidate); `names` caches those.
pub(crate) async fn leader_of(
    agent: &Agent,
    keys: &Keys,
    entries: &[KvEntry],
    names: &mut HashMap<String, String>,
) -> Result<Option<LeaderInfo>> {
    let Some(lock) = entries.iter().find(|e| e.key == keys.lock) else {
        return Ok(None);
    };
    let Some(holder) = lock.holder() else {
        return Ok(None);
    };
    let written_with_lock = entries
        .iter()
        .find(|e| e.key == keys.id && e.modify_index == lock.modify_index);
    let id = match (written_with_lock, names.get(holder)) {
        (Some(entry), _) => String::from_utf8_lossy(&entry.bytes()).into_owned(),
        (None, Some(name)) => name.clone(),
        (None, None) => {
            let name = agent
                .session_name(holder)
                .await?
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| holder.to_owned());
            names.insert(holder.to_owned(), name.clone());
            name
        }
    };
    // A value proclaimed during this term (written after the acquire) wins over the lock's.
    let value = entries
        .iter()
        .find(|e| e.key == keys.value && e.modify_index > lock.modify_index)
        .map_or_else(|| lock.bytes(), KvEntry::bytes);
    Ok(Some(LeaderInfo {
        id,
        value,
        token: FencingToken(lock.modify_index),
    }))
}

pub(crate) fn observe(
    agent: Arc<Agent>,
    keys: Keys,
    closed: watch::Receiver<bool>,
) -> LeaderStream {
    let watcher = LeaderWatch {
        agent,
        keys,
        names: HashMap::new(),
        index: 0,
    };
    elect_core::observe::leader_stream(closed, watcher)
}

/// A blocking query on the election's keys: each read waits for a change past the last one.
struct LeaderWatch {
    agent: Arc<Agent>,
    keys: Keys,
    names: HashMap<String, String>,
    /// The index of the last read, 0 for a read that does not block.
    index: u64,
}

#[async_trait::async_trait]
impl WatchLeader for LeaderWatch {
    async fn read(&mut self) -> Result<Option<LeaderInfo>> {
        let blocking = (self.index > 0).then_some((self.index, crate::WAIT));
        let read = self.agent.read(&self.keys.dir, true, blocking).await;
        let leader = match read {
            Ok((entries, index)) => {
                // An index that went back (a restored snapshot) starts over.
                self.index = if index < self.index { 0 } else { index };
                leader_of(&self.agent, &self.keys, &entries, &mut self.names).await
            }
            Err(error) => Err(error),
        };
        if leader.is_err() {
            self.index = 0;
        }
        leader
    }

    /// The next read blocks until a change.
    async fn changed(&mut self) -> Result<()> {
        Ok(())
    }
}
