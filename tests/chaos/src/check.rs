//! The checker: reads a [`history`](elect::history) and the billing ledger's journal, and
//! reports every violation of S1–S4 (safety), of the ledger's own invariants, and of L1–L2
//! (liveness bounds), with the failover and handover times it measured.
//!
//! A *term* is what one candidate believed: `(who, token)` from its `Elected` record to the
//! end of its belief — the earlier of its `Lost` record's time and that record's deadline,
//! or the `kill-leader` fault that killed it. A term with neither is *open*: it never ended.
//!
//! Every time is a `CLOCK_MONOTONIC` nanosecond; displays are in milliseconds.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::Duration;

use billing::ledger::{Entry, Operation};
use elect::history::{Event, Record};

/// The fault kinds whose target is the leader and whose successor is bounded by L1.
const FAILOVER_KINDS: [&str; 3] = ["kill-leader", "freeze-leader", "cut-leader"];
/// The fault kind whose successor is bounded by L2.
const HANDOVER_KIND: &str = "resign";
/// Loss reasons written when the candidate gave up on its own: S3 does not apply.
const VOLUNTARY_REASONS: [&str; 4] = ["resigned", "stopped", "command-exited", "fenced"];
/// Loss reasons that an operator's removal of the claim produces.
const OPERATOR_REASONS: [&str; 2] = ["revoked", "expired"];

/// The bounds a history is judged by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// L1: from a `kill-leader`, `freeze-leader` or `cut-leader` fault to the next `Elected`
    /// of another candidate.
    pub failover: Duration,
    /// L2: from a `resign` fault to the next `Elected` of another candidate.
    pub handover: Duration,
    /// S3: how long after its deadline a candidate may still write that it lost.
    pub loss_slack: Duration,
}

/// How a term ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// The candidate wrote that it lost.
    Lost {
        /// When it wrote so.
        t: u64,
        /// Why.
        reason: String,
        /// The term's deadline when it wrote so.
        deadline: Option<u64>,
    },
    /// A `kill-leader` fault killed the candidate before it wrote anything.
    Killed {
        /// The fault's time.
        t: u64,
    },
    /// Nothing ended it.
    Open,
}

/// One candidate's belief that it leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Term {
    /// The candidate.
    pub who: String,
    /// The term's fencing token.
    pub token: u64,
    /// Its `Elected` record's time.
    pub start: u64,
    /// When belief ended (`None`: never).
    pub end: Option<u64>,
    /// What ended it.
    pub ending: Ending,
}

impl Term {
    /// Whether the term never ended.
    pub fn is_open(&self) -> bool {
        self.end.is_none()
    }

    /// Whether `self` and `other` were believed in at a common instant.
    pub fn overlaps(&self, other: &Term) -> bool {
        before(other.start, self.end) && before(self.start, other.end)
    }
}

impl fmt::Display for Term {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (token {}) from {} to ",
            self.who,
            self.token,
            at(self.start)
        )?;
        match &self.ending {
            Ending::Lost { reason, .. } => write!(f, "{} ({reason})", until(self.end)),
            Ending::Killed { .. } => write!(f, "{} (killed)", until(self.end)),
            Ending::Open => f.write_str("the end (open)"),
        }
    }
}

/// The time from a fault to the next term of a candidate (another one than its target, for
/// faults aimed at the leader).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// The fault's kind: `kill-leader`, `resign`, …
    pub kind: String,
    /// The fault's target.
    pub target: Option<String>,
    /// When the fault was injected.
    pub at: u64,
    /// The candidate elected next.
    pub by: String,
    /// Its token.
    pub token: u64,
    /// From the fault to that `Elected`.
    pub took: Duration,
}

impl fmt::Display for Recovery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}{} at {}: {} (token {}) elected {} later",
            self.kind,
            target(&self.target),
            at(self.at),
            self.by,
            self.token,
            ms(self.took)
        )
    }
}

/// One thing the history or the ledger shows that must not happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    /// S1: two candidates believed they led at once.
    Overlap {
        /// The term that started first.
        earlier: Term,
        /// The term that started while `earlier` was still believed in.
        later: Term,
    },
    /// S2: a term's token is not greater than that of a term that started before it.
    TokenNotGreater {
        /// The term.
        term: Term,
        /// The earlier term with the greatest token.
        prior: Term,
    },
    /// S3: a candidate noticed its loss later than its deadline plus the slack (and was not
    /// frozen at the deadline).
    LateLoss {
        /// The candidate.
        who: String,
        /// The term's token.
        token: u64,
        /// The loss's reason.
        reason: String,
        /// The term's deadline.
        deadline: u64,
        /// When the candidate wrote that it lost.
        t: u64,
        /// The slack allowed.
        slack: Duration,
    },
    /// S4: the ledger accepted a token lower than one it had accepted before.
    StaleWriteAccepted {
        /// The stale write.
        entry: Entry,
        /// The earlier accepted write with the greatest token.
        prior: Entry,
    },
    /// The ledger accepted two charges of the same subscription for the same period.
    DoubleCharge {
        /// The first accepted charge.
        first: Entry,
        /// The second one.
        second: Entry,
    },
    /// L1: after a fault on the leader, another candidate was elected later than the bound.
    SlowFailover {
        /// The fault and the election that followed.
        recovery: Recovery,
        /// The bound.
        bound: Duration,
    },
    /// L2: after the leader resigned, another candidate was elected later than the bound.
    SlowHandover {
        /// The fault and the election that followed.
        recovery: Recovery,
        /// The bound.
        bound: Duration,
    },
    /// L1/L2: after a fault on the leader, no other candidate was ever elected.
    NoSuccessor {
        /// The fault's kind.
        kind: String,
        /// Its target.
        target: Option<String>,
        /// When it was injected.
        at: u64,
        /// The bound that applied.
        bound: Duration,
    },
}

impl Violation {
    /// When the violation happened (the start of an overlap, a term's start, a loss, a
    /// ledger write, a fault), to attribute it to a round.
    pub fn at(&self) -> u64 {
        match self {
            Violation::Overlap { later, .. } => later.start,
            Violation::TokenNotGreater { term, .. } => term.start,
            Violation::LateLoss { t, .. } => *t,
            Violation::StaleWriteAccepted { entry, .. } => entry.t,
            Violation::DoubleCharge { second, .. } => second.t,
            Violation::SlowFailover { recovery, .. } | Violation::SlowHandover { recovery, .. } => {
                recovery.at
            }
            Violation::NoSuccessor { at, .. } => *at,
        }
    }

    /// The property violated: `S1`, `S2`, `S3`, `S4`, `charge`, `L1` or `L2`.
    pub fn property(&self) -> &'static str {
        match self {
            Violation::Overlap { .. } => "S1",
            Violation::TokenNotGreater { .. } => "S2",
            Violation::LateLoss { .. } => "S3",
            Violation::StaleWriteAccepted { .. } => "S4",
            Violation::DoubleCharge { .. } => "charge",
            Violation::SlowFailover { .. } => "L1",
            Violation::SlowHandover { .. } => "L2",
            Violation::NoSuccessor { kind, .. } if kind == HANDOVER_KIND => "L2",
            Violation::NoSuccessor { .. } => "L1",
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.property())?;
        match self {
            Violation::Overlap { earlier, later } => {
                write!(
                    f,
                    "{} (token {}) led from {} while {} (token {}) still led ",
                    later.who,
                    later.token,
                    at(later.start),
                    earlier.who,
                    earlier.token
                )?;
                match min_end(earlier.end, later.end) {
                    Some(end) => write!(f, "for {}", ms_ns(end.saturating_sub(later.start))),
                    None => f.write_str("and neither term ever ended"),
                }
            }
            Violation::TokenNotGreater { term, prior } => write!(
                f,
                "{} elected at {} with token {}, not greater than token {} of {} elected at {}",
                term.who,
                at(term.start),
                term.token,
                prior.token,
                prior.who,
                at(prior.start)
            ),
            Violation::LateLoss {
                who,
                token,
                reason,
                deadline,
                t,
                slack,
            } => write!(
                f,
                "{who} (token {token}) wrote it lost ({reason}) at {}, {} after its deadline at {} (slack {})",
                at(*t),
                ms_ns(t.saturating_sub(*deadline)),
                at(*deadline),
                ms(*slack)
            ),
            Violation::StaleWriteAccepted { entry, prior } => write!(
                f,
                "the ledger accepted #{} by {} with token {} at {} after #{} by {} with token {}",
                entry.seq,
                entry.who,
                entry.token,
                at(entry.t),
                prior.seq,
                prior.who,
                prior.token
            ),
            Violation::DoubleCharge { first, second } => {
                let what = match &second.operation {
                    Operation::Charge {
                        subscription,
                        period,
                    } => format!("{subscription} for period {period}"),
                    Operation::OpenTerm => "a term".to_owned(),
                };
                write!(
                    f,
                    "{what} charged twice: #{} by {} (token {}) at {} and #{} by {} (token {}) at {}",
                    first.seq,
                    first.who,
                    first.token,
                    at(first.t),
                    second.seq,
                    second.who,
                    second.token,
                    at(second.t)
                )
            }
            Violation::SlowFailover { recovery, bound }
            | Violation::SlowHandover { recovery, bound } => write!(
                f,
                "{}{} at {}: {} (token {}) elected after {}, bound {}",
                recovery.kind,
                target(&recovery.target),
                at(recovery.at),
                recovery.by,
                recovery.token,
                ms(recovery.took),
                ms(*bound)
            ),
            Violation::NoSuccessor {
                kind,
                target: fault_target,
                at: fault_at,
                bound,
            } => write!(
                f,
                "{kind}{} at {}: no other candidate was ever elected (bound {})",
                target(fault_target),
                at(*fault_at),
                ms(*bound)
            ),
        }
    }
}

/// The checker's verdict.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Every term, by start.
    pub terms: Vec<Term>,
    /// Every violation, by [`Violation::at`].
    pub violations: Vec<Violation>,
    /// L1 measurements: one per `kill-leader`, `freeze-leader` or `cut-leader` fault that had
    /// a successor.
    pub failovers: Vec<Recovery>,
    /// L2 measurements: one per `resign` fault that had a successor.
    pub handovers: Vec<Recovery>,
    /// Other faults: the next `Elected` of any candidate after the fault and before the next
    /// fault, if there was one (informational).
    pub recoveries: Vec<Recovery>,
    /// Writes the ledger rejected.
    pub fenced_writes: usize,
    /// Rejected writes by the target of a `freeze-leader` fault after it was frozen: by the
    /// woken process, or by the command of a frozen `elect run` that ran on.
    pub fenced_after_freeze: usize,
    /// Overlaps excused because an operator removed the earlier leader's claim.
    pub operator_overlaps: usize,
    /// The longest of those.
    pub max_operator_overlap: Duration,
    /// The greatest `lost.t − deadline`, in nanoseconds (negative: noticed before the
    /// deadline), over the losses S3 applies to.
    pub max_loss_lateness: Option<i64>,
    /// Charges the ledger accepted.
    pub charges: usize,
}

impl Report {
    /// Whether no violation was found.
    pub fn is_clean(&self) -> bool {
        self.violations.is_empty()
    }

    /// The terms that never ended.
    pub fn open_terms(&self) -> impl Iterator<Item = &Term> {
        self.terms.iter().filter(|t| t.is_open())
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let open = self.open_terms().count();
        writeln!(
            f,
            "{} terms ({open} open), {} charges, {} fenced writes ({} after a freeze), {} operator overlaps (max {})",
            self.terms.len(),
            self.charges,
            self.fenced_writes,
            self.fenced_after_freeze,
            self.operator_overlaps,
            ms(self.max_operator_overlap)
        )?;
        for term in self.open_terms() {
            writeln!(f, "open term: {term}")?;
        }
        if let Some(lateness) = self.max_loss_lateness {
            let sign = if lateness < 0 { "-" } else { "" };
            writeln!(
                f,
                "latest loss: {sign}{} after its deadline",
                ms_ns(lateness.unsigned_abs())
            )?;
        }
        for (name, recoveries) in [
            ("failover", &self.failovers),
            ("handover", &self.handovers),
            ("other recoveries", &self.recoveries),
        ] {
            let took: Vec<Duration> = recoveries.iter().map(|r| r.took).collect();
            match (
                percentile(&took, 0.50),
                percentile(&took, 0.99),
                took.iter().max(),
            ) {
                (Some(p50), Some(p99), Some(max)) => writeln!(
                    f,
                    "{name}: {} × p50 {} p99 {} max {}",
                    took.len(),
                    ms(p50),
                    ms(p99),
                    ms(*max)
                )?,
                _ => writeln!(f, "{name}: none")?,
            }
        }
        if self.violations.is_empty() {
            write!(f, "no violations")
        } else {
            write!(f, "{} violations:", self.violations.len())?;
            for violation in &self.violations {
                write!(f, "\n  {violation}")?;
            }
            Ok(())
        }
    }
}

/// The nearest-rank percentile of `durations` (in any order): `p` is a fraction, 0.5 for
/// the median, clamped to 0..=1. `None` when `durations` is empty.
pub fn percentile(durations: &[Duration], p: f64) -> Option<Duration> {
    let mut sorted = durations.to_vec();
    sorted.sort_unstable();
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    let p = if p.is_nan() { 0.0 } else { p.clamp(0.0, 1.0) };
    // The rank is at most n since p ≤ 1; the float → usize cast saturates.
    let rank = ((p * n as f64).ceil() as usize).clamp(1, n);
    sorted.get(rank - 1).copied()
}

/// Judges `history` (in any order) and the ledger's `journal` against `bounds`.
pub fn check(history: &[Record], journal: &[Entry], bounds: &Bounds) -> Report {
    let mut records: Vec<&Record> = history.iter().collect();
    records.sort_by_key(|r| r.t);
    let faults = Faults::new(&records);
    let mut report = Report {
        terms: terms(&records, &faults),
        ..Report::default()
    };
    overlaps(&mut report, &faults);
    tokens(&mut report);
    losses(&mut report, &records, &faults, bounds);
    ledger(&mut report, journal, &faults);
    recoveries(&mut report, &records, &faults, bounds);
    report.violations.sort_by_key(Violation::at);
    report
}

/// A fault record, with the matching `Healed` record's time.
struct Fault<'a> {
    t: u64,
    kind: &'a str,
    target: Option<&'a str>,
    healed: Option<u64>,
}

/// The history's faults, in time order.
struct Faults<'a>(Vec<Fault<'a>>);

impl<'a> Faults<'a> {
    fn new(records: &[&'a Record]) -> Faults<'a> {
        let mut faults: Vec<Fault<'a>> = Vec::new();
        for record in records {
            match &record.event {
                Event::Fault { kind, target } => faults.push(Fault {
                    t: record.t,
                    kind,
                    target: target.as_deref(),
                    healed: None,
                }),
                Event::Healed { kind, target } => {
                    // It heals the last fault of its kind and target not healed yet (of its
                    // kind alone, if the targets were written differently).
                    let unhealed = |f: &Fault<'_>| f.kind == kind && f.healed.is_none();
                    let exact = faults
                        .iter()
                        .rposition(|f| unhealed(f) && f.target == target.as_deref());
                    if let Some(i) = exact.or_else(|| faults.iter().rposition(unhealed)) {
                        faults[i].healed = Some(record.t);
                    }
                }
                _ => {}
            }
        }
        Faults(faults)
    }

    fn of<'s>(
        &'s self,
        kind: &'s str,
        target: &'s str,
    ) -> impl Iterator<Item = &'s Fault<'a>> + 's {
        self.0
            .iter()
            .filter(move |f| f.kind == kind && f.target == Some(target))
    }
}

/// A `Lost` record's contents.
struct Loss<'a> {
    t: u64,
    reason: &'a str,
    deadline: Option<u64>,
}

/// Builds the terms, by start.
fn terms(records: &[&Record], faults: &Faults<'_>) -> Vec<Term> {
    // The Lost records of each (who, token), in time order, each ending one term.
    let mut losses: HashMap<(&str, u64), Vec<Loss<'_>>> = HashMap::new();
    for record in records {
        if let Event::Lost {
            token,
            reason,
            deadline,
        } = &record.event
        {
            losses
                .entry((record.who.as_str(), *token))
                .or_default()
                .push(Loss {
                    t: record.t,
                    reason,
                    deadline: *deadline,
                });
        }
    }
    let mut used: HashMap<(&str, u64), usize> = HashMap::new();
    let mut terms: Vec<Term> = Vec::new();
    for record in records {
        let Event::Elected { token, .. } = &record.event else {
            continue;
        };
        let (who, token, start) = (record.who.as_str(), *token, record.t);
        // The same Elected written twice: one term.
        if terms
            .iter()
            .any(|t| t.who == who && t.token == token && before(start, t.end))
        {
            continue;
        }
        let key = (who, token);
        let next = used.get(&key).copied().unwrap_or(0);
        let lost = losses.get(&key).and_then(|all| {
            all.iter()
                .enumerate()
                .skip(next)
                .find(|(_, loss)| loss.t >= start)
        });
        let ending = match lost {
            Some((i, loss)) => {
                used.insert(key, i + 1);
                Ending::Lost {
                    t: loss.t,
                    reason: loss.reason.to_owned(),
                    deadline: loss.deadline,
                }
            }
            None => match faults.of("kill-leader", who).find(|f| f.t >= start) {
                Some(kill) => Ending::Killed { t: kill.t },
                None => Ending::Open,
            },
        };
        let end = match &ending {
            Ending::Lost { t, deadline, .. } => Some(deadline.map_or(*t, |d| d.min(*t))),
            Ending::Killed { t } => Some(*t),
            Ending::Open => None,
        };
        terms.push(Term {
            who: who.to_owned(),
            token,
            start,
            end,
            ending,
        });
    }
    terms.sort_by_key(|t| (t.start, t.token));
    terms
}

/// S1.
fn overlaps(report: &mut Report, faults: &Faults<'_>) {
    let terms = &report.terms;
    for (i, earlier) in terms.iter().enumerate() {
        for later in &terms[i + 1..] {
            if !before(later.start, earlier.end) {
                break; // terms are by start: no later one overlaps `earlier` either
            }
            if later.who == earlier.who || !earlier.overlaps(later) {
                continue;
            }
            let revoked = matches!(&earlier.ending,
                Ending::Lost { reason, .. } if OPERATOR_REASONS.contains(&reason.as_str()))
                && faults
                    .of("operator-revoke", &earlier.who)
                    .any(|f| f.t >= earlier.start && earlier.end.is_none_or(|end| f.t <= end));
            if revoked {
                let end = min_end(earlier.end, later.end).unwrap_or(later.start);
                let overlap = Duration::from_nanos(end.saturating_sub(later.start));
                report.operator_overlaps += 1;
                report.max_operator_overlap = report.max_operator_overlap.max(overlap);
            } else {
                report.violations.push(Violation::Overlap {
                    earlier: earlier.clone(),
                    later: later.clone(),
                });
            }
        }
    }
}

/// S2.
fn tokens(report: &mut Report) {
    let mut greatest: Option<&Term> = None;
    for term in &report.terms {
        match greatest {
            Some(prior) if term.token <= prior.token => {
                report.violations.push(Violation::TokenNotGreater {
                    term: term.clone(),
                    prior: prior.clone(),
                });
            }
            _ => greatest = Some(term),
        }
    }
}

/// S3.
fn losses(report: &mut Report, records: &[&Record], faults: &Faults<'_>, bounds: &Bounds) {
    let slack = u64::try_from(bounds.loss_slack.as_nanos()).unwrap_or(u64::MAX);
    for record in records {
        let Event::Lost {
            token,
            reason,
            deadline: Some(deadline),
        } = &record.event
        else {
            continue;
        };
        if VOLUNTARY_REASONS.contains(&reason.as_str()) {
            continue;
        }
        // A term granted after its deadline (the store took the claim while our renewals were
        // failing) is lost at birth: it is judged from its start.
        let born = report
            .terms
            .iter()
            .filter(|t| t.who == record.who && t.token == *token && t.start <= record.t)
            .map(|t| t.start)
            .max()
            .unwrap_or(0);
        let deadline = (*deadline).max(born);
        let frozen = faults
            .of("freeze-leader", &record.who)
            .any(|f| f.t < deadline && f.healed.is_none_or(|h| h > deadline));
        if frozen {
            continue;
        }
        let lateness = signed(record.t) - signed(deadline);
        let lateness =
            i64::try_from(lateness).unwrap_or(if lateness < 0 { i64::MIN } else { i64::MAX });
        report.max_loss_lateness = report.max_loss_lateness.max(Some(lateness));
        if record.t > deadline.saturating_add(slack) {
            report.violations.push(Violation::LateLoss {
                who: record.who.clone(),
                token: *token,
                reason: reason.clone(),
                deadline,
                t: record.t,
                slack: bounds.loss_slack,
            });
        }
    }
}

/// S4, double charges, and the ledger's counts.
fn ledger(report: &mut Report, journal: &[Entry], faults: &Faults<'_>) {
    let mut entries: Vec<&Entry> = journal.iter().collect();
    entries.sort_by_key(|e| e.seq);
    let mut greatest: Option<&Entry> = None;
    let mut charged: BTreeMap<(&str, i64), &Entry> = BTreeMap::new();
    for entry in entries {
        if !entry.accepted {
            report.fenced_writes += 1;
            // The woken process itself, or (`elect run` frozen) its command that ran on.
            let frozen_before = faults
                .of("freeze-leader", &entry.who)
                .any(|f| f.t <= entry.t);
            if frozen_before {
                report.fenced_after_freeze += 1;
            }
            continue;
        }
        match greatest {
            Some(prior) if entry.token < prior.token => {
                report.violations.push(Violation::StaleWriteAccepted {
                    entry: entry.clone(),
                    prior: prior.clone(),
                });
            }
            _ => greatest = Some(entry),
        }
        if let Operation::Charge {
            subscription,
            period,
        } = &entry.operation
        {
            report.charges += 1;
            match charged.get(&(subscription.as_str(), *period)) {
                Some(first) => report.violations.push(Violation::DoubleCharge {
                    first: (*first).clone(),
                    second: entry.clone(),
                }),
                None => {
                    charged.insert((subscription, *period), entry);
                }
            }
        }
    }
}

/// L1, L2, and the other faults' recoveries.
fn recoveries(report: &mut Report, records: &[&Record], faults: &Faults<'_>, bounds: &Bounds) {
    let elected: Vec<(u64, &str, u64)> = records
        .iter()
        .filter_map(|r| match r.event {
            Event::Elected { token, .. } => Some((r.t, r.who.as_str(), token)),
            _ => None,
        })
        .collect();
    for (i, fault) in faults.0.iter().enumerate() {
        let bound = if FAILOVER_KINDS.contains(&fault.kind) {
            Some(bounds.failover)
        } else if fault.kind == HANDOVER_KIND {
            Some(bounds.handover)
        } else {
            None
        };
        let next = elected.iter().find(|(t, who, _)| {
            *t > fault.t
                && match bound {
                    Some(_) => fault.target != Some(*who),
                    // Informational: only an election this fault can have caused.
                    None => faults.0.get(i + 1).is_none_or(|n| *t < n.t),
                }
        });
        let recovery = next.map(|(t, who, token)| Recovery {
            kind: fault.kind.to_owned(),
            target: fault.target.map(str::to_owned),
            at: fault.t,
            by: (*who).to_owned(),
            token: *token,
            took: Duration::from_nanos(t - fault.t),
        });
        let Some(bound) = bound else {
            report.recoveries.extend(recovery);
            continue;
        };
        let failover = fault.kind != HANDOVER_KIND;
        match recovery {
            None => report.violations.push(Violation::NoSuccessor {
                kind: fault.kind.to_owned(),
                target: fault.target.map(str::to_owned),
                at: fault.t,
                bound,
            }),
            Some(recovery) => {
                if recovery.took > bound {
                    let recovery = recovery.clone();
                    report.violations.push(if failover {
                        Violation::SlowFailover { recovery, bound }
                    } else {
                        Violation::SlowHandover { recovery, bound }
                    });
                }
                if failover {
                    report.failovers.push(recovery);
                } else {
                    report.handovers.push(recovery);
                }
            }
        }
    }
}

/// Whether `t` comes before `end` (`None`: never ends).
fn before(t: u64, end: Option<u64>) -> bool {
    end.is_none_or(|end| t < end)
}

/// The earlier of two ends (`None`: never).
fn min_end(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

fn signed(t: u64) -> i128 {
    i128::from(t)
}

fn ms(duration: Duration) -> String {
    format!("{:.1} ms", duration.as_secs_f64() * 1000.0)
}

fn ms_ns(ns: u64) -> String {
    ms(Duration::from_nanos(ns))
}

fn at(t: u64) -> String {
    ms_ns(t)
}

fn until(end: Option<u64>) -> String {
    end.map_or_else(|| "the end".to_owned(), at)
}

fn target(target: &Option<String>) -> String {
    target
        .as_deref()
        .map_or_else(String::new, |t| format!(" of {t}"))
}
