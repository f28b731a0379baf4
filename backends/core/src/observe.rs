//! The observer loop, written once for every backend: the backend says how to read who leads
//! and how to wait for the next change ([`WatchLeader`]); [`leader_stream`] reports each new
//! leader once, reports the first error of an outage with its own kind, and reads again after
//! every change, error or broken watch — so the stream's last item is the truth.
//!
//! ```
//! use elect_core::observe::{leader_stream, WatchLeader};
//! use elect_core::{LeaderInfo, Result};
//! use futures::StreamExt;
//!
//! /// Nobody ever leads, and nothing ever changes.
//! struct Empty;
//!
//! #[async_trait::async_trait]
//! impl WatchLeader for Empty {
//!     async fn read(&mut self) -> Result<Option<LeaderInfo>> {
//!         Ok(None)
//!     }
//!     async fn changed(&mut self) -> Result<()> {
//!         std::future::pending().await
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let (_closed, closing) = tokio::sync::watch::channel(false);
//! let mut leaders = leader_stream(closing, Empty);
//! assert_eq!(leaders.next().await.unwrap().unwrap(), None);
//! # }
//! ```

use std::future::Future;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::{mpsc, watch};

use crate::error::{Error, Result};
use crate::{LeaderInfo, LeaderStream};

/// How one backend follows an election's leader.
#[async_trait::async_trait]
pub trait WatchLeader: Send + 'static {
    /// Reads who leads now. Arm whatever tells of the next change *before* reading, so that a
    /// change in between is not missed. [`Error::Closed`] ends the stream.
    async fn read(&mut self) -> Result<Option<LeaderInfo>>;

    /// Returns once the leader may have changed since the last read. An error (a broken
    /// watch) is not reported: the leader is read again, and a read that fails is.
    async fn changed(&mut self) -> Result<()>;
}

/// How soon a failed read is tried again.
pub const READ_RETRY: Duration = Duration::from_millis(200);
/// How soon the leader is read again after a watch broke.
pub const WATCH_RETRY: Duration = Duration::from_millis(100);

/// The stream of leaders `watcher` sees, until `closed` turns true or the stream is dropped.
pub fn leader_stream<W: WatchLeader>(closed: watch::Receiver<bool>, watcher: W) -> LeaderStream {
    stream_from_task(closed, move |tx| follow(watcher, tx))
}

/// Runs `follow` on its own task, feeding the returned stream, until `closed` turns true or
/// the stream is dropped.
fn stream_from_task<F, Fut>(mut closed: watch::Receiver<bool>, follow: F) -> LeaderStream
where
    F: FnOnce(mpsc::Sender<Result<Option<LeaderInfo>>>) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(16);
    let watching = tx.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = follow(tx) => {}
            _ = closed.wait_for(|c| *c) => {}
            _ = watching.closed() => {}
        }
    });
    futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
    .boxed()
}

async fn follow<W: WatchLeader>(mut watcher: W, tx: mpsc::Sender<Result<Option<LeaderInfo>>>) {
    // None until something was reported, and after an error: the next reading is then
    // reported even if it equals the one before the error.
    let mut last: Option<Option<LeaderInfo>> = None;
    let mut failing = false;
    loop {
        match watcher.read().await {
            Ok(now) => {
                failing = false;
                if last.as_ref() != Some(&now) {
                    if tx.send(Ok(now.clone())).await.is_err() {
                        return;
                    }
                    last = Some(now);
                }
                if let Err(error) = watcher.changed().await {
                    tracing::debug!(%error, "observe: the watch broke; reading again");
                    tokio::time::sleep(WATCH_RETRY).await;
                }
            }
            Err(Error::Closed { .. }) => return,
            Err(error) => {
                // Once per outage, with its own kind (a permission error is not "unreachable").
                if !failing && tx.send(Err(error)).await.is_err() {
                    return;
                }
                failing = true;
                last = None;
                tokio::time::sleep(READ_RETRY).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FencingToken;
    use std::collections::VecDeque;

    /// Reads what the test queued; each change is one queued read away.
    struct Scripted(VecDeque<Result<Option<LeaderInfo>>>);

    #[async_trait::async_trait]
    impl WatchLeader for Scripted {
        async fn read(&mut self) -> Result<Option<LeaderInfo>> {
            match self.0.pop_front() {
                Some(read) => read,
                None => std::future::pending().await,
            }
        }
        async fn changed(&mut self) -> Result<()> {
            Ok(())
        }
    }

    fn leader(id: &str, token: u64) -> Option<LeaderInfo> {
        Some(LeaderInfo {
            id: id.into(),
            value: id.as_bytes().to_vec(),
            token: FencingToken(token),
        })
    }

    fn denied() -> Error {
        Error::PermissionDenied {
            backend: "test",
            operation: "read leader".into(),
            source: "no".into(),
        }
    }

    async fn items(reads: Vec<Result<Option<LeaderInfo>>>, count: usize) -> Vec<String> {
        let (_closing, closed) = watch::channel(false);
        let stream = leader_stream(closed, Scripted(reads.into()));
        tokio::time::timeout(
            Duration::from_secs(10),
            stream.take(count).collect::<Vec<_>>(),
        )
        .await
        .expect("the stream yields every item")
        .into_iter()
        .map(|item| match item {
            Ok(Some(info)) => format!("{}@{}", info.id, info.token.0),
            Ok(None) => "nobody".into(),
            Err(error) => format!("error: {}", error_kind(&error)),
        })
        .collect()
    }

    fn error_kind(error: &Error) -> &'static str {
        match error {
            Error::PermissionDenied { .. } => "permission denied",
            Error::Unavailable { .. } => "unavailable",
            _ => "other",
        }
    }

    #[tokio::test(start_paused = true)]
    async fn each_leader_is_reported_once() {
        let reads = vec![
            Ok(None),
            Ok(leader("a", 1)),
            Ok(leader("a", 1)),
            Ok(leader("b", 2)),
        ];
        assert_eq!(items(reads, 3).await, ["nobody", "a@1", "b@2"]);
    }

    #[tokio::test(start_paused = true)]
    async fn errors_keep_their_kind_are_reported_once_per_outage_and_reset_the_last_leader() {
        let reads = vec![
            Ok(leader("a", 1)),
            Err(denied()),
            Err(denied()),
            Ok(leader("a", 1)),
        ];
        assert_eq!(
            items(reads, 3).await,
            ["a@1", "error: permission denied", "a@1"]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_closed_elector_ends_the_stream() {
        let reads = vec![Ok(leader("a", 1)), Err(Error::Closed { backend: "test" })];
        let (_closing, closed) = watch::channel(false);
        let stream = leader_stream(closed, Scripted(reads.into()));
        let all: Vec<_> = tokio::time::timeout(Duration::from_secs(10), stream.collect())
            .await
            .expect("the stream ends");
        assert_eq!(all.len(), 1);
    }
}
