//! [`LossReason`]: why a term or a session ended. A leaf module: the clock, the errors and
//! the leadership handle all speak of it.

use std::fmt;

/// Why a term ended. Distinct values, so that callers can act on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LossReason {
    /// This candidate resigned.
    Resigned,
    /// No renewal was confirmed before the deadline (partition, frozen server, slow network).
    DeadlinePassed,
    /// The store says the session or lease expired.
    Expired,
    /// Someone else deleted the claim or revoked the session.
    Revoked,
    /// The elector was closed or dropped.
    ShutDown,
}

impl LossReason {
    /// A short stable name, used in logs and JSON: `resigned`, `deadline-passed`, …
    pub fn as_str(self) -> &'static str {
        match self {
            LossReason::Resigned => "resigned",
            LossReason::DeadlinePassed => "deadline-passed",
            LossReason::Expired => "expired",
            LossReason::Revoked => "revoked",
            LossReason::ShutDown => "shut-down",
        }
    }
}

impl fmt::Display for LossReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
