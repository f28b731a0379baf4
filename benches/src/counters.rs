//! The servers' own counters: etcd's `/metrics`, ZooKeeper's `mntr`, Consul's
//! `/v1/agent/metrics`, summed over the three members.
//!
//! etcd and ZooKeeper counters only grow, so a measurement is the difference of two
//! snapshots. Consul's agent keeps its counters in 10-second intervals aligned to the wall
//! clock and shows the last *finished* one, so a Consul window is made of whole intervals,
//! each read just after it closes. A member that is down, restarted (a counter went back) or
//! an interval that was missed makes the window [`Disturbed`]; [`measure`] then waits for the
//! cluster and measures again.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

use crate::cluster::Backend;
use crate::http::http_get;

/// A four-letter-word command (`mntr`) to one ZooKeeper member.
pub async fn four_letters(addr: &str, word: &str) -> Result<String> {
    let (addr, word) = (addr.to_owned(), word.to_owned());
    tokio::task::spawn_blocking(move || -> Result<String> {
        let socket = addr.parse().context("host:port")?;
        let mut stream = TcpStream::connect_timeout(&socket, Duration::from_secs(2))
            .with_context(|| format!("connect to {addr}"))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        stream.write_all(word.as_bytes())?;
        let mut out = String::new();
        stream.read_to_string(&mut out)?;
        if out.is_empty() {
            bail!("{addr}: empty answer to {word} (is it in 4lw.commands.whitelist?)");
        }
        Ok(out)
    })
    .await?
}

/// What a measurement counts. Each is summed over the three members.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// etcd `grpc_server_msg_received_total`, every method: unary requests and stream
    /// messages (keep-alives, watch creations) the members received.
    EtcdRequests,
    /// The same without `LeaseKeepAlive`: the work of a handover, not of the sessions.
    EtcdRequestsButKeepAlives,
    /// etcd `grpc_server_msg_received_total{grpc_method="LeaseKeepAlive"}`.
    EtcdKeepAlives,
    /// etcd `etcd_debugging_mvcc_events_total`: watch events sent to watchers.
    EtcdEventsSent,
    /// etcd `etcd_debugging_mvcc_watcher_total` (a gauge): watchers registered now.
    EtcdWatchers,
    /// ZooKeeper `zk_packets_received`: requests and pings.
    ZkPackets,
    /// ZooKeeper `zk_sum_node_*_watch_count`: watch notifications fired.
    ZkWatchesFired,
    /// ZooKeeper `zk_watch_count` (a gauge): watches set now.
    ZkWatches,
    /// Consul: HTTP requests the agents answered (`consul.http.*` samples), without our own
    /// reads of `/v1/agent/metrics`.
    ConsulRequests,
    /// Consul `consul.http.PUT.v1.session.renew.*`: session renewals.
    ConsulRenews,
    /// Consul `consul.http.GET.v1.kv.*`: KV reads, blocking queries included (counted
    /// when they return).
    ConsulKvReads,
}

/// The parsed counters of one member.
type Parsed = Vec<(String, f64)>;

/// One reading of every member's counters (etcd, ZooKeeper).
#[derive(Debug, Clone)]
pub struct Snapshot {
    backend: Backend,
    members: Vec<Option<Parsed>>,
}

/// A window that a fault or a restart disturbed; measure again.
#[derive(Debug)]
pub struct Disturbed(pub String);

impl std::fmt::Display for Disturbed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "measurement disturbed: {}", self.0)
    }
}

impl std::error::Error for Disturbed {}

async fn read_member(backend: Backend, addr: &str) -> Result<Parsed> {
    match backend {
        Backend::Etcd => {
            let body = http_get(addr, "/metrics", Duration::from_secs(5)).await?;
            Ok(body
                .lines()
                .filter(|l| !l.starts_with('#'))
                .filter_map(|l| {
                    let (name, value) = l.rsplit_once(' ')?;
                    Some((name.to_owned(), value.trim().parse().ok()?))
                })
                .collect())
        }
        Backend::Zookeeper => {
            let body = four_letters(addr, "mntr").await?;
            Ok(body
                .lines()
                .filter_map(|l| {
                    let mut parts = l.split_whitespace();
                    let name = parts.next()?;
                    Some((name.to_owned(), parts.next()?.parse().ok()?))
                })
                .collect())
        }
        Backend::Consul => bail!("Consul's counters are read by interval (consul_interval)"),
    }
}

/// Reads every member; a member that does not answer is `None`.
pub async fn snapshot(backend: Backend) -> Snapshot {
    let reads = backend
        .members()
        .into_iter()
        .map(|addr| async move { read_member(backend, &addr).await.ok() });
    Snapshot {
        backend,
        members: futures::future::join_all(reads).await,
    }
}

fn value_of(parsed: &Parsed, metric: Metric) -> f64 {
    let sum = |pred: &dyn Fn(&str) -> bool| -> f64 {
        parsed
            .iter()
            .filter(|(n, _)| pred(n))
            .map(|(_, v)| *v)
            .sum()
    };
    match metric {
        Metric::EtcdRequests => sum(&|n| n.starts_with("grpc_server_msg_received_total{")),
        Metric::EtcdRequestsButKeepAlives => sum(&|n| {
            n.starts_with("grpc_server_msg_received_total{") && !n.contains("\"LeaseKeepAlive\"")
        }),
        Metric::EtcdKeepAlives => sum(&|n| {
            n.starts_with("grpc_server_msg_received_total{") && n.contains("\"LeaseKeepAlive\"")
        }),
        Metric::EtcdEventsSent => sum(&|n| n == "etcd_debugging_mvcc_events_total"),
        Metric::EtcdWatchers => sum(&|n| n == "etcd_debugging_mvcc_watcher_total"),
        Metric::ZkPackets => sum(&|n| n == "zk_packets_received"),
        Metric::ZkWatchesFired => {
            sum(&|n| n.starts_with("zk_sum_node_") && n.ends_with("_watch_count"))
        }
        Metric::ZkWatches => sum(&|n| n == "zk_watch_count"),
        Metric::ConsulRequests | Metric::ConsulRenews | Metric::ConsulKvReads => 0.0,
    }
}

impl Snapshot {
    /// The metric summed over the members that answered.
    pub fn value(&self, metric: Metric) -> f64 {
        self.members
            .iter()
            .flatten()
            .map(|p| value_of(p, metric))
            .sum()
    }

    /// `later − self` for a counter, summed over the members; [`Disturbed`] if a member
    /// did not answer either time or a counter went back (a restart).
    pub fn delta(&self, later: &Snapshot, metric: Metric) -> Result<f64> {
        let mut total = 0.0;
        for (i, (a, b)) in self.members.iter().zip(&later.members).enumerate() {
            let (Some(a), Some(b)) = (a, b) else {
                return Err(
                    Disturbed(format!("{} member {} did not answer", self.backend, i + 1)).into(),
                );
            };
            let (a, b) = (value_of(a, metric), value_of(b, metric));
            if b < a {
                return Err(Disturbed(format!(
                    "{} member {} restarted ({metric:?} went from {a} to {b})",
                    self.backend,
                    i + 1
                ))
                .into());
            }
            total += b - a;
        }
        Ok(total)
    }
}

/// One Consul agent's last finished 10-second interval: its start (seconds of the UTC day)
/// and the metrics' counts.
#[derive(Debug, Clone)]
pub struct ConsulInterval {
    /// When the interval started, in seconds since midnight UTC.
    pub start_of_day: u64,
    /// `(name, count)` of every sample and counter.
    pub counts: Vec<(String, f64)>,
}

impl ConsulInterval {
    /// The metric's count in this interval.
    pub fn value(&self, metric: Metric) -> f64 {
        let sum = |pred: &dyn Fn(&str) -> bool| -> f64 {
            self.counts
                .iter()
                .filter(|(n, _)| pred(n))
                .map(|(_, v)| *v)
                .sum()
        };
        match metric {
            Metric::ConsulRequests => sum(&|n| {
                n.starts_with("consul.http.") && !n.starts_with("consul.http.GET.v1.agent.metrics")
            }),
            Metric::ConsulRenews => sum(&|n| n.starts_with("consul.http.PUT.v1.session.renew")),
            Metric::ConsulKvReads => sum(&|n| n.starts_with("consul.http.GET.v1.kv")),
            _ => 0.0,
        }
    }
}

/// Reads one agent's last finished interval.
pub async fn consul_interval(agent: &str) -> Result<ConsulInterval> {
    let body = http_get(agent, "/v1/agent/metrics", Duration::from_secs(5)).await?;
    let json: serde_json::Value = serde_json::from_str(&body).context("agent metrics JSON")?;
    let stamp = json["Timestamp"]
        .as_str()
        .ok_or_else(|| anyhow!("{agent}: no Timestamp in /v1/agent/metrics"))?;
    // "2026-11-26 18:37:20 +0000 UTC"
    let clock = stamp
        .split_whitespace()
        .nth(1)
        .ok_or_else(|| anyhow!("{agent}: Timestamp {stamp:?}"))?;
    let mut hms = clock.split(':').map(|p| p.parse::<u64>().unwrap_or(0));
    let start_of_day =
        hms.next().unwrap_or(0) * 3600 + hms.next().unwrap_or(0) * 60 + hms.next().unwrap_or(0);
    let mut counts = Vec::new();
    for kind in ["Samples", "Counters"] {
        for m in json[kind].as_array().into_iter().flatten() {
            if let (Some(name), Some(count)) = (m["Name"].as_str(), m["Count"].as_f64()) {
                counts.push((name.to_owned(), count));
            }
        }
    }
    Ok(ConsulInterval {
        start_of_day,
        counts,
    })
}

/// Seconds since the Unix epoch, as a float.
pub fn wall_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Consul's metrics interval.
pub const CONSUL_INTERVAL: u64 = 10;

/// Sleeps until `wall` (seconds since the epoch).
pub async fn sleep_until_wall(wall: f64) {
    let now = wall_now();
    if wall > now {
        tokio::time::sleep(Duration::from_secs_f64(wall - now)).await;
    }
}

/// The next interval boundary after now (seconds since the epoch).
pub fn next_consul_boundary() -> u64 {
    (wall_now() as u64 / CONSUL_INTERVAL + 1) * CONSUL_INTERVAL
}

/// Every agent's interval that started at `start` (seconds since the epoch), read just after
/// it closed; summed for each metric. [`Disturbed`] if an agent does not answer or shows
/// another interval.
pub async fn consul_sum_interval(start: u64, metrics: &[Metric]) -> Result<Vec<f64>> {
    sleep_until_wall((start + CONSUL_INTERVAL) as f64 + 1.5).await;
    let mut totals = vec![0.0; metrics.len()];
    for agent in Backend::Consul.members() {
        let interval = consul_interval(&agent)
            .await
            .map_err(|e| Disturbed(format!("consul agent {agent}: {e}")))?;
        if interval.start_of_day != start % 86_400 {
            return Err(Disturbed(format!(
                "consul agent {agent} shows the interval at {} s of the day, not {}",
                interval.start_of_day,
                start % 86_400
            ))
            .into());
        }
        for (total, metric) in totals.iter_mut().zip(metrics) {
            *total += interval.value(*metric);
        }
    }
    Ok(totals)
}

/// Rates (per second) of `metrics` over a window of about `window`, while the caller keeps
/// the load in place: etcd and ZooKeeper from two snapshots; Consul over whole 10-second
/// intervals (at least one), starting at the next boundary. A disturbed window is measured
/// again, up to three times in all, after the cluster is healthy again.
pub async fn measure(backend: Backend, window: Duration, metrics: &[Metric]) -> Result<Vec<f64>> {
    let mut last = None;
    for _attempt in 0..3 {
        match measure_once(backend, window, metrics).await {
            Ok(rates) => return Ok(rates),
            Err(error) if error.is::<Disturbed>() => {
                eprintln!("  {error}; measuring again");
                last = Some(error);
                backend.wait_healthy(Duration::from_secs(120)).await?;
            }
            Err(error) => return Err(error),
        }
    }
    Err(last.unwrap_or_else(|| anyhow!("no window measured")))
}

async fn measure_once(backend: Backend, window: Duration, metrics: &[Metric]) -> Result<Vec<f64>> {
    match backend {
        Backend::Consul => {
            let intervals = (window.as_secs() / CONSUL_INTERVAL).max(1);
            let first = next_consul_boundary();
            let mut totals = vec![0.0; metrics.len()];
            for j in 0..intervals {
                let sums = consul_sum_interval(first + j * CONSUL_INTERVAL, metrics).await?;
                for (t, s) in totals.iter_mut().zip(sums) {
                    *t += s;
                }
            }
            let secs = (intervals * CONSUL_INTERVAL) as f64;
            Ok(totals.into_iter().map(|t| t / secs).collect())
        }
        _ => {
            let before = snapshot(backend).await;
            let started = tokio::time::Instant::now();
            tokio::time::sleep(window).await;
            let after = snapshot(backend).await;
            let secs = started.elapsed().as_secs_f64();
            metrics
                .iter()
                .map(|m| Ok(before.delta(&after, *m)? / secs))
                .collect()
        }
    }
}
