//! The table a run prints: per backend and fault, rounds, violations, and how long the
//! election took to have a new term (p50/p99/max).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

use crate::check::percentile;
use crate::faults::Fault;
use crate::run::RunOutcome;

/// A markdown table of `outcomes`, one row per backend and fault, and a total row per backend.
pub fn table(outcomes: &[RunOutcome]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| backend | fault | rounds | violations | new term after fault: p50 | p99 | max |"
    );
    let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---:|");
    for outcome in outcomes {
        let mut rows: BTreeMap<Fault, (usize, usize, Vec<Duration>)> = BTreeMap::new();
        for round in &outcome.rounds {
            let row = rows.entry(round.fault).or_default();
            row.0 += 1;
            row.1 += outcome
                .report
                .violations
                .iter()
                .filter(|v| (round.from..=round.to).contains(&v.at()))
                .count();
        }
        for recovery in outcome
            .report
            .failovers
            .iter()
            .chain(&outcome.report.handovers)
            .chain(&outcome.report.recoveries)
        {
            if let Some(fault) = Fault::parse(&recovery.kind) {
                rows.entry(fault).or_default().2.push(recovery.took);
            }
        }
        for (fault, (rounds, violations, times)) in &rows {
            let _ = writeln!(
                out,
                "| {} | {} | {rounds} | {violations} | {} | {} | {} |",
                outcome.backend.name(),
                fault.kind(),
                ms(percentile(times, 0.50)),
                ms(percentile(times, 0.99)),
                ms(times.iter().max().copied()),
            );
        }
        let _ = writeln!(
            out,
            "| **{}** | all | **{}** | **{}** | | | |",
            outcome.backend.name(),
            outcome.rounds.len(),
            outcome.report.violations.len()
        );
    }
    out
}

fn ms(duration: Option<Duration>) -> String {
    match duration {
        Some(d) if d >= Duration::from_secs(10) => format!("{:.1} s", d.as_secs_f64()),
        Some(d) => format!("{:.0} ms", d.as_secs_f64() * 1000.0),
        None => "–".to_owned(),
    }
}
