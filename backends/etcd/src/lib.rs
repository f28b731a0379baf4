//! # elect-etcd: leader election on etcd leases
//!
//! The recipe of Go's `concurrency.Election` (which `etcdctl elect` runs too), so that Rust,
//! Go and `etcdctl` candidates stand in one election, with the known failures of that recipe
//! fixed:
//!
//! * **Layout** — key `<namespace><election>/<lease id hex>`, value = the candidate's value,
//!   created with our lease in a transaction only if absent; the smallest create revision
//!   leads; a waiter watches only the key just before its own (no herd).
//! * **Token** — the claim's create revision (never the lease id, which is not monotonic).
//! * **Our own keep-alive** every TTL/3, feeding the deadline clock with *send* times; a TTL 0
//!   reply ends the session at once; a campaign whose lease dies while it waits starts over
//!   with a new lease instead of waiting as a zombie (etcd-io/etcd#19597).
//! * **Own-key watch** — our key deleted by hand or with a revoked lease ends the term within
//!   one round trip, even while the lease lives.
//! * **Observers resync** — after a broken or compacted watch they re-read the leader, so the
//!   last item is always the truth (etcd-io/etcd#18163, #7815).
//! * **Watches require a leader** — a member cut off from the quorum cancels them ("no
//!   leader") instead of keeping them silent; they are made again through another member.
//! * **Connections** — HTTP/2 pings (every 6 s: no faster than the servers' 5 s minimum) find
//!   a hung member while a stream is open; every unary call has its own timeout and is retried
//!   on another member while the cluster is unreachable; long waits (campaign, watches) have
//!   no global timeout.
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

mod claim;
mod error;
mod keys;
mod observe;
mod session;

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use elect_core::backend::{Campaign, Candidacy, ElectorState, Line, OnDrop, Session as _, Turn};
use elect_core::config::{EtcdConfig, TlsConfig};
use elect_core::{
    Candidate, CandidateInfo, ElectionName, Elector, Error, FencingToken, LeaderInfo, LeaderStream,
    Leadership, LossReason, Result,
};
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, PutOptions, SortOrder,
    SortTarget, Txn, TxnOp, TxnOpResponse, WatchFilterType, WatchOptions,
};

use claim::EtcdClaim;
use error::BACKEND;
use keys::Keys;
use session::Session;

/// etcd's default client port.
pub const DEFAULT_PORT: u16 = 2379;

/// Leader election on an etcd cluster: one lease per elector, shared by all its campaigns.
///
/// ```no_run
/// # async fn demo() -> elect_core::Result<()> {
/// use elect_core::config::{Endpoint, EtcdConfig};
/// use elect_core::{Candidate, Elector};
/// use elect_etcd::EtcdElector;
/// let config = EtcdConfig::new(vec!["127.0.0.1:2379".parse()?]);
/// let elector = EtcdElector::connect(&config).await?;
/// let leadership = elector.campaign(&"billing".parse()?, &Candidate::generated()).await?;
/// println!("leading with token {}", leadership.token());
/// # Ok(()) }
/// ```
pub struct EtcdElector {
    client: Client,
    config: EtcdConfig,
    state: ElectorState<Session, EtcdClaim>,
}

impl std::fmt::Debug for EtcdElector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdElector")
            .field("endpoints", &self.config.endpoints)
            .field("namespace", &self.config.namespace)
            .finish_non_exhaustive()
    }
}

/// The interval of HTTP/2 pings. etcd closes a connection (GOAWAY `too_many_pings`) that pings
/// more often than its `--grpc-keepalive-min-time` (5 s by default) three times with no data
/// between, or pings at all with no stream open: with 1 s pings, every idle candidate at a long
/// TTL lost its watches and keep-alive stream every ~5 s.
const PING_EVERY: Duration = Duration::from_secs(6);
/// How long a ping may go unanswered before the connection is dropped and made again.
const PING_TIMEOUT: Duration = Duration::from_secs(3);

impl EtcdElector {
    /// Connects to the cluster and checks that it answers (and accepts our credentials).
    pub async fn connect(config: &EtcdConfig) -> Result<Self> {
        config.validate()?;
        let scheme = if config.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let endpoints: Vec<String> = config
            .endpoints
            .iter()
            .map(|e| format!("{scheme}://{}", e.with_default_port(DEFAULT_PORT)))
            .collect();
        let mut options = ConnectOptions::new()
            // Pings find a hung member (in at most PING_EVERY + PING_TIMEOUT) while a stream
            // (a watch, the keep-alive) is open; no global timeout, which would cut campaigns.
            .with_keep_alive(PING_EVERY, PING_TIMEOUT)
            .with_keep_alive_while_idle(false)
            .with_connect_timeout(Duration::from_secs(2))
            // Every request and stream needs a member with a raft leader (Go's
            // `WithRequireLeader`): a member cut off from the quorum cancels our watches
            // instead of keeping them open and silent, and we watch again through another.
            .with_require_leader(true);
        if let Some(user) = &config.username {
            options = options
                .with_user(
                    user.clone(),
                    config
                        .password
                        .as_ref()
                        .map(|p| p.expose().to_owned())
                        .unwrap_or_default(),
                )
                .with_auto_token_refresh(true);
        }
        if let Some(tls) = &config.tls {
            options = options.with_tls(tls_options(tls)?);
        }
        let tls_hint = |e: Error| match config.tls {
            Some(_) => e.over_tls("etcd.tls"),
            None => e,
        };
        let client = error::once("connect", Client::connect(endpoints, Some(options)))
            .await
            .map_err(tls_hint)?;
        // The client connects lazily: ask once, so that an unreachable cluster or wrong
        // credentials show up here.
        error::get(
            &client,
            "connect",
            "elect/probe",
            Some(GetOptions::new().with_count_only()),
        )
        .await
        .map_err(tls_hint)?;
        EtcdElector::with_client(client, config)
    }

    /// An elector on a client you already have (its own lease, the client's connections):
    /// many electors can share one client. `config` gives the TTL, margin and namespace; its
    /// endpoints, credentials and TLS are the client's business. Build the client with
    /// `ConnectOptions::with_require_leader(true)`, as [`EtcdElector::connect`] does: without
    /// it, a waiter whose watch sits on a member cut off from the quorum never wakes.
    /// The config is checked as [`EtcdConfig::validate`] does.
    pub fn with_client(client: Client, config: &EtcdConfig) -> Result<Self> {
        config.validate()?;
        Ok(EtcdElector {
            client,
            config: config.clone(),
            state: ElectorState::new(BACKEND, None),
        })
    }

    /// The etcd client this elector uses (for tools and tests).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The lease of the current session, if one was granted.
    pub async fn lease_id(&self) -> Option<i64> {
        self.state.current().await.map(|s| s.lease)
    }

    /// The live session, or a new lease if there is none or it ended.
    async fn session(&self) -> Result<Arc<Session>> {
        self.state
            .session(|| Session::grant(&self.client, self.config.ttl, self.config.drift_margin()))
            .await
    }

    /// Creates our key; returns its create revision, or `None` if the lease turned out to be
    /// gone (the session is then ended, so that the next try takes a new one).
    ///
    /// A key of ours already there (a term whose release has not reached the store yet, or a
    /// campaign retried after an uncertain create) is deleted and made again: every campaign
    /// gets a fresh create revision, so a new term never reuses an old term's token.
    async fn create_claim(
        &self,
        session: &Session,
        keys: &Keys,
        candidate: &Candidate,
    ) -> Result<Option<i64>> {
        let lease = session.lease;
        loop {
            let txn = Txn::new()
                .when([Compare::create_revision(
                    keys.key.as_str(),
                    CompareOp::Equal,
                    0,
                )])
                .and_then([
                    TxnOp::put(
                        keys.key.as_str(),
                        candidate.value(),
                        Some(PutOptions::new().with_lease(lease)),
                    ),
                    TxnOp::put(
                        keys.id_key.as_str(),
                        candidate.id(),
                        Some(PutOptions::new().with_lease(lease)),
                    ),
                ])
                .or_else([TxnOp::get(keys.key.as_str(), None)]);
            let response =
                match error::txn(&self.client, &format!("create {}", keys.key), txn).await {
                    Err(error) if error::lease_not_found(&error) => {
                        // Revoked, and our keep-alive has not heard yet.
                        session.clock.end(LossReason::Revoked);
                        return Ok(None);
                    }
                    other => other?,
                };
            if response.succeeded() {
                return Ok(Some(response.header().map_or(0, |h| h.revision())));
            }
            let existing = response.op_responses().into_iter().find_map(|op| match op {
                TxnOpResponse::Get(get) => get.kvs().first().map(|kv| kv.create_revision()),
                _ => None,
            });
            let Some(revision) = existing else {
                continue; // deleted meanwhile: create again
            };
            tracing::debug!(
                key = keys.key.as_str(),
                revision,
                "replacing our earlier key"
            );
            let delete = Txn::new()
                .when([Compare::create_revision(
                    keys.key.as_str(),
                    CompareOp::Equal,
                    revision,
                )])
                .and_then([
                    TxnOp::delete(keys.key.as_str(), None),
                    TxnOp::delete(keys.id_key.as_str(), None),
                ]);
            error::txn(&self.client, &format!("replace {}", keys.key), delete).await?;
        }
    }

    /// Our key and the youngest key older than it, in one linearizable transaction.
    async fn look(&self, keys: &Keys, revision: i64) -> Result<Look> {
        let older = GetOptions::new()
            .with_prefix()
            .with_max_create_revision(revision - 1)
            .with_sort(SortTarget::Create, SortOrder::Descend)
            .with_keys_only()
            .with_limit(1);
        let txn = Txn::new().and_then([
            TxnOp::get(keys.key.as_str(), Some(GetOptions::new().with_keys_only())),
            TxnOp::get(keys.prefix.as_str(), Some(older)),
        ]);
        let response = error::txn(&self.client, "find predecessor", txn).await?;
        let mut look = Look {
            revision: response.header().map_or(0, |h| h.revision()),
            own_key_stands: false,
            predecessor: None,
            only_one_ahead: false,
        };
        let gets = response
            .op_responses()
            .into_iter()
            .filter_map(|op| match op {
                TxnOpResponse::Get(get) => Some(get),
                _ => None,
            });
        for (i, get) in gets.enumerate() {
            let first = get.kvs().first();
            if i == 0 {
                look.own_key_stands = first.is_some_and(|kv| kv.create_revision() == revision);
            } else {
                look.predecessor = first.map(|kv| kv.key().to_vec());
                // `more` counts after the revision filter: no other key older than ours.
                look.only_one_ahead = !get.more();
            }
        }
        Ok(look)
    }

    /// Resolves when `predecessor` or, if given, `own` is deleted at or after
    /// `from_revision`: which went first, and at which revision; `None` when the watch was
    /// compacted or cancelled (the caller looks again). With `own`, one watch over the range
    /// between the two keys, puts filtered out: a watch delivers its events in revision
    /// order, so a predecessor's delete seen before any of ours means our key stood then
    /// (the deletes of other waiters' keys that sort between are skipped).
    async fn gone(
        &self,
        predecessor: &[u8],
        own: Option<&[u8]>,
        from_revision: i64,
    ) -> Result<Option<(Gone, i64)>> {
        let mut options = WatchOptions::new()
            .with_start_revision(from_revision)
            .with_filters([WatchFilterType::NoPut]);
        let mut start = predecessor;
        if let Some(own) = own {
            let last = predecessor.max(own);
            start = predecessor.min(own);
            options = options.with_range([last, &[0]].concat());
        }
        let operation = "watch predecessor".to_owned();
        let mut watch = error::Watch::open(&self.client, operation, start, options).await?;
        loop {
            let message = watch.message().await?;
            if message.canceled() {
                return Ok(None);
            }
            let deleted = |key: &[u8]| {
                message.events().iter().find_map(|e| {
                    let kv = e.kv().filter(|kv| kv.key() == key)?;
                    (e.event_type() == EventType::Delete).then(|| kv.mod_revision())
                })
            };
            // Ours first: a delete of both in one revision leaves us no claim.
            if let Some(at) = own.and_then(deleted) {
                return Ok(Some((Gone::Own, at)));
            }
            if let Some(at) = deleted(predecessor) {
                return Ok(Some((Gone::Predecessor, at)));
            }
        }
    }
}

/// etcd's requests for a campaign in line; core's [`ElectorState::campaign_in_line`] runs
/// the campaign. A private view of the elector, so that its callers cannot join by hand.
struct Queue<'a>(&'a EtcdElector);

#[async_trait::async_trait]
impl Line for Queue<'_> {
    type Session = Session;
    /// Our keys and our key's create revision.
    type Place = (Keys, i64);
    /// The revision the wait saw.
    type Seen = i64;

    async fn session(&self) -> Result<Arc<Session>> {
        self.0.session().await
    }

    async fn join(&self, at: &Campaign<'_, Session>) -> Result<Option<(Self::Place, OnDrop)>> {
        let (elector, session) = (self.0, &at.session);
        let namespace = &elector.config.namespace;
        let keys = Keys::new(namespace, at.election.as_str(), session.lease);
        let (guard, created) = withdraw_on_drop(at.candidacy, &elector.client, &keys, session);
        let Some(revision) = elector.create_claim(session, &keys, at.candidate).await? else {
            guard.disarm();
            return Ok(None);
        };
        created.store(revision, Ordering::SeqCst);
        Ok(Some(((keys, revision), guard)))
    }

    /// Waits until no key older than ours is left; see [`Turn`].
    async fn wait_turn(
        &self,
        at: &Campaign<'_, Session>,
        (keys, revision): &Self::Place,
    ) -> Result<Turn<i64>> {
        let (elector, session, revision) = (self.0, &at.session, *revision);
        let mut lease = session.clock.watch();
        loop {
            let look = elector.look(keys, revision).await?;
            if !look.own_key_stands {
                return Ok(Turn::ClaimGone);
            }
            let Some(predecessor) = look.predecessor else {
                if session.is_over() {
                    return Ok(Turn::SessionOver);
                }
                return Ok(Turn::Lead(look.revision));
            };
            // Next in line: watch our own key with the predecessor (see `gone`).
            let own = look.only_one_ahead.then_some(keys.key.as_bytes());
            let gone = tokio::select! {
                _ = elect_core::clock::lease_ended(&mut lease) => return Ok(Turn::SessionOver),
                gone = elector.gone(&predecessor, own, look.revision + 1) => gone,
            };
            match gone {
                Ok(Some((Gone::Own, _))) => return Ok(Turn::ClaimGone),
                // Create revisions only grow, so no key older than ours can appear: with the
                // only older one gone before ours, our key alone decides, with no read after
                // the event (the handover's cost).
                Ok(Some((Gone::Predecessor, at))) if own.is_some() => {
                    if session.is_over() {
                        return Ok(Turn::SessionOver);
                    }
                    return Ok(Turn::Lead(at));
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::debug!(%error, "watch on the predecessor broke; looking again");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    async fn first_in_line(
        &self,
        _: &Campaign<'_, Session>,
        place: &Self::Place,
    ) -> Result<Option<i64>> {
        let (keys, revision) = place;
        // Not count_only: etcd counts the whole range before it applies the revision filter.
        let options = GetOptions::new()
            .with_prefix()
            .with_max_create_revision(revision - 1)
            .with_keys_only()
            .with_limit(1);
        let prefix = keys.prefix.as_str();
        let before = error::get(&self.0.client, "find predecessor", prefix, Some(options)).await?;
        let seen = before.header().map_or(0, |h| h.revision());
        Ok(before.kvs().is_empty().then_some(seen))
    }

    fn grant(
        &self,
        at: &Campaign<'_, Session>,
        (keys, revision): Self::Place,
        seen: i64,
    ) -> Leadership {
        let claim = Arc::new(EtcdClaim {
            client: self.0.client.clone(),
            election: at.election.clone(),
            keys,
            lease: at.session.lease,
            revision,
        });
        let token = FencingToken(revision as u64);
        self.0.state.grant(
            at.election,
            at.candidate,
            &at.session,
            token,
            claim,
            |claim, term, lease| claim::watch_own_key(claim, term, lease, seen + 1),
        )
    }
}

/// Which of the two watched keys went first (see [`EtcdElector::gone`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gone {
    Predecessor,
    Own,
}

/// What one look at the election found.
struct Look {
    /// The revision the look was made at.
    revision: i64,
    /// Our key is there, made at our create revision.
    own_key_stands: bool,
    /// The youngest key older than ours: the one to watch.
    predecessor: Option<Vec<u8>>,
    /// The predecessor is the only key older than ours.
    only_one_ahead: bool,
}

/// Deletes our key (and id key) if the campaign is dropped before it wins — armed before the
/// create is sent, since a dropped request may still have been applied (cancel safety). Once
/// the create's revision is stored in the returned cell (0 until then) only that term's key
/// goes; before,
/// the key is ours by its lease's name, and the candidacy holds this elector's next campaign
/// in the election back until the withdrawal is done. Tried until it lands or the lease ends:
/// our own keep-alive would otherwise keep the orphan ahead of every later candidate.
fn withdraw_on_drop(
    candidacy: &Candidacy,
    client: &Client,
    keys: &Keys,
    session: &Session,
) -> (OnDrop, Arc<AtomicI64>) {
    let created = Arc::new(AtomicI64::new(0));
    let lease = session.clock.watch();
    let (client, keys, revision) = (client.clone(), keys.clone(), created.clone());
    let guard = candidacy.withdraw_on_drop(async move {
        elect_core::clock::retry_until_session_ends("withdraw claim", lease, || {
            let deletes = [
                TxnOp::delete(keys.key.as_str(), None),
                TxnOp::delete(keys.id_key.as_str(), None),
            ];
            let txn = match revision.load(Ordering::SeqCst) {
                0 => Txn::new().and_then(deletes),
                revision => Txn::new()
                    .when([Compare::create_revision(
                        keys.key.as_str(),
                        CompareOp::Equal,
                        revision,
                    )])
                    .and_then(deletes),
            };
            let (client, key) = (client.clone(), keys.key.clone());
            async move {
                error::txn(&client, &format!("withdraw {key}"), txn)
                    .await
                    .map(|_| ())
            }
        })
        .await
    });
    (guard, created)
}

fn tls_options(tls: &TlsConfig) -> Result<etcd_client::TlsOptions> {
    let read = |field: &str, path: &std::path::Path| {
        std::fs::read(path).map_err(|e| {
            Error::from(elect_core::ConfigError::new(
                field,
                path.display().to_string(),
                format!("cannot read it: {e}"),
            ))
        })
    };
    // The CA given, else the system's trust store.
    let ca = match &tls.ca {
        Some(ca) => read("etcd.tls.ca", ca)?,
        None => elect_core::config::system_roots_pem("etcd.tls.ca")?.into_bytes(),
    };
    let mut options =
        etcd_client::TlsOptions::new().ca_certificate(etcd_client::Certificate::from_pem(ca));
    if let (Some(cert), Some(key)) = (&tls.cert, &tls.key) {
        options = options.identity(etcd_client::Identity::from_pem(
            read("etcd.tls.cert", cert)?,
            read("etcd.tls.key", key)?,
        ));
    }
    Ok(options)
}

#[async_trait::async_trait]
impl Elector for EtcdElector {
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
            observe::read_leader(&self.client, &self.config.namespace, election)
                .await?
                .0,
        )
    }

    async fn candidates(&self, election: &ElectionName) -> Result<Vec<CandidateInfo>> {
        self.state.check_open()?;
        let prefix = keys::prefix(&self.config.namespace, election.as_str());
        let options = GetOptions::new()
            .with_prefix()
            .with_sort(SortTarget::Create, SortOrder::Ascend);
        let claims = error::get(
            &self.client,
            "list candidates",
            prefix.as_str(),
            Some(options),
        )
        .await?;
        let revision = claims.header().map_or(0, |h| h.revision());
        let id_prefix = keys::id_prefix(&self.config.namespace, election.as_str());
        let id_options = GetOptions::new().with_prefix().with_revision(revision);
        let ids = error::get(
            &self.client,
            "list candidate ids",
            id_prefix.as_str(),
            Some(id_options),
        )
        .await?;
        let ids: HashMap<&str, String> = ids
            .kvs()
            .iter()
            .filter_map(|kv| {
                let lease = keys::lease_hex(&id_prefix, kv.key())?;
                Some((lease, String::from_utf8_lossy(kv.value()).into_owned()))
            })
            .collect();
        Ok(claims
            .kvs()
            .iter()
            .enumerate()
            .map(|(i, kv)| {
                let lease = keys::lease_hex(&prefix, kv.key()).unwrap_or_default();
                CandidateInfo {
                    id: ids.get(lease).cloned().unwrap_or_else(|| lease.to_owned()),
                    value: kv.value().to_vec(),
                    leading: i == 0,
                }
            })
            .collect())
    }

    async fn observe(&self, election: &ElectionName) -> Result<LeaderStream> {
        self.state.check_open()?;
        Ok(observe::observe(
            self.client.clone(),
            self.config.namespace.clone(),
            election.clone(),
            self.state.closed(),
        ))
    }

    async fn close(&self) -> Result<()> {
        self.state.shut();
        // Revoking the lease deletes every claim of this elector at once.
        if let Some(session) = self.state.take_session().await {
            session.revoke(&self.client).await?;
        }
        Ok(())
    }
}
