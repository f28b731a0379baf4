//! The `elect` binary end to end on the file backend: what a user running it sees.
//!
//! Each test gets its own lock directory (`ELECT_FILE_DIR`). Waits poll the file system or
//! the process table under a deadline: a process's death has no event to wait on.

use std::fs;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use elect_test_support::cli::{assert_exit, assert_names, elect_on_files, sh};
use elect_test_support::process::{alive, pgrp_of, wait_for, KillOnDrop};
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

/// `elect` with a private lock directory and none of the caller's `ELECT_*` variables.
fn elect(dir: &Path) -> Command {
    elect_on_files(env!("CARGO_BIN_EXE_elect"), &dir.join("locks"))
}

/// [`elect`] with the arguments of a command `line` (none of them holds a space).
fn elect_line(dir: &Path, line: &str) -> Command {
    let mut command = elect(dir);
    command.args(line.split_whitespace());
    command
}

fn group_alive(pgid: i32) -> bool {
    // killpg(…, 0) also counts zombies; a group of zombies only is gone for our purpose.
    if killpg(Pid::from_raw(pgid), None).is_err() {
        return false;
    }
    fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .any(|entry| {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                return false;
            };
            let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
                return false;
            };
            let fields: Vec<&str> = stat
                .rsplit(')')
                .next()
                .unwrap_or("")
                .split_whitespace()
                .collect();
            // fields[0] = state, fields[2] = pgrp
            fields.get(2) == Some(&pgid.to_string().as_str()) && fields[0] != "Z" && pid > 0
        })
}

fn wait_exit(child: &mut Child, limit: Duration, what: &str) -> std::process::ExitStatus {
    wait_for(limit, what, || child.try_wait().expect("try_wait"))
}

/// A record a child writes when it starts: `<candidate id> <token> <pid>`.
#[derive(Debug, Clone, PartialEq)]
struct Start {
    id: String,
    token: u64,
    pid: i32,
}

fn starts(log: &Path) -> Vec<Start> {
    fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|line| {
            let mut parts = line.split_whitespace();
            Start {
                id: parts.next().unwrap().to_owned(),
                token: parts.next().unwrap().parse().unwrap(),
                pid: parts.next().unwrap().parse().unwrap(),
            }
        })
        .collect()
}

/// A command that logs its start and then works forever, with a grandchild in its group.
fn worker(log: &Path) -> Vec<String> {
    sh(format!(
        "echo \"$ELECT_CANDIDATE_ID $ELECT_FENCING_TOKEN $$\" >> {}; sleep 1000 & wait",
        log.display()
    ))
}

fn spawn_run(dir: &Path, id: &str, election: &str, extra: &[&str], command: &[String]) -> Child {
    elect(dir)
        .args(["run", "--election", election, "--id", id])
        .args(extra)
        .arg("--")
        .args(command)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start elect")
}

#[test]
fn two_runs_one_child_at_a_time_and_kill_9_hands_over() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("starts.log");
    let command = worker(&log);
    let mut runs = [
        KillOnDrop(spawn_run(dir.path(), "a", "demo", &[], &command)),
        KillOnDrop(spawn_run(dir.path(), "b", "demo", &[], &command)),
    ];

    let first = wait_for(Duration::from_secs(10), "a first child", || {
        starts(&log).first().cloned()
    });
    // Started together, but only one child may run.
    sleep(Duration::from_millis(500));
    assert_eq!(
        starts(&log).len(),
        1,
        "two children started: {:?}",
        starts(&log)
    );
    assert!(alive(first.pid));

    let leader = if first.id == "a" { 0 } else { 1 };
    // The command runs in a process group of its own, not elect's.
    let group = pgrp_of(first.pid);
    assert_ne!(
        group,
        pgrp_of(runs[leader].0.id() as i32),
        "the command shares elect's process group"
    );
    let killed_at = Instant::now();
    runs[leader].0.kill().expect("kill -9 the leading elect");
    runs[leader].0.wait().unwrap();

    // Its child, and the child's own child, are gone within 100 ms.
    wait_for(
        Duration::from_millis(100),
        "the killed elect's process group gone",
        || (!group_alive(group)).then_some(()),
    );
    let gone_after = killed_at.elapsed();

    let second = wait_for(Duration::from_secs(1), "the other child starting", || {
        starts(&log).get(1).cloned()
    });
    let handover = killed_at.elapsed();
    assert_ne!(second.id, first.id);
    assert!(
        second.token > first.token,
        "token did not grow: {first:?} then {second:?}"
    );
    assert!(!alive(first.pid), "the old child still runs");
    eprintln!("kill -9 leader: group gone after {gone_after:?}, successor's child started after {handover:?}");
}

#[test]
fn a_command_that_exits_resigns_and_passes_its_status() {
    let dir = tempfile::tempdir().unwrap();
    let status = elect_line(dir.path(), "run --election once -- sh -c")
        .arg("test \"$ELECT_FENCING_TOKEN\" -gt 0 && exit 7")
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(7));
    let out = status_json(dir.path(), "once");
    assert_eq!(
        out["leader"],
        serde_json::Value::Null,
        "the term was not resigned: {out}"
    );
    // The next term gets a greater token.
    let status = elect_line(dir.path(), "run --election once -- sh -c")
        .arg("exit $ELECT_FENCING_TOKEN")
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(2));
}

fn status_json(dir: &Path, election: &str) -> serde_json::Value {
    let out = elect(dir)
        .args(["status", "--json", "--election", election])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "status failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("status --json prints JSON")
}

#[test]
fn status_shows_the_leader_and_the_waiting_candidates() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("starts.log");
    let command = worker(&log);
    let _runs = KillOnDrop(spawn_run(dir.path(), "alpha", "stat", &[], &command));
    let start = wait_for(Duration::from_secs(10), "alpha leading", || {
        starts(&log).first().cloned()
    });
    let _more = KillOnDrop(spawn_run(dir.path(), "beta", "stat", &[], &command));
    let status = wait_for(Duration::from_secs(5), "beta listed as waiting", || {
        let status = status_json(dir.path(), "stat");
        (status["candidates"].as_array().map_or(0, Vec::len) == 2).then_some(status)
    });
    assert_eq!(status["backend"], "file");
    assert_eq!(status["leader"]["id"], "alpha");
    assert_eq!(status["leader"]["token"], start.token);
    assert_eq!(status["candidates"][1]["id"], "beta");
    assert_eq!(status["candidates"][1]["leading"], false);
    let human = elect(dir.path())
        .args(["status", "--election", "stat"])
        .output()
        .unwrap();
    let human = String::from_utf8(human.stdout).unwrap();
    assert_names("status", &human, &["leader    alpha", "waiting   beta"]);
}

/// Issue 14, item 5: a value (or id) from the store cannot forge lines or send escape codes.
#[test]
fn status_and_observe_escape_what_the_store_holds() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("starts.log");
    let forged = "x\nleader    forged\ntoken     1\x1b[2J\u{202e}";
    let mut run = elect(dir.path());
    run.env("ELECT_VALUE", forged)
        .args(["run", "--election", "esc", "--id", "alpha", "--"])
        .args(worker(&log))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let _runs = KillOnDrop(run.spawn().unwrap());
    wait_for(Duration::from_secs(10), "alpha leading", || {
        starts(&log).first().cloned()
    });
    let human = elect(dir.path())
        .args(["status", "--election", "esc"])
        .output()
        .unwrap();
    let human = String::from_utf8(human.stdout).unwrap();
    let lines: Vec<&str> = human.lines().collect();
    assert_eq!(
        lines.iter().filter(|l| l.starts_with("leader")).count(),
        1,
        "{human}"
    );
    assert_eq!(
        lines.iter().filter(|l| l.starts_with("token")).count(),
        1,
        "{human}"
    );
    assert!(
        !human.contains('\x1b') && !human.contains('\u{202e}'),
        "{human:?}"
    );
    assert!(
        human.contains("value     x\\nleader    forged\\ntoken     1\\u{1b}[2J\\u{202e}"),
        "{human}"
    );
    // JSON keeps the value exact.
    assert_eq!(status_json(dir.path(), "esc")["leader"]["value"], forged);
}

/// Issue 15, item 4: `--timeout` gives up a campaign not won in time (exit 124, the command
/// never runs), `--value` is what the leader proclaims, `status --exit-code` is 1 when nobody
/// leads.
#[test]
fn timeout_gives_up_and_value_is_proclaimed() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("starts.log");
    let _leader = KillOnDrop(spawn_run(
        dir.path(),
        "alpha",
        "tmo",
        &["--value", "alpha's value"],
        &worker(&log),
    ));
    wait_for(Duration::from_secs(10), "alpha leading", || {
        starts(&log).first().cloned()
    });
    assert_eq!(
        status_json(dir.path(), "tmo")["leader"]["value"],
        "alpha's value"
    );
    let exit_code = |election: &str| {
        elect(dir.path())
            .args(["status", "--exit-code", "--election", election])
            .output()
            .unwrap()
            .status
            .code()
    };
    assert_eq!(exit_code("tmo"), Some(0), "someone leads");
    assert_eq!(exit_code("nobody-here"), Some(1), "nobody leads");
    let started = Instant::now();
    let marker = dir.path().join("ran");
    let out = elect_line(dir.path(), "run --election tmo --timeout 1.5s -- touch")
        .arg(&marker)
        .output()
        .unwrap();
    let took = started.elapsed();
    assert_eq!(
        out.status.code(),
        Some(124),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(5),
        "gave up after {took:?}"
    );
    assert!(!marker.exists(), "the command ran without leading");
}

#[test]
fn observe_prints_one_line_per_change() {
    let dir = tempfile::tempdir().unwrap();
    let lines = dir.path().join("observed");
    let _observer = KillOnDrop(
        elect(dir.path())
            .args(["observe", "--json", "--election", "obs"])
            .stdout(fs::File::create(&lines).unwrap())
            .spawn()
            .unwrap(),
    );
    let read = || -> Vec<serde_json::Value> {
        fs::read_to_string(&lines)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("observe --json prints JSON lines"))
            .collect()
    };
    wait_for(Duration::from_secs(5), "the first line", || {
        (!read().is_empty()).then_some(())
    });
    let status = elect_line(dir.path(), "run --election obs --id worker -- sleep 0.5")
        .status()
        .unwrap();
    assert!(status.success());
    let seen = wait_for(Duration::from_secs(5), "leader and no leader again", || {
        let seen = read();
        (seen.len() >= 3).then_some(seen)
    });
    assert_eq!(seen[0]["leader"], serde_json::Value::Null);
    assert_eq!(seen[1]["leader"]["id"], "worker");
    assert_eq!(seen[2]["leader"], serde_json::Value::Null);
    assert_eq!(seen.len(), 3, "extra lines: {seen:?}");
}

#[test]
fn sigterm_is_forwarded_and_elect_exits_when_the_command_does() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("got-term");
    let ready = dir.path().join("ready");
    let script = format!(
        "trap 'echo term > {}; exit 0' TERM; touch {}; while :; do sleep 0.05; done",
        marker.display(),
        ready.display()
    );
    let mut run = elect(dir.path())
        .args(["run", "--election", "term", "--", "sh", "-c", &script])
        .spawn()
        .unwrap();
    wait_for(Duration::from_secs(10), "the command ready", || {
        ready.exists().then_some(())
    });
    kill(Pid::from_raw(run.id() as i32), Signal::SIGTERM).unwrap();
    let status = wait_exit(
        &mut run,
        Duration::from_secs(5),
        "elect exiting after SIGTERM",
    );
    assert_eq!(status.code(), Some(0));
    assert!(marker.exists(), "the command did not get SIGTERM");
    assert_eq!(
        status_json(dir.path(), "term")["leader"],
        serde_json::Value::Null
    );
}

#[test]
fn other_signals_reach_the_command_and_elect_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let (ready, got) = (dir.path().join("ready"), dir.path().join("got"));
    let script = format!(
        "trap 'echo $n >> {got}; n=$((n+1))' USR1 HUP; n=0; touch {ready}; while :; do sleep 0.02; done",
        got = got.display(),
        ready = ready.display()
    );
    let mut run = elect(dir.path())
        .args(["run", "--election", "usr1", "--", "sh", "-c", &script])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(Duration::from_secs(10), "the command ready", || {
        ready.exists().then_some(())
    });
    let elect_pid = Pid::from_raw(run.id() as i32);
    kill(elect_pid, Signal::SIGUSR1).unwrap();
    wait_for(Duration::from_secs(2), "SIGUSR1 forwarded", || {
        (fs::read_to_string(&got).unwrap_or_default().lines().count() == 1).then_some(())
    });
    kill(elect_pid, Signal::SIGHUP).unwrap();
    wait_for(Duration::from_secs(2), "SIGHUP forwarded", || {
        (fs::read_to_string(&got).unwrap_or_default().lines().count() == 2).then_some(())
    });
    assert!(
        run.try_wait().unwrap().is_none(),
        "elect stopped on a forwarded signal"
    );
    kill(elect_pid, Signal::SIGTERM).unwrap();
    let status = wait_exit(
        &mut run,
        Duration::from_secs(15),
        "elect exiting after SIGTERM",
    );
    // SIGTERM ends the command, and elect exits 0.
    assert_eq!(status.code(), Some(0));
}

#[test]
fn a_lost_claim_stops_the_command_and_once_exits_75() {
    let dir = tempfile::tempdir().unwrap();
    let ready = dir.path().join("ready");
    // The command ignores SIGTERM: only SIGKILL after the grace period ends it.
    let script = format!(
        "trap '' TERM; touch {}; while :; do sleep 0.05; done",
        ready.display()
    );
    let mut run = elect_line(
        dir.path(),
        "run --once --grace 300ms --election lose -- sh -c",
    )
    .arg(&script)
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    wait_for(Duration::from_secs(10), "the command ready", || {
        ready.exists().then_some(())
    });
    let deleted_at = Instant::now();
    fs::remove_file(dir.path().join("locks/lose.lock")).unwrap();
    let status = wait_exit(
        &mut run,
        Duration::from_secs(3),
        "elect exiting after the loss",
    );
    let took = deleted_at.elapsed();
    assert_eq!(status.code(), Some(75));
    assert!(
        took >= Duration::from_millis(300),
        "SIGKILL came before the grace period: {took:?}"
    );
    let Output { stderr, .. } = run.wait_with_output().unwrap();
    assert_names(
        "elect run",
        &String::from_utf8_lossy(&stderr),
        &["revoked", "SIGKILL"],
    );
}

#[test]
fn bad_input_gets_distinct_exit_codes_and_names_the_field() {
    let dir = tempfile::tempdir().unwrap();
    // Each case is one command line, its exit code, and what its message must name.
    let cases: [(&str, i32, &str); 11] = [
        ("run --election e --ttl 10s -- true", 78, "--ttl"),
        (
            "run --url etcd://127.0.0.1:1/e --ttl 1.5s -- true",
            78,
            "--ttl",
        ),
        (
            "run --url etcd://127.0.0.1:1/e --lock-delay 1s -- true",
            78,
            "--lock-delay",
        ),
        (
            "run --url consul://127.0.0.1:1/e --lock-delay 61s -- true",
            78,
            "--lock-delay",
        ),
        ("run --url bogus://x/y -- true", 78, "unknown scheme"),
        ("run --election bad/name -- true", 78, "--election"),
        ("status", 78, "no election"),
        ("run --election e --grace 5 -- true", 2, "--grace"),
        (
            "run --url consul://127.0.0.1:1/e -- true",
            69,
            "unreachable",
        ),
        ("run --url etcd://127.0.0.1:1/e -- true", 69, "unreachable"),
        (
            "run --election e -- /nonexistent/command",
            127,
            "/nonexistent/command",
        ),
    ];
    for (line, code, needle) in cases {
        let out = elect_line(dir.path(), line).output().unwrap();
        assert_exit(line, &out, code, &[needle]);
    }
}

/// Issue 14, item 6: only a regular file of at most 1 MiB is read as a config.
#[test]
fn a_config_that_is_not_a_small_regular_file_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let big = dir.path().join("big.toml");
    fs::write(&big, format!("# {}\n", "x".repeat(2 << 20))).unwrap();
    let cases = [
        (Path::new("/dev/zero"), "not a regular file"),
        (fifo.as_path(), "not a regular file"),
        (big.as_path(), "larger than 1024 KiB"),
    ];
    for (path, problem) in cases {
        let mut child = elect(dir.path())
            .args(["status", "--config"])
            .arg(path)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let status = wait_exit(&mut child, Duration::from_secs(5), "elect status");
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
        assert_eq!(status.code(), Some(78), "{}: {stderr}", path.display());
        assert!(stderr.contains(problem), "{}: {stderr}", path.display());
    }
}

#[test]
fn log_json_has_election_candidate_and_token_on_every_state_change() {
    let dir = tempfile::tempdir().unwrap();
    let out = elect_line(dir.path(), "run --log-json --election logs --id me -- true")
        .output()
        .unwrap();
    assert!(out.status.success());
    let events: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stderr)
        .lines()
        .map(|l| serde_json::from_str(l).expect("--log-json writes JSON lines"))
        .collect();
    let messages: Vec<&str> = events
        .iter()
        .filter_map(|e| e["message"].as_str())
        .collect();
    let mut tokens = Vec::new();
    for wanted in ["campaigning", "elected", "resigned"] {
        let event = events
            .iter()
            .find(|e| e["message"] == wanted)
            .unwrap_or_else(|| panic!("no {wanted:?} in {messages:?}"));
        assert_eq!(event["election"], "logs");
        assert_eq!(event["candidate"], "me");
        if wanted != "campaigning" {
            // The file backend's tokens have a wall-clock floor: the one term's token, > 0.
            let token = event["token"].as_u64().unwrap_or(0);
            assert!(token > 0, "{wanted}: no token in {event}");
            tokens.push(token);
        }
    }
    assert_eq!(tokens[0], tokens[1], "elected and resigned name one term");
}

/// Issue 15, item 4: shell completions and the man page are generated from the CLI's own
/// definition, so they cannot miss a flag.
#[test]
fn completions_and_the_man_page_know_every_flag() {
    let dir = tempfile::tempdir().unwrap();
    for (args, needles) in [
        (
            &["completions", "bash"][..],
            &["_elect", "--metrics-addr", "--timeout"][..],
        ),
        (
            &["completions", "zsh"][..],
            &["#compdef elect", "--contain"][..],
        ),
        (&["man"][..], &[".TH elect 1", "status", "observe"][..]),
    ] {
        let out = elect(dir.path()).args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}");
        assert_names(
            &format!("{args:?}"),
            &String::from_utf8_lossy(&out.stdout),
            needles,
        );
    }
}

/// Issue 15, item 4: a URL without hosts takes the native tools' variables, as `consul lock`
/// and `etcdctl` would (here a closed port: the error names it).
#[test]
fn a_url_without_hosts_takes_the_native_variables() {
    let dir = tempfile::tempdir().unwrap();
    for (url, variable, value) in [
        ("consul:///e", "CONSUL_HTTP_ADDR", "127.0.0.1:1"),
        ("etcd:///e", "ETCDCTL_ENDPOINTS", "http://127.0.0.1:1"),
    ] {
        let out = elect(dir.path())
            .env(variable, value)
            .args(["status", "--url", url])
            .output()
            .unwrap();
        assert_exit(url, &out, 69, &["127.0.0.1:1"]);
    }
}
