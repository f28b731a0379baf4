//! Issue 15, item 2 (and the Prometheus text of item 1): two `elect run` replicas with
//! `--metrics-addr`; exactly one answers 200 on `/leader` and reports `elect_leader 1`, and
//! after its command stops, the other one does.

use std::process::{Command, Stdio};
use std::time::Duration;

use elect_test_support::process::{wait_for, KillOnDrop};
use elect_test_support::try_http;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const ADDRS: [&str; 2] = ["127.0.0.1:19464", "127.0.0.1:19465"];

fn get(addr: &str, path: &str) -> Option<(u16, String)> {
    try_http(addr, "GET", path, &[], "", Duration::from_secs(2)).ok()
}

#[test]
fn one_leader_on_the_endpoints_and_the_other_after_a_handover() {
    let dir = tempfile::tempdir().unwrap();
    let replicas: Vec<KillOnDrop> = ADDRS
        .iter()
        .enumerate()
        .map(|(i, addr)| {
            let mut command = Command::new(env!("CARGO_BIN_EXE_elect"));
            elect_test_support::process::without_elect_env(&mut command);
            KillOnDrop(
                command
                    .env("ELECT_FILE_DIR", dir.path().join("locks"))
                    .args(["run", "--election", "web", "--id", &format!("r{i}")])
                    .args(["--metrics-addr", addr, "--", "sleep", "1000"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap(),
            )
        })
        .collect();
    let leaders = || -> Option<Vec<usize>> {
        let codes: Vec<u16> = ADDRS
            .iter()
            .map(|addr| get(addr, "/leader").map(|(code, _)| code))
            .collect::<Option<_>>()?;
        Some((0..2).filter(|&i| codes[i] == 200).collect())
    };
    let first = wait_for(Duration::from_secs(10), "exactly one leader", || {
        leaders().filter(|l| l.len() == 1).map(|l| l[0])
    });
    let other = 1 - first;
    for (i, addr) in ADDRS.iter().enumerate() {
        let (code, body) = get(addr, "/healthz").unwrap();
        assert_eq!((code, body.as_str()), (200, "ok\n"), "replica {i}");
        let (_, metrics) = get(addr, "/metrics").unwrap();
        let expected = format!("elect_leader{{election=\"web\"}} {}", u8::from(i == first));
        assert!(metrics.contains(&expected), "replica {i}: {metrics}");
        // The library's histogram of campaign waits: one campaign won by the leader.
        let waits = format!(
            "elect_campaign_wait_seconds_count{{election=\"web\"}} {}",
            u8::from(i == first)
        );
        assert_eq!(
            metrics.contains(&waits),
            i == first,
            "replica {i}: {waits} in {metrics}"
        );
        let (_, status) = get(addr, "/status").unwrap();
        let status: serde_json::Value = serde_json::from_str(&status).unwrap();
        assert_eq!(status["election"], "web");
        assert_eq!(status["candidate"], format!("r{i}"));
        assert_eq!(status["leader"], i == first, "{status}");
        assert_eq!(
            status["state"],
            if i == first { "leading" } else { "campaigning" }
        );
    }
    assert_eq!(get(ADDRS[0], "/nope").unwrap().0, 404);

    // The leader stops (SIGTERM: its command ends, it resigns and exits): the other leads.
    let pid = replicas[first].0.id() as i32;
    kill(Pid::from_raw(pid), Signal::SIGTERM).unwrap();
    wait_for(Duration::from_secs(10), "the other replica leading", || {
        (get(ADDRS[other], "/leader").map(|(code, _)| code) == Some(200)).then_some(())
    });
    let (_, metrics) = get(ADDRS[other], "/metrics").unwrap();
    assert!(
        metrics.contains("elect_leader{election=\"web\"} 1")
            && metrics.contains("elect_terms_total{election=\"web\"} 1")
            && metrics.contains("elect_campaign_wait_seconds_count{election=\"web\"} 1"),
        "{metrics}"
    );
}

/// A backend with sessions: its renewals' round trips reach `/metrics` as a histogram.
#[test]
fn renewal_round_trips_are_a_histogram_on_the_metrics_endpoint() {
    const ADDR: &str = "127.0.0.1:19466";
    let url = elect_test_support::clusters::TestCluster::Etcd
        .url(&format!("metrics-{}", std::process::id()));
    let mut command = Command::new(env!("CARGO_BIN_EXE_elect"));
    elect_test_support::process::without_elect_env(&mut command);
    let _replica = KillOnDrop(
        command
            .args(["run", "--url", &url, "--metrics-addr", ADDR])
            .args(["--", "sleep", "1000"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // A renewal every TTL/3: two within 2 s of the win.
    let metrics = wait_for(Duration::from_secs(10), "two renewals answered", || {
        let (_, metrics) = get(ADDR, "/metrics")?;
        let count = metrics
            .lines()
            .find_map(|l| l.strip_prefix("elect_renewal_rtt_seconds_count{backend=\"etcd\"} "))?
            .parse::<u64>()
            .ok()?;
        (count >= 2).then_some(metrics)
    });
    assert!(
        metrics.contains("# TYPE elect_renewal_rtt_seconds histogram")
            && metrics.contains("elect_renewal_rtt_seconds_bucket{backend=\"etcd\",le=\"+Inf\"}"),
        "{metrics}"
    );
}
