//! The etcd backend's configuration.

use std::time::Duration;

use serde::Deserialize;

use crate::config_error::ConfigError;

use super::cluster::{
    check_endpoints, check_margin, check_tls, check_ttl, de_duration, default_ttl, Endpoint,
    TlsConfig, DEFAULT_TTL,
};
use super::duration::{self, format_duration};
use super::secret::Secret;

/// etcd: a lease per elector, claims as keys `<namespace><election>/<lease id hex>`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct EtcdConfig {
    /// Cluster members, `host:port` (port 2379 when left out).
    pub endpoints: Vec<Endpoint>,
    /// Lease TTL, whole seconds; the server may grant more. Default 10 s.
    #[serde(default = "default_ttl", deserialize_with = "de_duration")]
    pub ttl: Duration,
    /// Taken off every deadline for clock drift. Default TTL/10.
    #[serde(default, deserialize_with = "duration::deserialize_opt")]
    pub drift_margin: Option<Duration>,
    /// Prefix of election keys. Default empty, as `etcdctl elect NAME` uses.
    #[serde(default)]
    pub namespace: String,
    /// User name for etcd authentication.
    #[serde(default)]
    pub username: Option<String>,
    /// Password for etcd authentication.
    #[serde(default)]
    pub password: Option<Secret>,
    /// TLS to the members (https).
    #[serde(default)]
    pub tls: Option<TlsConfig>,
}

impl EtcdConfig {
    /// A config for these endpoints with every default.
    pub fn new(endpoints: Vec<Endpoint>) -> Self {
        EtcdConfig {
            endpoints,
            ttl: DEFAULT_TTL,
            drift_margin: None,
            namespace: String::new(),
            username: None,
            password: None,
            tls: None,
        }
    }

    /// The drift margin in use: the configured one or TTL/10.
    pub fn drift_margin(&self) -> Duration {
        self.drift_margin.unwrap_or(self.ttl / 10)
    }

    /// Checks every field, as the parsers do: library constructors call it too.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_endpoints("etcd.endpoints", &self.endpoints)?;
        check_ttl("etcd.ttl", self.ttl, Duration::from_secs(1))?;
        if self.ttl.subsec_nanos() != 0 {
            return Err(ConfigError::new(
                "etcd.ttl",
                format_duration(self.ttl),
                "etcd lease TTLs are whole seconds",
            ));
        }
        check_margin("etcd.drift_margin", self.drift_margin, self.ttl)?;
        if self.password.is_some() && self.username.is_none() {
            return Err(ConfigError::new(
                "etcd.username",
                "",
                "a password is set, so a user name is needed too",
            ));
        }
        check_tls("etcd.tls", self.tls.as_ref())
    }
}
