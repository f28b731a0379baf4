//! Issue 15, item 1: a real Prometheus server (Debian's package, unpacked by
//! `tests/cluster/cluster install`) scrapes two `elect run` replicas of one election. Its query
//! API shows exactly one leader, and the other one after the leader stops. The shipped alerting
//! rules (`examples/prometheus/elect-alerts.yml`) pass `promtool check rules` and their unit tests
//! (`promtool test rules`), and the server loads and evaluates them without error.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use elect_test_support::process::{wait_for, without_elect_env, KillOnDrop};
use elect_test_support::{repo, server_bin, try_http};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

/// How often Prometheus scrapes the replicas and evaluates the rules: short, so that each wait
/// below takes a few scrapes, not minutes.
const SCRAPE_INTERVAL: &str = "250ms";

/// Bounds each wait on Prometheus: its start, a first scrape of both replicas, a handover seen
/// through it. Generous for a shared 2-core machine; a healthy run takes a few seconds.
const WAIT: Duration = Duration::from_secs(60);

fn alert_rules() -> PathBuf {
    repo().join("examples/prometheus/elect-alerts.yml")
}

/// Runs promtool with `args`; panics with its output unless it succeeds.
fn promtool(args: &[&str], dir: &Path) -> Output {
    elect_test_support::process::output_ok(
        Command::new(server_bin("promtool"))
            .args(args)
            .current_dir(dir),
    )
}

/// The rule file is valid, and its unit tests (each alert firing on a bad series and silent
/// on a good one) pass.
#[test]
fn promtool_checks_and_tests_the_alerting_rules() {
    let rules = alert_rules();
    let dir = rules.parent().unwrap();
    let check = promtool(&["check", "rules", "elect-alerts.yml"], dir);
    let found = String::from_utf8_lossy(&check.stdout);
    assert!(found.contains("SUCCESS: 4 rules found"), "{found}");
    promtool(&["test", "rules", "elect-alerts.test.yml"], dir);
}

/// An address on 127.0.0.1 that nothing listens on right now: the port the kernel picks for
/// a listener that is closed again at once. (`elect` and Prometheus bind it themselves.)
fn free_address() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().unwrap().to_string()
}

/// `value` for a URL's query string: every byte but the unreserved ones as `%XX`.
fn url_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A Prometheus server of the test's own, killed when dropped. Its log goes to a file, printed
/// if the test fails: a wait that times out says only what it waited for, the log says why.
struct Prometheus {
    address: String,
    log: PathBuf,
    _process: KillOnDrop,
}

impl Prometheus {
    /// Starts Prometheus in `dir` (configuration, storage, log), scraping `targets` and
    /// evaluating the shipped alerting rules, every [`SCRAPE_INTERVAL`].
    fn start(dir: &Path, targets: &[String]) -> Prometheus {
        let config = dir.join("prometheus.yml");
        let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: {SCRAPE_INTERVAL}\n  scrape_timeout: {SCRAPE_INTERVAL}\n  \
                 evaluation_interval: {SCRAPE_INTERVAL}\n\
                 rule_files: ['{}']\n\
                 scrape_configs:\n  - job_name: elect\n    static_configs:\n      \
                 - targets: [{}]\n",
                alert_rules().display(),
                targets.join(", ")
            ),
        )
        .unwrap();
        let address = free_address();
        let log = dir.join("prometheus.log");
        let process = Command::new(server_bin("prometheus"))
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={address}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start prometheus");
        Prometheus {
            address,
            log,
            _process: KillOnDrop(process),
        }
    }

    /// A GET of Prometheus' HTTP API: the `data` of a successful answer, or `None` while it
    /// cannot answer yet (starting, or the TSDB still opening).
    fn api(&self, path: &str) -> Option<Value> {
        let (code, body) = try_http(&self.address, "GET", path, &[], "", Duration::from_secs(5))
            .ok()
            .filter(|(code, _)| *code == 200)?;
        let reply: Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("{path}: answer {code} is not JSON ({e}): {body}"));
        assert_eq!(reply["status"], "success", "{path}: {reply}");
        Some(reply["data"].clone())
    }

    /// An instant query (`/api/v1/query`): each series' labels and value.
    fn query(&self, promql: &str) -> Option<Vec<(Value, f64)>> {
        let data = self.api(&format!("/api/v1/query?query={}", url_encode(promql)))?;
        let result = data["result"].as_array().expect("a vector result");
        Some(
            result
                .iter()
                .map(|series| {
                    let value = series["value"][1].as_str().expect("a sample's value");
                    (series["metric"].clone(), value.parse().expect("a number"))
                })
                .collect(),
        )
    }

    /// `elect_leader` of election `web` as Prometheus last scraped it: how many replicas it
    /// has a current sample of, and the instances of those that report 1.
    fn leaders(&self) -> Option<(usize, Vec<String>)> {
        let series = self.query("elect_leader{election=\"web\"}")?;
        let leaders = series
            .iter()
            .filter(|(_, value)| *value == 1.0)
            .map(|(labels, _)| labels["instance"].as_str().unwrap().to_owned())
            .collect();
        Some((series.len(), leaders))
    }

    /// `elect_fencing_token` of election `web` on the replica at `instance`, if scraped.
    fn token(&self, instance: &str) -> Option<f64> {
        let promql = format!("elect_fencing_token{{election=\"web\",instance=\"{instance}\"}}");
        match self.query(&promql)?.as_slice() {
            [(_, token)] => Some(*token),
            _ => None,
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            eprintln!("--- prometheus log ({}) ---\n{log}", self.log.display());
        }
    }
}

/// One `elect run` of election `web` on the file backend (lock directory `locks`), serving its
/// metrics on `address`, with a command that runs until it is ended.
fn replica(locks: &Path, id: &str, address: &str) -> KillOnDrop {
    let mut command = Command::new(env!("CARGO_BIN_EXE_elect"));
    without_elect_env(&mut command);
    let child = command
        .env("ELECT_FILE_DIR", locks)
        .args(["run", "--election", "web", "--id", id])
        .args(["--metrics-addr", address, "--", "sleep", "1000"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start elect run");
    KillOnDrop(child)
}

#[test]
fn prometheus_sees_one_leader_and_the_other_after_it_stops() {
    let dir = tempfile::tempdir().unwrap();
    let addresses = [free_address(), free_address()];
    let replicas: Vec<KillOnDrop> = addresses
        .iter()
        .enumerate()
        .map(|(i, address)| replica(&dir.path().join("locks"), &format!("r{i}"), address))
        .collect();
    let prometheus = Prometheus::start(dir.path(), &addresses);

    // Both replicas scraped, exactly one of them leading.
    let first = wait_for(
        WAIT,
        "Prometheus showing both replicas, one leading",
        || match prometheus.leaders()? {
            (2, leaders) if leaders.len() == 1 => addresses.iter().position(|a| *a == leaders[0]),
            _ => None,
        },
    );
    let other = 1 - first;
    // What Prometheus shows is what the replicas say: the one it names answers /leader with 200.
    let leader_code = |i: usize| {
        try_http(
            &addresses[i],
            "GET",
            "/leader",
            &[],
            "",
            Duration::from_secs(5),
        )
        .map(|(code, _)| code)
        .unwrap_or_else(|e| panic!("/leader of replica {i}: {e}"))
    };
    assert_eq!((leader_code(first), leader_code(other)), (200, 503));
    let first_token = wait_for(WAIT, "the leader's fencing token in Prometheus", || {
        prometheus.token(&addresses[first])
    });

    // The server loaded the shipped alerting rules and evaluates them without error against the
    // replicas' real series.
    wait_for(WAIT, "every alerting rule evaluated, healthy", || {
        let groups = prometheus.api("/api/v1/rules")?;
        let rules: Vec<&Value> = groups["groups"]
            .as_array()?
            .iter()
            .flat_map(|g| g["rules"].as_array().into_iter().flatten())
            .collect();
        for rule in &rules {
            assert_ne!(rule["health"], "err", "{rule}");
        }
        (rules.len() == 4 && rules.iter().all(|r| r["health"] == "ok")).then_some(())
    });

    // The leader stops (SIGTERM: `elect run` ends its command, resigns and exits): Prometheus
    // then shows exactly one leader, the other replica, with a later token. The stopped
    // replica's last samples say 0, or none at all once its failed scrapes mark them stale.
    let pid = replicas[first].0.id() as i32;
    kill(Pid::from_raw(pid), Signal::SIGTERM).unwrap();
    wait_for(WAIT, "Prometheus showing the other replica leading", || {
        let (_, leaders) = prometheus.leaders()?;
        (leaders == [addresses[other].clone()]).then_some(())
    });
    let sum = prometheus
        .query("sum by (election) (elect_leader)")
        .expect("a query answered a moment ago");
    assert_eq!(sum.len(), 1, "{sum:?}");
    assert_eq!(sum[0].1, 1.0, "{sum:?}");
    let second_token = wait_for(WAIT, "the new leader's fencing token in Prometheus", || {
        prometheus.token(&addresses[other])
    });
    assert!(
        second_token > first_token,
        "token {second_token} of the second term after {first_token}"
    );
}
