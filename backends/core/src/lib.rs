//! # elect-core: the contract every `elect` backend implements
//!
//! Use the [`elect`](https://docs.rs/elect) crate; this one holds what all its backends share:
//!
//! * the [`Elector`] trait and the [`Leadership`] handle a won campaign returns, with its
//!   [`FencingToken`] and its [`LeadershipState`];
//! * the deadline clock ([`clock::LeaseClock`]) that backends feed with confirmed renewals
//!   and that turns a missed deadline into `Lost` by itself;
//! * [`run_while_leader`], the re-campaign loop most services need;
//! * the [`config`] types of every backend;
//! * [`MemoryStore`], an in-memory reference backend;
//! * [`history`], JSON-lines records of what candidates believed and did, on one clock;
//! * behind the `testkit` feature, the conformance suite every backend must pass.
//!
//! A third-party backend depends on this crate alone, implements [`Elector`] and
//! [`Claim`], and runs the conformance suite (module `testkit`, feature `testkit`) against itself.
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

pub mod backend;
pub mod clock;
pub mod config;
mod config_error;
mod elector;
mod error;
pub mod history;
mod leadership;
mod loss;
mod memory;
mod names;
pub mod observe;
pub mod renewal;
mod supervise;
pub mod telemetry;
#[cfg(feature = "testkit")]
pub mod testkit;

pub use config_error::ConfigError;
pub use elector::{Elector, LeaderStream};
pub use error::{with_causes, BoxError, Error, NotLeaderReason, Result};
pub use leadership::{Claim, Leadership, LeadershipState, LeadershipWatch, TermControl};
pub use loss::LossReason;
pub use memory::{MemoryElector, MemoryStore};
pub use names::{
    check_id, check_value, default_candidate_id, Candidate, CandidateInfo, ElectionName,
    FencingToken, LeaderInfo, MAX_ELECTION_LEN, MAX_ID_LEN, MAX_VALUE_LEN,
};
pub use supervise::{
    campaign_logged, log_state, resign_or_let_expire, run_while_leader, MAX_CAMPAIGN_RETRY_PAUSE,
    RESIGN_TIMEOUT,
};
