//! Issue 14, item 7: every public constructor refuses, with a config error naming the field,
//! each invalid config that the parsers refuse — it never panics, and never reaches a server
//! (the endpoints here are a closed port).

use std::path::PathBuf;
use std::time::Duration;

use elect::config::{ConsulConfig, EtcdConfig, FileConfig, TlsConfig, ZookeeperConfig};
use elect::{BackendConfig, Config, ConsulElector, EtcdElector, FileElector, ZookeeperElector};
use elect_core::Error;

const CLOSED: &str = "127.0.0.1:1";

fn half_tls() -> Option<TlsConfig> {
    let mut tls = TlsConfig::default();
    tls.cert = Some(PathBuf::from("/nonexistent/cert.pem"));
    Some(tls)
}

/// `config` with one field spoiled by `spoil`, as a [`BackendConfig`] (`wrap`).
fn spoiled<C>(mut config: C, wrap: fn(C) -> BackendConfig, spoil: fn(&mut C)) -> BackendConfig {
    spoil(&mut config);
    wrap(config)
}

/// Each invalid config with the field its error must name.
fn invalid_configs() -> Vec<(&'static str, BackendConfig)> {
    let closed = || vec![CLOSED.parse().unwrap()];
    let etcd = |spoil| spoiled(EtcdConfig::new(closed()), BackendConfig::Etcd, spoil);
    let consul = |spoil| spoiled(ConsulConfig::new(closed()), BackendConfig::Consul, spoil);
    let zk = |spoil| {
        spoiled(
            ZookeeperConfig::new(closed()),
            BackendConfig::Zookeeper,
            spoil,
        )
    };
    vec![
        ("etcd.endpoints", etcd(|c| c.endpoints.clear())),
        ("etcd.ttl", etcd(|c| c.ttl = Duration::ZERO)),
        ("etcd.ttl", etcd(|c| c.ttl = Duration::from_millis(2500))),
        ("etcd.ttl", etcd(|c| c.ttl = Duration::from_secs(48 * 3600))),
        ("etcd.drift_margin", etcd(|c| c.drift_margin = Some(c.ttl))),
        ("etcd.username", etcd(|c| c.password = Some("pw".into()))),
        ("etcd.tls.key", etcd(|c| c.tls = half_tls())),
        ("consul.endpoints", consul(|c| c.endpoints.clear())),
        ("consul.ttl", consul(|c| c.ttl = Duration::from_secs(5))),
        ("consul.ttl", consul(|c| c.ttl = Duration::from_secs(90))),
        (
            "consul.lock_delay",
            consul(|c| c.lock_delay = Some(Duration::from_secs(61))),
        ),
        (
            "consul.drift_margin",
            consul(|c| c.drift_margin = Some(c.ttl * 2)),
        ),
        ("consul.tls.key", consul(|c| c.tls = half_tls())),
        ("zookeeper.endpoints", zk(|c| c.endpoints.clear())),
        (
            "zookeeper.session_timeout",
            zk(|c| c.session_timeout = Duration::ZERO),
        ),
        ("zookeeper.root", zk(|c| c.root = "no-slash".to_owned())),
        ("zookeeper.auth", zk(|c| c.auth = Some("no-colon".into()))),
        (
            "zookeeper.drift_margin",
            zk(|c| c.drift_margin = Some(c.session_timeout)),
        ),
        ("zookeeper.tls.key", zk(|c| c.tls = half_tls())),
        (
            "file.dir",
            BackendConfig::File(FileConfig::in_dir(PathBuf::new())),
        ),
    ]
}

/// A bound: an invalid config must be refused before anything waits on the network.
async fn bounded(f: impl std::future::Future<Output = Result<(), Error>>) -> Result<(), Error> {
    tokio::time::timeout(Duration::from_secs(5), f)
        .await
        .unwrap_or_else(|_| Err(Error::backend("test", "constructor", "no answer in 5 s")))
}

fn names(result: Result<(), Error>, field: &str) -> Result<(), String> {
    match result {
        Err(Error::Config(e)) if e.field == field => Ok(()),
        other => Err(format!("want a config error naming {field}, got {other:?}")),
    }
}

#[tokio::test]
async fn every_constructor_refuses_what_the_parsers_refuse() {
    let mut wrong = Vec::new();
    for (field, backend) in invalid_configs() {
        // The parsers' own check refuses it: this is a config no URL or TOML file yields.
        let checked = backend.validate().map_err(Error::from);
        let direct = match &backend {
            BackendConfig::Etcd(c) => {
                bounded(async { EtcdElector::connect(c).await.map(drop) }).await
            }
            BackendConfig::Consul(c) => {
                bounded(async { ConsulElector::connect(c).await.map(drop) }).await
            }
            BackendConfig::Zookeeper(c) => {
                bounded(async { ZookeeperElector::connect(c).await.map(drop) }).await
            }
            BackendConfig::File(c) => FileElector::from_config(c).map(drop),
            _ => unreachable!("only these backends are listed"),
        };
        let mut config = Config::from_url("file:///tmp/x.lock").unwrap();
        config.backend = backend.clone();
        let through_connect = bounded(async { elect::connect(&config).await.map(drop) }).await;
        for (how, result) in [
            ("validate", checked),
            ("constructor", direct),
            ("elect::connect", through_connect),
        ] {
            if let Err(problem) = names(result, field) {
                wrong.push(format!("{field} via {how}: {problem}"));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
