//! The netns mode of the real-cluster harness (`ELECT_CLUSTER_NET=netns tests/cluster/cluster`,
//! through `elect_test_support::NetnsCluster`): a ZooKeeper member cut from its peers leaves the
//! quorum while its client port still answers; healed, the ensemble is whole again; taken down
//! (as on drop), nothing is left of the namespaces, veths and bridge.
//!
//! Needs root and iproute2 (a failure says so, never a skip). Every wait is bounded.

use std::thread;
use std::time::{Duration, Instant};

use elect_test_support::netns::{four_letter_word, leftovers};
use elect_test_support::NetnsCluster;

/// tickTime 200 ms × syncLimit 10: how long a follower cut from its leader goes on serving.
const SYNC_LIMIT: Duration = Duration::from_millis(2000);
/// Scheduling, the probe's own timeout, and the follower's shutdown.
const SLACK: Duration = Duration::from_secs(3);
const REJOIN: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(100);
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// `Mode: leader` / `Mode: follower` from `srvr`, `None` when the member serves no quorum
/// ("This ZooKeeper instance is not currently serving requests") or does not answer.
fn mode(address: &str) -> Option<String> {
    let out = four_letter_word(address, "srvr", PROBE_TIMEOUT).ok()?;
    out.lines()
        .find_map(|l| l.strip_prefix("Mode: "))
        .map(str::to_owned)
        .filter(|m| m == "leader" || m == "follower")
}

/// Polls `done` every 100 ms until it holds; `Err(elapsed)` after `within`.
fn poll(within: Duration, mut done: impl FnMut() -> bool) -> Result<Duration, Duration> {
    let start = Instant::now();
    loop {
        if done() {
            return Ok(start.elapsed());
        }
        if start.elapsed() >= within {
            return Err(start.elapsed());
        }
        thread::sleep(POLL);
    }
}

#[test]
fn an_isolated_zookeeper_member_leaves_the_quorum_but_keeps_its_client_port() {
    let cluster = NetnsCluster::up("zookeeper");
    assert!(leftovers("zookeeper").len() >= 3, "namespaces made");
    let leader = cluster.leader();
    let member = leader % 3 + 1; // a follower
    let others = cluster.others(member);
    for i in 1..=3 {
        assert!(
            mode(cluster.endpoint(i)).is_some(),
            "n{i} serves before any cut"
        );
    }
    for &j in &others {
        assert!(cluster.reaches(member, j) && cluster.reaches(j, member));
    }

    cluster.isolate(member);
    let cut_at = Instant::now();
    assert_eq!(
        {
            let mut c = cluster.cuts();
            c.sort();
            c
        },
        {
            let mut c: Vec<_> = others
                .iter()
                .flat_map(|&j| [(member, j), (j, member)])
                .collect();
            c.sort();
            c
        },
        "cuts listed after isolate({member})"
    );
    // real traffic over the peer links stops, both ways
    for &j in &others {
        assert!(!cluster.reaches(member, j), "n{member} still reaches n{j}");
        assert!(!cluster.reaches(j, member), "n{j} still reaches n{member}");
    }
    let within = SYNC_LIMIT + SLACK;
    let left = poll(within.saturating_sub(cut_at.elapsed()), || {
        mode(cluster.endpoint(member)).is_none()
    })
    .map(|_| cut_at.elapsed())
    .unwrap_or_else(|_| {
        panic!(
            "isolated n{member} still says {:?} {:?} after the cut (limit {within:?})",
            mode(cluster.endpoint(member)),
            cut_at.elapsed()
        )
    });
    eprintln!("isolated n{member} left the quorum {left:?} after the cut");
    // its client port still accepts connections and answers
    let srvr = four_letter_word(cluster.endpoint(member), "srvr", PROBE_TIMEOUT)
        .unwrap_or_else(|e| panic!("isolated n{member}'s client port: {e}"));
    assert!(
        srvr.contains("not currently serving"),
        "isolated n{member} answers srvr with {srvr:?}"
    );
    // the other two keep a quorum: one leader, one follower
    let mut modes: Vec<_> = others
        .iter()
        .map(|&j| mode(cluster.endpoint(j)).unwrap_or_else(|| panic!("n{j} lost the quorum")))
        .collect();
    modes.sort();
    assert_eq!(modes, ["follower", "leader"]);

    let healing = Instant::now();
    cluster.heal();
    assert!(cluster.cuts().is_empty(), "no cut left after heal");
    for &j in &others {
        assert!(cluster.reaches(member, j) && cluster.reaches(j, member));
    }
    poll(REJOIN, || mode(cluster.endpoint(member)).is_some())
        .unwrap_or_else(|t| panic!("n{member} did not rejoin within {t:?} of the heal"));
    eprintln!(
        "n{member} serves again {:?} after the heal began",
        healing.elapsed()
    );
    cluster.wait_all(REJOIN);

    // one-way: what n_member sends to n_j is dropped; TCP stops both ways (no replies)
    let j = others[0];
    cluster.cut_one_way(member, j);
    assert_eq!(cluster.cuts(), [(member, j)]);
    assert!(!cluster.reaches(member, j) && !cluster.reaches(j, member));
    assert!(cluster.reaches(member, others[1]));
    cluster.heal_pair(member, j);
    assert!(cluster.cuts().is_empty());
    assert!(cluster.reaches(member, j));

    // what drop does, checked while the lock is still held (after it, another test's netns
    // cluster could stand where ours stood)
    cluster.down();
}
