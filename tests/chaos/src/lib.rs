//! elect's fault suite. [`check`] reads what candidates logged (their
//! [`history`](elect::history)) and what the billing ledger took, and reports every violation
//! of S1–S4 and L1–L2 as `docs/guarantees.md` states them.

pub mod check;
pub mod faults;
pub mod run;
pub mod summary;
pub mod target;
