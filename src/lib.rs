//! # elect: leader election through etcd, Consul, ZooKeeper or a local file lock
//!
//! Several replicas of a service campaign; one leads; when it dies or resigns another takes
//! over; and every term carries a [`FencingToken`] that downstream systems use to reject a
//! stale leader that woke up from a pause.
//!
//! * [`connect`] turns a [`Config`] (TOML file, URL, environment) into a `Box<dyn Elector>`;
//! * [`Elector`] campaigns, answers who leads, and streams leader changes;
//! * [`Leadership`] is one term: its token, its state, a future that resolves when it ends;
//! * [`run_while_leader`] runs your work only while leading and campaigns again after a loss;
//! * the `elect` binary wraps an existing command the same way (see [`run`]).
//!
//! ```no_run
//! # async fn demo() -> elect::Result<()> {
//! use elect::{connect, Candidate, Config};
//! let config = Config::from_url("file:///tmp/elect/billing.lock")?;
//! let elector = connect(&config).await?;
//! let election = config.election.clone().expect("the URL names the election");
//! let leadership = elector.campaign(&election, &Candidate::generated()).await?;
//! println!("leading billing with token {}", leadership.token());
//! leadership.resign().await?;
//! # Ok(()) }
//! ```
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

pub mod run;
pub mod settings;

pub use elect_core::config::{self, BackendConfig, Config};
pub use elect_core::{
    run_while_leader, Candidate, CandidateInfo, Claim, ConfigError, ElectionName, Elector, Error,
    FencingToken, LeaderInfo, LeaderStream, Leadership, LeadershipState, LeadershipWatch,
    LossReason, MemoryElector, MemoryStore, NotLeaderReason, Result,
};
pub use elect_file::FileElector;

/// Connects to the backend `config` names and returns its elector.
///
/// A backend this build does not contain is [`Error::NotCompiled`], naming the cargo
/// feature that adds it.
pub async fn connect(config: &Config) -> Result<Box<dyn Elector>> {
    match &config.backend {
        BackendConfig::File(file) => Ok(Box::new(FileElector::from_config(file))),
        BackendConfig::Etcd(_) => Err(Error::NotCompiled {
            backend: "etcd",
            feature: "etcd",
        }),
        BackendConfig::Consul(_) => Err(Error::NotCompiled {
            backend: "consul",
            feature: "consul",
        }),
        BackendConfig::Zookeeper(_) => Err(Error::NotCompiled {
            backend: "zookeeper",
            feature: "zookeeper",
        }),
        other => Err(Error::NotCompiled {
            backend: other.name(),
            feature: other.name(),
        }),
    }
}
