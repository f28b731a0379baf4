//! The ZooKeeper backend's configuration.

use std::time::Duration;

use serde::Deserialize;

use crate::config_error::ConfigError;

use super::cluster::{
    check_endpoints, check_margin, check_tls, check_ttl, de_duration, default_ttl, Endpoint,
    TlsConfig, DEFAULT_TTL,
};
use super::duration::{self, format_duration};
use super::secret::Secret;

/// ZooKeeper: a session per elector, claims as ephemeral sequential znodes under
/// `<root>/<election>`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ZookeeperConfig {
    /// Ensemble members, `host:port` (port 2181 when left out).
    pub endpoints: Vec<Endpoint>,
    /// Requested session timeout; the server clamps it to 2–20 × its tickTime and the
    /// negotiated value is used. Default 10 s.
    #[serde(default = "default_ttl", deserialize_with = "de_duration")]
    pub session_timeout: Duration,
    /// Taken off every deadline for clock drift. Default session timeout / 10.
    #[serde(default, deserialize_with = "duration::deserialize_opt")]
    pub drift_margin: Option<Duration>,
    /// The ensemble's tickTime, if you know it: a renewal counts only from a request the
    /// member's pings (every tickTime/2) carried to the ensemble's leader, which is at least
    /// one tickTime older than the sync that confirmed it. Unknown, a quarter of the
    /// negotiated session timeout is assumed (the server's smallest session is 2 tickTimes),
    /// which costs headroom at short sessions.
    #[serde(default, deserialize_with = "duration::deserialize_opt")]
    pub tick_time: Option<Duration>,
    /// Parent znode of elections. Default `/`, so that a Curator latch at `/NAME` meets us.
    #[serde(default = "default_zk_root")]
    pub root: String,
    /// Digest authentication, `user:password`.
    #[serde(default)]
    pub auth: Option<Secret>,
    /// TLS to the ensemble.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
}

fn default_zk_root() -> String {
    "/".to_owned()
}

impl ZookeeperConfig {
    /// A config for these members with every default.
    pub fn new(endpoints: Vec<Endpoint>) -> Self {
        ZookeeperConfig {
            endpoints,
            session_timeout: DEFAULT_TTL,
            drift_margin: None,
            tick_time: None,
            root: default_zk_root(),
            auth: None,
            tls: None,
        }
    }

    /// The drift margin in use: the configured one or session timeout / 10.
    pub fn drift_margin(&self) -> Duration {
        self.drift_margin.unwrap_or(self.session_timeout / 10)
    }

    /// Checks every field, as the parsers do: library constructors call it too.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_endpoints("zookeeper.endpoints", &self.endpoints)?;
        check_ttl(
            "zookeeper.session_timeout",
            self.session_timeout,
            Duration::from_millis(100),
        )?;
        check_margin(
            "zookeeper.drift_margin",
            self.drift_margin,
            self.session_timeout,
        )?;
        if let Some(tick) = self.tick_time {
            if tick.is_zero() || tick * 2 > self.session_timeout {
                return Err(ConfigError::new(
                    "zookeeper.tick_time",
                    format_duration(tick),
                    format!(
                        "a tickTime is more than zero and at most half the session timeout ({})",
                        format_duration(self.session_timeout)
                    ),
                ));
            }
        }
        let root = &self.root;
        let bad_root = !root.starts_with('/')
            || (root.len() > 1 && root.ends_with('/'))
            || root.contains("//")
            || root.split('/').any(|part| part == "." || part == "..");
        if bad_root {
            return Err(ConfigError::new(
                "zookeeper.root",
                root,
                "a znode path starts with '/', has no empty, '.' or '..' parts and no trailing '/'",
            ));
        }
        if let Some(auth) = &self.auth {
            match auth.expose().split_once(':') {
                Some((user, _)) if !user.is_empty() => {}
                _ => {
                    return Err(ConfigError::new(
                        "zookeeper.auth",
                        "<redacted>",
                        "digest auth is written user:password",
                    ))
                }
            }
        }
        check_tls("zookeeper.tls", self.tls.as_ref())
    }
}
