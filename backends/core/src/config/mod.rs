//! Configuration: one set of serde types for every backend, read from a TOML file or a URL,
//! with `ELECT_*` environment overrides.
//!
//! The types live here, not in the backend crates, so that a config parses the same whatever
//! backends a build contains; `elect::connect` then says if a backend is not compiled in.
//!
//! ```
//! use elect_core::config::{BackendConfig, Config};
//! let config = Config::from_url("etcd://10.0.0.1:2379,10.0.0.2:2379/billing?ttl=5s").unwrap();
//! assert_eq!(config.election.as_ref().unwrap().as_str(), "billing");
//! let BackendConfig::Etcd(etcd) = &config.backend else { unreachable!() };
//! assert_eq!(etcd.ttl, std::time::Duration::from_secs(5));
//!
//! let config = Config::from_toml(r#"
//!     election = "billing"
//!     [consul]
//!     endpoints = ["127.0.0.1:8500"]
//!     lock_delay = "0s"
//! "#).unwrap();
//! assert_eq!(config.backend.name(), "consul");
//! ```

mod cluster;
mod consul;
mod duration;
mod etcd;
mod file;
mod native;
mod secret;
#[cfg(feature = "parse")]
mod url;
mod zookeeper;

use std::path::PathBuf;

#[cfg(feature = "parse")]
use serde::Deserialize;

use crate::config_error::ConfigError;
use crate::names::{check_id, check_value};
use crate::ElectionName;

pub use cluster::{Endpoint, TlsConfig, DEFAULT_TTL, MAX_TTL};
pub use consul::{ConsulConfig, CONSUL_MAX_LOCK_DELAY, CONSUL_MIN_TTL};
pub use duration::{format_duration, parse_duration};
pub use etcd::EtcdConfig;
pub use file::{default_file_dir, FileConfig};
pub use secret::Secret;
#[cfg(feature = "parse")]
pub use url::names_hosts;
pub use zookeeper::ZookeeperConfig;

pub use crate::config_error::redact_url;

/// The system's trust store (as `rustls-native-certs` finds it: `SSL_CERT_FILE`,
/// `SSL_CERT_DIR`, the distribution's bundle) as PEM text, for a TLS client given no CA.
/// `field` names the config field the error is about.
#[cfg(feature = "system-roots")]
pub fn system_roots_pem(field: &str) -> Result<String, ConfigError> {
    use base64::Engine;
    let found = rustls_native_certs::load_native_certs();
    if found.certs.is_empty() {
        return Err(ConfigError::new(
            field,
            "",
            format!(
                "no CA given and no certificate in the system's trust store ({} errors)",
                found.errors.len()
            ),
        ));
    }
    let mut pem = String::new();
    for cert in found.certs {
        let text = base64::engine::general_purpose::STANDARD.encode(cert.as_ref());
        pem.push_str("-----BEGIN CERTIFICATE-----\n");
        for line in text.as_bytes().chunks(64) {
            pem.push_str(&String::from_utf8_lossy(line));
            pem.push('\n');
        }
        pem.push_str("-----END CERTIFICATE-----\n");
    }
    Ok(pem)
}

/// A whole configuration: the election, who we are, and the backend.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Config {
    /// The election; may instead come from `--election`.
    pub election: Option<ElectionName>,
    /// This candidate's id; generated (`<hostname>-<pid>-<random>`) when absent.
    pub id: Option<String>,
    /// This candidate's value (what followers read); the id when absent.
    pub value: Option<String>,
    /// The store and how to reach it.
    pub backend: BackendConfig,
}

/// Which store holds the election, with its settings.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum BackendConfig {
    /// A lock file on this host: the embedded default.
    File(FileConfig),
    /// etcd leases.
    Etcd(EtcdConfig),
    /// Consul sessions.
    Consul(ConsulConfig),
    /// ZooKeeper ephemeral sequential znodes.
    Zookeeper(ZookeeperConfig),
}

impl BackendConfig {
    /// The backend's name as in `ELECT_BACKEND`: `file`, `etcd`, `consul`, `zookeeper`.
    pub fn name(&self) -> &'static str {
        match self {
            BackendConfig::File(_) => "file",
            BackendConfig::Etcd(_) => "etcd",
            BackendConfig::Consul(_) => "consul",
            BackendConfig::Zookeeper(_) => "zookeeper",
        }
    }

    /// Checks every field, as the parsers do: library constructors call it too.
    pub fn validate(&self) -> Result<(), ConfigError> {
        match self {
            BackendConfig::File(file) => file.validate(),
            BackendConfig::Etcd(etcd) => etcd.validate(),
            BackendConfig::Consul(consul) => consul.validate(),
            BackendConfig::Zookeeper(zk) => zk.validate(),
        }
    }
}

impl Default for BackendConfig {
    fn default() -> Self {
        BackendConfig::File(FileConfig::default())
    }
}

#[cfg(feature = "parse")]
/// The TOML file as written: the top-level keys and one table per backend.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    election: Option<ElectionName>,
    id: Option<String>,
    value: Option<String>,
    file: Option<FileConfig>,
    etcd: Option<EtcdConfig>,
    consul: Option<ConsulConfig>,
    zookeeper: Option<ZookeeperConfig>,
}

impl Config {
    /// A configuration for `backend`, with no election, id or value yet (the CLI's flags, or
    /// the caller, set them).
    pub fn new(backend: BackendConfig) -> Self {
        Config {
            election: None,
            id: None,
            value: None,
            backend,
        }
    }

    /// The embedded default: the file backend in its default directory, no election yet.
    pub fn file_default() -> Self {
        Config {
            election: None,
            id: None,
            value: None,
            backend: BackendConfig::default(),
        }
    }

    #[cfg(feature = "parse")]
    /// Reads a TOML config: top-level `election`, `id`, `value`, and at most one of the tables
    /// `[file]`, `[etcd]`, `[consul]`, `[zookeeper]` (none means the file backend).
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let deserializer = toml::Deserializer::parse(text).map_err(|e| toml_error(text, "", &e))?;
        let file: ConfigFile = serde_path_to_error::deserialize(deserializer)
            .map_err(|e| toml_error(text, &e.path().to_string(), e.inner()))?;
        let mut backends = Vec::new();
        if let Some(f) = file.file {
            backends.push(BackendConfig::File(f));
        }
        if let Some(etcd) = file.etcd {
            backends.push(BackendConfig::Etcd(etcd));
        }
        if let Some(consul) = file.consul {
            backends.push(BackendConfig::Consul(consul));
        }
        if let Some(zk) = file.zookeeper {
            backends.push(BackendConfig::Zookeeper(zk));
        }
        if backends.len() > 1 {
            let names: Vec<_> = backends.iter().map(|b| b.name()).collect();
            return Err(ConfigError::new(
                "backend",
                names.join(", "),
                "a config has at most one of the tables [file], [etcd], [consul], [zookeeper]",
            ));
        }
        let config = Config {
            election: file.election,
            id: file.id,
            value: file.value,
            backend: backends.pop().unwrap_or_default(),
        };
        config.validate()?;
        Ok(config)
    }

    #[cfg(feature = "parse")]
    /// Reads the URL form: `file:///run/elect/billing.lock`, `etcd://h1:2379,h2:2379/billing?ttl=5s`,
    /// `consul://127.0.0.1:8500/billing?lock_delay=0s`, `zk://zk1:2181/billing?session_timeout=6s`.
    /// The path names the election.
    pub fn from_url(text: &str) -> Result<Self, ConfigError> {
        let config = url::parse(text)?;
        config.validate()?;
        Ok(config)
    }

    /// Applies `ELECT_*` overrides from `vars` (pass `std::env::vars()`); see the README for
    /// the list. Variables for another backend are ignored. The variables `elect run` sets for
    /// its child (`ELECT_ELECTION`, `ELECT_CANDIDATE_ID`, `ELECT_BACKEND`,
    /// `ELECT_FENCING_TOKEN`) are never read, so a nested `elect` does not inherit them.
    pub fn apply_env<I, K, V>(&mut self, vars: I) -> Result<(), ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        for (key, value) in vars {
            self.apply_env_var(key.as_ref(), value.as_ref())?;
        }
        self.validate()
    }

    fn apply_env_var(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        let duration = |key: &str| {
            parse_duration(value).map_err(|problem| ConfigError::new(key, value, problem))
        };
        match (key, &mut self.backend) {
            ("ELECT_ID", _) => self.id = Some(value.to_owned()),
            ("ELECT_VALUE", _) => self.value = Some(value.to_owned()),
            ("ELECT_FILE_DIR", BackendConfig::File(file)) => file.dir = PathBuf::from(value),
            ("ELECT_ENDPOINTS", backend) => {
                let endpoints = value
                    .split(',')
                    .map(|e| Endpoint::parse_field(key, e))
                    .collect::<Result<Vec<_>, _>>()?;
                match backend {
                    BackendConfig::Etcd(c) => c.endpoints = endpoints,
                    BackendConfig::Consul(c) => c.endpoints = endpoints,
                    BackendConfig::Zookeeper(c) => c.endpoints = endpoints,
                    BackendConfig::File(_) => {}
                }
            }
            ("ELECT_TTL", BackendConfig::Etcd(c)) => c.ttl = duration(key)?,
            ("ELECT_TTL", BackendConfig::Consul(c)) => c.ttl = duration(key)?,
            ("ELECT_TTL", BackendConfig::Zookeeper(c)) => c.session_timeout = duration(key)?,
            ("ELECT_DRIFT_MARGIN", BackendConfig::Etcd(c)) => c.drift_margin = Some(duration(key)?),
            ("ELECT_DRIFT_MARGIN", BackendConfig::Consul(c)) => {
                c.drift_margin = Some(duration(key)?)
            }
            ("ELECT_DRIFT_MARGIN", BackendConfig::Zookeeper(c)) => {
                c.drift_margin = Some(duration(key)?)
            }
            ("ELECT_ETCD_USERNAME", BackendConfig::Etcd(c)) => c.username = Some(value.to_owned()),
            ("ELECT_ETCD_PASSWORD", BackendConfig::Etcd(c)) => {
                c.password = Some(Secret::new(value))
            }
            ("ELECT_CONSUL_TOKEN", BackendConfig::Consul(c)) => c.token = Some(Secret::new(value)),
            ("ELECT_CONSUL_LOCK_DELAY", BackendConfig::Consul(c)) => {
                c.lock_delay = Some(duration(key)?)
            }
            ("ELECT_ZK_AUTH", BackendConfig::Zookeeper(c)) => c.auth = Some(Secret::new(value)),
            ("ELECT_TLS_CA" | "ELECT_TLS_CERT" | "ELECT_TLS_KEY", backend) => {
                let slot = match backend {
                    BackendConfig::Etcd(c) => &mut c.tls,
                    BackendConfig::Consul(c) => &mut c.tls,
                    BackendConfig::Zookeeper(c) => &mut c.tls,
                    BackendConfig::File(_) => return Ok(()),
                };
                let slot = slot.get_or_insert_with(TlsConfig::default);
                let path = Some(PathBuf::from(value));
                match key {
                    "ELECT_TLS_CA" => slot.ca = path,
                    "ELECT_TLS_CERT" => slot.cert = path,
                    _ => slot.key = path,
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Checks every value; the first bad one is returned, naming its field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(id) = &self.id {
            check_id("id", id)?;
        }
        if let Some(value) = &self.value {
            check_value("value", value.as_bytes())?;
        }
        self.backend.validate()
    }
}

#[cfg(feature = "parse")]
fn toml_error(text: &str, path: &str, error: &toml::de::Error) -> ConfigError {
    let field = if path.is_empty() || path == "." {
        "config"
    } else {
        path
    };
    // Where, not what: the text at fault may be an unquoted secret.
    let place = error
        .span()
        .and_then(|span| text.get(..span.start))
        .map(|before| {
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
            format!("line {line}, column {column}")
        })
        .unwrap_or_default();
    ConfigError::new(field, place, error.message().trim_end())
}
