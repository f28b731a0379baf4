//! The file backend's side of a term: the held lock.

use std::fs::File;
use std::sync::Mutex;
use std::time::Duration;

use elect_core::clock::LeaseClock;
use elect_core::{Claim, ElectionName, Error, FencingToken, LossReason, Result, TermControl};
use nix::fcntl::Flock;

use crate::error::io_error;
use crate::layout::{same_file, write_durably, Layout};

#[derive(Debug)]
pub(crate) struct FileClaim {
    layout: Layout,
    election: ElectionName,
    token: FencingToken,
    /// This term's own lease: it never expires, and it ends with `Revoked` when the lock file
    /// is deleted, so that [`Leadership::resign`](elect_core::Leadership::resign) still calls
    /// [`Claim::release`] afterwards: that is when the old lock is let go.
    lease: LeaseClock,
    hold: Mutex<Hold>,
}

/// Where a term's lock stands.
#[derive(Debug)]
enum Hold {
    /// Locked, and the lock file at the path is ours (unless someone just deleted it).
    Leading(Flock<File>),
    /// The lock file was deleted or replaced: the term is over, but its lock on the old file
    /// is kept while the term's work may still run, so that a successor waits for it (see
    /// [`crate::handover`]). Never read: dropping it unlocks.
    Revoked(#[allow(dead_code)] Flock<File>),
    Released,
}

/// What the watcher found.
enum Check {
    Held,
    /// Just revoked.
    Revoked,
    /// Revoked or released before.
    Over,
}

impl FileClaim {
    pub(crate) fn new(
        layout: Layout,
        election: ElectionName,
        token: FencingToken,
        lock: Flock<File>,
        lease: LeaseClock,
    ) -> Self {
        FileClaim {
            layout,
            election,
            token,
            lease,
            hold: Mutex::new(Hold::Leading(lock)),
        }
    }

    /// Runs `f` while the claim provably stands: our lock is held and the lock file at its
    /// path is still the one we locked.
    fn while_held<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let hold = self.hold.lock().expect("file claim poisoned");
        match &*hold {
            Hold::Leading(file) if same_file(file, &self.layout.lock) => f(),
            _ => Err(Error::rejected_by_store(&self.election)),
        }
    }

    /// Ends the term with `Revoked` if its lock file was deleted or replaced, keeping the lock
    /// of the old file.
    fn revoke_if_replaced(&self) -> Check {
        let mut hold = self.hold.lock().expect("file claim poisoned");
        match std::mem::replace(&mut *hold, Hold::Released) {
            Hold::Leading(file) if same_file(&file, &self.layout.lock) => {
                *hold = Hold::Leading(file);
                Check::Held
            }
            Hold::Leading(file) => {
                *hold = Hold::Revoked(file);
                drop(hold);
                self.lease.end(LossReason::Revoked);
                Check::Revoked
            }
            other => {
                *hold = other;
                Check::Over
            }
        }
    }

    pub(crate) fn is_revoked(&self) -> bool {
        matches!(
            *self.hold.lock().expect("file claim poisoned"),
            Hold::Revoked(_)
        )
    }

    /// Releases the lock without touching the files (a crash, or a claim already deleted).
    pub(crate) fn unlock(&self) {
        *self.hold.lock().expect("file claim poisoned") = Hold::Released;
    }

    /// Removes our leader record, then releases the lock, so that the record of a leader
    /// never outlives its lock.
    pub(crate) fn release_now(&self) -> Result<()> {
        let mut hold = self.hold.lock().expect("file claim poisoned");
        let cleared = match &*hold {
            Hold::Leading(file) if same_file(file, &self.layout.lock) => {
                self.layout.clear_leader(self.token)
            }
            _ => Ok(()),
        };
        *hold = Hold::Released;
        cleared
    }
}

#[async_trait::async_trait]
impl Claim for FileClaim {
    async fn proclaim(&self, value: &[u8]) -> Result<()> {
        self.while_held(|| {
            let mut record = self
                .layout
                .read_leader()?
                .ok_or_else(|| Error::rejected_by_store(&self.election))?;
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
/// guards nothing, and the next candidate can lock a new file. The lock of the old file is
/// kept until the term is resigned or dropped (see [`crate::handover`]).
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
        match claim.revoke_if_replaced() {
            Check::Held => continue,
            Check::Over => return,
            Check::Revoked => {
                tracing::warn!(
                    election = claim.election.as_str(),
                    token = claim.token.get(),
                    lock = %claim.layout.lock.display(),
                    "the lock file was deleted or replaced: the term is over; its lock on the old file is held until the term is resigned, so that no successor leads before then"
                );
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lock_exclusive;
    use elect_core::NotLeaderReason;

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
        let claim = FileClaim::new(
            layout.clone(),
            election,
            FencingToken(1),
            lock,
            LeaseClock::unbounded(),
        );
        claim.fenced_put("k", b"before").await.unwrap();
        std::fs::remove_file(&layout.lock).unwrap();
        let late = claim.fenced_put("k", b"after").await;
        assert_eq!(
            late.err().and_then(|e| e.not_leader_reason()),
            Some(NotLeaderReason::RejectedByStore)
        );
        assert_eq!(
            claim.fenced_get("k").await.unwrap().as_deref(),
            Some(&b"before"[..])
        );
    }
}
