//! The Consul backend's configuration.

use std::time::Duration;

use serde::Deserialize;

use crate::config_error::ConfigError;

use super::cluster::{
    check_endpoints, check_margin, check_tls, check_ttl, de_duration, default_ttl, Endpoint,
    TlsConfig, DEFAULT_TTL,
};
use super::duration::{self, format_duration};
use super::secret::Secret;

/// Consul refuses session TTLs below 10 s.
pub const CONSUL_MIN_TTL: Duration = Duration::from_secs(10);
/// Consul refuses lock delays above 60 s.
pub const CONSUL_MAX_LOCK_DELAY: Duration = Duration::from_secs(60);

/// Consul: a session per elector, the claim as `<prefix><election>/.lock` acquired with it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ConsulConfig {
    /// Agents' HTTP addresses, `host:port` (port 8500 when left out).
    pub endpoints: Vec<Endpoint>,
    /// Session TTL: 10 s to 24 h (Consul may invalidate as late as 2 × TTL). Default 10 s.
    #[serde(default = "default_ttl", deserialize_with = "de_duration")]
    pub ttl: Duration,
    /// Taken off every deadline for clock drift. Default TTL/10.
    #[serde(default, deserialize_with = "duration::deserialize_opt")]
    pub drift_margin: Option<Duration>,
    /// Lock delay, 0–60 s, always sent. Default: the TTL (see [`ConsulConfig::lock_delay`]).
    #[serde(default, deserialize_with = "duration::deserialize_opt")]
    pub lock_delay: Option<Duration>,
    /// Node health checks that also invalidate the session. Default none (TTL only).
    #[serde(default)]
    pub health_checks: Vec<String>,
    /// Prefix of lock keys. Default empty, as `consul lock NAME` uses.
    #[serde(default)]
    pub prefix: String,
    /// ACL token, sent as `X-Consul-Token`.
    #[serde(default)]
    pub token: Option<Secret>,
    /// Consul datacenter; the agent's own when absent.
    #[serde(default)]
    pub datacenter: Option<String>,
    /// TLS to the agents (https).
    #[serde(default)]
    pub tls: Option<TlsConfig>,
}

impl ConsulConfig {
    /// A config for these agents with every default.
    pub fn new(endpoints: Vec<Endpoint>) -> Self {
        ConsulConfig {
            endpoints,
            ttl: DEFAULT_TTL,
            drift_margin: None,
            lock_delay: None,
            health_checks: Vec::new(),
            prefix: String::new(),
            token: None,
            datacenter: None,
            tls: None,
        }
    }

    /// The drift margin in use: the configured one or TTL/10.
    pub fn drift_margin(&self) -> Duration {
        self.drift_margin.unwrap_or(self.ttl / 10)
    }

    /// The lock delay to send: as configured, else the TTL. A TTL over 60 s (Consul's cap on
    /// lock delays) needs an explicit lock delay: the config is refused without one.
    ///
    /// Not 0 by default, even without health checks: Consul also invalidates a session when
    /// the node it was created on is deregistered (an agent that left, a dead server that
    /// autopilot removed — seen in the fault tests 15 s after killing the server a session was
    /// made on). A leader that cannot see the invalidation keeps acting until its deadline, up
    /// to a TTL later; the lock delay keeps the next holder out for that long. Resigning
    /// releases the lock without any delay; only a crashed or cut-off holder's successor waits.
    pub fn lock_delay(&self) -> Duration {
        self.lock_delay
            .unwrap_or_else(|| self.ttl.min(CONSUL_MAX_LOCK_DELAY))
    }

    /// Checks every field, as the parsers do: library constructors call it too.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_endpoints("consul.endpoints", &self.endpoints)?;
        check_ttl("consul.ttl", self.ttl, CONSUL_MIN_TTL)?;
        check_margin("consul.drift_margin", self.drift_margin, self.ttl)?;
        match self.lock_delay {
            Some(delay) if delay > CONSUL_MAX_LOCK_DELAY => {
                return Err(ConfigError::new(
                    "consul.lock_delay",
                    format_duration(delay),
                    "Consul accepts a lock delay of at most 60s",
                ));
            }
            // The safe default is one TTL, which Consul would cap at 60 s without a word: a
            // successor could then start while a cut-off holder still acts. Make it a choice.
            None if self.ttl > CONSUL_MAX_LOCK_DELAY => {
                return Err(ConfigError::new(
                    "consul.ttl",
                    format_duration(self.ttl),
                    format!(
                        "the default lock delay (one TTL, {}) is more than Consul's cap of 60s, \
                         so a successor could start while a cut-off leader still acts for up to \
                         {} more; use a TTL of at most 60s, or set consul.lock_delay (at most \
                         60s) to accept that gap",
                        format_duration(self.ttl),
                        format_duration(self.ttl - CONSUL_MAX_LOCK_DELAY),
                    ),
                ));
            }
            _ => {}
        }
        if self.prefix.starts_with('/') {
            return Err(ConfigError::new(
                "consul.prefix",
                &self.prefix,
                "Consul keys do not start with '/'",
            ));
        }
        if let Some(check) = self.health_checks.iter().find(|c| c.trim().is_empty()) {
            return Err(ConfigError::new(
                "consul.health_checks",
                check,
                "a health check id must not be empty",
            ));
        }
        check_tls("consul.tls", self.tls.as_ref())
    }
}
