//! What `elect` reports through the [`metrics`](https://docs.rs/metrics) facade (feature
//! `metrics`), for a service that exports them with its own recorder. Without the feature
//! every function here is empty.
//!
//! | name | kind | labels | what |
//! |---|---|---|---|
//! | `elect_leader` | gauge | `election` | 1 while leading with a confirmed deadline, else 0 |
//! | `elect_fencing_token` | gauge | `election` | the token of the latest term won |
//! | `elect_terms_total` | counter | `election` | terms won |
//! | `elect_losses_total` | counter | `election`, `reason` | terms lost, by [`LossReason`] |
//! | `elect_campaign_wait_seconds` | histogram | `election` | from campaigning to elected |
//! | `elect_renewal_rtt_seconds` | histogram | `backend` | a session renewal's round trip |

use std::time::Duration;

#[cfg(doc)]
use crate::LossReason;
use crate::{Leadership, LeadershipState};

/// A term's state changed (`previous` is `None` for a term just won).
pub(crate) fn term_state(
    leadership: &Leadership,
    previous: Option<LeadershipState>,
    state: LeadershipState,
) {
    #[cfg(feature = "metrics")]
    {
        let election = leadership.election().as_str().to_owned();
        let leading = match state {
            LeadershipState::Leading => {
                if previous.is_none() {
                    ::metrics::counter!("elect_terms_total", "election" => election.clone())
                        .increment(1);
                    ::metrics::gauge!("elect_fencing_token", "election" => election.clone())
                        .set(leadership.token().get() as f64);
                }
                1.0
            }
            LeadershipState::Suspended => 0.0,
            LeadershipState::Lost(reason) => {
                ::metrics::counter!(
                    "elect_losses_total",
                    "election" => election.clone(),
                    "reason" => reason.as_str()
                )
                .increment(1);
                0.0
            }
        };
        ::metrics::gauge!("elect_leader", "election" => election).set(leading);
    }
    #[cfg(not(feature = "metrics"))]
    let _ = (leadership, previous, state);
}

/// A campaign in `election` was won after `waited`.
pub(crate) fn campaign_won(election: &str, waited: Duration) {
    #[cfg(feature = "metrics")]
    ::metrics::histogram!("elect_campaign_wait_seconds", "election" => election.to_owned())
        .record(waited.as_secs_f64());
    #[cfg(not(feature = "metrics"))]
    let _ = (election, waited);
}

/// A renewal of a `backend` session was answered after `round_trip`.
pub(crate) fn renewal_answered(backend: &'static str, round_trip: Duration) {
    #[cfg(feature = "metrics")]
    ::metrics::histogram!("elect_renewal_rtt_seconds", "backend" => backend)
        .record(round_trip.as_secs_f64());
    #[cfg(not(feature = "metrics"))]
    let _ = (backend, round_trip);
}
