//! The three real clusters: endpoints, URLs, electors, and the waits that keep a measurement
//! off a cluster that another suite is taking apart.

use std::fmt;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use elect::{Config, ElectionName, Elector};
use elect_test_support::clusters::TestCluster;
use serde::Serialize;
use tokio::time::Instant;

/// A backend with a 3-node cluster on loopback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// etcd 3.5 on 2379, 22379, 32379.
    Etcd,
    /// ZooKeeper 3.8 on 2181, 2182, 2183 (tickTime 200 ms).
    Zookeeper,
    /// Consul 1.8, HTTP on 8500, 8510, 8520.
    Consul,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Backend {
    /// Every backend, in the order the report lists them.
    pub const ALL: [Backend; 3] = [Backend::Etcd, Backend::Zookeeper, Backend::Consul];

    /// The test kit's name for this cluster: where it is, its test TTL.
    pub fn cluster(self) -> TestCluster {
        match self {
            Backend::Etcd => TestCluster::Etcd,
            Backend::Zookeeper => TestCluster::Zookeeper,
            Backend::Consul => TestCluster::Consul,
        }
    }

    /// `etcd`, `zookeeper` or `consul`.
    pub fn name(self) -> &'static str {
        self.cluster().name()
    }

    /// The members' client addresses, `host:port,…`, from the variables
    /// `tests/cluster/cluster env` prints, or the cluster script's defaults.
    pub fn hosts(self) -> String {
        self.cluster().addresses()
    }

    /// The members' addresses, one by one.
    pub fn members(self) -> Vec<String> {
        self.hosts().split(',').map(str::to_owned).collect()
    }

    /// The shortest TTL (session timeout) the tests use.
    pub fn short_ttl(self) -> Duration {
        self.cluster().ttl()
    }

    /// The URL query that sets the TTL (session timeout) to `ttl`.
    pub fn ttl_param(self, ttl: Duration) -> String {
        match self {
            Backend::Zookeeper => format!("session_timeout={}s", ttl.as_secs()),
            _ => format!("ttl={}s", ttl.as_secs()),
        }
    }

    /// `scheme://members/election?query`.
    pub fn url(self, election: &ElectionName, query: &str) -> String {
        self.url_with_hosts(&self.hosts(), election, query)
    }

    /// The same URL with the members listed in `hosts` (first one used first).
    pub fn url_with_hosts(self, hosts: &str, election: &ElectionName, query: &str) -> String {
        let scheme = match self {
            Backend::Etcd => "etcd",
            Backend::Zookeeper => "zk",
            Backend::Consul => "consul",
        };
        if query.is_empty() {
            format!("{scheme}://{hosts}/{election}")
        } else {
            format!("{scheme}://{hosts}/{election}?{query}")
        }
    }

    /// Whether the store shows waiting candidates (Consul's lock shows only the holder).
    pub fn shows_waiters(self) -> bool {
        self != Backend::Consul
    }

    /// The cluster script's state for this backend: waits until all three members are
    /// healthy (a fault suite may be restarting them), up to `within`.
    pub async fn wait_healthy(self, within: Duration) -> Result<()> {
        let script = elect_test_support::script::script_path();
        let backend = self.name();
        let secs = within.as_secs().max(1).to_string();
        let output = tokio::task::spawn_blocking(move || {
            Command::new(&script)
                .args(["wait", backend, "all", &secs])
                .output()
        })
        .await?
        .context("run tests/cluster/cluster wait")?;
        if !output.status.success() {
            bail!(
                "{self}: the cluster is not healthy (3/3) within {within:?}: {}{}\n\
                 start it with `tests/cluster/cluster up {self}`",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(())
    }
}

/// A fresh election name for one measurement: `bench-<what>-<pid>-<n>-<nanos>`.
pub fn fresh(what: &str) -> ElectionName {
    static COUNT: AtomicU32 = AtomicU32::new(0);
    let n = COUNT.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("bench-{what}-{}-{n}-{nanos:08x}", std::process::id())
        .parse()
        .expect("a valid election name")
}

/// Connects an elector for `url`; an unreachable cluster is an error that says how to start it.
pub async fn connect_url(url: &str) -> Result<Box<dyn Elector>> {
    let config = Config::from_url(url).map_err(|e| anyhow!("{url}: {e}"))?;
    tokio::time::timeout(Duration::from_secs(30), elect::connect(&config))
        .await
        .map_err(|_| anyhow!("{url}: no answer within 30 s"))?
        .map_err(|e| anyhow!("{url}: {e}\nstart the clusters with `tests/cluster/cluster up all`"))
}

/// Connects an elector of `backend` for `election` with `query` (e.g. `ttl=2s`).
pub async fn connect(
    backend: Backend,
    election: &ElectionName,
    query: &str,
) -> Result<Box<dyn Elector>> {
    connect_url(&backend.url(election, query)).await
}

/// Polls `elector.candidates(election)` until the store shows at least `count`
/// candidates (the event a waiting candidate's claim gives), up to `within`. On Consul,
/// where waiters are invisible, it only checks that someone holds the lock.
pub async fn wait_candidates(
    elector: &dyn Elector,
    backend: Backend,
    election: &ElectionName,
    count: usize,
    within: Duration,
) -> Result<()> {
    let started = Instant::now();
    let want = if backend.shows_waiters() { count } else { 1 };
    loop {
        let seen = elector.candidates(election).await.map(|c| c.len());
        if let Ok(seen) = seen {
            if seen >= want {
                return Ok(());
            }
        }
        if started.elapsed() > within {
            bail!("{backend}: {election}: fewer than {want} candidates after {within:?} (last: {seen:?})");
        }
        let pause = if count > 10 { 50 } else { 2 };
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
}

/// What a waiting candidate still does after its claim is visible (read its predecessor,
/// set its watch): a round trip or two, for which no client-visible event exists. Consul's
/// waiters are invisible altogether, so they get longer. Every handover's resign comes after
/// this quiet time, and so does the floor's delete ([`crate::floor`]), which the members
/// commit more slowly after a pause.
pub fn settle(backend: Backend) -> Duration {
    match backend {
        Backend::Consul => Duration::from_millis(300),
        _ => Duration::from_millis(100),
    }
}

/// The Consul agents that answer and know a leader, in the configured order.
pub async fn consul_live_agents() -> Vec<String> {
    let mut live = Vec::new();
    for agent in Backend::Consul.members() {
        let probe = crate::http::http_get(&agent, "/v1/status/leader", Duration::from_secs(2));
        if let Ok(body) = probe.await {
            if body.trim().len() > 2 {
                live.push(agent);
            }
        }
    }
    live
}

/// The first live Consul agent, or an error that says how to start the cluster.
pub async fn consul_agent() -> Result<String> {
    consul_live_agents()
        .await
        .into_iter()
        .next()
        .ok_or_else(|| {
            anyhow!("no Consul agent answers: start them with `tests/cluster/cluster up consul`")
        })
}
