//! The checker against hand-made histories and journals: a clean one, then one per
//! violation it must find. Times are in milliseconds here, nanoseconds in the records.

use std::time::Duration;

use billing::ledger::{Entry, Operation};
use elect::history::{Event, Record};
use elect_chaos::check::{check, percentile, Bounds, Ending, Report, Term, Violation};

const MS: u64 = 1_000_000;

fn bounds() -> Bounds {
    Bounds {
        failover: Duration::from_millis(3500),
        handover: Duration::from_millis(500),
        loss_slack: Duration::from_millis(100),
    }
}

fn record(ms: u64, who: &str, event: Event) -> Record {
    Record {
        t: ms * MS,
        who: who.to_owned(),
        event,
    }
}

fn elected(ms: u64, who: &str, token: u64, deadline_ms: u64) -> Record {
    record(
        ms,
        who,
        Event::Elected {
            token,
            deadline: Some(deadline_ms * MS),
        },
    )
}

fn lost(ms: u64, who: &str, token: u64, reason: &str, deadline_ms: Option<u64>) -> Record {
    record(
        ms,
        who,
        Event::Lost {
            token,
            reason: reason.to_owned(),
            deadline: deadline_ms.map(|d| d * MS),
        },
    )
}

fn fault(ms: u64, kind: &str, target: &str) -> Record {
    record(
        ms,
        "chaos",
        Event::Fault {
            kind: kind.to_owned(),
            target: Some(target.to_owned()),
        },
    )
}

fn healed(ms: u64, kind: &str, target: &str) -> Record {
    record(
        ms,
        "chaos",
        Event::Healed {
            kind: kind.to_owned(),
            target: Some(target.to_owned()),
        },
    )
}

fn entry(seq: u64, ms: u64, who: &str, token: u64, charge: Option<&str>, accepted: bool) -> Entry {
    Entry {
        seq,
        t: ms * MS,
        who: who.to_owned(),
        token,
        operation: match charge {
            Some(subscription) => Operation::Charge {
                subscription: subscription.to_owned(),
                period: 1,
            },
            None => Operation::OpenTerm,
        },
        accepted,
    }
}

/// What the checker finds in a history alone (no ledger), at [`bounds`].
fn check_history(history: &[Record]) -> Report {
    check(history, &[], &bounds())
}

/// What the checker finds in a ledger alone (no history), at [`bounds`].
fn check_journal(journal: &[Entry]) -> Report {
    check(&[], journal, &bounds())
}

fn only(report: &Report) -> &Violation {
    assert_eq!(report.violations.len(), 1, "{report}");
    &report.violations[0]
}

/// The two terms of the one violation in `report`, which must be an overlap (S1).
fn only_overlap(report: &Report) -> (&Term, &Term) {
    let Violation::Overlap { earlier, later } = only(report) else {
        panic!("{report}")
    };
    (earlier, later)
}

/// a leads, resigns to b (handover), b is killed, c takes over (failover), c is frozen, a
/// takes over, c thaws, learns it lost, and its late charge is refused.
fn clean_history() -> Vec<Record> {
    vec![
        elected(0, "a", 1, 2000),
        fault(1000, "resign", "a"),
        lost(1001, "a", 1, "resigned", Some(3000)),
        elected(1100, "b", 2, 3100),
        fault(2000, "kill-leader", "b"),
        elected(4000, "c", 3, 6000),
        fault(5000, "freeze-leader", "c"),
        elected(8000, "a", 4, 10000),
        healed(8500, "freeze-leader", "c"),
        lost(8600, "c", 3, "expired", Some(7000)),
        lost(9000, "a", 4, "stopped", Some(11000)),
    ]
}

fn clean_journal() -> Vec<Entry> {
    vec![
        entry(1, 10, "a", 1, None, true),
        entry(2, 20, "a", 1, Some("sub-0"), true),
        entry(3, 1200, "b", 2, None, true),
        entry(4, 1300, "b", 2, Some("sub-1"), true),
        entry(5, 4100, "c", 3, None, true),
        entry(6, 4200, "c", 3, Some("sub-2"), true),
        entry(7, 8100, "a", 4, None, true),
        entry(8, 8200, "a", 4, Some("sub-3"), true),
        entry(9, 8601, "c", 3, Some("sub-4"), false),
    ]
}

#[test]
fn a_clean_history_is_clean_and_counted() {
    let mut history = clean_history();
    history.reverse(); // writers' records come in any order
    let report = check(&history, &clean_journal(), &bounds());
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.terms.len(), 4);
    let ends: Vec<_> = report
        .terms
        .iter()
        .map(|t| (t.who.as_str(), t.end))
        .collect();
    assert_eq!(
        ends,
        [
            ("a", Some(1001 * MS)),
            ("b", Some(2000 * MS)),
            ("c", Some(7000 * MS)),
            ("a", Some(9000 * MS)),
        ]
    );
    assert_eq!(report.terms[1].ending, Ending::Killed { t: 2000 * MS });
    assert_eq!(report.open_terms().count(), 0);
    assert_eq!(report.charges, 4);
    assert_eq!(report.fenced_writes, 1);
    assert_eq!(report.fenced_after_freeze, 1);
    assert_eq!(report.operator_overlaps, 0);
    let handovers: Vec<_> = report
        .handovers
        .iter()
        .map(|r| (r.by.as_str(), r.took))
        .collect();
    assert_eq!(handovers, [("b", Duration::from_millis(100))]);
    let failovers: Vec<_> = report
        .failovers
        .iter()
        .map(|r| (r.kind.as_str(), r.by.as_str(), r.took))
        .collect();
    assert_eq!(
        failovers,
        [
            ("kill-leader", "c", Duration::from_millis(2000)),
            ("freeze-leader", "a", Duration::from_millis(3000)),
        ]
    );
    // The frozen loss is not S3-eligible; a's resign and stop are voluntary.
    assert_eq!(report.max_loss_lateness, None);
    let shown = report.to_string();
    assert!(
        shown.contains("4 terms") && shown.contains("no violations"),
        "{shown}"
    );
}

#[test]
fn overlapping_terms_are_reported() {
    let report = check_history(&[
        elected(0, "a", 1, 2000),
        elected(1000, "b", 2, 3000),
        lost(1500, "a", 1, "expired", Some(2000)),
    ]);
    let (earlier, later) = only_overlap(&report);
    assert_eq!((earlier.who.as_str(), later.who.as_str()), ("a", "b"));
    let shown = report.violations[0].to_string();
    assert!(
        shown.starts_with("S1") && shown.contains("500.0 ms"),
        "{shown}"
    );
}

#[test]
fn an_overlap_after_an_operator_revoke_is_counted_not_a_violation() {
    let without = vec![
        elected(0, "a", 1, 3000),
        elected(1050, "b", 2, 4000),
        lost(1200, "a", 1, "revoked", Some(3000)),
    ];
    let report = check_history(&without);
    only_overlap(&report);
    assert_eq!(report.operator_overlaps, 0);

    let mut with = without.clone();
    with.push(fault(1000, "operator-revoke", "a"));
    let report = check_history(&with);
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.operator_overlaps, 1);
    assert_eq!(report.max_operator_overlap, Duration::from_millis(150));
    assert_eq!(report.recoveries.len(), 1);
    assert_eq!(report.recoveries[0].took, Duration::from_millis(50));

    // Only a loss the revoke explains is excused.
    let mut stopped = with.clone();
    stopped[2] = lost(1200, "a", 1, "stopped", Some(3000));
    let report = check_history(&stopped);
    only_overlap(&report);
}

#[test]
fn a_token_not_greater_than_an_earlier_one_is_reported() {
    for token in [1, 0] {
        let report = check_history(&[
            elected(0, "a", 1, 2000),
            lost(500, "a", 1, "resigned", Some(2000)),
            elected(600, "b", token, 2600),
        ]);
        let Violation::TokenNotGreater { term, prior } = only(&report) else {
            panic!("{report}")
        };
        assert_eq!((term.who.as_str(), term.token), ("b", token));
        assert_eq!((prior.who.as_str(), prior.token), ("a", 1));
    }
}

#[test]
fn a_loss_noticed_late_is_reported_unless_frozen_at_the_deadline() {
    let history = vec![
        elected(0, "a", 1, 2000),
        lost(2500, "a", 1, "expired", Some(2000)),
    ];
    let report = check_history(&history);
    let Violation::LateLoss {
        who, deadline, t, ..
    } = only(&report)
    else {
        panic!("{report}")
    };
    assert_eq!((who.as_str(), *deadline, *t), ("a", 2000 * MS, 2500 * MS));
    assert_eq!(report.max_loss_lateness, Some(500 * MS as i64));

    // Frozen before the deadline and thawed after it: not the candidate's fault. (b takes
    // over, or the freeze would miss its failover.)
    let mut history = history.clone();
    history.push(elected(2100, "b", 2, 4100));
    let mut frozen = history.clone();
    frozen.push(fault(1500, "freeze-leader", "a"));
    frozen.push(healed(2400, "freeze-leader", "a"));
    let report = check_history(&frozen);
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.max_loss_lateness, None);

    // Frozen and never thawed (the record was written anyway, say by a restart).
    let mut never_thawed = history.clone();
    never_thawed.push(fault(1500, "freeze-leader", "a"));
    assert!(check_history(&never_thawed)
        .violations
        .iter()
        .all(|v| !matches!(v, Violation::LateLoss { .. })));

    // Thawed before the deadline: it had time to notice.
    let mut thawed = history.clone();
    thawed.push(fault(1500, "freeze-leader", "a"));
    thawed.push(healed(1900, "freeze-leader", "a"));
    assert!(matches!(
        only(&check_history(&thawed)),
        Violation::LateLoss { .. }
    ));

    // Within the slack, or early: fine, and measured.
    let within = vec![
        elected(0, "a", 1, 2000),
        lost(2050, "a", 1, "expired", Some(2000)),
    ];
    let report = check_history(&within);
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.max_loss_lateness, Some(50 * MS as i64));
    let early = vec![
        elected(0, "a", 1, 2000),
        lost(1900, "a", 1, "expired", Some(2000)),
    ];
    assert_eq!(
        check_history(&early).max_loss_lateness,
        Some(-100 * MS as i64)
    );

    // A voluntary end is not judged.
    let resigned = vec![
        elected(0, "a", 1, 2000),
        lost(2500, "a", 1, "resigned", Some(2000)),
    ];
    assert!(check_history(&resigned).is_clean());
}

#[test]
fn a_stale_write_accepted_is_reported() {
    let report = check_journal(&[
        entry(1, 10, "b", 2, None, true),
        entry(2, 20, "a", 1, Some("sub-0"), false),
        entry(3, 30, "a", 1, Some("sub-1"), true),
    ]);
    let Violation::StaleWriteAccepted { entry, prior } = only(&report) else {
        panic!("{report}")
    };
    assert_eq!((entry.seq, prior.seq), (3, 1));
    assert_eq!(report.fenced_writes, 1);
    assert_eq!(report.fenced_after_freeze, 0);
    assert_eq!(report.charges, 1);
}

#[test]
fn a_double_charge_is_reported() {
    let report = check_journal(&[
        entry(1, 10, "a", 1, Some("sub-0"), true),
        entry(2, 20, "a", 1, Some("sub-0"), false),
        entry(3, 30, "b", 2, Some("sub-1"), true),
        entry(4, 40, "b", 2, Some("sub-0"), true),
    ]);
    let Violation::DoubleCharge { first, second } = only(&report) else {
        panic!("{report}")
    };
    assert_eq!((first.seq, second.seq), (1, 4));
    assert!(report.violations[0]
        .to_string()
        .contains("sub-0 for period 1"));
    assert_eq!(report.charges, 3);
}

#[test]
fn a_slow_failover_is_reported() {
    for kind in ["kill-leader", "freeze-leader", "cut-leader"] {
        let report = check_history(&[
            elected(0, "a", 1, 2000),
            fault(1000, kind, "a"),
            lost(1500, "a", 1, "expired", Some(1500)),
            // The target itself coming back does not count.
            elected(2000, "a", 2, 4000),
            lost(2100, "a", 2, "resigned", Some(4000)),
            elected(5000, "b", 3, 7000),
        ]);
        let Violation::SlowFailover { recovery, bound } = only(&report) else {
            panic!("{kind}: {report}")
        };
        assert_eq!(recovery.kind, kind);
        assert_eq!(recovery.by, "b");
        assert_eq!(recovery.took, Duration::from_millis(4000));
        assert_eq!(*bound, bounds().failover);
        assert_eq!(report.failovers.len(), 1);
    }
}

#[test]
fn a_failover_without_successor_is_reported() {
    let report = check_history(&[
        elected(0, "a", 1, 2000),
        fault(1000, "kill-leader", "a"),
        elected(3000, "a", 2, 5000),
        lost(9000, "a", 2, "stopped", Some(10000)),
    ]);
    let Violation::NoSuccessor { kind, at, .. } = only(&report) else {
        panic!("{report}")
    };
    assert_eq!((kind.as_str(), *at), ("kill-leader", 1000 * MS));
    assert_eq!(report.violations[0].property(), "L1");
    assert!(report.failovers.is_empty());
}

#[test]
fn a_slow_handover_is_reported() {
    let history = vec![
        elected(0, "a", 1, 2000),
        fault(1000, "resign", "a"),
        lost(1001, "a", 1, "resigned", Some(2000)),
        elected(2000, "b", 2, 4000),
    ];
    let report = check_history(&history);
    let Violation::SlowHandover { recovery, .. } = only(&report) else {
        panic!("{report}")
    };
    assert_eq!(recovery.took, Duration::from_millis(1000));
    assert_eq!(report.handovers.len(), 1);

    let never = &history[..3];
    let report = check_history(never);
    assert!(matches!(only(&report), Violation::NoSuccessor { kind, .. } if kind == "resign"));
    assert_eq!(report.violations[0].property(), "L2");
}

#[test]
fn an_open_term_overlaps_every_later_one() {
    let report = check_history(&[
        elected(0, "a", 1, 2000),
        elected(10_000, "b", 2, 12_000),
        lost(11_000, "b", 2, "stopped", Some(12_000)),
    ]);
    let (earlier, later) = only_overlap(&report);
    assert!(earlier.is_open());
    assert_eq!(earlier.ending, Ending::Open);
    assert_eq!(later.who, "b");
    let open: Vec<_> = report.open_terms().map(|t| t.who.as_str()).collect();
    assert_eq!(open, ["a"]);
    assert!(report.to_string().contains("open term: a"), "{report}");
}

#[test]
fn belief_ends_at_the_deadline_when_the_loss_is_written_later() {
    // a is frozen past its deadline; b starts after that deadline but before a writes that
    // it lost: no overlap.
    let history = vec![
        elected(0, "a", 1, 2000),
        fault(1000, "freeze-leader", "a"),
        elected(2500, "b", 2, 4500),
        healed(2800, "freeze-leader", "a"),
        lost(3000, "a", 1, "expired", Some(2000)),
    ];
    let report = check_history(&history);
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.terms[0].end, Some(2000 * MS));

    // Had b started before the deadline, it would have overlapped.
    let mut early = history.clone();
    early[2] = elected(1900, "b", 2, 3900);
    let report = check_history(&early);
    only_overlap(&report);
}

#[test]
fn percentile_is_nearest_rank() {
    let ms = |v: u64| Duration::from_millis(v);
    assert_eq!(percentile(&[], 0.5), None);
    let values: Vec<Duration> = [7, 3, 10, 1, 5, 2, 9, 4, 8, 6].map(ms).to_vec();
    assert_eq!(percentile(&values, 0.5), Some(ms(5)));
    assert_eq!(percentile(&values, 0.51), Some(ms(6)));
    assert_eq!(percentile(&values, 0.99), Some(ms(10)));
    assert_eq!(percentile(&values, 1.0), Some(ms(10)));
    assert_eq!(percentile(&values, 0.0), Some(ms(1)));
    assert_eq!(percentile(&values, 0.1), Some(ms(1)));
    assert_eq!(percentile(&[ms(42)], 0.99), Some(ms(42)));
    // Out of range: clamped, no panic.
    assert_eq!(percentile(&values, 7.0), Some(ms(10)));
    assert_eq!(percentile(&values, -1.0), Some(ms(1)));
    assert_eq!(percentile(&values, f64::NAN), Some(ms(1)));
}

#[test]
fn a_term_granted_after_its_deadline_is_judged_from_its_start() {
    // Elected at 5000 ms with a deadline already past (4000 ms): lost at birth, noticed at once.
    let history = vec![
        elected(5000, "a", 7, 4000),
        lost(5001, "a", 7, "deadline-passed", Some(4000)),
    ];
    assert!(check_history(&history).is_clean());
    // Noticed 500 ms after its start: late, from its start.
    let late = vec![
        elected(5000, "a", 7, 4000),
        lost(5500, "a", 7, "deadline-passed", Some(4000)),
    ];
    assert!(matches!(
        only(&check_history(&late)),
        Violation::LateLoss { .. }
    ));
}
