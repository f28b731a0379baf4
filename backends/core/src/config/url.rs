//! The URL form of a config: `<scheme>://[user[:password]@]host[:port][,host[:port]...]/<election>?key=value&...`.
//!
//! Parsed by hand because etcd and ZooKeeper take several hosts in the authority, which
//! general URL parsers refuse.

use std::path::{Path, PathBuf};

use super::{
    parse_duration, BackendConfig, Config, ConsulConfig, Endpoint, EtcdConfig, FileConfig, Secret,
    TlsConfig, ZookeeperConfig,
};
use crate::config_error::ConfigError;
use crate::ElectionName;

pub(super) fn parse(text: &str) -> Result<Config, ConfigError> {
    let bad = |problem: &str| ConfigError::new("url", text, problem);
    let (scheme, rest) = text
        .split_once("://")
        .ok_or_else(|| bad("a URL starts with file://, etcd://, consul:// or zk://"))?;
    let (rest, query) = match rest.split_once('?') {
        Some((rest, query)) => (rest, query),
        None => (rest, ""),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let mut params = Params::parse(query)?;

    let mut config = match scheme {
        "file" => {
            if !(authority.is_empty() || authority == "localhost") {
                return Err(ConfigError::new(
                    "url",
                    text,
                    "a file URL names a path on this host: file:///dir/election.lock",
                ));
            }
            file_config(text, &decode("url", path)?, &mut params)?
        }
        "etcd" | "consul" | "zk" | "zookeeper" => {
            let (userinfo, hosts) = match authority.rsplit_once('@') {
                Some((userinfo, hosts)) => (Some(userinfo), hosts),
                None => (None, authority),
            };
            // No host (`consul:///billing`): the tool's own default, this host on the backend's
            // port, unless the native variables name one (see `Config::apply_native_env`).
            let endpoints = if hosts.is_empty() {
                vec![Endpoint {
                    host: "127.0.0.1".to_owned(),
                    port: None,
                }]
            } else {
                hosts
                    .split(',')
                    .map(|host| Endpoint::parse_field("url host", host))
                    .collect::<Result<Vec<_>, _>>()?
            };
            let election = election_from_path(path)?;
            let backend = match scheme {
                "etcd" => etcd_config(endpoints, userinfo, &mut params)?,
                "consul" => consul_config(endpoints, userinfo, &mut params)?,
                _ => zookeeper_config(endpoints, userinfo, &mut params)?,
            };
            Config {
                election,
                id: None,
                value: None,
                backend,
            }
        }
        other => {
            return Err(ConfigError::new(
                "url",
                text,
                format!("unknown scheme {other:?}: use file, etcd, consul or zk"),
            ))
        }
    };
    config.id = params.take("id");
    config.value = params.take("value");
    params.finish()?;
    Ok(config)
}

fn election_from_path(path: &str) -> Result<Option<ElectionName>, ConfigError> {
    let name = decode("url path", path.trim_start_matches('/'))?;
    if name.is_empty() {
        return Ok(None);
    }
    ElectionName::parse_field("url path", &name).map(Some)
}

fn file_config(text: &str, path: &str, params: &mut Params) -> Result<Config, ConfigError> {
    if !path.starts_with('/') {
        return Err(ConfigError::new(
            "url",
            text,
            "a file URL needs an absolute path",
        ));
    }
    let dir_param = params.take("dir");
    if dir_param.is_some() {
        return Err(ConfigError::new(
            "url",
            text,
            "a file URL gives the lock's path, not ?dir=",
        ));
    }
    let path = Path::new(path);
    let (dir, election) = if path.extension().is_some_and(|ext| ext == "lock") {
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        let election = ElectionName::parse_field("url path", stem)?;
        (
            path.parent()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| PathBuf::from("/")),
            Some(election),
        )
    } else {
        (path.to_path_buf(), None)
    };
    Ok(Config {
        election,
        id: None,
        value: None,
        backend: BackendConfig::File(FileConfig {
            dir,
            stop_grace: None,
        }),
    })
}

fn etcd_config(
    endpoints: Vec<Endpoint>,
    userinfo: Option<&str>,
    params: &mut Params,
) -> Result<BackendConfig, ConfigError> {
    let mut etcd = EtcdConfig::new(endpoints);
    if let Some(ttl) = params.duration("ttl")? {
        etcd.ttl = ttl;
    }
    etcd.drift_margin = params.duration("drift_margin")?;
    if let Some(namespace) = params.take("namespace") {
        etcd.namespace = namespace;
    }
    if let Some((user, password)) = split_userinfo(userinfo)? {
        etcd.username = Some(user);
        etcd.password = password.map(Secret::from);
    }
    etcd.tls = params.tls()?;
    Ok(BackendConfig::Etcd(etcd))
}

fn consul_config(
    endpoints: Vec<Endpoint>,
    userinfo: Option<&str>,
    params: &mut Params,
) -> Result<BackendConfig, ConfigError> {
    if userinfo.is_some() {
        return Err(ConfigError::new(
            "url userinfo",
            "<redacted>",
            "Consul takes an ACL token, not a user: use ?token= or ELECT_CONSUL_TOKEN",
        ));
    }
    let mut consul = ConsulConfig::new(endpoints);
    if let Some(ttl) = params.duration("ttl")? {
        consul.ttl = ttl;
    }
    consul.drift_margin = params.duration("drift_margin")?;
    consul.lock_delay = params.duration("lock_delay")?;
    if let Some(checks) = params.take("health_checks") {
        consul.health_checks = checks.split(',').map(str::to_owned).collect();
    }
    if let Some(prefix) = params.take("prefix") {
        consul.prefix = prefix;
    }
    consul.token = params.take("token").map(Secret::from);
    consul.datacenter = params.take("dc");
    consul.tls = params.tls()?;
    Ok(BackendConfig::Consul(consul))
}

fn zookeeper_config(
    endpoints: Vec<Endpoint>,
    userinfo: Option<&str>,
    params: &mut Params,
) -> Result<BackendConfig, ConfigError> {
    let mut zk = ZookeeperConfig::new(endpoints);
    if let Some(timeout) = params.duration("session_timeout")? {
        zk.session_timeout = timeout;
    }
    zk.drift_margin = params.duration("drift_margin")?;
    zk.tick_time = params.duration("tick_time")?;
    if let Some(root) = params.take("root") {
        zk.root = root;
    }
    if let Some((user, password)) = split_userinfo(userinfo)? {
        zk.auth = Some(format!("{user}:{}", password.unwrap_or_default()).into());
    }
    zk.tls = params.tls()?;
    Ok(BackendConfig::Zookeeper(zk))
}

fn split_userinfo(userinfo: Option<&str>) -> Result<Option<(String, Option<String>)>, ConfigError> {
    let Some(userinfo) = userinfo else {
        return Ok(None);
    };
    let (user, password) = match userinfo.split_once(':') {
        Some((user, password)) => (user, Some(decode("url userinfo", password)?)),
        None => (userinfo, None),
    };
    let user = decode("url userinfo", user)?;
    if user.is_empty() {
        return Err(ConfigError::new(
            "url userinfo",
            "",
            "the user name is missing before '@'",
        ));
    }
    Ok(Some((user, password)))
}

fn decode(field: &str, text: &str) -> Result<String, ConfigError> {
    percent_encoding::percent_decode_str(text)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| ConfigError::new(field, text, "not valid UTF-8 once percent-decoded"))
}

/// Query parameters; each one must be used, so an unknown key is an error.
struct Params(Vec<(String, String)>);

impl Params {
    fn parse(query: &str) -> Result<Self, ConfigError> {
        let mut params: Vec<(String, String)> = Vec::new();
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            if params.iter().any(|(k, _)| *k == key) {
                return Err(ConfigError::withheld(
                    format!("url ?{key}"),
                    "this parameter is given twice",
                ));
            }
            params.push((key.into_owned(), value.into_owned()));
        }
        Ok(Params(params))
    }

    fn take(&mut self, key: &str) -> Option<String> {
        let i = self.0.iter().position(|(k, _)| k == key)?;
        Some(self.0.remove(i).1)
    }

    fn duration(&mut self, key: &str) -> Result<Option<std::time::Duration>, ConfigError> {
        self.take(key)
            .map(|value| {
                parse_duration(&value)
                    .map_err(|problem| ConfigError::new(format!("url ?{key}"), &value, problem))
            })
            .transpose()
    }

    fn tls(&mut self) -> Result<Option<TlsConfig>, ConfigError> {
        let enabled = match self.take("tls").as_deref() {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => {
                return Err(ConfigError::new(
                    "url ?tls",
                    other,
                    "write tls=true or tls=false",
                ))
            }
        };
        let tls = TlsConfig {
            ca: self.take("ca").map(PathBuf::from),
            cert: self.take("cert").map(PathBuf::from),
            key: self.take("key").map(PathBuf::from),
        };
        let any = tls.ca.is_some() || tls.cert.is_some() || tls.key.is_some();
        Ok((enabled || any).then_some(tls))
    }

    fn finish(self) -> Result<(), ConfigError> {
        match self.0.into_iter().next() {
            None => Ok(()),
            // Its value is not shown: a mistyped parameter may hold a credential.
            Some((key, _)) => Err(ConfigError::withheld(
                format!("url ?{key}"),
                "unknown parameter for this backend",
            )),
        }
    }
}

/// Whether a URL names its store's hosts (`etcd://h1,h2/e` does, `etcd:///e` does not).
pub fn names_hosts(text: &str) -> bool {
    let Some((_, rest)) = text.split_once("://") else {
        return false;
    };
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    let hosts = authority
        .rsplit_once('@')
        .map_or(authority, |(_, hosts)| hosts);
    !hosts.is_empty()
}
