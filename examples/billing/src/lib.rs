//! The billing example: several replicas of a job that charges subscriptions; only the leader
//! charges, and the [`ledger`] refuses a charge whose fencing token is lower than one it has
//! already seen — which is what stops a leader that woke from a pause after its successor
//! started.
//!
//! [`charge_due`] is the job. It runs under a [`Leadership`] (`billing`, the binary, campaigns
//! itself) or under `elect run` (`billing --under-elect`: the token comes from
//! `ELECT_FENCING_TOKEN`, and `elect` stops the process when the term ends).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use elect::history::{Event, History};
use elect::Leadership;

pub mod ledger;

use ledger::{Ledger, LedgerError, Verdict};

/// The exit code of `billing --under-elect` when the ledger refused its token: a newer term
/// has written, and `elect run` ends with the same code.
pub const FENCED_EXIT_CODE: u8 = 3;

/// How the job charges.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    /// Every subscription is charged once per period of this length (wall clock).
    pub period: Duration,
    /// Time spent preparing each charge before it is written (an invoice, a payment call):
    /// a pause here is exactly what fencing tokens are for.
    pub work: Duration,
}

impl Schedule {
    /// The billing period now: the number of whole periods since 1970.
    pub fn current_period(&self) -> i64 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        (now.as_millis() / self.period.as_millis().max(1)) as i64
    }
}

/// Why [`charge_due`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The term is no longer `Leading` (suspended or lost).
    NotLeading,
    /// The ledger refused a write: a newer term has written, so this one is over whatever
    /// its handle believes.
    Fenced {
        /// The highest token the ledger had seen.
        highest: u64,
    },
}

/// Who is charging, and under which token.
pub trait Term {
    /// The fencing token.
    fn token(&self) -> u64;
    /// Whether the term may act now.
    fn is_leader(&self) -> bool;
}

impl Term for Leadership {
    fn token(&self) -> u64 {
        Leadership::token(self).get()
    }
    fn is_leader(&self) -> bool {
        Leadership::is_leader(self)
    }
}

/// A term given by `elect run`: the command only runs while it leads.
#[derive(Debug, Clone, Copy)]
pub struct SupervisedTerm(pub u64);

impl Term for SupervisedTerm {
    fn token(&self) -> u64 {
        self.0
    }
    fn is_leader(&self) -> bool {
        true
    }
}

/// Charges every subscription due in the current period, one by one, checking the term
/// before each charge and writing it with the term's token; returns when nothing is due,
/// when the term stops leading, or when the ledger fences it off.
///
/// `who` is the candidate id written to the ledger and the history.
pub async fn charge_due(
    ledger: &mut Ledger,
    term: &impl Term,
    who: &str,
    schedule: Schedule,
    history: Option<&History>,
) -> Result<Option<Stop>, LedgerError> {
    let period = schedule.current_period();
    for subscription in ledger.due(period)? {
        if !term.is_leader() {
            return Ok(Some(Stop::NotLeading));
        }
        tokio::time::sleep(schedule.work).await;
        if let Some(history) = history {
            let _ = history.record(Event::Action {
                token: term.token(),
                what: format!("charge {subscription} for period {period}"),
            });
        }
        match ledger.charge(who, term.token(), &subscription, period)? {
            Verdict::Accepted => {
                tracing::info!(who, token = term.token(), subscription, period, "charged")
            }
            Verdict::Rejected { highest } => {
                tracing::warn!(
                    who,
                    token = term.token(),
                    highest,
                    subscription,
                    "the ledger refused a stale token: a newer leader has written"
                );
                return Ok(Some(Stop::Fenced { highest }));
            }
        }
    }
    Ok(None)
}

/// Announces `term` to the ledger before anything is read, so that no write of an older
/// term can be taken after this one starts charging.
pub fn open_term(
    ledger: &mut Ledger,
    term: &impl Term,
    who: &str,
    history: Option<&History>,
) -> Result<Option<Stop>, LedgerError> {
    if let Some(history) = history {
        let _ = history.record(Event::Action {
            token: term.token(),
            what: "open term".to_owned(),
        });
    }
    Ok(match ledger.open_term(who, term.token())? {
        Verdict::Accepted => None,
        Verdict::Rejected { highest } => Some(Stop::Fenced { highest }),
    })
}
