//! Who holds the lock, and every change of it: a blocking query on the election's keys
//! (`.lock` and `.value`), re-read after every change or error.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use elect_core::{Error, FencingToken, LeaderInfo, LeaderStream, Result};
use tokio::sync::{mpsc, watch};

use crate::agent::{Agent, KvEntry, BACKEND};
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
    elect_core::backend::leader_stream(
        closed,
        move |tx| async move { follow(&agent, &keys, &tx).await },
    )
}

async fn follow(agent: &Agent, keys: &Keys, tx: &mpsc::Sender<Result<Option<LeaderInfo>>>) {
    let mut names = HashMap::new();
    let mut last: Option<Option<LeaderInfo>> = None;
    let mut failing = false;
    let mut index = 0;
    loop {
        let blocking = (index > 0).then_some((index, crate::WAIT));
        let read = agent.read(&keys.dir, true, blocking).await;
        let leader = match read {
            Ok((entries, new_index)) => {
                index = if new_index < index { 0 } else { new_index };
                leader_of(agent, keys, &entries, &mut names).await
            }
            Err(error) => Err(error),
        };
        match leader {
            Ok(now) => {
                failing = false;
                if last.as_ref() != Some(&now) {
                    if tx.send(Ok(now.clone())).await.is_err() {
                        return;
                    }
                    last = Some(now);
                }
            }
            Err(error) => {
                if !failing {
                    let report = Error::Unavailable {
                        backend: BACKEND,
                        source: error.to_string().into(),
                    };
                    if tx.send(Err(report)).await.is_err() {
                        return;
                    }
                }
                failing = true;
                last = None;
                index = 0;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}
