//! # elect-zookeeper: leader election on ZooKeeper ephemeral sequential znodes
//!
//! Curator's `LeaderLatch` recipe, so that Curator latches, kazoo elections told about
//! `-latch-` names, and `elect` stand in one election (see the `layout` module), with the known
//! failures fixed:
//!
//! * **Protected create** — the claim's name carries a fresh UUID; after a create whose answer
//!   was lost, we look for our node by that UUID before creating again, so no ghost claim
//!   blocks the election until the session dies.
//! * **Ownership check** — before leading, our node's `ephemeralOwner` must be our session
//!   (Curator's fix for CURATOR-696).
//! * **No herd** — a waiter watches only its predecessor, and re-lists when it goes; the next
//!   in line also watches its own claim, and leads on its predecessor's deletion without
//!   re-listing when that watch has not fired (events come in the order of the changes).
//! * **Suspended vs lost** — a disconnection suspends the term (the deadline keeps running);
//!   reconnected in time it leads again; past the deadline or with the session expired it is
//!   lost, and the next campaign builds a new client (an expired one is final).
//! * **Token** — the claim's `czxid`, from a plain `create` (3.8.0 returns an invalid stat
//!   inside `multi`).
//! * **Fenced writes** — a `multi` with a check on our claim plus the write.
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

mod claim;
mod error;
mod layout;
mod observe;
mod session;

use std::sync::Arc;
use std::time::Duration;

use elect_core::backend::{Campaign, Candidacy, ElectorState, Line, OnDrop, Session as _, Turn};
use elect_core::config::ZookeeperConfig;
use elect_core::{
    Candidate, CandidateInfo, ElectionName, Elector, Error, FencingToken, LeaderInfo, LeaderStream,
    Leadership, LossReason, Result,
};
use futures::FutureExt as _;
use zookeeper_client as zk;

use claim::{Acls, ZkClaim};
use error::BACKEND;
use layout::{claim_prefix, sorted_claims, uuid_of, uuid_v4, Layout};
use session::{Session, SessionClient};

pub use session::DEFAULT_PORT;

/// Leader election on a ZooKeeper ensemble: one session per elector, shared by all its
/// campaigns.
///
/// ```no_run
/// # async fn demo() -> elect_core::Result<()> {
/// use elect_core::config::ZookeeperConfig;
/// use elect_core::{Candidate, Elector};
/// use elect_zookeeper::ZookeeperElector;
/// let config = ZookeeperConfig::new(vec!["127.0.0.1:2181".parse()?]);
/// let elector = ZookeeperElector::connect(&config).await?;
/// let leadership = elector.campaign(&"billing".parse()?, &Candidate::generated()).await?;
/// println!("leading with token {}", leadership.token());
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct ZookeeperElector {
    config: ZookeeperConfig,
    acls: Acls,
    state: Arc<ElectorState<Session, ZkClaim>>,
}

impl ZookeeperElector {
    /// Connects (one session) and checks that the ensemble answers.
    pub async fn connect(config: &ZookeeperConfig) -> Result<Self> {
        config.validate()?;
        let elector = ZookeeperElector::new(config, None);
        elector.session().await?;
        Ok(elector)
    }

    fn new(config: &ZookeeperConfig, session: Option<Arc<Session>>) -> Self {
        ZookeeperElector {
            config: config.clone(),
            acls: if config.auth.is_some() {
                Acls::CreatorAllAnyoneRead
            } else {
                Acls::Open
            },
            state: Arc::new(ElectorState::new(BACKEND, session)),
        }
    }

    /// An elector on a client you already have: its session is shared (its claims, too, end
    /// with it). `config` gives the drift margin and root, and the endpoints for a new session
    /// after this one expires. Many electors can share one client: those with the same drift
    /// margin and tick time share one check of the session (a `sync` every third of the
    /// timeout) and one deadline, however many there are.
    /// The config is checked as [`ZookeeperConfig::validate`] does.
    pub fn with_client(client: zk::Client, config: &ZookeeperConfig) -> Result<Self> {
        config.validate()?;
        // When the server last heard this client is unknown; the library pings an idle
        // session every third of its timeout, so count from half a timeout ago.
        let now = elect_core::clock::now();
        let heard = now.checked_sub(client.session_timeout() / 2).unwrap_or(now);
        let session = Session::shared(client, heard, config);
        Ok(ZookeeperElector::new(config, Some(session)))
    }

    /// The negotiated session timeout of the current session.
    pub async fn session_timeout(&self) -> Option<Duration> {
        self.state
            .current()
            .await
            .and_then(|s| s.client().ok())
            .map(|client| client.session_timeout())
    }

    /// The client of the current session, if one is open (for tools and tests). A clone you
    /// keep keeps the session open after the elector gives it up: drop it.
    pub async fn client(&self) -> Option<zk::Client> {
        self.state.current().await.and_then(|s| s.client().ok())
    }

    /// The current session's id, if one is open.
    pub async fn session_id(&self) -> Option<i64> {
        self.state.current().await.map(|s| s.id)
    }

    async fn session(&self) -> Result<Arc<Session>> {
        self.state.session(|| Session::connect(&self.config)).await
    }

    /// The live session's client, for one request.
    async fn live_client(&self) -> Result<zk::Client> {
        self.session()
            .await?
            .client()
            .map_err(|e| error::map("session", e))
    }

    fn layout(&self, election: &ElectionName) -> Layout {
        Layout::new(&self.config.root, election.as_str())
    }

    /// Creates our claim in protected mode; returns its name and czxid, or `None` when the
    /// session is gone.
    async fn create_claim(
        &self,
        session: &Session,
        layout: &Layout,
        uuid: &str,
        candidate: &Candidate,
    ) -> Result<Option<(String, i64)>> {
        let Ok(client) = session.client() else {
            return Ok(None);
        };
        let client = &client;
        let prefix = layout.claim(&claim_prefix(uuid));
        let options = self.acls.options(zk::CreateMode::EphemeralSequential);
        let dir_options = self.acls.options(zk::CreateMode::Persistent);
        for _attempt in 0..10 {
            let created = tokio::time::timeout(
                error::CALL_TIMEOUT,
                client.create(&prefix, candidate.id().as_bytes(), &options),
            )
            .await;
            match created {
                Ok(Ok((stat, sequence))) => {
                    let name = format!("{}{sequence}", claim_prefix(uuid));
                    return Ok(Some((name, stat.czxid)));
                }
                Ok(Err(zk::Error::NoNode)) => {
                    error::call(
                        "create election directory",
                        client.mkdir(&layout.dir, &dir_options),
                    )
                    .await?;
                    continue;
                }
                Ok(Err(e)) if session::is_session_gone(&e) => return Ok(None),
                Ok(Err(
                    e @ (zk::Error::NoAuth | zk::Error::InvalidAcl | zk::Error::AuthFailed),
                )) => return Err(error::map(format!("create {prefix}"), e)),
                // The answer was lost: the node may exist. Find it by our UUID before trying
                // again, so that no ghost claim is left behind.
                Ok(Err(_)) | Err(_) => {
                    if session.is_over() {
                        return Ok(None);
                    }
                    if let Some(found) = self.find_own(session, layout, uuid).await? {
                        return Ok(Some(found));
                    }
                }
            }
        }
        Err(Error::Unavailable {
            backend: BACKEND,
            source: format!("create {prefix}: no answer after 10 attempts").into(),
        })
    }

    /// Our claim by its UUID, if the ensemble has it.
    async fn find_own(
        &self,
        session: &Session,
        layout: &Layout,
        uuid: &str,
    ) -> Result<Option<(String, i64)>> {
        // A listing that failed is not "not there": the first create may still be queued in
        // the client. Ask until the ensemble answers (or the session is over).
        let Ok(client) = session.client() else {
            return Ok(None);
        };
        let children = loop {
            match error::call("list claims", client.list_children(&layout.dir)).await {
                Ok(children) => break children,
                Err(Error::Backend { ref source, .. }) if claim::is(source, &zk::Error::NoNode) => {
                    return Ok(None)
                }
                Err(_) if session.is_over() => return Ok(None),
                Err(error) => {
                    tracing::debug!(%error, "looking for our claim: no answer; asking again");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        };
        let Some(name) = children.into_iter().find(|c| c.contains(uuid)) else {
            return Ok(None);
        };
        match error::call("stat own claim", client.check_stat(&layout.claim(&name))).await? {
            Some(stat) if stat.ephemeral_owner == session.id => Ok(Some((name, stat.czxid))),
            _ => Ok(None),
        }
    }

    /// Writes the value of the claim to come when it differs from the id (the claim's data).
    async fn write_value(
        &self,
        session: &Session,
        layout: &Layout,
        uuid: &str,
        candidate: &Candidate,
    ) -> Result<()> {
        if candidate.value() == candidate.id().as_bytes() {
            return Ok(());
        }
        let options = self.acls.options(zk::CreateMode::Ephemeral);
        let path = layout.value(uuid);
        let client = session
            .client()
            .map_err(|e| error::map(format!("create {path}"), e))?;
        for _ in 0..2 {
            match error::call(
                &format!("create {path}"),
                client.create(&path, candidate.value(), &options),
            )
            .await
            {
                Ok(_) => return Ok(()),
                Err(Error::Backend { source, .. }) if claim::is(&source, &zk::Error::NoNode) => {
                    let dir_options = self.acls.options(zk::CreateMode::Persistent);
                    error::call(
                        "create values directory",
                        client.mkdir(&layout.values, &dir_options),
                    )
                    .await?;
                }
                Err(Error::Backend { source, .. })
                    if claim::is(&source, &zk::Error::NodeExists) =>
                {
                    return Ok(())
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// The claims in order and our node's stat (`None`: gone), in one multi-read: one round
    /// trip after each predecessor's delete instead of two.
    async fn look(
        &self,
        session: &Session,
        layout: &Layout,
        name: &str,
    ) -> std::result::Result<(Vec<String>, Option<zk::Stat>), zk::Error> {
        let client = session.client()?;
        let mut reader = client.new_multi_reader();
        reader.add_get_children(&layout.dir)?;
        reader.add_get_data(&layout.claim(name))?;
        let mut results = reader.commit().await?.into_iter();
        let children = match results.next() {
            Some(zk::MultiReadResult::Children { children }) => sorted_claims(children),
            Some(zk::MultiReadResult::Error { err }) => return Err(err),
            other => return Err(unexpected(other)),
        };
        let own = match results.next() {
            Some(zk::MultiReadResult::Data { stat, .. }) => Some(stat),
            Some(zk::MultiReadResult::Error {
                err: zk::Error::NoNode,
            }) => None,
            Some(zk::MultiReadResult::Error { err }) => return Err(err),
            other => return Err(unexpected(other)),
        };
        Ok((children, own))
    }
}

/// A multi-read answer that does not match its request.
fn unexpected(result: Option<zk::MultiReadResult>) -> zk::Error {
    zk::Error::UnexpectedError(format!("multi-read answered {result:?}"))
}

/// ZooKeeper's requests for a campaign in line; core's [`ElectorState::campaign_in_line`]
/// runs the campaign. A private view of the elector, so that its callers cannot join by hand.
struct Queue<'a>(&'a ZookeeperElector);

#[async_trait::async_trait]
impl Line for Queue<'_> {
    type Session = Session;
    /// Our claim's layout, name and czxid.
    type Place = (Layout, String, i64);
    /// The watch on our own claim that the next in line set while it waited, when it led
    /// without another look: the term goes on watching with it, no new request.
    type Seen = Option<claim::OwnClaimChanged>;

    async fn session(&self) -> Result<Arc<Session>> {
        self.0.session().await
    }

    async fn join(&self, at: &Campaign<'_, Session>) -> Result<Option<(Self::Place, OnDrop)>> {
        let (elector, session, candidate) = (self.0, &at.session, at.candidate);
        let layout = elector.layout(at.election);
        let uuid = uuid_v4();
        let guard = withdraw_on_drop(at.candidacy, session, &layout, &uuid);
        elector
            .write_value(session, &layout, &uuid, candidate)
            .await?;
        let created = elector
            .create_claim(session, &layout, &uuid, candidate)
            .await?;
        let Some((name, czxid)) = created else {
            guard.disarm();
            return Ok(None);
        };
        Ok(Some(((layout, name, czxid), guard)))
    }

    /// Waits until our claim is the lowest; watches only the predecessor (and, next in line,
    /// our own claim).
    async fn wait_turn(
        &self,
        at: &Campaign<'_, Session>,
        (layout, name, _): &Self::Place,
    ) -> Result<Turn<Self::Seen>> {
        let (elector, session) = (self.0, &at.session);
        let mut lease = session.clock.watch();
        loop {
            if session.is_over() {
                return Ok(Turn::SessionOver);
            }
            let (children, own) = match elector.look(session, layout, name).await {
                Ok(look) => look,
                Err(e) if session::is_session_gone(&e) => return Ok(Turn::SessionOver),
                Err(e) => return Err(error::map("list claims", e)),
            };
            // CURATOR-696: lead only on a node our session owns.
            match own {
                None => return Ok(Turn::ClaimGone),
                Some(stat) if stat.ephemeral_owner != session.id => return Ok(Turn::SessionOver),
                Some(_) => {}
            }
            let Some(position) = children.iter().position(|c| c == name) else {
                return Ok(Turn::ClaimGone);
            };
            if position == 0 {
                return Ok(Turn::Lead(None));
            }
            let predecessor = layout.claim(&children[position - 1]);
            let predecessor_has_our_uuid = uuid_of(&children[position - 1]) == uuid_of(name);
            // The list is the whole election: held while waiting, every waiter would cost
            // O(n) memory.
            drop(children);
            let Ok(client) = session.client() else {
                return Ok(Turn::SessionOver);
            };
            // Next in line, the predecessor leads (no claim can come before it: sequences only
            // grow), and its deletion is our turn if our own claim still stands. A watch on
            // our claim, set before the predecessor's, tells without another look: ZooKeeper
            // delivers a session's watch events in the order of the changes. Not across a
            // reconnection (watches set again fire in no such order): then we look again.
            let next_in_line = if position == 1 {
                let states = client.state_watcher();
                match client.check_and_watch_stat(&layout.claim(name)).await {
                    Ok((Some(_), own)) => Some((states, own)),
                    Ok((None, _)) => return Ok(Turn::ClaimGone),
                    Err(e) if session::is_session_gone(&e) => return Ok(Turn::SessionOver),
                    Err(e) => return Err(error::map("watch own claim", e)),
                }
            } else {
                None
            };
            let watched = tokio::select! {
                _ = elect_core::clock::lease_ended(&mut lease) => return Ok(Turn::SessionOver),
                watched = client.check_and_watch_stat(&predecessor) => watched,
            };
            match watched {
                Ok((None, _)) => continue,
                // Ours too: a create of this campaign that was still queued when a lookup
                // gave up (see `find_own`): it carries our UUID, or — on a session this
                // elector made alone, where one candidacy per election leaves nothing else of
                // ours standing — any claim of our session. (Electors on a shared client
                // campaign side by side on one session.)
                Ok((Some(stat), _))
                    if stat.ephemeral_owner == session.id
                        && (session.owned || predecessor_has_our_uuid) =>
                {
                    tracing::info!(
                        path = predecessor.as_str(),
                        "a stray claim of our own session is ahead of us: deleting it"
                    );
                    match error::call(
                        "delete stray claim",
                        client.delete(&predecessor, Some(stat.version)),
                    )
                    .await
                    {
                        Ok(()) => {}
                        Err(Error::Backend { ref source, .. })
                            if claim::is(source, &zk::Error::NoNode)
                                || claim::is(source, &zk::Error::BadVersion) => {}
                        Err(e) => return Err(e),
                    }
                    continue;
                }
                Ok((Some(_), watcher)) => {
                    let event = tokio::select! {
                        _ = elect_core::clock::lease_ended(&mut lease) => return Ok(Turn::SessionOver),
                        event = watcher.changed() => event,
                    };
                    if let Some((mut states, own)) = next_in_line {
                        let mut own: claim::OwnClaimChanged = Box::pin(own.changed());
                        let own_claim_untouched = own.as_mut().now_or_never().is_none();
                        let never_reconnected = states.changed().now_or_never().is_none();
                        if event.event_type == zk::EventType::NodeDeleted
                            && own_claim_untouched
                            && never_reconnected
                            && !session.is_over()
                        {
                            return Ok(Turn::Lead(Some(own)));
                        }
                    }
                }
                Err(e) if session::is_session_gone(&e) => return Ok(Turn::SessionOver),
                Err(e) => return Err(error::map("watch predecessor", e)),
            }
        }
    }

    async fn first_in_line(
        &self,
        at: &Campaign<'_, Session>,
        place: &Self::Place,
    ) -> Result<Option<Self::Seen>> {
        let (layout, name, _) = place;
        let client = at.session.client();
        let list = client.map_err(|e| error::map("list claims", e))?;
        let children = error::call("list claims", list.list_children(&layout.dir)).await?;
        Ok((sorted_claims(children).first() == Some(name)).then_some(None))
    }

    /// A read costs less than a claim, its value node and their withdrawal.
    async fn someone_leads(&self, election: &ElectionName) -> Result<bool> {
        let client = self.0.live_client().await?;
        let leader = observe::read_leader(&client, &self.0.layout(election)).await?;
        Ok(leader.is_some())
    }

    fn grant(
        &self,
        at: &Campaign<'_, Session>,
        (layout, name, czxid): Self::Place,
        own_claim_changed: Self::Seen,
    ) -> Leadership {
        let claim = Arc::new(ZkClaim {
            client: at.session.shared_client(),
            election: at.election.clone(),
            layout,
            name,
            root: self.0.config.root.clone(),
            acls: self.0.acls,
        });
        let token = FencingToken(czxid as u64);
        self.0.state.grant(
            at.election,
            at.candidate,
            &at.session,
            token,
            claim,
            |claim, term, lease| claim::watch_own_node(claim, term, lease, own_claim_changed),
        )
    }
}

/// Deletes our claim (found by its UUID) and value znode if the campaign is dropped before it
/// wins — armed before the create is sent, since a dropped request may still have been
/// applied (cancel safety). Tried until a listing answers and every delete lands, or the
/// session ends: a failed listing is not "nothing there", and our own session would keep an
/// orphan claim ahead of every later candidate.
fn withdraw_on_drop(
    candidacy: &Candidacy,
    session: &Session,
    layout: &Layout,
    uuid: &str,
) -> OnDrop {
    let (client, layout, uuid) = (session.shared_client(), layout.clone(), uuid.to_owned());
    let lease = session.clock.watch();
    candidacy.withdraw_on_drop(async move {
        elect_core::clock::retry_until_session_ends("withdraw claim", lease, || {
            let (client, layout, uuid) = (client.clone(), layout.clone(), uuid.clone());
            async move { withdraw(&client, &layout, &uuid).await }
        })
        .await
    })
}

/// Deletes the claim and value znode named by `uuid`; a node already gone is fine, and so is
/// a session given up (its ephemeral nodes go with it).
async fn withdraw(client: &SessionClient, layout: &Layout, uuid: &str) -> Result<()> {
    let Ok(client) = client.get() else {
        return Ok(());
    };
    let claims = match error::call("list claims", client.list_children(&layout.dir)).await {
        Ok(claims) => claims,
        Err(Error::Backend { ref source, .. }) if claim::is(source, &zk::Error::NoNode) => {
            Vec::new()
        }
        Err(e) => return Err(e),
    };
    let paths = claims
        .iter()
        .filter(|c| c.contains(uuid))
        .map(|name| layout.claim(name))
        .chain([layout.value(uuid)]);
    for path in paths {
        match error::call(&format!("delete {path}"), client.delete(&path, None)).await {
            Ok(()) => {}
            Err(Error::Backend { ref source, .. }) if claim::is(source, &zk::Error::NoNode) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[async_trait::async_trait]
impl Elector for ZookeeperElector {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    async fn campaign(&self, election: &ElectionName, candidate: &Candidate) -> Result<Leadership> {
        let queue = Queue(self);
        self.state
            .campaign_in_line(&queue, election, candidate)
            .await
    }

    async fn try_campaign(
        &self,
        election: &ElectionName,
        candidate: &Candidate,
    ) -> Result<Option<Leadership>> {
        let queue = Queue(self);
        self.state.try_in_line(&queue, election, candidate).await
    }

    async fn leader(&self, election: &ElectionName) -> Result<Option<LeaderInfo>> {
        self.state.check_open()?;
        Ok(
            observe::read_leader(&self.live_client().await?, &self.layout(election))
                .await?
                .map(|(info, _)| info),
        )
    }

    async fn candidates(&self, election: &ElectionName) -> Result<Vec<CandidateInfo>> {
        self.state.check_open()?;
        observe::read_candidates(&self.live_client().await?, &self.layout(election)).await
    }

    async fn observe(&self, election: &ElectionName) -> Result<LeaderStream> {
        self.state.check_open()?;
        self.session().await?;
        // The observer takes the elector's live session each time it reads, so that it never
        // keeps a session the elector gave up, and goes on with the next one.
        let (state, config) = (self.state.clone(), self.config.clone());
        let sessions: observe::Sessions = Arc::new(move || {
            let (state, config) = (state.clone(), config.clone());
            Box::pin(async move { state.session(|| Session::connect(&config)).await })
        });
        Ok(observe::observe(
            sessions,
            self.layout(election),
            self.state.closed(),
        ))
    }

    async fn close(&self) -> Result<()> {
        // Other handles may still hold clones of the client, which keep the session open:
        // delete our claims ourselves rather than wait for the session to close.
        for claim in self.state.shut() {
            if let Err(error) = claim.delete().await {
                tracing::warn!(%error, path = claim.path().as_str(), "close: claim left to the session's end");
            }
        }
        if let Some(session) = self.state.take_session().await {
            session.clock.end(LossReason::ShutDown);
        }
        Ok(())
    }
}
