//! The conformance suite: the same scenarios and assertions for every backend.
//!
//! Not semver-stable. A backend's test file builds a [`Harness`] (how to connect a fresh
//! client, how to delete a claim by hand, how long things may take) and expands
//! [`conformance_suite!`](crate::conformance_suite) with it: one `#[tokio::test]` per case.
//! Each case uses its own freshly named election, waits on events under a timeout (never a
//! bare sleep), and panics with a message that says what broke.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use futures::StreamExt;
use tokio::time::Instant;

use crate::{
    Candidate, ElectionName, Elector, Error, LeaderInfo, LeaderStream, Leadership, LeadershipState,
    LossReason, Result,
};

/// A claim whose store takes everything and counts the writes that reach it: for tests of
/// what a term decides before it asks the store (its state, its deadline, its token).
#[derive(Debug, Default)]
pub struct AcceptingClaim {
    /// Proclaims and fenced writes that reached the store.
    pub writes: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl crate::Claim for AcceptingClaim {
    async fn proclaim(&self, _: &[u8]) -> Result<()> {
        self.writes
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }
    async fn release(&self) -> Result<()> {
        Ok(())
    }
    async fn fenced_put(&self, _: &str, _: &[u8]) -> Result<()> {
        self.writes
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }
    async fn fenced_get(&self, _: &str) -> Result<Option<Vec<u8>>> {
        Ok(None)
    }
}

/// A term of election `e` with `token`, on `clock`, its claim an [`AcceptingClaim`].
pub fn accepted_term(
    clock: &crate::clock::LeaseClock,
    token: u64,
) -> (Leadership, crate::TermControl, Arc<AcceptingClaim>) {
    let claim = Arc::new(AcceptingClaim::default());
    let (leadership, control) = Leadership::new(
        "test",
        "e".parse().expect("a valid name"),
        "me".to_owned(),
        crate::FencingToken(token),
        clock,
        claim.clone(),
    );
    (leadership, control, claim)
}

/// What `tracing` logged on this thread while the guard of [`capture_logs`] lived.
#[derive(Debug, Clone, Default)]
pub struct CapturedLogs(Arc<std::sync::Mutex<Vec<u8>>>);

impl CapturedLogs {
    /// Everything logged so far, one event a line.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("logs poisoned")).into_owned()
    }
}

impl std::io::Write for CapturedLogs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .expect("logs poisoned")
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Captures what `tracing` logs on this thread (a current-thread runtime's tasks included)
/// until the guard is dropped.
pub fn capture_logs() -> (tracing::subscriber::DefaultGuard, CapturedLogs) {
    let logs = CapturedLogs::default();
    let writer = logs.clone();
    let guard = tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish(),
    );
    (guard, logs)
}

/// Makes a fresh client (one session) of the store under test.
pub type Connect = Arc<dyn Fn() -> BoxFuture<'static, Result<Arc<dyn Elector>>> + Send + Sync>;
/// Deletes every claim of an election by hand, as an operator with the store's own tool would.
pub type DeleteClaims = Arc<dyn Fn(ElectionName) -> BoxFuture<'static, Result<()>> + Send + Sync>;

/// An elector whose links to the store a test can take down and bring back (through a proxy
/// in the backend's tests), while every other client still reaches the store.
pub struct CutOff {
    /// The elector, talking to the store only through the links.
    pub elector: Arc<dyn Elector>,
    /// `true`: every link goes down (connections closed, new ones refused, nothing held);
    /// `false`: up again.
    pub set_down: Box<dyn Fn(bool) + Send + Sync>,
}

impl std::fmt::Debug for CutOff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CutOff")
            .field("elector", &self.elector)
            .finish_non_exhaustive()
    }
}

/// Makes a fresh [`CutOff`] elector.
pub type ConnectCutOff = Arc<dyn Fn() -> BoxFuture<'static, Result<CutOff>> + Send + Sync>;

/// What the suite needs to know about a backend.
#[derive(Clone)]
pub struct Harness {
    backend: &'static str,
    connect: Connect,
    delete_claims: DeleteClaims,
    connect_cut_off: Option<ConnectCutOff>,
    /// Bound on what takes a few round trips: a handover, an observer seeing a change.
    pub quick: Duration,
    /// Bound on a successor leading after the holder crashed: the store's own expiry bound
    /// (TTL, session timeout) plus slack.
    pub crash_failover: Duration,
    /// How long a negative check watches (nothing else must win meanwhile).
    pub settle: Duration,
    /// Whether the store shows waiting candidates (Consul's lock does not).
    pub lists_waiting_candidates: bool,
}

impl std::fmt::Debug for Harness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Harness")
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

impl Harness {
    /// A harness for `backend`; bounds default to 2 s (quick), 30 s (crash) and 300 ms (settle).
    ///
    /// `connect` makes a new elector of the backend; `delete_claims` removes an election's
    /// claims as an operator would with the store's own tool.
    pub fn new<E, Connecting, Deleting>(
        backend: &'static str,
        connect: impl Fn() -> Connecting + Send + Sync + 'static,
        delete_claims: impl Fn(ElectionName) -> Deleting + Send + Sync + 'static,
    ) -> Self
    where
        E: Elector + 'static,
        Connecting: Future<Output = Result<E>> + Send + 'static,
        Deleting: Future<Output = Result<()>> + Send + 'static,
    {
        let connect: Connect = Arc::new(move || {
            let connecting = connect();
            async move { Ok(Arc::new(connecting.await?) as Arc<dyn Elector>) }.boxed()
        });
        let delete_claims: DeleteClaims = Arc::new(move |election| delete_claims(election).boxed());
        Harness {
            backend,
            connect,
            delete_claims,
            connect_cut_off: None,
            quick: Duration::from_secs(2),
            crash_failover: Duration::from_secs(30),
            settle: Duration::from_millis(300),
            lists_waiting_candidates: true,
        }
    }

    /// Adds a way to make electors that a test can cut off: the
    /// [`cut_off_suite!`](crate::cut_off_suite) needs it.
    pub fn with_cut_off(mut self, connect: ConnectCutOff) -> Self {
        self.connect_cut_off = Some(connect);
        self
    }

    async fn cut_off(&self) -> CutOff {
        let connect = self
            .connect_cut_off
            .as_ref()
            .expect("the cut-off cases need Harness::with_cut_off");
        within(self.quick * 5, connect(), "connecting a cut-off client")
            .await
            .unwrap_or_else(|e| panic!("{}: cannot connect through the links: {e}", self.backend))
    }

    async fn elector(&self) -> Arc<dyn Elector> {
        let elector = within(self.quick * 5, (self.connect)(), "connecting a client")
            .await
            .unwrap_or_else(|e| panic!("{}: cannot connect: {e}", self.backend));
        assert_eq!(
            elector.backend(),
            self.backend,
            "the elector names the wrong backend"
        );
        elector
    }

    async fn electors(&self, n: usize) -> Vec<Arc<dyn Elector>> {
        let mut electors = Vec::with_capacity(n);
        for _ in 0..n {
            electors.push(self.elector().await);
        }
        electors
    }

    fn election(&self, case: &str) -> ElectionName {
        let name = format!("conf-{case}-{:08x}", rand::random::<u32>());
        name.parse().expect("test election names are valid")
    }
}

/// Runs `future`, panicking with `what` if it takes longer than `limit`.
pub async fn within<F: Future>(limit: Duration, future: F, what: &str) -> F::Output {
    match tokio::time::timeout(limit, future).await {
        Ok(output) => output,
        Err(_) => panic!("{what}: did not happen within {limit:?}"),
    }
}

/// Asserts that `attempt` fails with [`Error::PermissionDenied`] within 3 s: a refused
/// credential fails at once, it is not retried as if the store were down. `what` names the
/// case.
pub async fn assert_refused_at_once<T: std::fmt::Debug>(
    what: &str,
    attempt: impl Future<Output = Result<T>>,
) {
    let started = Instant::now();
    let result = attempt.await;
    let took = started.elapsed();
    assert!(
        matches!(result, Err(Error::PermissionDenied { .. })),
        "{what}: {result:?}"
    );
    assert!(took < Duration::from_secs(3), "{what}: took {took:?}");
    eprintln!("{what}: {}", result.unwrap_err());
}

/// A campaign that must win: `elector` campaigns in `election` as candidate `id` (whose value
/// is `id` too); panics if the campaign fails.
pub async fn campaign_as<E: Elector + ?Sized>(
    elector: &E,
    election: &ElectionName,
    id: &str,
) -> Leadership {
    let who = Candidate::new(id, id).expect("test candidate ids are valid");
    elector
        .campaign(election, &who)
        .await
        .unwrap_or_else(|e| panic!("{id}: campaign failed: {e}"))
}

/// What a [`spawn_campaign_as`] task gives back once its campaign won.
#[derive(Debug)]
pub struct Won<E> {
    /// The term.
    pub leadership: Leadership,
    /// When the campaign returned.
    pub at: Instant,
    /// The elector, which must outlive the term.
    pub elector: E,
}

/// [`campaign_as`] in a task of its own, so that it waits while the test goes on; the task
/// keeps the elector and gives it back with the term.
pub fn spawn_campaign_as<E: Elector + 'static>(
    elector: E,
    election: &ElectionName,
    id: &str,
) -> tokio::task::JoinHandle<Won<E>> {
    let (election, id) = (election.clone(), id.to_owned());
    tokio::spawn(async move {
        let leadership = campaign_as(&elector, &election, &id).await;
        Won {
            leadership,
            at: Instant::now(),
            elector,
        }
    })
}

fn candidate(name: &str) -> Candidate {
    Candidate::new(name, format!("value-of-{name}")).expect("test candidates are valid")
}

async fn campaign(
    h: &Harness,
    elector: &Arc<dyn Elector>,
    election: &ElectionName,
    who: &Candidate,
) -> Leadership {
    within(
        h.quick,
        elector.campaign(election, who),
        &format!("{} campaigning unopposed", who.id()),
    )
    .await
    .unwrap_or_else(|e| panic!("{}: campaign failed: {e}", who.id()))
}

/// Starts a campaign in a task, so that it waits while the case goes on.
fn spawn_campaign(
    elector: &Arc<dyn Elector>,
    election: &ElectionName,
    who: &Candidate,
) -> tokio::task::JoinHandle<Result<Leadership>> {
    let (elector, election, who) = (elector.clone(), election.clone(), who.clone());
    tokio::spawn(async move { elector.campaign(&election, &who).await })
}

async fn joined(
    task: tokio::task::JoinHandle<Result<Leadership>>,
    limit: Duration,
    what: &str,
) -> Leadership {
    within(limit, task, what)
        .await
        .expect("campaign task panicked")
        .unwrap_or_else(|e| panic!("{what}: campaign failed: {e}"))
}

async fn leader(elector: &Arc<dyn Elector>, election: &ElectionName) -> Option<LeaderInfo> {
    elector
        .leader(election)
        .await
        .unwrap_or_else(|e| panic!("leader query failed: {e}"))
}

async fn next_item(h: &Harness, stream: &mut LeaderStream, what: &str) -> Option<LeaderInfo> {
    loop {
        match within(h.quick, stream.next(), what).await {
            Some(Ok(item)) => return item,
            Some(Err(e)) => tracing::warn!(%e, "observe reported an error; reading on"),
            None => panic!("{what}: the observe stream ended"),
        }
    }
}

/// Waits until `check` holds, re-checking every 20 ms, for at most `limit`.
async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    within(
        limit,
        async {
            while !check().await {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        },
        what,
    )
    .await
}

/// Nobody leads a fresh election; observe starts with `None`; no candidates are listed.
pub async fn no_leader_at_start(h: &Harness) {
    let elector = h.elector().await;
    let election = h.election("empty");
    assert_eq!(
        leader(&elector, &election).await,
        None,
        "a fresh election has a leader"
    );
    let candidates = elector.candidates(&election).await.expect("candidates");
    assert!(
        candidates.is_empty(),
        "a fresh election lists candidates: {candidates:?}"
    );
    let mut observed = elector.observe(&election).await.expect("observe");
    assert_eq!(
        next_item(h, &mut observed, "observe's first item").await,
        None
    );
}

/// N candidates campaign at once: exactly one wins; each resign hands over to exactly one
/// more; at no point do two handles report leadership; tokens grow.
pub async fn single_winner_among_n(h: &Harness) {
    const N: usize = 5;
    let electors = h.electors(N).await;
    let election = h.election("single");
    let mut waiting: Vec<_> = electors
        .iter()
        .enumerate()
        .map(|(i, e)| spawn_campaign(e, &election, &candidate(&format!("c{i}"))))
        .collect();
    let mut previous: Vec<Leadership> = Vec::new();
    for round in 0..N {
        let limit = if round == 0 { h.quick * 2 } else { h.quick };
        let winner = within(
            limit,
            async {
                loop {
                    if let Some(i) = waiting.iter().position(|t| t.is_finished()) {
                        return i;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            },
            &format!("round {round}: someone winning"),
        )
        .await;
        let winner = waiting
            .remove(winner)
            .await
            .expect("campaign task")
            .expect("campaign");
        assert!(
            winner.is_leader(),
            "round {round}: the winner does not report leadership"
        );
        for old in &previous {
            assert!(
                !old.is_leader(),
                "round {round}: an earlier leader still reports leadership"
            );
            assert!(
                old.token() < winner.token(),
                "round {round}: token did not grow"
            );
        }
        // Nobody else may win while the winner leads.
        tokio::time::sleep(h.settle).await;
        let others: Vec<_> = waiting.iter().filter(|t| t.is_finished()).collect();
        assert!(
            others.is_empty(),
            "round {round}: a second candidate won while one leads"
        );
        let now = leader(&electors[0], &election)
            .await
            .expect("someone leads");
        assert_eq!(
            now.id,
            winner.candidate_id(),
            "round {round}: leader query disagrees"
        );
        assert_eq!(
            now.token,
            winner.token(),
            "round {round}: leader query shows another token"
        );
        winner.resign().await.expect("resign");
        previous.push(winner);
    }
}

/// `leader` reports the winner's id, value and token.
pub async fn leader_query_reports_the_winner(h: &Harness) {
    let (a, b) = (h.elector().await, h.elector().await);
    let election = h.election("query");
    let who = candidate("alice");
    let leadership = campaign(h, &a, &election, &who).await;
    let seen = leader(&b, &election)
        .await
        .expect("a leader after a won campaign");
    assert_eq!(seen.id, "alice");
    assert_eq!(seen.value, who.value());
    assert_eq!(seen.token, leadership.token());
    leadership.resign().await.expect("resign");
    eventually(h.quick, "leader query showing nobody after resign", || {
        let (b, election) = (b.clone(), election.clone());
        async move { leader(&b, &election).await.is_none() }
    })
    .await;
}

/// An observer sees nobody, then A, then B after A resigns, then nobody: in order, never the
/// same item twice in a row, never a leader that did not lead.
pub async fn observe_sees_every_change_in_order(h: &Harness) {
    let electors = h.electors(3).await;
    let election = h.election("observe");
    let mut observed = electors[0].observe(&election).await.expect("observe");
    let mut items = vec![next_item(h, &mut observed, "observe's first item").await];
    assert_eq!(items[0], None);

    let a = campaign(h, &electors[1], &election, &candidate("a")).await;
    items.push(next_item(h, &mut observed, "observer seeing a").await);
    assert_eq!(
        items.last().unwrap().as_ref().map(|l| l.token),
        Some(a.token())
    );

    let b_task = spawn_campaign(&electors[2], &election, &candidate("b"));
    // b waiting changes nothing an observer reports: no item, and no repeat of a.
    tokio::time::sleep(h.settle).await;
    let quiet = tokio::time::timeout(h.settle, observed.next()).await;
    assert!(
        quiet.is_err(),
        "observe emitted while a still led: {quiet:?}"
    );
    a.resign().await.expect("resign a");
    let b = joined(b_task, h.quick, "b elected after a resigned").await;
    // Between a and b there may be a moment with no leader (the file backend); nothing else.
    loop {
        let item = next_item(h, &mut observed, "observer seeing b").await;
        items.push(item.clone());
        match item {
            None => continue,
            Some(l) if l.id == "b" => {
                assert_eq!(l.token, b.token());
                break;
            }
            Some(other) => panic!("observer saw {other:?} between a and b"),
        }
    }
    b.resign().await.expect("resign b");
    items.push(next_item(h, &mut observed, "observer seeing nobody").await);
    assert_eq!(items.last().unwrap(), &None);
    for pair in items.windows(2) {
        assert_ne!(pair[0], pair[1], "observe repeated an item: {items:?}");
    }
}

/// A resign hands over at once (no TTL wait); the resigned handle stops reporting
/// leadership and its lost-future resolves with `Resigned`.
pub async fn handover_on_resign(h: &Harness) {
    let (ea, eb) = (h.elector().await, h.elector().await);
    let election = h.election("resign");
    let a = campaign(h, &ea, &election, &candidate("a")).await;
    let b_task = spawn_campaign(&eb, &election, &candidate("b"));
    tokio::time::sleep(h.settle).await;
    assert!(!b_task.is_finished(), "b won while a leads");
    let started = Instant::now();
    a.resign().await.expect("resign");
    assert!(!a.is_leader(), "a still reports leadership after resign");
    assert_eq!(
        within(h.quick, a.lost(), "a's lost-future").await,
        LossReason::Resigned
    );
    let b = joined(b_task, h.quick, "b elected after a resigned").await;
    took_over(h, "handover", started, a.token(), b).await;
}

/// `b` took over from the term whose token was `before`, `started` ago (`what`: handover or
/// failover): logs how long it took, checks the token grew, and ends `b`.
async fn took_over(
    h: &Harness,
    what: &str,
    started: Instant,
    before: crate::FencingToken,
    b: Leadership,
) {
    let took_ms = started.elapsed().as_millis() as u64;
    tracing::info!(backend = h.backend, what, took_ms, "took over");
    assert!(b.token() > before, "token did not grow across the {what}");
    b.resign().await.expect("resign");
}

/// The holder vanishes without resigning (its client dropped, like a crashed process): a
/// waiting candidate leads within the store's expiry bound, with a greater token.
pub async fn handover_on_holder_crash(h: &Harness) {
    let (ea, eb) = (h.elector().await, h.elector().await);
    let election = h.election("crash");
    let a = campaign(h, &ea, &election, &candidate("a")).await;
    let a_token = a.token();
    let b_task = spawn_campaign(&eb, &election, &candidate("b"));
    tokio::time::sleep(h.settle).await;
    assert!(!b_task.is_finished(), "b won while a leads");
    drop(a);
    drop(ea);
    let started = Instant::now();
    let b = joined(b_task, h.crash_failover, "b elected after a crashed").await;
    took_over(h, "failover", started, a_token, b).await;
}

/// A campaign whose future is dropped withdraws: it is not listed, it never leads, and the
/// next candidate leads as soon as the holder resigns.
pub async fn cancelled_campaign_leaves_nothing_behind(h: &Harness) {
    let electors = h.electors(3).await;
    let election = h.election("cancel");
    let a = campaign(h, &electors[0], &election, &candidate("a")).await;
    let mut observed = electors[0].observe(&election).await.expect("observe");
    let b_task = spawn_campaign(&electors[1], &election, &candidate("b"));
    if h.lists_waiting_candidates {
        eventually(h.quick, "b listed as a waiting candidate", || {
            let (e, election) = (electors[0].clone(), election.clone());
            async move {
                let list = e.candidates(&election).await.expect("candidates");
                list.iter().any(|c| c.id == "b" && !c.leading)
            }
        })
        .await;
    } else {
        tokio::time::sleep(h.settle).await;
    }
    b_task.abort();
    assert!(
        b_task.await.is_err_and(|e| e.is_cancelled()),
        "b's campaign was not cancelled"
    );
    eventually(h.quick, "b withdrawn from the candidates", || {
        let (e, election) = (electors[0].clone(), election.clone());
        async move {
            let list = e.candidates(&election).await.expect("candidates");
            !list.iter().any(|c| c.id == "b")
        }
    })
    .await;
    a.resign().await.expect("resign");
    let c = within(
        h.quick,
        electors[2].campaign(&election, &candidate("c")),
        "c elected after a resigned",
    )
    .await
    .expect("campaign c");
    assert!(c.is_leader());
    // Drain what the observer saw: b must never have led.
    within(
        h.quick * 2,
        async {
            while let Ok(Some(item)) = tokio::time::timeout(h.settle, observed.next()).await {
                if let Ok(Some(l)) = item {
                    assert_ne!(l.id, "b", "a cancelled candidate led");
                }
            }
        },
        "the observer falling quiet",
    )
    .await;
    c.resign().await.expect("resign");
}

/// One elector campaigning as two candidates, one after the other and in two elections: the
/// store names whichever candidate leads each (one session serves both, so its name cannot).
pub async fn leader_names_the_candidate_of_each_campaign(h: &Harness) {
    let elector = h.elector().await;
    let (first, second) = (h.election("names-1"), h.election("names-2"));
    let a = campaign(h, &elector, &first, &candidate("a")).await;
    let b = campaign(h, &elector, &second, &candidate("b")).await;
    assert_eq!(
        leader(&elector, &first).await.map(|l| l.id).as_deref(),
        Some("a")
    );
    assert_eq!(
        leader(&elector, &second).await.map(|l| l.id).as_deref(),
        Some("b"),
        "the second election's leader is named after the elector's first candidate"
    );
    a.resign().await.expect("resign");
    let c = campaign(h, &elector, &first, &candidate("c")).await;
    assert_eq!(
        leader(&elector, &first).await.map(|l| l.id).as_deref(),
        Some("c"),
        "a later candidate of the same elector is named after an earlier one"
    );
    c.resign().await.expect("resign");
    b.resign().await.expect("resign");
}

/// One elector, two campaigns in one election: the second is refused with
/// [`Error::AlreadyCampaigning`] — while the first waits behind another leader, while it
/// races the first, and while the first's term leads — so one elector never holds two
/// leaderships of an election. Once its term is over, the elector campaigns again.
pub async fn one_candidacy_per_election_per_elector(h: &Harness) {
    let (ours, theirs) = (h.elector().await, h.elector().await);
    let election = h.election("twice");
    let refused = |result: Result<Leadership>, what: &str| match result {
        Err(Error::AlreadyCampaigning { election: e }) => assert_eq!(e, election),
        Err(e) => panic!("{what}: expected AlreadyCampaigning, got {e}"),
        Ok(l) => panic!(
            "{what}: a second campaign of one elector won a term (token {})",
            l.token()
        ),
    };

    // Both at once, unopposed: exactly one leads.
    let a = candidate("a");
    let (first, second) = tokio::join!(
        within(h.quick, ours.campaign(&election, &a), "campaign 1"),
        within(h.quick, ours.campaign(&election, &a), "campaign 2"),
    );
    let (leading, other) = match (first, second) {
        (Ok(l), other) | (other, Ok(l)) => (l, other),
        (Err(a), Err(b)) => panic!("neither campaign won: {a}; {b}"),
    };
    refused(other, "two campaigns at once");
    // While the term leads: campaign and try_campaign are refused, the term goes on.
    refused(
        within(h.quick, ours.campaign(&election, &a), "campaign 3").await,
        "a campaign while leading",
    );
    match within(
        h.quick,
        ours.try_campaign(&election, &a),
        "try_campaign while leading",
    )
    .await
    {
        Err(Error::AlreadyCampaigning { .. }) => {}
        other => panic!("try_campaign while leading: expected AlreadyCampaigning, got {other:?}"),
    }
    tokio::time::sleep(h.settle).await;
    assert!(leading.is_leader(), "refused campaigns ended the term");
    assert_eq!(
        leader(&ours, &election).await.map(|l| l.token),
        Some(leading.token()),
        "refused campaigns changed the claim"
    );

    // Behind another leader: the waiting campaign holds the election, a second is refused.
    leading.resign().await.expect("resign");
    let held = campaign(h, &theirs, &election, &candidate("b")).await;
    let waiting = spawn_campaign(&ours, &election, &candidate("a"));
    tokio::time::sleep(h.settle).await;
    refused(
        within(h.quick, ours.campaign(&election, &a), "campaign 4").await,
        "a second campaign while the first waits",
    );
    held.resign().await.expect("resign");
    let next = joined(waiting, h.quick, "the waiting campaign leading").await;
    assert!(next.is_leader() && next.token() > held.token());
    // Its term over, the elector campaigns again.
    next.resign().await.expect("resign");
    let again = campaign(h, &ours, &election, &candidate("a")).await;
    assert!(again.token() > next.token());
    again.resign().await.expect("resign");
}

/// Resign twice, and again after a successor leads: always `Ok`, and the successor keeps
/// leading.
pub async fn resign_is_idempotent(h: &Harness) {
    let (ea, eb) = (h.elector().await, h.elector().await);
    let election = h.election("idempotent");
    let a = campaign(h, &ea, &election, &candidate("a")).await;
    a.resign().await.expect("first resign");
    a.resign().await.expect("second resign");
    assert_eq!(a.state(), LeadershipState::Lost(LossReason::Resigned));
    let b = campaign(h, &eb, &election, &candidate("b")).await;
    a.resign().await.expect("resign after a successor leads");
    tokio::time::sleep(h.settle).await;
    assert!(
        b.is_leader(),
        "an old handle's resign ended the successor's term"
    );
    assert_eq!(
        leader(&ea, &election).await.map(|l| l.id).as_deref(),
        Some("b")
    );
    b.resign().await.expect("resign");
}

/// A proclaimed value reaches observers and leader queries, with the same token; after the
/// term ends proclaim is refused.
pub async fn proclaim_is_visible_to_observers(h: &Harness) {
    let (ea, eb) = (h.elector().await, h.elector().await);
    let election = h.election("proclaim");
    let a = campaign(h, &ea, &election, &candidate("a")).await;
    let mut observed = eb.observe(&election).await.expect("observe");
    let first = next_item(h, &mut observed, "observer seeing a")
        .await
        .expect("a leads");
    assert_eq!(first.value, b"value-of-a");
    a.proclaim("new-address").await.expect("proclaim");
    let item = next_item(h, &mut observed, "observer seeing the proclaimed value")
        .await
        .expect("a leads");
    assert_eq!(
        (item.id.as_str(), item.value.as_slice(), item.token),
        ("a", &b"new-address"[..], a.token())
    );
    assert_eq!(
        leader(&eb, &election).await.expect("a leads").value,
        b"new-address"
    );
    a.resign().await.expect("resign");
    assert!(
        matches!(a.proclaim("late").await, Err(Error::NotLeader { .. })),
        "proclaim after resign was accepted"
    );
}

/// `try_campaign` wins an empty election, returns `None` at once when someone leads, and
/// leaves no candidacy behind.
pub async fn try_campaign_does_not_wait(h: &Harness) {
    let (ea, eb) = (h.elector().await, h.elector().await);
    let election = h.election("try");
    let try_as = |elector: &Arc<dyn Elector>, name: &str, what: &'static str| {
        let (elector, election, who) = (elector.clone(), election.clone(), candidate(name));
        async move {
            within(h.quick, elector.try_campaign(&election, &who), what)
                .await
                .unwrap_or_else(|e| panic!("{what}: try_campaign failed: {e}"))
        }
    };
    let a = try_as(&ea, "a", "try on an empty election")
        .await
        .expect("an empty election is won by a try");
    let b = try_as(&eb, "b", "try while a leads").await;
    assert!(b.is_none(), "a try won while someone leads");
    let list = eb.candidates(&election).await.expect("candidates");
    assert!(
        list.iter().all(|c| c.id != "b"),
        "a failed try's claim outlived its answer: {list:?}"
    );
    a.resign().await.expect("resign");
    eventually(h.quick, "nobody leading after a resigned", || {
        let (e, election) = (eb.clone(), election.clone());
        async move { leader(&e, &election).await.is_none() }
    })
    .await;
    let list = eb.candidates(&election).await.expect("candidates");
    assert!(list.is_empty(), "a failed try left a candidacy: {list:?}");
    let b = try_as(&eb, "b", "try after resign")
        .await
        .expect("a try wins once nobody leads");
    assert!(b.token() > a.token());
    b.resign().await.expect("resign");
}

/// Twenty terms between two clients, by campaign and by try: every token is greater than
/// the one before.
pub async fn tokens_strictly_increase_over_20_terms(h: &Harness) {
    let electors = h.electors(2).await;
    let election = h.election("tokens");
    let mut last = None;
    for term in 0..20 {
        let elector = &electors[term % 2];
        let who = candidate(&format!("c{}", term % 2));
        let leadership = if term % 3 == 0 {
            within(h.quick, elector.try_campaign(&election, &who), "try")
                .await
                .expect("try_campaign")
                .expect("the election is free")
        } else {
            campaign(h, elector, &election, &who).await
        };
        if let Some(last) = last {
            assert!(
                leadership.token() > last,
                "term {term}: token {} after {last}",
                leadership.token()
            );
        }
        last = Some(leadership.token());
        leadership.resign().await.expect("resign");
    }
}

/// Deleting the claim by hand ends the term within a second: the lost-future resolves with
/// `Revoked`, `is_leader` turns false, fenced writes are refused, and another candidate can
/// lead.
pub async fn lost_future_resolves_when_claim_is_deleted(h: &Harness) {
    let (ea, eb) = (h.elector().await, h.elector().await);
    let election = h.election("revoked");
    let a = campaign(h, &ea, &election, &candidate("a")).await;
    (h.delete_claims)(election.clone())
        .await
        .expect("deleting the claim by hand");
    // A watch on its own claim (etcd, ZooKeeper, Consul) or a poll of it (file) tells the
    // holder within a second, whatever the TTL.
    let reason = within(
        Duration::from_secs(1),
        a.lost(),
        "a noticing its claim was deleted",
    )
    .await;
    assert_eq!(reason, LossReason::Revoked);
    assert!(!a.is_leader());
    assert!(matches!(
        a.fenced_put("k", "v").await,
        Err(Error::NotLeader { .. })
    ));
    let b = campaign(h, &eb, &election, &candidate("b")).await;
    assert!(b.token() > a.token());
    b.resign().await.expect("resign");
}

/// One client leads two elections on one session; closing it ends both terms with
/// `ShutDown`, releases both claims at once, and refuses further calls.
pub async fn close_ends_every_leadership(h: &Harness) {
    let (ea, eb) = (h.elector().await, h.elector().await);
    let (one, two) = (h.election("close1"), h.election("close2"));
    let a1 = campaign(h, &ea, &one, &candidate("a")).await;
    let a2 = campaign(h, &ea, &two, &candidate("a")).await;
    let b_task = spawn_campaign(&eb, &one, &candidate("b"));
    within(h.quick, ea.close(), "close").await.expect("close");
    for term in [&a1, &a2] {
        assert_eq!(
            within(h.quick, term.lost(), "lost after close").await,
            LossReason::ShutDown
        );
        assert!(!term.is_leader());
    }
    let _ = joined(b_task, h.quick, "b elected after a closed").await;
    // The other election's claim went too.
    let two_free = within(
        h.quick,
        eb.try_campaign(&two, &candidate("b")),
        "try after close",
    )
    .await
    .expect("try_campaign");
    assert!(
        two_free.is_some(),
        "a closed elector's claim on a second election was left behind"
    );
    let after = ea.campaign(&two, &candidate("a")).await;
    assert!(
        matches!(after, Err(Error::Closed { .. })),
        "campaign after close: {after:?}"
    );
}

/// What `term` reads at `key` through its fenced get must be `value`.
async fn assert_stored(term: &Leadership, key: &str, value: &str) {
    let stored = term.fenced_get(key).await.expect("fenced get");
    assert_eq!(stored.as_deref(), Some(value.as_bytes()), "at {key}");
}

/// A fenced write commits for the current term only: after a handover the old term's write
/// is refused and does not land.
pub async fn fenced_put_commits_only_for_the_current_term(h: &Harness) {
    let (ea, eb) = (h.elector().await, h.elector().await);
    let election = h.election("fenced");
    let key = format!("{election}-data");
    let a = campaign(h, &ea, &election, &candidate("a")).await;
    a.fenced_put(&key, "from-a")
        .await
        .expect("fenced put by the leader");
    assert_stored(&a, &key, "from-a").await;
    let b_task = spawn_campaign(&eb, &election, &candidate("b"));
    a.resign().await.expect("resign");
    let b = joined(b_task, h.quick, "b elected after a resigned").await;
    let late = a.fenced_put(&key, "late-from-a").await;
    assert!(
        matches!(late, Err(Error::NotLeader { .. })),
        "an ended term's write: {late:?}"
    );
    assert_stored(&b, &key, "from-a").await;
    b.fenced_put(&key, "from-b")
        .await
        .expect("fenced put by the new leader");
    assert_stored(&b, &key, "from-b").await;
    b.resign().await.expect("resign");
}

/// A resign whose release does not reach the store (its links are down), then the same
/// elector campaigns again once they are up: the first term's release, retried in the
/// background, must not end the second term or let a rival in beside it. Whoever leads
/// next — the second campaign (Consul lets a session take the lock it still holds) or the
/// waiting rival — leads alone and goes on leading.
pub async fn a_late_release_never_ends_a_later_term(h: &Harness) {
    let cut = h.cut_off().await;
    let rival = h.elector().await;
    let election = h.election("late-release");
    let a = candidate("a");
    let first = campaign(h, &cut.elector, &election, &a).await;
    let rival_task = spawn_campaign(&rival, &election, &candidate("b"));
    tokio::time::sleep(h.settle).await;
    (cut.set_down)(true);
    let resigned = within(h.quick * 3, first.resign(), "resign while cut off").await;
    (cut.set_down)(false);
    let second_task = spawn_campaign(&cut.elector, &election, &a);
    // The first of the two to lead; the other keeps waiting.
    let (winner, loser_task, winner_is_second) = within(
        h.quick * 3,
        async {
            let (mut second_task, mut rival_task) = (second_task, rival_task);
            tokio::select! {
                won = &mut second_task => (won, rival_task, true),
                won = &mut rival_task => (won, second_task, false),
            }
        },
        "someone leading after the first term's resign",
    )
    .await;
    let winner = winner
        .expect("campaign task")
        .unwrap_or_else(|e| panic!("the first to finish failed: {e}"));
    let who = if winner_is_second {
        "the second term"
    } else {
        "the rival"
    };
    assert!(
        winner.token() > first.token(),
        "{who}'s token {} is not greater than the first term's {}",
        winner.token(),
        first.token()
    );
    // Longer than a few background retries of the first term's release.
    let watch_until = Instant::now() + Duration::from_millis(2_000);
    while Instant::now() < watch_until {
        assert!(
            winner.is_leader(),
            "{who} (token {}) stopped leading: {:?} — the first term (resign: {resigned:?}) \
             was released late over it",
            winner.token(),
            winner.state()
        );
        assert!(
            !loser_task.is_finished(),
            "two leaders: {who} leads and the other campaign won too"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    winner.resign().await.expect("resign");
    let next = joined(loser_task, h.quick * 2, "the other candidate leading").await;
    assert!(next.token() > winner.token());
    next.resign().await.expect("resign");
}

/// A waiting campaign dropped while its links are down: its claim must still be withdrawn
/// once they are up (our own live session would otherwise keep the orphan ahead of everyone
/// who came later), so the next candidate leads when the holder resigns.
pub async fn a_campaign_dropped_while_cut_off_is_withdrawn_later(h: &Harness) {
    let cut = h.cut_off().await;
    let (holder, third) = (h.elector().await, h.elector().await);
    let election = h.election("orphan");
    let held = campaign(h, &holder, &election, &candidate("a")).await;
    let waiting = spawn_campaign(&cut.elector, &election, &candidate("b"));
    if h.lists_waiting_candidates {
        eventually(h.quick, "b listed as a waiting candidate", || {
            let (e, election) = (holder.clone(), election.clone());
            async move {
                let list = e.candidates(&election).await.expect("candidates");
                list.iter().any(|c| c.id == "b")
            }
        })
        .await;
    } else {
        tokio::time::sleep(h.settle).await;
    }
    (cut.set_down)(true);
    waiting.abort();
    // Long enough for the withdrawal's first attempt to fail.
    tokio::time::sleep(h.settle).await;
    (cut.set_down)(false);
    let c = spawn_campaign(&third, &election, &candidate("c"));
    tokio::time::sleep(h.settle).await;
    held.resign().await.expect("resign");
    let c = joined(
        c,
        h.quick * 3,
        "c leading once the holder resigned (b's claim, dropped while cut off, still ahead?)",
    )
    .await;
    assert!(c.token() > held.token());
    c.resign().await.expect("resign");
}

/// A leader cut off until its term is lost, whose resign cannot reach the store either: once
/// its links are back, the elector ends the session it gave up at the store itself, so the
/// waiting rival leads within a few round trips of the heal — not at the store's own expiry
/// (Consul invalidates a session only 2 × TTL after its last renewal, then runs the lock
/// delay), and nothing of ours may keep a session we no longer renew alive (a ZooKeeper client
/// pings on its own).
pub async fn a_session_given_up_lets_its_claims_go(h: &Harness) {
    let cut = h.cut_off().await;
    let rival = h.elector().await;
    let election = h.election("given-up");
    let held = campaign(h, &cut.elector, &election, &candidate("a")).await;
    let rival_task = spawn_campaign(&rival, &election, &candidate("b"));
    tokio::time::sleep(h.settle).await;
    (cut.set_down)(true);
    let reason = within(h.crash_failover, held.lost(), "the cut-off term lost").await;
    let resigned = within(h.quick * 3, held.resign(), "resign while cut off").await;
    (cut.set_down)(false);
    let next = joined(
        rival_task,
        h.quick * 2,
        &format!(
            "the rival leading once the cut-off leader's links are back (lost: {reason}, \
             resign: {resigned:?})"
        ),
    )
    .await;
    assert!(next.token() > held.token());
    next.resign().await.expect("resign");
}

/// Expands the cases that cut one elector off the store (see [`Harness::with_cut_off`]).
#[macro_export]
macro_rules! cut_off_suite {
    ($harness:expr) => {
        $crate::conformance_suite!(@cases $harness;
            a_late_release_never_ends_a_later_term,
            a_campaign_dropped_while_cut_off_is_withdrawn_later,
            a_session_given_up_lets_its_claims_go
        );
    };
}

/// Expands both suites for a backend whose electors can be cut off: `mod conformance`
/// ([`conformance_suite!`](crate::conformance_suite)) and `mod cut_off`
/// ([`cut_off_suite!`](crate::cut_off_suite)), each test with a harness from the function
/// `$harness` beside the macro.
#[macro_export]
macro_rules! cluster_suites {
    ($harness:ident) => {
        mod conformance {
            $crate::conformance_suite!(super::$harness());
        }

        mod cut_off {
            $crate::cut_off_suite!(super::$harness());
        }
    };
}

/// Expands to one `#[tokio::test]` per conformance case, each with a harness from `$harness`
/// (an expression evaluated per test).
///
/// ```no_run
/// use std::time::Duration;
/// use elect_core::testkit::Harness;
/// use elect_core::MemoryStore;
///
/// fn harness() -> Harness {
///     let store = MemoryStore::new();
///     let deleting = store.clone();
///     Harness::new(
///         "memory",
///         move || {
///             let elector = store.elector(Duration::from_secs(2), Duration::from_millis(200));
///             async move { Ok(elector) }
///         },
///         move |election| {
///             deleting.delete_claims(&election);
///             async { Ok(()) }
///         },
///     )
/// }
///
/// mod memory {
///     elect_core::conformance_suite!(super::harness());
/// }
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! conformance_suite {
    ($harness:expr) => {
        $crate::conformance_suite!(@cases $harness;
            no_leader_at_start,
            single_winner_among_n,
            leader_query_reports_the_winner,
            observe_sees_every_change_in_order,
            handover_on_resign,
            handover_on_holder_crash,
            cancelled_campaign_leaves_nothing_behind,
            resign_is_idempotent,
            one_candidacy_per_election_per_elector,
            leader_names_the_candidate_of_each_campaign,
            proclaim_is_visible_to_observers,
            try_campaign_does_not_wait,
            tokens_strictly_increase_over_20_terms,
            lost_future_resolves_when_claim_is_deleted,
            close_ends_every_leadership,
            fenced_put_commits_only_for_the_current_term
        );
    };
    (@cases $harness:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let harness = $harness;
                $crate::testkit::$case(&harness).await;
            }
        )*
    };
}

/// The certificates of [`tls_cases`]: PEM files.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The CA that signed the server's certificate and `client`.
    pub ca: std::path::PathBuf,
    /// A CA that signed neither.
    pub stranger_ca: std::path::PathBuf,
    /// A client certificate and key signed by `ca`.
    pub client: (std::path::PathBuf, std::path::PathBuf),
    /// A client certificate and key signed by `stranger_ca`.
    pub strangers_client: (std::path::PathBuf, std::path::PathBuf),
}

/// The TLS cases every backend runs against a server of its own that requires client
/// certificates; `connect` makes an elector from a [`crate::config::TlsConfig`].
///
/// The right CA and client certificate lead a full term (waiting up to a minute for the
/// server to come up); no client certificate, one of another CA, and a CA that did not sign
/// the server's certificate each fail within 10 s with a message containing `says` (any
/// case: what tells the user to look at certificates); with no CA given, the system's trust store is
/// used (`SSL_CERT_FILE` points it at `files.ca` for that one connect — run this in a test
/// binary of its own, as it sets the process's environment).
pub async fn tls_cases<E, F, Fut>(files: &TlsFiles, says: &str, connect: F)
where
    E: Elector,
    F: Fn(crate::config::TlsConfig) -> Fut,
    Fut: Future<Output = Result<E>>,
{
    use crate::config::TlsConfig;
    let tls = |ca: Option<&std::path::Path>,
               client: Option<&(std::path::PathBuf, std::path::PathBuf)>| TlsConfig {
        ca: ca.map(std::path::Path::to_path_buf),
        cert: client.map(|(cert, _)| cert.clone()),
        key: client.map(|(_, key)| key.clone()),
    };
    let started = Instant::now();
    let elector = loop {
        match connect(tls(Some(&files.ca), Some(&files.client))).await {
            Ok(elector) => break elector,
            Err(error) => {
                assert!(
                    started.elapsed() < Duration::from_secs(60),
                    "the TLS server did not accept the right CA and certificate: {error}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    let election: ElectionName = "tls".parse().expect("a valid name");
    let leadership = elector
        .campaign(
            &election,
            &Candidate::new("a", "a").expect("a valid candidate"),
        )
        .await
        .expect("a campaign over TLS");
    leadership
        .fenced_put("tls-data", b"x")
        .await
        .expect("a fenced write over TLS");
    leadership.resign().await.expect("a resign over TLS");
    elector.close().await.expect("close");

    let cases = [
        (tls(Some(&files.ca), None), "no client certificate"),
        (
            tls(Some(&files.ca), Some(&files.strangers_client)),
            "a client certificate of another CA",
        ),
        (
            tls(Some(&files.stranger_ca), Some(&files.client)),
            "a CA that did not sign the server's certificate",
        ),
    ];
    for (config, what) in cases {
        let started = Instant::now();
        let result = connect(config).await;
        let took = started.elapsed();
        let message = result.as_ref().err().map(ToString::to_string);
        eprintln!("{what}: after {took:?}: {message:?}");
        let message = message.unwrap_or_else(|| panic!("{what}: connected"));
        assert!(
            message.to_lowercase().contains(&says.to_lowercase()),
            "{what}: the error should say {says:?}: {message}"
        );
        assert!(took < Duration::from_secs(10), "{what}: took {took:?}");
    }

    std::env::set_var("SSL_CERT_FILE", &files.ca);
    let system = connect(tls(None, Some(&files.client))).await;
    std::env::remove_var("SSL_CERT_FILE");
    system
        .expect("no CA given: the system's trust store (SSL_CERT_FILE) is used")
        .close()
        .await
        .expect("close");
}
