//! Pieces every session-based backend needs, written once: the elector's state (one live
//! session, made again once it is over; the closed flag; the terms it granted), a guard that
//! undoes a half-done campaign when its future is dropped, and the plumbing of an observer
//! task into a [`LeaderStream`].

use std::future::Future;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use futures::StreamExt;
use tokio::sync::{mpsc, watch};

use crate::error::{Error, Result};
use crate::leadership::{LossReason, TermControl};
use crate::{LeaderInfo, LeaderStream};

/// A backend's session: an etcd lease, a Consul session, a ZooKeeper session.
pub trait Session: Send + Sync {
    /// True once the session can carry no claim any more (expired, revoked, closed).
    fn is_over(&self) -> bool;
}

/// The state of one elector: its session `S` and the claims `C` of the terms it granted.
#[derive(Debug)]
pub struct ElectorState<S, C> {
    backend: &'static str,
    session: tokio::sync::Mutex<Option<Arc<S>>>,
    closed: watch::Sender<bool>,
    terms: Mutex<Vec<(TermControl, Arc<C>)>>,
}

impl<S: Session, C> ElectorState<S, C> {
    /// The state of a new elector of `backend`, with a session already made or none yet.
    pub fn new(backend: &'static str, session: Option<S>) -> Self {
        ElectorState {
            backend,
            session: tokio::sync::Mutex::new(session.map(Arc::new)),
            closed: watch::channel(false).0,
            terms: Mutex::new(Vec::new()),
        }
    }

    /// [`Error::Closed`] once the elector was closed.
    pub fn check_open(&self) -> Result<()> {
        if *self.closed.borrow() {
            return Err(Error::Closed {
                backend: self.backend,
            });
        }
        Ok(())
    }

    /// Resolves when the elector is closed.
    pub fn closed(&self) -> watch::Receiver<bool> {
        self.closed.subscribe()
    }

    /// The live session, or a new one from `create` if there is none or it is over.
    pub async fn session<F, Fut>(&self, create: F) -> Result<Arc<S>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<S>>,
    {
        let mut slot = self.session.lock().await;
        if let Some(session) = slot.as_ref() {
            if !session.is_over() {
                return Ok(session.clone());
            }
        }
        self.check_open()?;
        let session = Arc::new(create().await?);
        *slot = Some(session.clone());
        Ok(session)
    }

    /// The current session, over or not, if one was made.
    pub async fn current(&self) -> Option<Arc<S>> {
        self.session.lock().await.clone()
    }

    /// Takes the session out, so that the caller can end it.
    pub async fn take_session(&self) -> Option<Arc<S>> {
        self.session.lock().await.take()
    }

    /// Keeps a granted term, so that closing the elector can end it.
    pub fn register(&self, term: TermControl, claim: Arc<C>) {
        let mut terms = self.terms.lock().expect("elector state poisoned");
        terms.retain(|(term, _)| !term.is_ended());
        terms.push((term, claim));
    }

    /// Closes: every later call is [`Error::Closed`], every term ends with `ShutDown`.
    /// Returns the claims, for the backend to release.
    pub fn shut(&self) -> Vec<Arc<C>> {
        self.closed.send_replace(true);
        let terms = std::mem::take(&mut *self.terms.lock().expect("elector state poisoned"));
        terms
            .into_iter()
            .map(|(term, claim)| {
                term.end(LossReason::ShutDown);
                claim
            })
            .collect()
    }
}

/// How long a term's watch on its own claim may outlive the term: until the release's delete
/// fires it.
pub const OWN_WATCH_LINGER: std::time::Duration = std::time::Duration::from_secs(5);

/// Keeps a term's watch on its own claim (`watch`, the pending wait) open after the term
/// ended, until it fires or [`OWN_WATCH_LINGER`] passes. Dropping it at once sends a cancel
/// (ZooKeeper: `removeWatches`) that the server handles before the release's delete on the
/// same session: ~3 ms added to every ZooKeeper handover.
pub async fn linger<F: Future>(watch: F) {
    let _ = tokio::time::timeout(OWN_WATCH_LINGER, watch).await;
}

/// Runs a future in the background when dropped, unless disarmed: withdraws the claim of a
/// campaign whose future is dropped half-way (cancel safety).
pub struct OnDrop(Option<BoxFuture<'static, ()>>);

impl std::fmt::Debug for OnDrop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnDrop")
            .field("armed", &self.0.is_some())
            .finish()
    }
}

impl OnDrop {
    /// Armed with `undo`.
    pub fn new(undo: impl Future<Output = ()> + Send + 'static) -> Self {
        OnDrop(Some(Box::pin(undo)))
    }

    /// The campaign finished: nothing to undo.
    pub fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for OnDrop {
    fn drop(&mut self) {
        if let Some(undo) = self.0.take() {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(undo);
            }
        }
    }
}

/// A [`LeaderStream`] fed by a task: `follow` sends every change; the task ends when the
/// elector is closed or the stream is dropped.
pub fn leader_stream<F, Fut>(mut closed: watch::Receiver<bool>, follow: F) -> LeaderStream
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
