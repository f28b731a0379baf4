#![doc = include_str!("../README.md")]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

// The `elect run` engine (Linux: prctl, cgroups, clone3) and what serves it: behind the `cli`
// feature, so that the library builds where the CLI cannot.
#[cfg(feature = "cli")]
mod containment;
#[cfg(feature = "cli")]
mod endpoints;
#[cfg(feature = "cli")]
mod histograms;
#[cfg(feature = "cli")]
pub mod run;
pub mod settings;
#[cfg(feature = "cli")]
mod spawn;
#[cfg(feature = "cli")]
mod status;
#[cfg(feature = "cli")]
mod systemd;

#[cfg(feature = "cli")]
pub use containment::ContainMode;

#[cfg(feature = "consul")]
pub use elect_consul::ConsulElector;
pub use elect_core::config::{self, BackendConfig, Config};
pub use elect_core::history;
pub use elect_core::{
    campaign_logged, resign_or_let_expire, run_while_leader, Candidate, CandidateInfo, Claim,
    ConfigError, ElectionName, Elector, Error, FencingToken, LeaderInfo, LeaderStream, Leadership,
    LeadershipState, LeadershipWatch, LossReason, MemoryElector, MemoryStore, NotLeaderReason,
    Result,
};
#[cfg(feature = "etcd")]
pub use elect_etcd::EtcdElector;
pub use elect_file::FileElector;
#[cfg(feature = "zookeeper")]
pub use elect_zookeeper::ZookeeperElector;

/// Connects to the backend `config` names and returns its elector.
///
/// A backend this build does not contain is [`Error::NotCompiled`], naming the cargo
/// feature that adds it.
pub async fn connect(config: &Config) -> Result<Box<dyn Elector>> {
    match &config.backend {
        BackendConfig::File(file) => Ok(Box::new(FileElector::from_config(file)?)),
        #[cfg(feature = "etcd")]
        BackendConfig::Etcd(etcd) => Ok(Box::new(EtcdElector::connect(etcd).await?)),
        #[cfg(feature = "consul")]
        BackendConfig::Consul(consul) => Ok(Box::new(ConsulElector::connect(consul).await?)),
        #[cfg(feature = "zookeeper")]
        BackendConfig::Zookeeper(zk) => Ok(Box::new(ZookeeperElector::connect(zk).await?)),
        // A backend left out of this build (each one's cargo feature bears its name), or one
        // added to the config after this crate.
        other => Err(Error::NotCompiled {
            backend: other.name(),
            feature: other.name(),
        }),
    }
}
