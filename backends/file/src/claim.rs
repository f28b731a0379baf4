//! The file backend's side of a term: the held lock.

use std::fs::File;
use std::sync::Mutex;
use std::time::Duration;

use elect_core::{
    Claim, ElectionName, Error, FencingToken, LossReason, NotLeaderReason, Result, TermControl,
};
use nix::fcntl::Flock;

use crate::layout::{io_error, same_file, write_durably, Layout};

#[derive(Debug)]
pub(crate) struct FileClaim {
    layout: Layout,
    election: ElectionName,
    token: FencingToken,
    /// The held lock; `None` once released.
    lock: Mutex<Option<Flock<File>>>,
}

impl FileClaim {
    pub(crate) fn new(
        layout: Layout,
        election: ElectionName,
        token: FencingToken,
        lock: Flock<File>,
    ) -> Self {
        FileClaim {
            layout,
            election,
            token,
            lock: Mutex::new(Some(lock)),
        }
    }

    /// Runs `f` while the claim provably stands: our lock is held and the lock file at its
    /// path is still the one we locked.
    fn while_held<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let lock = self.lock.lock().expect("file claim poisoned");
        match lock.as_ref() {
            Some(file) if same_file(file, &self.layout.lock) => f(),
            _ => Err(Error::NotLeader {
                election: self.election.clone(),
                reason: NotLeaderReason::RejectedByStore,
            }),
        }
    }

    fn holds(&self) -> bool {
        self.while_held(|| Ok(())).is_ok()
    }

    /// Releases the lock without touching the files (a crash, or a claim already deleted).
    pub(crate) fn unlock(&self) {
        self.lock.lock().expect("file claim poisoned").take();
    }

    /// Removes our leader record, then releases the lock, so that the record of a leader
    /// never outlives its lock.
    pub(crate) fn release_now(&self) -> Result<()> {
        let mut lock = self.lock.lock().expect("file claim poisoned");
        let cleared = match lock.as_ref() {
            Some(file) if same_file(file, &self.layout.lock) => {
                self.layout.clear_leader(self.token)
            }
            _ => Ok(()),
        };
        lock.take();
        cleared
    }
}

#[async_trait::async_trait]
impl Claim for FileClaim {
    async fn proclaim(&self, value: &[u8]) -> Result<()> {
        self.while_held(|| {
            let mut record = self.layout.read_leader()?.ok_or_else(|| Error::NotLeader {
                election: self.election.clone(),
                reason: NotLeaderReason::RejectedByStore,
            })?;
            record.value_hex = hex::encode(value);
            self.layout.write_leader(&record)
        })
    }

    async fn release(&self) -> Result<()> {
        self.release_now()
    }

    async fn fenced_put(&self, key: &str, value: &[u8]) -> Result<()> {
        let path = self.layout.data_path(key)?;
        self.while_held(|| write_durably(&path, value))
    }

    async fn fenced_get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let path = self.layout.data_path(key)?;
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error("read", &path, e)),
        }
    }
}

/// Ends the term when the lock file is deleted or replaced by hand: the lock we hold then
/// guards nothing, and the next candidate can lock a new file.
pub(crate) async fn watch_lock_file(
    claim: std::sync::Arc<FileClaim>,
    term: TermControl,
    poll: Duration,
) {
    let mut interval = tokio::time::interval(poll);
    loop {
        tokio::select! {
            _ = term.ended() => return,
            _ = interval.tick() => {}
        }
        if !claim.holds() {
            term.end(LossReason::Revoked);
            claim.unlock();
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lock_exclusive;

    /// With its lock file deleted by hand, a claim's lock guards nothing: the claim itself
    /// refuses fenced writes, whatever the handle believes.
    #[tokio::test]
    async fn a_claim_whose_lock_file_was_deleted_refuses_fenced_writes() {
        let dir = tempfile::tempdir().unwrap();
        let election: ElectionName = "fenced".parse().unwrap();
        let layout = Layout::new(dir.path(), &election);
        let lock = lock_exclusive(&layout, false)
            .unwrap()
            .expect("the lock is free");
        let claim = FileClaim::new(layout.clone(), election, FencingToken(1), lock);
        claim.fenced_put("k", b"before").await.unwrap();
        std::fs::remove_file(&layout.lock).unwrap();
        let late = claim.fenced_put("k", b"after").await;
        assert!(
            matches!(
                late,
                Err(Error::NotLeader {
                    reason: NotLeaderReason::RejectedByStore,
                    ..
                })
            ),
            "{late:?}"
        );
        assert_eq!(
            claim.fenced_get("k").await.unwrap().as_deref(),
            Some(&b"before"[..])
        );
    }
}
