//! The shape every cluster backend's configuration shares: endpoints, TLS, a TTL within
//! bounds and a drift margin below half of it.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::duration::{self, format_duration};
use crate::config_error::ConfigError;
use crate::ElectionName;

/// TTL and session timeout of every distributed backend unless configured.
pub const DEFAULT_TTL: Duration = Duration::from_secs(10);
/// Longest TTL, session timeout or grace period accepted anywhere.
pub const MAX_TTL: Duration = Duration::from_secs(24 * 3600);

/// TLS settings: the CA that signs the servers' certificates, and our own certificate and key
/// for mutual TLS.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct TlsConfig {
    /// PEM file of the CA; the system's roots when absent.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// PEM file of our client certificate.
    #[serde(default)]
    pub cert: Option<PathBuf>,
    /// PEM file of our client key.
    #[serde(default)]
    pub key: Option<PathBuf>,
}

impl TlsConfig {
    /// TLS with the servers' certificates checked against the CA in the PEM file `ca`, and no
    /// client certificate.
    pub fn with_ca(ca: impl Into<PathBuf>) -> Self {
        TlsConfig {
            ca: Some(ca.into()),
            ..TlsConfig::default()
        }
    }
}

pub(super) fn check_tls(field: &str, tls: Option<&TlsConfig>) -> Result<(), ConfigError> {
    let Some(tls) = tls else { return Ok(()) };
    match (&tls.cert, &tls.key) {
        (Some(_), None) => Err(ConfigError::new(
            format!("{field}.key"),
            "",
            "a client certificate needs its key",
        )),
        (None, Some(key)) => Err(ConfigError::new(
            format!("{field}.cert"),
            key.display().to_string(),
            "a client key needs its certificate",
        )),
        _ => Ok(()),
    }
}

/// A server address: `host:port`, `host` (the backend's default port), `[v6]:port`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// The port, if given.
    pub port: Option<u16>,
}

impl Endpoint {
    /// Parses an endpoint and names `field` in the error.
    pub fn parse_field(field: &str, text: &str) -> Result<Self, ConfigError> {
        let bad = |problem: &str| ConfigError::new(field, text, problem);
        let text = text.trim();
        if text.contains("://") {
            return Err(bad("write host:port, without a scheme"));
        }
        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            let (host, rest) = rest
                .split_once(']')
                .ok_or_else(|| bad("an IPv6 address in brackets needs its ']'"))?;
            match rest {
                "" => (host, None),
                _ => (
                    host,
                    Some(
                        rest.strip_prefix(':')
                            .ok_or_else(|| bad("expected ':' and a port after ']'"))?,
                    ),
                ),
            }
        } else {
            match text.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (text, None),
            }
        };
        if host.is_empty() {
            return Err(bad("the host is missing"));
        }
        if let Some(c) = host
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':')))
        {
            return Err(bad(&format!(
                "character {c:?} is not allowed in a host name"
            )));
        }
        let port = match port {
            None => None,
            Some(port) => Some(match port.parse::<u32>() {
                Ok(0) => return Err(bad("port 0 is not a port")),
                Ok(p) if p > u16::MAX as u32 => return Err(bad("a port is at most 65535")),
                Ok(p) => p as u16,
                Err(_) => return Err(bad("the port must be a number")),
            }),
        };
        Ok(Endpoint {
            host: host.to_owned(),
            port,
        })
    }

    /// `host:port`, with `default_port` when none was given.
    pub fn with_default_port(&self, default_port: u16) -> String {
        let port = self.port.unwrap_or(default_port);
        if self.host.contains(':') {
            format!("[{}]:{port}", self.host)
        } else {
            format!("{}:{port}", self.host)
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        match self.port {
            Some(port) => write!(f, "{host}:{port}"),
            None => f.write_str(&host),
        }
    }
}

impl FromStr for Endpoint {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Endpoint::parse_field("endpoint", s)
    }
}

impl<'de> Deserialize<'de> for Endpoint {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Endpoint::parse_field("endpoint", &text)
            .map_err(|e| serde::de::Error::custom(format!("{} (got {})", e.problem, e.value)))
    }
}

impl<'de> Deserialize<'de> for ElectionName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        ElectionName::parse_field("election", &text)
            .map_err(|e| serde::de::Error::custom(format!("{} (got {})", e.problem, e.value)))
    }
}

pub(super) fn default_ttl() -> Duration {
    DEFAULT_TTL
}

pub(super) fn de_duration<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Duration, D::Error> {
    duration::deserialize_opt(deserializer).map(|d| d.unwrap_or(DEFAULT_TTL))
}

pub(super) fn check_endpoints(field: &str, endpoints: &[Endpoint]) -> Result<(), ConfigError> {
    if endpoints.is_empty() {
        return Err(ConfigError::new(
            field,
            "[]",
            "at least one endpoint is needed",
        ));
    }
    Ok(())
}

pub(super) fn check_ttl(field: &str, ttl: Duration, min: Duration) -> Result<(), ConfigError> {
    if ttl < min {
        return Err(ConfigError::new(
            field,
            format_duration(ttl),
            format!("must be at least {}", format_duration(min)),
        ));
    }
    if ttl > MAX_TTL {
        return Err(ConfigError::new(
            field,
            format_duration(ttl),
            format!("must be at most {}", format_duration(MAX_TTL)),
        ));
    }
    Ok(())
}

pub(super) fn check_margin(
    field: &str,
    margin: Option<Duration>,
    ttl: Duration,
) -> Result<(), ConfigError> {
    match margin {
        Some(margin) if margin >= ttl / 2 => Err(ConfigError::new(
            field,
            format_duration(margin),
            format!(
                "must be less than half the TTL ({})",
                format_duration(ttl / 2)
            ),
        )),
        _ => Ok(()),
    }
}
