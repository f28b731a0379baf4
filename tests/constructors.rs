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

/// Each invalid config with the field its error must name.
fn invalid_configs() -> Vec<(&'static str, BackendConfig)> {
    let etcd = || EtcdConfig::new(vec![CLOSED.parse().unwrap()]);
    let consul = || ConsulConfig::new(vec![CLOSED.parse().unwrap()]);
    let zk = || ZookeeperConfig::new(vec![CLOSED.parse().unwrap()]);
    let mut cases: Vec<(&str, BackendConfig)> = Vec::new();
    let mut add = |field, config| cases.push((field, config));

    add(
        "etcd.endpoints",
        BackendConfig::Etcd(EtcdConfig::new(vec![])),
    );
    let mut c = etcd();
    c.ttl = Duration::ZERO;
    add("etcd.ttl", BackendConfig::Etcd(c));
    let mut c = etcd();
    c.ttl = Duration::from_millis(2500);
    add("etcd.ttl", BackendConfig::Etcd(c));
    let mut c = etcd();
    c.ttl = Duration::from_secs(48 * 3600);
    add("etcd.ttl", BackendConfig::Etcd(c));
    let mut c = etcd();
    c.drift_margin = Some(c.ttl);
    add("etcd.drift_margin", BackendConfig::Etcd(c));
    let mut c = etcd();
    c.password = Some("pw".into());
    add("etcd.username", BackendConfig::Etcd(c));
    let mut c = etcd();
    c.tls = half_tls();
    add("etcd.tls.key", BackendConfig::Etcd(c));

    add(
        "consul.endpoints",
        BackendConfig::Consul(ConsulConfig::new(vec![])),
    );
    let mut c = consul();
    c.ttl = Duration::from_secs(5);
    add("consul.ttl", BackendConfig::Consul(c));
    let mut c = consul();
    c.ttl = Duration::from_secs(90);
    add("consul.ttl", BackendConfig::Consul(c));
    let mut c = consul();
    c.lock_delay = Some(Duration::from_secs(61));
    add("consul.lock_delay", BackendConfig::Consul(c));
    let mut c = consul();
    c.drift_margin = Some(c.ttl * 2);
    add("consul.drift_margin", BackendConfig::Consul(c));
    let mut c = consul();
    c.tls = half_tls();
    add("consul.tls.key", BackendConfig::Consul(c));

    add(
        "zookeeper.endpoints",
        BackendConfig::Zookeeper(ZookeeperConfig::new(vec![])),
    );
    let mut c = zk();
    c.session_timeout = Duration::ZERO;
    add("zookeeper.session_timeout", BackendConfig::Zookeeper(c));
    let mut c = zk();
    c.root = "no-slash".to_owned();
    add("zookeeper.root", BackendConfig::Zookeeper(c));
    let mut c = zk();
    c.auth = Some("no-colon".into());
    add("zookeeper.auth", BackendConfig::Zookeeper(c));
    let mut c = zk();
    c.drift_margin = Some(c.session_timeout);
    add("zookeeper.drift_margin", BackendConfig::Zookeeper(c));
    let mut c = zk();
    c.tls = half_tls();
    add("zookeeper.tls.key", BackendConfig::Zookeeper(c));

    let c = FileConfig::in_dir(PathBuf::new());
    add("file.dir", BackendConfig::File(c));
    cases
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
