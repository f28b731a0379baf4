//! One ZooKeeper session per elector, and the deadline clock it feeds.
//!
//! The deadline must never outlast the session at the ensemble's *leader*, which is who
//! expires it — not at the member we talk to. A follower cut off from the leader goes on
//! answering reads for up to syncLimit × tickTime, while the leader, no longer hearing of our
//! session, expires it after the session timeout and a rival takes the election (seen: two
//! leaders for up to 1.7 s). So the session is confirmed with `sync`, which the member
//! forwards to the leader and answers only once the leader has processed it.
//!
//! The leader hears that a session is alive from the member's replies to its pings (every
//! tickTime/2), not from the sync itself: a request the member saw just before its link broke
//! may never reach the leader. A sync answered therefore renews the deadline from the *send*
//! time of the latest request answered at least a report lag (one tickTime, see
//! [`report_lag`]) before this one was sent — the member's pings in between carried that one
//! to the leader, ahead of the forwarded sync on the same link (or, after a reconnect, the
//! leader revalidated the session later still). The clock's headroom counts a renewal period
//! and the whole periods back to that request ([`renewal_span`]).
//!
//! zookeeper-client pings on its own but does not say when a ping was answered, so the
//! confirmations are our own requests, sent by core's keep-alive loop every third of the
//! negotiated timeout ([`renew_every`]). A disconnection suspends the session (the deadline keeps running); a
//! reconnection renews at once; `Expired` and `Closed` end it — an expired client is final,
//! and the elector builds a new one.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use elect_core::clock::LeaseClock;
use elect_core::config::{TlsConfig, ZookeeperConfig};
use elect_core::renewal::{KeepAlive, Renew, Renewal};
use elect_core::{ConfigError, Error, LossReason};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use zookeeper_client as zk;

use crate::error::{self, BACKEND};

/// The sessions of callers' clients that electors share, by session id and timing settings.
type SharedKey = (i64, Duration, Option<Duration>);
static SHARED: std::sync::Mutex<std::collections::BTreeMap<SharedKey, std::sync::Weak<Session>>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

/// ZooKeeper's default client port.
pub const DEFAULT_PORT: u16 = 2181;

#[derive(Debug)]
pub(crate) struct Session {
    client: SessionClient,
    pub(crate) clock: LeaseClock,
    pub(crate) id: i64,
    /// Made by this elector alone (not a caller's client, which other electors may share):
    /// every claim of the session in an election is then this elector's.
    pub(crate) owned: bool,
    tasks: Vec<JoinHandle<()>>,
}

impl elect_core::backend::Session for Session {
    fn clock(&self) -> &LeaseClock {
        &self.clock
    }

    /// Also once the client is gone: it closed the session.
    fn is_over(&self) -> bool {
        self.clock.is_ended()
            || self
                .client
                .get()
                .map_or(true, |client| client.state().is_terminated())
    }
}

/// The session's client as everything long-lived holds it (claims, withdrawals, watchers,
/// observers): let go of everywhere at once when the elector gives the session up (its
/// deadline clock ended). zookeeper-client closes a session when its last clone is dropped,
/// and pings it on its own until then: a session we no longer renew must not keep our claims
/// standing by those pings. A caller's own clone (`ZookeeperElector::with_client`) is theirs.
#[derive(Debug, Clone)]
pub(crate) struct SessionClient(Arc<std::sync::RwLock<Option<zk::Client>>>);

impl SessionClient {
    fn new(client: zk::Client) -> Self {
        SessionClient(Arc::new(std::sync::RwLock::new(Some(client))))
    }

    /// A clone for one request; `SessionExpired` once the session was given up.
    pub(crate) fn get(&self) -> Result<zk::Client, zk::Error> {
        self.0
            .read()
            .expect("session client poisoned")
            .clone()
            .ok_or(zk::Error::SessionExpired)
    }

    fn close(&self) {
        self.0.write().expect("session client poisoned").take();
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// TLS to the ensemble (its `secureClientPort`): the CA given, else the system's trust
/// store; a client certificate if given (ZooKeeper's `ssl.clientAuth=need`).
fn tls_options(tls: &TlsConfig) -> Result<zk::TlsOptions, Error> {
    // zookeeper-client builds its TLS client with rustls' process-wide default provider, which
    // rustls cannot pick when a build enables two (etcd's and Consul's clients bring ring, this
    // one aws-lc-rs): it panics. Name one, unless the program already did.
    let _ = rustls::crypto::CryptoProvider::install_default(
        rustls::crypto::aws_lc_rs::default_provider(),
    );
    let read = |field: &str, path: &std::path::Path| {
        std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new(
                field,
                path.display().to_string(),
                format!("cannot read it: {e}"),
            )
        })
    };
    let ca = match &tls.ca {
        Some(path) => read("zookeeper.tls.ca", path)?,
        None => elect_core::config::system_roots_pem("zookeeper.tls.ca")?,
    };
    let ca_field = tls
        .ca
        .as_ref()
        .map_or(String::new(), |p| p.display().to_string());
    let mut options = zk::TlsOptions::new().with_pem_ca(&ca).map_err(|e| {
        ConfigError::new("zookeeper.tls.ca", &ca_field, format!("not a PEM CA: {e}"))
    })?;
    if let (Some(cert), Some(key)) = (&tls.cert, &tls.key) {
        let (cert_pem, key_pem) = (
            read("zookeeper.tls.cert", cert)?,
            read("zookeeper.tls.key", key)?,
        );
        options = options
            .with_pem_identity(&cert_pem, &key_pem)
            .map_err(|e| {
                ConfigError::new(
                    "zookeeper.tls.cert",
                    cert.display().to_string(),
                    format!("not a usable PEM certificate and key: {e}"),
                )
            })?;
    }
    Ok(options)
}

impl Session {
    pub(crate) async fn connect(config: &ZookeeperConfig) -> Result<Self, Error> {
        let hosts: Vec<String> = config
            .endpoints
            .iter()
            .map(|e| e.with_default_port(DEFAULT_PORT))
            .collect();
        let mut connector = zk::Client::connector()
            .with_session_timeout(config.session_timeout)
            .with_fail_eagerly();
        if let Some(auth) = &config.auth {
            connector = connector.with_auth("digest", auth.expose().as_bytes());
        }
        if let Some(tls) = &config.tls {
            connector = connector.with_tls(tls_options(tls)?);
        }
        let cluster = hosts.join(",");
        let sent_at = elect_core::clock::now();
        let client = if config.tls.is_some() {
            // The client says only "no available hosts" when every TLS handshake failed.
            error::call("connect", connector.secure_connect(&cluster))
                .await
                .map_err(|e| e.over_tls("zookeeper.tls"))?
        } else {
            error::call("connect", connector.connect(&cluster)).await?
        };
        let mut session = Session::from_client(client, sent_at, config);
        session.owned = true;
        Ok(session)
    }

    /// The session of a caller's client, shared by every elector made on that client with the
    /// same timing settings: one deadline clock and one confirmation loop per session, however
    /// many electors and elections use it. `heard` is when the server last heard the client,
    /// as far as we know.
    pub(crate) fn shared(
        client: zk::Client,
        heard: Instant,
        config: &ZookeeperConfig,
    ) -> Arc<Self> {
        use elect_core::backend::Session as _;
        let key = (
            client.session_id().0,
            config.drift_margin(),
            config.tick_time,
        );
        let mut shared = SHARED.lock().expect("shared sessions poisoned");
        shared.retain(|_, session| session.strong_count() > 0);
        if let Some(session) = shared.get(&key).and_then(std::sync::Weak::upgrade) {
            if !session.is_over() {
                return session;
            }
        }
        let session = Arc::new(Session::from_client(client, heard, config));
        shared.insert(key, Arc::downgrade(&session));
        session
    }

    /// Wraps a connected client; `sent_at` is when its connection request was sent.
    pub(crate) fn from_client(
        client: zk::Client,
        sent_at: Instant,
        config: &ZookeeperConfig,
    ) -> Self {
        let negotiated = client.session_timeout();
        let margin = config.drift_margin().min(negotiated / 4);
        let lag = report_lag(negotiated, config.tick_time);
        let clock = LeaseClock::new(sent_at, negotiated, margin, renewal_span(negotiated, lag));
        let id = client.session_id().0;
        let confirmations = Confirmations::new(sent_at, negotiated, lag);
        let states = client.state_watcher();
        let client = SessionClient::new(client);
        // Confirms at once: a renewal counts from an earlier answered request, so the chain
        // must start early — a session wrapped from a caller's client starts with only half a
        // timeout of deadline.
        let keep_alive =
            KeepAlive::new(BACKEND, clock.clone(), renew_every(negotiated, lag)).first_at_once();
        let renew_now = clock.renew_now();
        let reconnected = Arc::new(AtomicBool::new(false));
        let tasks = vec![
            keep_alive.spawn(SyncRenewer {
                client: client.clone(),
                confirmations,
                reconnected: reconnected.clone(),
                renew_now: renew_now.clone(),
            }),
            tokio::spawn(follow_state(
                states,
                clock.clone(),
                renew_now,
                reconnected,
                id,
            )),
            tokio::spawn(close_when_given_up(client.clone(), clock.clone())),
        ];
        tracing::debug!(
            session = format!("{id:x}"),
            timeout_ms = negotiated.as_millis() as u64,
            "zookeeper session"
        );
        Session {
            client,
            clock,
            id,
            owned: false,
            tasks,
        }
    }

    /// The client, for one request; `SessionExpired` once the session was given up.
    pub(crate) fn client(&self) -> Result<zk::Client, zk::Error> {
        self.client.get()
    }

    /// The handle long-lived holders keep (see [`SessionClient`]).
    pub(crate) fn shared_client(&self) -> SessionClient {
        self.client.clone()
    }
}

/// Lets the client go everywhere once the deadline clock ended: given up (or closed).
async fn close_when_given_up(client: SessionClient, clock: LeaseClock) {
    let reason = elect_core::clock::lease_ended(&mut clock.watch()).await;
    tracing::debug!(%reason, "zookeeper session given up: letting its client go");
    client.close();
}

/// How often the session is confirmed: a third of the negotiated timeout, or half the report
/// lag when that is longer (a tickTime near half the session): a sync renews from a request
/// answered a lag before it was sent, and periods as long as the lag would leave no headroom.
fn renew_every(negotiated: Duration, lag: Duration) -> Duration {
    let third = negotiated / 3;
    if lag > third {
        lag / 2
    } else {
        third
    }
}

/// How far the deadline falls behind between two confirmations, for the clock's headroom: a
/// sync renews from the latest request answered a report lag before it was sent, and when
/// our syncs are the only requests, that is a whole number of periods back (at least one,
/// the previous sync) — then a period passes until the next answer.
fn renewal_span(negotiated: Duration, lag: Duration) -> Duration {
    let every = renew_every(negotiated, lag);
    let periods_back = lag.as_nanos().div_ceil(every.as_nanos().max(1)).max(1) as u32;
    every * (periods_back + 1)
}

/// How long before a sync's send the request it renews from must have been answered, so that
/// the member pinged the leader in between (every tickTime/2): one tickTime when it is known,
/// else a quarter of the negotiated timeout (the server negotiates sessions of at least
/// 2 × tickTime by default, so that covers tickTime/2).
fn report_lag(negotiated: Duration, tick_time: Option<Duration>) -> Duration {
    tick_time.unwrap_or(negotiated / 4).min(negotiated / 2)
}

/// How many answered requests are kept to renew from: enough to find one a report lag old
/// when answers are slow.
const KEPT: usize = 8;

/// The confirmations so far: the requests answered, which later syncs renew from.
#[derive(Debug)]
struct Confirmations {
    negotiated: Duration,
    lag: Duration,
    /// (sent, answered) of the last requests answered, oldest first: the session's creation
    /// at first.
    answered: std::collections::VecDeque<(Instant, Instant)>,
}

impl Confirmations {
    fn new(created: Instant, negotiated: Duration, lag: Duration) -> Self {
        Confirmations {
            negotiated,
            lag,
            answered: [(created, created)].into(),
        }
    }

    /// Sends one `sync` through the ensemble's leader; once it is answered, it vouches for the
    /// latest request answered at least a report lag before this one was sent.
    async fn sync(&mut self, client: &zk::Client, sent_at: Instant) -> Renewal {
        if let Err(e) = client.sync("/").await {
            return Renewal::Failed(format!("sync: {e}"));
        }
        self.answered(sent_at, elect_core::clock::now())
    }

    /// A sync sent at `sent_at` was answered at `answered_at`: the renewal it makes.
    fn answered(&mut self, sent_at: Instant, answered_at: Instant) -> Renewal {
        let from = self
            .answered
            .iter()
            .rev()
            .find(|(_, answered)| *answered + self.lag <= sent_at)
            .map(|(sent, _)| *sent);
        self.answered.push_back((sent_at, answered_at));
        if self.answered.len() > KEPT {
            self.answered.pop_front();
        }
        match from {
            Some(from) => Renewal::Confirmed {
                from,
                ttl: self.negotiated,
            },
            None => Renewal::Answered,
        }
    }
}

/// One confirmation of the session: a `sync` on its client.
struct SyncRenewer {
    client: SessionClient,
    confirmations: Confirmations,
    /// Set on a reconnection, until a sync is answered after it.
    reconnected: Arc<AtomicBool>,
    renew_now: Arc<Notify>,
}

#[async_trait::async_trait]
impl Renew for SyncRenewer {
    async fn renew(&mut self, sent_at: Instant, _patience: Duration) -> Renewal {
        let Ok(live) = self.client.get() else {
            return Renewal::Gone(LossReason::ShutDown);
        };
        let resuming = self.reconnected.swap(false, Ordering::SeqCst);
        let renewal = self.confirmations.sync(&live, sent_at).await;
        match renewal {
            Renewal::Failed(_) if resuming => self.reconnected.store(true, Ordering::SeqCst),
            // The first sync answered after a reconnection renews from a request answered
            // before it; the next one, a report lag after this answer, renews from this one.
            // Sent a period later instead, it could come after the deadline.
            Renewal::Confirmed { .. } | Renewal::Answered if resuming => {
                let (renew_now, lag) = (self.renew_now.clone(), self.confirmations.lag);
                tokio::spawn(async move {
                    tokio::time::sleep(lag).await;
                    renew_now.notify_one();
                });
            }
            _ => {}
        }
        renewal
    }
}

/// Follows the connection: a disconnection suspends the session, a reconnection renews at
/// once — from a request answered before the disconnection — and again once a report lag
/// has passed since that answer, which renews from the first ([`SyncRenewer`]): a suspended
/// term resumes at once with the deadline it had, and moves it on soon after.
async fn follow_state(
    mut states: zk::StateWatcher,
    clock: LeaseClock,
    renew_now: Arc<Notify>,
    reconnected: Arc<AtomicBool>,
    id: i64,
) {
    let mut ended = clock.watch();
    loop {
        let state = tokio::select! {
            state = states.changed() => state,
            _ = elect_core::clock::lease_ended(&mut ended) => return,
        };
        match state {
            zk::SessionState::Disconnected | zk::SessionState::ConnectedReadOnly => {
                tracing::warn!(
                    session = format!("{id:x}"),
                    "zookeeper disconnected: suspended"
                );
                clock.suspend();
            }
            zk::SessionState::SyncConnected => {
                reconnected.store(true, Ordering::SeqCst);
                renew_now.notify_one();
            }
            zk::SessionState::Expired => {
                tracing::warn!(session = format!("{id:x}"), "zookeeper session expired");
                clock.end(LossReason::Expired);
                return;
            }
            zk::SessionState::AuthFailed => {
                clock.end(LossReason::Revoked);
                return;
            }
            zk::SessionState::Closed => {
                clock.end(LossReason::ShutDown);
                return;
            }
        }
    }
}

/// Maps a request's error after checking whether the session is what failed.
pub(crate) fn is_session_gone(error: &zk::Error) -> bool {
    matches!(error, zk::Error::SessionExpired | zk::Error::ClientClosed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Syncs sent every renewal period and answered after a round trip, our only requests (an
    /// idle leader): before each answer, the deadline they keep is still at least the clock's
    /// headroom away, less the round trips — `elect run` stops a term's command when it comes
    /// within three quarters of the headroom, and must not stop a healthy one.
    #[tokio::test(start_paused = true)]
    async fn steady_confirmations_keep_the_deadline_at_least_the_headroom_away() {
        const RTT: Duration = Duration::from_millis(2);
        let cases = [
            (Duration::from_secs(2), None),
            (Duration::from_secs(2), Some(Duration::from_millis(200))),
            (Duration::from_secs(10), None),
            (Duration::from_secs(4), Some(Duration::from_millis(2000))),
            (Duration::from_secs(30), Some(Duration::from_millis(2000))),
        ];
        for (negotiated, tick_time) in cases {
            let start = elect_core::clock::now();
            let lag = report_lag(negotiated, tick_time);
            let margin = negotiated / 10;
            let clock = LeaseClock::new(start, negotiated, margin, renewal_span(negotiated, lag));
            let headroom = clock.watch().borrow().headroom.unwrap();
            let mut confirmations = Confirmations::new(start, negotiated, lag);
            let mut sent = start;
            for round in 0..30 {
                tokio::time::advance(RTT).await;
                let answered = elect_core::clock::now();
                let left = clock
                    .deadline()
                    .unwrap()
                    .saturating_duration_since(answered);
                if round > 3 {
                    assert!(
                        left + RTT * 5 >= headroom,
                        "{negotiated:?} session, tickTime {tick_time:?}: {left:?} left before \
                         round {round}'s answer, headroom {headroom:?}"
                    );
                }
                if let Renewal::Confirmed { from, ttl } = confirmations.answered(sent, answered) {
                    assert!(clock.confirm(from, ttl), "the deadline passed");
                }
                tokio::time::advance(renew_every(negotiated, lag)).await;
                sent = elect_core::clock::now();
            }
        }
    }
}
