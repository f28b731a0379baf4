//! What `elect run` is doing, for those who watch it: systemd's watchdog, the HTTP health
//! endpoints and the Prometheus text of `--metrics-addr`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use elect_core::{Leadership, LeadershipState, LossReason};

/// The state of one `elect run`, shared with its watchers.
#[derive(Debug, Clone, Default)]
pub(crate) struct RunStatus(Arc<Mutex<Inner>>);

#[derive(Debug, Default)]
struct Inner {
    election: String,
    candidate: String,
    phase: Phase,
    /// Terms this process was granted.
    terms: u64,
    /// Terms that ended by loss, by reason.
    losses: BTreeMap<&'static str, u64>,
    /// Times the command was started again after a first term.
    restarts: u64,
    /// The token of the latest term.
    token: Option<u64>,
}

#[derive(Debug, Default)]
enum Phase {
    /// Not campaigning yet, or stopping.
    #[default]
    Idle,
    Campaigning,
    Leading(Leadership),
}

impl RunStatus {
    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        f(&mut self.0.lock().expect("run status poisoned"))
    }

    pub(crate) fn campaigning(&self, election: &str, candidate: &str) {
        self.with(|s| {
            s.election = election.to_owned();
            s.candidate = candidate.to_owned();
            s.phase = Phase::Campaigning;
        });
    }

    pub(crate) fn leading(&self, leadership: &Leadership) {
        self.with(|s| {
            if s.terms > 0 {
                s.restarts += 1;
            }
            s.terms += 1;
            s.token = Some(leadership.token().get());
            s.phase = Phase::Leading(leadership.clone());
        });
    }

    /// The term is over, lost for `lost` if so.
    pub(crate) fn ended(&self, lost: Option<LossReason>) {
        self.with(|s| {
            if let Some(reason) = lost {
                *s.losses.entry(reason.as_str()).or_default() += 1;
            }
            s.phase = Phase::Idle;
        });
    }

    /// Campaigning (or about to), or leading with a deadline that is confirmed and not past.
    pub(crate) fn healthy(&self) -> bool {
        self.with(|s| match &s.phase {
            Phase::Idle | Phase::Campaigning => true,
            Phase::Leading(leadership) => confirmed(leadership),
        })
    }

    /// Leading, with a confirmed deadline.
    pub(crate) fn leads(&self) -> bool {
        self.with(|s| matches!(&s.phase, Phase::Leading(l) if confirmed(l)))
    }

    /// `/status`: election, candidate, state, whether it leads, token, deadline headroom.
    pub(crate) fn json(&self) -> serde_json::Value {
        self.with(|s| {
            let (state, leadership) = match &s.phase {
                Phase::Idle => ("idle", None),
                Phase::Campaigning => ("campaigning", None),
                Phase::Leading(l) => (
                    match l.state() {
                        LeadershipState::Leading => "leading",
                        LeadershipState::Suspended => "suspended",
                        LeadershipState::Lost(_) => "lost",
                    },
                    Some(l),
                ),
            };
            serde_json::json!({
                "election": s.election,
                "candidate": s.candidate,
                "state": state,
                "leader": leadership.is_some_and(confirmed),
                "token": leadership.map(|l| l.token().get()),
                "deadline_headroom_seconds": leadership.and_then(headroom),
            })
        })
    }

    /// `/metrics`, in Prometheus' text format.
    pub(crate) fn prometheus(&self) -> String {
        self.with(|s| {
            let label = format!(
                "election=\"{}\"",
                crate::histograms::escape_label(&s.election)
            );
            let leadership = match &s.phase {
                Phase::Leading(l) => Some(l),
                _ => None,
            };
            let mut text = String::new();
            let mut metric = |name: &str, kind: &str, help: &str, lines: Vec<String>| {
                text.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
                for line in lines {
                    text.push_str(&format!("{name}{line}\n"));
                }
            };
            metric(
                "elect_leader",
                "gauge",
                "1 while this replica leads the election with a confirmed deadline.",
                vec![format!(
                    "{{{label}}} {}",
                    u8::from(leadership.is_some_and(confirmed))
                )],
            );
            metric(
                "elect_fencing_token",
                "gauge",
                "The fencing token of this replica's latest term.",
                s.token
                    .map(|t| format!("{{{label}}} {t}"))
                    .into_iter()
                    .collect(),
            );
            metric(
                "elect_terms_total",
                "counter",
                "Terms this replica was granted.",
                vec![format!("{{{label}}} {}", s.terms)],
            );
            metric(
                "elect_losses_total",
                "counter",
                "Terms that ended by loss, by reason.",
                s.losses
                    .iter()
                    .map(|(reason, n)| format!("{{{label},reason=\"{reason}\"}} {n}"))
                    .collect(),
            );
            metric(
                "elect_deadline_headroom_seconds",
                "gauge",
                "Time left before the current term's deadline (absent when not leading).",
                leadership
                    .and_then(headroom)
                    .map(|h| format!("{{{label}}} {h}"))
                    .into_iter()
                    .collect(),
            );
            metric(
                "elect_command_restarts_total",
                "counter",
                "Times the command was started again for a later term.",
                vec![format!("{{{label}}} {}", s.restarts)],
            );
            text.push_str(&crate::histograms::render());
            text
        })
    }
}

fn confirmed(leadership: &Leadership) -> bool {
    leadership.state() == LeadershipState::Leading
        && leadership
            .deadline()
            .is_none_or(|deadline| deadline > elect_core::clock::now())
}

fn headroom(leadership: &Leadership) -> Option<f64> {
    leadership.deadline().map(|deadline| {
        deadline
            .saturating_duration_since(elect_core::clock::now())
            .as_secs_f64()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use elect_core::clock::LeaseClock;
    use std::time::Duration;

    /// Healthy (the watchdog pings, `/healthz` is 200) while campaigning and while a term's
    /// deadline is confirmed; not while the term is suspended (renewals unanswered) or past
    /// its deadline. `/leader` follows the same confirmation.
    #[tokio::test]
    async fn healthy_only_while_the_deadline_is_confirmed() {
        let status = RunStatus::default();
        assert!(status.healthy(), "before campaigning");
        status.campaigning("e", "me");
        assert!(status.healthy() && !status.leads(), "campaigning");

        let ttl = Duration::from_secs(10);
        let clock = LeaseClock::new(elect_core::clock::now(), ttl, ttl / 10, ttl / 3);
        let (leadership, _term, _claim) = elect_core::testkit::accepted_term(&clock, 7);
        status.leading(&leadership);
        assert!(status.healthy() && status.leads(), "leading, confirmed");
        clock.suspend();
        assert!(!status.healthy() && !status.leads(), "suspended");
        assert_eq!(status.json()["state"], "suspended");
        clock.confirm(elect_core::clock::now(), ttl);
        assert!(status.healthy() && status.leads(), "confirmed again");

        let short = LeaseClock::new(
            elect_core::clock::now(),
            Duration::from_millis(30),
            Duration::from_millis(10),
            Duration::from_millis(10),
        );
        let (late, _term, _claim) = elect_core::testkit::accepted_term(&short, 8);
        status.leading(&late);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!status.healthy() && !status.leads(), "past its deadline");
        status.ended(Some(LossReason::DeadlinePassed));
        let text = status.prometheus();
        assert!(
            text.contains("elect_terms_total{election=\"e\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("elect_command_restarts_total{election=\"e\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("elect_losses_total{election=\"e\",reason=\"deadline-passed\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("elect_fencing_token{election=\"e\"} 8"),
            "{text}"
        );
    }
}
