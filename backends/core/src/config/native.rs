//! The native tools' variables, as fallbacks for people moving from `consul lock` and
//! `etcdctl`: they fill only what no `elect` setting gave.
//!
//! | variable | used for |
//! | --- | --- |
//! | `CONSUL_HTTP_ADDR` | Consul's agent (`host:port`, or `https://host:port` for TLS) when the URL names no host (`consul:///billing`) |
//! | `CONSUL_HTTP_TOKEN` | Consul's ACL token when none is configured |
//! | `CONSUL_HTTP_SSL` | `true`: https to Consul when TLS is not configured |
//! | `ETCDCTL_ENDPOINTS` | etcd's members (comma-separated, `http(s)://` allowed) when the URL names no host |
//! | `ETCDCTL_USER` | etcd's `user` or `user:password` when no user name is configured |
//!
//! ZooKeeper has no such convention. With neither, a URL without hosts means the tool's own
//! default: `127.0.0.1` on the backend's port.

use super::{BackendConfig, Config, Endpoint, Secret, TlsConfig};
use crate::config_error::ConfigError;

impl Config {
    /// Applies the native variables in `vars` where nothing was configured; `hosts_given`
    /// says whether the URL or file named the store's hosts (else the variables may).
    pub fn apply_native_env<I, K, V>(
        &mut self,
        vars: I,
        hosts_given: bool,
    ) -> Result<(), ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        for (key, value) in vars {
            let (key, value) = (key.as_ref(), value.as_ref());
            match (key, &mut self.backend) {
                ("CONSUL_HTTP_ADDR", BackendConfig::Consul(c)) if !hosts_given => {
                    let (endpoint, https) = endpoint_with_scheme(key, value)?;
                    c.endpoints = vec![endpoint];
                    if https && c.tls.is_none() {
                        c.tls = Some(TlsConfig::default());
                    }
                }
                ("CONSUL_HTTP_TOKEN", BackendConfig::Consul(c)) if c.token.is_none() => {
                    c.token = Some(Secret::new(value));
                }
                ("CONSUL_HTTP_SSL", BackendConfig::Consul(c)) if c.tls.is_none() => {
                    if matches!(value.trim(), "true" | "1") {
                        c.tls = Some(TlsConfig::default());
                    }
                }
                ("ETCDCTL_ENDPOINTS", BackendConfig::Etcd(c)) if !hosts_given => {
                    let mut https = false;
                    c.endpoints = value
                        .split(',')
                        .map(|e| {
                            let (endpoint, tls) = endpoint_with_scheme(key, e)?;
                            https |= tls;
                            Ok(endpoint)
                        })
                        .collect::<Result<_, ConfigError>>()?;
                    if https && c.tls.is_none() {
                        c.tls = Some(TlsConfig::default());
                    }
                }
                ("ETCDCTL_USER", BackendConfig::Etcd(c)) if c.username.is_none() => {
                    let (user, password) = match value.split_once(':') {
                        Some((user, password)) => (user, Some(password)),
                        None => (value, None),
                    };
                    c.username = Some(user.to_owned());
                    if c.password.is_none() {
                        c.password = password.map(Secret::new);
                    }
                }
                _ => {}
            }
        }
        self.validate()
    }
}

/// `host:port` or `http(s)://host:port`; true for https.
fn endpoint_with_scheme(field: &str, text: &str) -> Result<(Endpoint, bool), ConfigError> {
    let text = text.trim();
    let (https, rest) = match text.split_once("://") {
        Some(("https", rest)) => (true, rest),
        Some(("http", rest)) => (false, rest),
        Some(_) => {
            return Err(ConfigError::new(
                field,
                text,
                "write host:port, http://host:port or https://host:port",
            ))
        }
        None => (false, text),
    };
    Ok((
        Endpoint::parse_field(field, rest.trim_end_matches('/'))?,
        https,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn consul_variables_fill_what_was_not_configured() {
        let mut config = Config::from_url("consul:///billing").unwrap();
        let BackendConfig::Consul(c) = &config.backend else {
            unreachable!()
        };
        assert_eq!(
            c.endpoints[0].to_string(),
            "127.0.0.1",
            "the tool's default"
        );
        config
            .apply_native_env(
                vars(&[
                    ("CONSUL_HTTP_ADDR", "https://consul.internal:8501"),
                    ("CONSUL_HTTP_TOKEN", "t0k"),
                ]),
                false,
            )
            .unwrap();
        let BackendConfig::Consul(c) = &config.backend else {
            unreachable!()
        };
        assert_eq!(c.endpoints[0].to_string(), "consul.internal:8501");
        assert!(c.tls.is_some());
        assert_eq!(c.token.as_ref().map(Secret::expose), Some("t0k"));

        // Hosts and a token given: the variables change nothing.
        let mut config = Config::from_url("consul://10.0.0.1/billing?token=mine").unwrap();
        config
            .apply_native_env(
                vars(&[
                    ("CONSUL_HTTP_ADDR", "other:8500"),
                    ("CONSUL_HTTP_TOKEN", "t0k"),
                ]),
                true,
            )
            .unwrap();
        let BackendConfig::Consul(c) = &config.backend else {
            unreachable!()
        };
        assert_eq!(c.endpoints[0].to_string(), "10.0.0.1");
        assert_eq!(c.token.as_ref().map(Secret::expose), Some("mine"));
    }

    #[test]
    fn etcdctl_variables_fill_what_was_not_configured() {
        let mut config = Config::from_url("etcd:///billing").unwrap();
        config
            .apply_native_env(
                vars(&[
                    (
                        "ETCDCTL_ENDPOINTS",
                        "http://10.0.0.1:2379,http://10.0.0.2:2379",
                    ),
                    ("ETCDCTL_USER", "root:pw"),
                ]),
                false,
            )
            .unwrap();
        let BackendConfig::Etcd(c) = &config.backend else {
            unreachable!()
        };
        assert_eq!(c.endpoints.len(), 2);
        assert_eq!(c.username.as_deref(), Some("root"));
        assert_eq!(c.password.as_ref().map(Secret::expose), Some("pw"));
        assert!(c.tls.is_none());
        let refused = Config::from_url("etcd:///billing")
            .unwrap()
            .apply_native_env(vars(&[("ETCDCTL_ENDPOINTS", "unix://sock")]), false)
            .unwrap_err();
        assert_eq!(refused.field, "ETCDCTL_ENDPOINTS");
    }
}
