//! Fault cases and guards that the backends' fault tests share: a case written once here is
//! run by each backend against its own cluster, like the conformance suite.

use std::time::Duration;

use elect_core::{Candidate, ElectionName, Elector, Leadership, LossReason};
use tokio::time::Instant;

use crate::cluster;

/// A fresh election for the fault case `case`.
pub fn election(case: &str) -> ElectionName {
    crate::unique_name(&format!("fault-{case}"))
        .parse()
        .expect("a valid election name")
}

/// The candidate a fault case campaigns as.
pub fn me() -> Candidate {
    Candidate::new("leader", "leader").expect("a valid candidate")
}

/// A new election of fault case `case`, and `elector`'s term in it as [`me`].
pub async fn lead<E: Elector + ?Sized>(elector: &E, case: &str) -> (ElectionName, Leadership) {
    let election = election(case);
    let leadership = elector
        .campaign(&election, &me())
        .await
        .unwrap_or_else(|e| panic!("{case}: the campaign failed: {e}"));
    (election, leadership)
}

/// Members of a cluster frozen or killed until the guard is dropped: then — even when an
/// assertion failed — they are thawed or started again, and the whole cluster is waited for
/// to be back in the quorum.
#[derive(Debug)]
pub struct MemberFault {
    backend: &'static str,
    members: Vec<String>,
    /// The cluster script's command that undoes the fault: `thaw` or `start`.
    undo: &'static str,
}

impl MemberFault {
    /// Freezes `members` (`"1"`…`"3"`) of `backend` (SIGSTOP).
    pub fn freeze(backend: &'static str, members: &[&str]) -> MemberFault {
        MemberFault::apply(backend, members, "freeze", "thaw")
    }

    /// Kills `members` (`"1"`…`"3"`) of `backend` (SIGKILL).
    pub fn kill(backend: &'static str, members: &[&str]) -> MemberFault {
        MemberFault::apply(backend, members, "kill", "start")
    }

    fn apply(
        backend: &'static str,
        members: &[&str],
        fault: &str,
        undo: &'static str,
    ) -> MemberFault {
        let guard = MemberFault {
            backend,
            members: members.iter().map(|m| m.to_string()).collect(),
            undo,
        };
        for member in members {
            cluster(&[fault, backend, member]);
        }
        guard
    }
}

impl Drop for MemberFault {
    fn drop(&mut self) {
        for member in &self.members {
            cluster(&[self.undo, self.backend, member]);
        }
        cluster(&["wait", self.backend, "all", "60"]);
    }
}

/// Every member of `backend`'s cluster frozen under a leader whose store expires a session
/// `ttl` after the last renewal it heard: the term is lost with `DeadlinePassed`, never before
/// its deadline and less than 100 ms after it, and that deadline is earlier than the store
/// could expire the session (the freeze + `ttl`).
pub async fn frozen_cluster_ends_the_term_by_its_deadline(
    backend: &'static str,
    leadership: &Leadership,
    ttl: Duration,
) {
    let frozen_at = Instant::now();
    let _frozen = MemberFault::freeze(backend, &["1", "2", "3"]);
    let reason = tokio::time::timeout(ttl * 2, leadership.lost())
        .await
        .expect("the lost-future resolves while every member is frozen");
    let lost_at = Instant::now();
    let deadline = leadership.deadline().expect("the term has a deadline");
    assert_eq!(reason, LossReason::DeadlinePassed);
    assert!(lost_at >= deadline, "lost before the deadline");
    assert!(
        lost_at - deadline < Duration::from_millis(100),
        "lost {:?} after the deadline",
        lost_at - deadline
    );
    // The store cannot expire the session before the last renewal it heard + TTL, which is
    // after the last one answered was sent; our deadline is that send + TTL - margin.
    assert!(
        deadline < frozen_at + ttl,
        "the deadline was later than the store's expiry could be"
    );
    eprintln!(
        "{backend}: all members frozen: lost {:?} after the freeze, {:?} after the deadline",
        lost_at - frozen_at,
        lost_at - deadline
    );
}
