//! The `Elector` trait: the contract every backend implements.

use std::fmt;

use futures::stream::BoxStream;

use crate::error::Result;
use crate::{Candidate, CandidateInfo, ElectionName, LeaderInfo, Leadership};

/// Leader changes of one election: `Some(leader)` or `None` (nobody leads).
///
/// The first item is the current state; then one item per change, never the same leader
/// twice in a row. An `Err` item reports trouble reaching the store; the stream goes on and
/// re-reads the truth once the store answers again, so the last item is always the truth.
/// The stream ends when the elector is closed.
pub type LeaderStream = BoxStream<'static, Result<Option<LeaderInfo>>>;

/// A client of one store that campaigns in, and reports on, named elections.
///
/// One `Elector` holds one session with its store (an etcd lease, a Consul session, a
/// ZooKeeper session), shared by every campaign it makes: a process that leads 1,000
/// elections pays the keep-alive cost of one. Losing the session loses every leadership it
/// carries, each with its own `Lost` state.
///
/// # Contract
///
/// * [`campaign`](Elector::campaign) joins the election and resolves when this candidate
///   leads. Dropping the future withdraws the candidacy: nothing is left behind but what a
///   TTL will reap.
/// * [`try_campaign`](Elector::try_campaign) returns at once: `Some` if this candidate leads
///   now, `None` if someone else does (and leaves no candidacy behind).
/// * One candidacy per election: while a campaign of this elector runs in an election, or
///   its term there is not lost, another `campaign` or `try_campaign` of the same elector in
///   that election returns [`Error::AlreadyCampaigning`](crate::Error::AlreadyCampaigning)
///   at once, and the first goes on untouched. (A campaign whose future was dropped is
///   withdrawn first; a new campaign waits for that.) Two candidates of one process need two
///   electors.
/// * Tokens: every term's [`FencingToken`](crate::FencingToken) is greater than every
///   earlier term's of the same election, in any process.
/// * At most one [`Leadership::is_leader`] is true at any instant for an election, given
///   clocks that run at the same rate within the drift margin.
/// * After [`close`](Elector::close) every leadership is `Lost(ShutDown)`, every claim is
///   released, and every method returns [`Error::Closed`](crate::Error::Closed). Dropping
///   an elector without closing it abandons its session as a crash would: its claims stand
///   until the store's TTL reaps them.
///
/// The trait is object safe: pick a backend at run time as `Box<dyn Elector>`.
#[async_trait::async_trait]
pub trait Elector: fmt::Debug + Send + Sync {
    /// The backend's name: `etcd`, `consul`, `zookeeper`, `file` or `memory`.
    fn backend(&self) -> &'static str;

    /// Joins `election` as `candidate` and waits until elected.
    async fn campaign(&self, election: &ElectionName, candidate: &Candidate) -> Result<Leadership>;

    /// One attempt that does not wait: leadership if nobody else leads now.
    async fn try_campaign(
        &self,
        election: &ElectionName,
        candidate: &Candidate,
    ) -> Result<Option<Leadership>>;

    /// Who leads `election` now, as the store says; `None` if nobody does.
    async fn leader(&self, election: &ElectionName) -> Result<Option<LeaderInfo>>;

    /// The candidates the store shows for `election`, leader first. Stores where waiting
    /// candidates are invisible (Consul's lock) show only the leader.
    async fn candidates(&self, election: &ElectionName) -> Result<Vec<CandidateInfo>>;

    /// Every leader change of `election`; see [`LeaderStream`].
    async fn observe(&self, election: &ElectionName) -> Result<LeaderStream>;

    /// Resigns every leadership, withdraws every candidacy and ends the session.
    async fn close(&self) -> Result<()>;
}
