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

mod duration;
mod native;
mod secret;
mod url;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::config_error::ConfigError;
use crate::names::{check_id, check_value};
use crate::ElectionName;

pub use duration::{format_duration, parse_duration};
pub use secret::Secret;
pub use url::names_hosts;

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

/// TTL and session timeout of every distributed backend unless configured.
pub const DEFAULT_TTL: Duration = Duration::from_secs(10);
/// Longest TTL, session timeout or grace period accepted anywhere.
pub const MAX_TTL: Duration = Duration::from_secs(24 * 3600);
/// Consul refuses session TTLs below 10 s.
pub const CONSUL_MIN_TTL: Duration = Duration::from_secs(10);
/// Consul refuses lock delays above 60 s.
pub const CONSUL_MAX_LOCK_DELAY: Duration = Duration::from_secs(60);

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

/// The file backend: `<dir>/<election>.lock`, locked with `flock`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct FileConfig {
    /// Where the lock, token and leader files live. Default: [`default_file_dir`] (`/run/elect`
    /// for root, `$XDG_RUNTIME_DIR/elect` for other users).
    #[serde(default = "default_file_dir")]
    pub dir: PathBuf,
    /// How long a leader may take to stop its work once its lock file was deleted: a
    /// successor waits for the old term that long at most. `elect run` sets it to its
    /// `--grace`; the file backend's default otherwise.
    #[serde(default, deserialize_with = "duration::deserialize_opt")]
    pub stop_grace: Option<Duration>,
}

impl Default for FileConfig {
    fn default() -> Self {
        FileConfig {
            stop_grace: None,
            dir: default_file_dir(),
        }
    }
}

/// The default lock directory: private to the running user, never a shared `/tmp/elect`
/// that another user could create first. `/run/elect` for root, `$XDG_RUNTIME_DIR/elect`
/// for a user with a session, else `$TMPDIR/elect-<uid>` (which the file backend refuses
/// if someone else made it).
pub fn default_file_dir() -> PathBuf {
    let uid = nix::unistd::geteuid();
    if uid.is_root() {
        return PathBuf::from("/run/elect");
    }
    match std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from) {
        Some(runtime) if runtime.is_absolute() => runtime.join("elect"),
        _ => std::env::temp_dir().join(format!("elect-{uid}")),
    }
}

impl FileConfig {
    /// Lock files in `dir`, the default stop grace.
    pub fn in_dir(dir: impl Into<PathBuf>) -> Self {
        FileConfig {
            dir: dir.into(),
            stop_grace: None,
        }
    }

    /// Checks every field, as the parsers do: library constructors call it too.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.dir.as_os_str().is_empty() {
            return Err(ConfigError::new(
                "file.dir",
                "",
                "the lock directory must not be empty",
            ));
        }
        Ok(())
    }
}

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

fn check_tls(field: &str, tls: Option<&TlsConfig>) -> Result<(), ConfigError> {
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

fn default_ttl() -> Duration {
    DEFAULT_TTL
}

fn de_duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    duration::deserialize_opt(deserializer).map(|d| d.unwrap_or(DEFAULT_TTL))
}

fn check_endpoints(field: &str, endpoints: &[Endpoint]) -> Result<(), ConfigError> {
    if endpoints.is_empty() {
        return Err(ConfigError::new(
            field,
            "[]",
            "at least one endpoint is needed",
        ));
    }
    Ok(())
}

fn check_ttl(field: &str, ttl: Duration, min: Duration) -> Result<(), ConfigError> {
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

fn check_margin(field: &str, margin: Option<Duration>, ttl: Duration) -> Result<(), ConfigError> {
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
