//! The faults the suite injects, and the store-specific ones an operator would do by hand.

use std::net::SocketAddr;
use std::process::Command;

use crate::target::Backend;

/// One fault, injected once per round.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Fault {
    /// The leader is asked to stop (SIGTERM): it resigns (L2, handover).
    Resign,
    /// The leader's process is killed with SIGKILL (L1).
    KillLeader,
    /// The leader's process is frozen (SIGSTOP) until a successor leads, then thawed: the old
    /// leader must find itself Lost, and its late charge must be refused (S4). For `elect run`
    /// that is the supervisor alone: its command charges on with a token going stale, and the
    /// ledger must refuse it once the successor has written.
    FreezeLeader,
    /// The leader's network to every member goes silent until a successor leads (S3, L1).
    CutLeader,
    /// An operator removes the leader's claim: etcd lease revoked (or key deleted every
    /// other time), ZooKeeper claim znode deleted, Consul session destroyed.
    OperatorRevoke,
    /// A member that is not the cluster's raft/zab leader is killed, then restarted.
    KillServer,
    /// The cluster's own raft/zab leader member is killed, then restarted.
    KillClusterLeader,
    /// Every member is killed, then all are started again.
    RestartCluster,
    /// Every candidate's network gets 50 ms of delay each way, for one TTL.
    SlowNetwork,
    /// The member the leader's client talks to most is cut from its peers for two TTLs, its
    /// clients still reaching it (a ZooKeeper follower then answers reads alone; an etcd
    /// member cancels watches that require a leader).
    IsolateMemberOfLeader,
    /// The cluster's own raft/zab leader is cut from its peers for two TTLs.
    IsolateClusterLeader,
    /// A member is cut from its peers for two TTLs, and the candidates are split too: the
    /// leader and one other reach only that member (the minority), the third only the two
    /// others (the majority).
    Split,
    /// Jepsen's bridge for two TTLs: two members cannot see each other, the third sees both.
    Bridge,
    /// The leader's member's peer links are cut and healed every 300 ms for two TTLs.
    Flap,
    /// What the leader's member sends to its peers is dropped (it still hears them) for
    /// two TTLs.
    OneWay,
}

impl Fault {
    /// Every fault, in the order rounds cycle through them.
    pub const ALL: [Fault; 15] = [
        Fault::Resign,
        Fault::KillLeader,
        Fault::FreezeLeader,
        Fault::CutLeader,
        Fault::OperatorRevoke,
        Fault::KillServer,
        Fault::KillClusterLeader,
        Fault::RestartCluster,
        Fault::SlowNetwork,
        Fault::IsolateMemberOfLeader,
        Fault::IsolateClusterLeader,
        Fault::Split,
        Fault::Bridge,
        Fault::Flap,
        Fault::OneWay,
    ];

    /// The name in histories and reports.
    pub fn kind(self) -> &'static str {
        match self {
            Fault::Resign => "resign",
            Fault::KillLeader => "kill-leader",
            Fault::FreezeLeader => "freeze-leader",
            Fault::CutLeader => "cut-leader",
            Fault::OperatorRevoke => "operator-revoke",
            Fault::KillServer => "kill-server",
            Fault::KillClusterLeader => "kill-cluster-leader",
            Fault::RestartCluster => "restart-cluster",
            Fault::SlowNetwork => "slow-network",
            Fault::IsolateMemberOfLeader => "isolate-member-of-leader",
            Fault::IsolateClusterLeader => "isolate-cluster-leader",
            Fault::Split => "split",
            Fault::Bridge => "bridge",
            Fault::Flap => "flap",
            Fault::OneWay => "one-way",
        }
    }

    /// Parses [`Fault::kind`].
    pub fn parse(kind: &str) -> Option<Fault> {
        Fault::ALL.into_iter().find(|f| f.kind() == kind)
    }

    /// Whether the fault disturbs the members or every link (a quiet TTL follows it).
    pub fn disturbs_cluster(self) -> bool {
        matches!(
            self,
            Fault::KillServer
                | Fault::KillClusterLeader
                | Fault::RestartCluster
                | Fault::SlowNetwork
        ) || self.between_members()
    }

    /// Whether the fault partitions the members (network namespaces). A predicate, as the
    /// other classes are: the faults themselves are listed once, in [`Fault::ALL`].
    pub fn between_members(self) -> bool {
        matches!(
            self,
            Fault::IsolateMemberOfLeader
                | Fault::IsolateClusterLeader
                | Fault::Split
                | Fault::Bridge
                | Fault::Flap
                | Fault::OneWay
        )
    }

    /// Whether the fault targets the leading candidate (and a successor must take over).
    pub fn targets_leader(self) -> bool {
        matches!(
            self,
            Fault::Resign
                | Fault::KillLeader
                | Fault::FreezeLeader
                | Fault::CutLeader
                | Fault::OperatorRevoke
        )
    }
}

/// Removes `leader_id`'s claim on `election` the way an operator would, with the store's
/// own tools; `round` picks between etcd's two ways. Returns what was done.
pub async fn operator_revoke(
    backend: Backend,
    members: &[SocketAddr],
    election: &str,
    leader_id: &str,
    round: usize,
) -> Result<String, String> {
    match backend {
        Backend::Etcd => {
            let endpoints: Vec<String> = members.iter().map(|m| m.to_string()).collect();
            let endpoints = endpoints.join(",");
            let etcdctl = |args: &[&str]| {
                let output = Command::new(elect_test_support::server_bin("etcdctl"))
                    .arg(format!("--endpoints={endpoints}"))
                    .args(args)
                    .output()
                    .map_err(|e| format!("etcdctl: {e}"))?;
                if !output.status.success() {
                    return Err(format!(
                        "etcdctl {args:?}: {}",
                        String::from_utf8_lossy(&output.stderr)
                    ));
                }
                Ok(String::from_utf8_lossy(&output.stdout).into_owned())
            };
            let prefix = format!("{election}/");
            let keys = etcdctl(&[
                "get",
                &prefix,
                "--prefix",
                "--sort-by=CREATE",
                "--order=ASCEND",
                "--limit=1",
                "--keys-only",
            ])?;
            let key = keys
                .lines()
                .next()
                .filter(|k| !k.is_empty())
                .ok_or("no claim")?
                .to_owned();
            if round.is_multiple_of(2) {
                let lease = key.trim_start_matches(&prefix);
                etcdctl(&["lease", "revoke", lease])?;
                Ok(format!("etcdctl lease revoke {lease}"))
            } else {
                etcdctl(&["del", &key])?;
                Ok(format!("etcdctl del {key}"))
            }
        }
        Backend::Zookeeper => {
            let connect: Vec<String> = members.iter().map(|m| m.to_string()).collect();
            let client = zookeeper_client::Client::connect(&connect.join(","))
                .await
                .map_err(|e| format!("connect: {e}"))?;
            let dir = format!("/{election}");
            let children = client
                .list_children(&dir)
                .await
                .map_err(|e| format!("list {dir}: {e}"))?;
            for child in children.iter().filter(|c| c.contains("-latch-")) {
                let path = format!("{dir}/{child}");
                if let Ok((data, _)) = client.get_data(&path).await {
                    if data == leader_id.as_bytes() {
                        client
                            .delete(&path, None)
                            .await
                            .map_err(|e| format!("delete {path}: {e}"))?;
                        return Ok(format!("deleted {path}"));
                    }
                }
            }
            Err(format!("no claim of {leader_id} under {dir}"))
        }
        Backend::Consul => {
            let agent = members[round % members.len()];
            let (_, body) = http(agent, "GET", &format!("/v1/kv/{election}/.lock"))?;
            let entries: serde_json::Value =
                serde_json::from_str(&body).map_err(|e| format!("{body}: {e}"))?;
            let session = entries[0]["Session"]
                .as_str()
                .ok_or_else(|| format!("the lock has no session: {body}"))?
                .to_owned();
            let (status, body) = http(agent, "PUT", &format!("/v1/session/destroy/{session}"))?;
            if status != 200 {
                return Err(format!("destroy {session}: {status} {body}"));
            }
            Ok(format!("destroyed session {session}"))
        }
    }
}

/// One HTTP/1.0 request: `(status, body)`.
fn http(agent: SocketAddr, method: &str, path: &str) -> Result<(u16, String), String> {
    elect_test_support::try_http(
        &agent.to_string(),
        method,
        path,
        &[],
        "",
        std::time::Duration::from_secs(10),
    )
    .map_err(|e| format!("{method} {path} to {agent}: {e}"))
}
