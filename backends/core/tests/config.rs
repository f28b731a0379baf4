//! Configuration from TOML, URLs and the environment: what is accepted, and a table of bad
//! inputs, each refused with an error that names the field and the value.

use std::path::PathBuf;
use std::time::Duration;

use elect_core::config::{BackendConfig, Config, Secret, TlsConfig};
use elect_core::ConfigError;

enum Source {
    Toml(&'static str),
    Url(&'static str),
    /// A URL, then one environment variable.
    Env(&'static str, &'static str, &'static str),
}

fn load(source: &Source) -> Result<Config, ConfigError> {
    match source {
        Source::Toml(text) => Config::from_toml(text),
        Source::Url(url) => Config::from_url(url),
        Source::Env(url, key, value) => {
            let mut config = Config::from_url(url)?;
            config.apply_env([(*key, *value)])?;
            Ok(config)
        }
    }
}

#[test]
fn bad_inputs_are_refused_naming_the_field_and_the_value() {
    let long_name = format!("election = \"{}\"", "x".repeat(129));
    let long_value = format!("value = \"{}\"", "v".repeat(64 * 1024 + 1));
    let long_name: &'static str = Box::leak(long_name.into_boxed_str());
    let long_value: &'static str = Box::leak(long_value.into_boxed_str());
    // (input, field named, text the message must contain)
    let cases: Vec<(Source, &str, &str)> = vec![
        (
            Source::Toml(r#"election = """#),
            "election",
            "must not be empty",
        ),
        (Source::Toml(r#"election = "bill/ing""#), "election", "'/'"),
        (Source::Toml(long_name), "election", "at most 128"),
        (Source::Toml(long_value), "value", "at most 65536 bytes"),
        (Source::Toml(r#"id = "has space""#), "id", "' '"),
        (
            Source::Toml("colour = \"blue\""),
            "colour",
            "unknown field `colour`",
        ),
        (
            Source::Toml("[etcd]\nendpoints = [\"h:2379\"]\ncolour = \"blue\""),
            "etcd.colour",
            "unknown field `colour`",
        ),
        (
            Source::Toml("[etcd]\nendpoints = [\"h:2379\"]\nttl = \"0s\""),
            "etcd.ttl",
            "at least 1s",
        ),
        (
            Source::Toml("[etcd]\nendpoints = [\"h:2379\"]\nttl = \"1000000h\""),
            "etcd.ttl",
            "at most 24h",
        ),
        (
            Source::Toml("[etcd]\nendpoints = [\"h:2379\"]\nttl = \"10\""),
            "etcd.ttl",
            "needs a unit",
        ),
        (
            Source::Toml("[etcd]\nendpoints = [\"h:2379\"]\nttl = \"10sec\""),
            "etcd.ttl",
            "unknown duration unit \"sec\"",
        ),
        (
            Source::Toml("[etcd]\nendpoints = [\"h:2379\"]\nttl = \"1500ms\""),
            "etcd.ttl",
            "whole seconds",
        ),
        (
            Source::Toml("[etcd]\nendpoints = [\"h:2379\"]\nttl = 10"),
            "etcd.ttl",
            "invalid type",
        ),
        (
            Source::Toml("[etcd]\nendpoints = [\"h:2379\"]\nttl = \"99999999999999999999h\""),
            "etcd.ttl",
            "too large",
        ),
        (
            Source::Toml("[etcd]\nendpoints = []"),
            "etcd.endpoints",
            "at least one endpoint",
        ),
        (
            Source::Toml("[etcd]\nendpoints = [\":2379\"]"),
            "etcd.endpoints[0]",
            "host is missing",
        ),
        (
            Source::Toml("[etcd]\nendpoints = [\"h:99999\"]"),
            "etcd.endpoints[0]",
            "at most 65535",
        ),
        (
            Source::Toml("[etcd]\nendpoints = [\"h:2379\"]\ndrift_margin = \"6s\""),
            "etcd.drift_margin",
            "less than half",
        ),
        (
            Source::Toml("[etcd]\nendpoints = [\"h:2379\"]\npassword = \"secret\""),
            "etcd.username",
            "user name",
        ),
        (
            Source::Toml("[etcd]\nendpoints = [\"h\"]\n[etcd.tls]\ncert = \"c.pem\""),
            "etcd.tls.key",
            "needs its key",
        ),
        (
            Source::Toml("[consul]\nendpoints = [\"h\"]\nttl = \"5s\""),
            "consul.ttl",
            "at least 10s",
        ),
        (
            Source::Toml("[consul]\nendpoints = [\"h\"]\nlock_delay = \"90s\""),
            "consul.lock_delay",
            "at most 60s",
        ),
        (
            // Consul caps lock delay at 60 s: the default of one TTL would silently be less.
            Source::Toml("[consul]\nendpoints = [\"h\"]\nttl = \"90s\""),
            "consul.ttl",
            "consul.lock_delay",
        ),
        (
            Source::Url("consul://h/e?ttl=2m"),
            "consul.ttl",
            "the default lock delay (one TTL, 2m)",
        ),
        (
            Source::Toml("[zookeeper]\nendpoints = [\"h\"]\nroot = \"elect\""),
            "zookeeper.root",
            "starts with '/'",
        ),
        (
            Source::Toml("[zookeeper]\nendpoints = [\"h\"]\nauth = \"nocolon\""),
            "zookeeper.auth",
            "user:password",
        ),
        (
            Source::Toml("[etcd]\nendpoints = [\"h\"]\n[consul]\nendpoints = [\"h\"]"),
            "backend",
            "at most one",
        ),
        (
            Source::Url("redis://h/e"),
            "url",
            "unknown scheme \"redis\"",
        ),
        (Source::Url("billing"), "url", "starts with file://"),
        (
            Source::Url("etcd://h1,,h2/billing"),
            "url host",
            "host is missing",
        ),
        (Source::Url("etcd://h:2379/bill$ing"), "url path", "'$'"),
        (Source::Url("etcd://h:2379/a/b"), "url path", "'/'"),
        (
            Source::Url("etcd://h:2379/e?ttl=0s"),
            "etcd.ttl",
            "at least 1s",
        ),
        (
            Source::Url("etcd://h:2379/e?colour=blue"),
            "url ?colour",
            "unknown parameter",
        ),
        (
            Source::Url("etcd://h:2379/e?ttl=5s&ttl=6s"),
            "url ?ttl",
            "given twice",
        ),
        (
            Source::Url("consul://h/e?lock_delay=5x"),
            "url ?lock_delay",
            "unknown duration unit",
        ),
        (
            Source::Url("consul://h/e?ttl=9s"),
            "consul.ttl",
            "at least 10s",
        ),
        (
            Source::Url("zk://h:2181/e?session_timeout=0ms"),
            "zookeeper.session_timeout",
            "at least 100ms",
        ),
        (Source::Url("zk://h:70000/e"), "url host", "at most 65535"),
        (Source::Url("file://host/run/x.lock"), "url", "on this host"),
        (Source::Url("file://relative.lock"), "url", "on this host"),
        (
            Source::Env("etcd://h/e", "ELECT_TTL", "abc"),
            "ELECT_TTL",
            "starts with a number",
        ),
        (
            Source::Env("etcd://h/e", "ELECT_ENDPOINTS", "h:0"),
            "ELECT_ENDPOINTS",
            "port 0",
        ),
        (
            Source::Env("etcd://h/e", "ELECT_ID", ""),
            "id",
            "must not be empty",
        ),
    ];
    assert!(cases.len() >= 20);
    for (source, field, problem) in &cases {
        let input = match source {
            Source::Toml(t) => format!("toml {t:?}"),
            Source::Url(u) => format!("url {u:?}"),
            Source::Env(u, k, v) => format!("{u} with {k}={v}"),
        };
        let error = match load(source) {
            Ok(config) => panic!("{input} was accepted: {config:?}"),
            Err(error) => error,
        };
        assert_eq!(&error.field, field, "{input}: wrong field in {error}");
        let message = error.to_string();
        assert!(
            message.contains(problem),
            "{input}: {message:?} should say {problem:?}"
        );
        assert!(
            message.contains(&format!("`{field}`")),
            "{input}: {message:?} names no field"
        );
        assert!(
            !error.value.is_empty() || field.starts_with("etcd.username"),
            "{input}: no value in {message}"
        );
    }
}

#[test]
fn secrets_are_never_echoed() {
    let error = Config::from_toml("[zookeeper]\nendpoints = [\"h\"]\nauth = \"s3cret-no-colon\"")
        .unwrap_err();
    assert!(!error.to_string().contains("s3cret"), "{error}");
}

#[test]
fn urls_give_the_same_configs_as_toml() {
    let from_url = Config::from_url("etcd://user:p%40ss@10.0.0.1:2379,10.0.0.2/billing?ttl=5s&namespace=svc/&tls=true&ca=/ca.pem").unwrap();
    let from_toml = Config::from_toml(
        r#"
        election = "billing"
        [etcd]
        endpoints = ["10.0.0.1:2379", "10.0.0.2"]
        ttl = "5s"
        namespace = "svc/"
        username = "user"
        password = "p@ss"
        tls = { ca = "/ca.pem" }
        "#,
    )
    .unwrap();
    assert_eq!(from_url, from_toml);
    let BackendConfig::Etcd(etcd) = &from_url.backend else {
        panic!("not etcd")
    };
    assert_eq!(etcd.endpoints[1].with_default_port(2379), "10.0.0.2:2379");
    assert_eq!(etcd.tls, Some(TlsConfig::with_ca("/ca.pem")));
}

#[test]
fn defaults_follow_the_native_tools() {
    let config = Config::from_url("etcd://h/billing").unwrap();
    let BackendConfig::Etcd(etcd) = config.backend else {
        panic!()
    };
    assert_eq!(
        (etcd.ttl, etcd.drift_margin(), etcd.namespace.as_str()),
        (Duration::from_secs(10), Duration::from_secs(1), "")
    );

    let BackendConfig::Consul(consul) = Config::from_url("consul://h/billing").unwrap().backend
    else {
        panic!()
    };
    assert_eq!(consul.prefix, "");
    assert_eq!(
        consul.lock_delay(),
        consul.ttl,
        "a lock delay of a TTL: a session can be invalidated before its holder sees it"
    );
    let BackendConfig::Consul(checked) =
        Config::from_url("consul://h/billing?health_checks=serfHealth")
            .unwrap()
            .backend
    else {
        panic!()
    };
    assert_eq!(
        checked.lock_delay(),
        checked.ttl,
        "health checks: lock delay of a TTL"
    );
    let BackendConfig::Consul(explicit) =
        Config::from_url("consul://h/b?health_checks=serfHealth&lock_delay=0s")
            .unwrap()
            .backend
    else {
        panic!()
    };
    assert_eq!(explicit.lock_delay(), Duration::ZERO);

    let zk =
        Config::from_url("zk://alice:pw@zk1:2181,zk2:2181/billing?session_timeout=6s").unwrap();
    let BackendConfig::Zookeeper(zk) = zk.backend else {
        panic!()
    };
    assert_eq!(
        (
            zk.root.as_str(),
            zk.session_timeout,
            zk.auth.as_ref().map(Secret::expose)
        ),
        ("/", Duration::from_secs(6), Some("alice:pw"))
    );

    let file = Config::from_url("file:///run/elect/billing.lock").unwrap();
    assert_eq!(file.election.unwrap().as_str(), "billing");
    let BackendConfig::File(file) = file.backend else {
        panic!()
    };
    assert_eq!(file.dir, PathBuf::from("/run/elect"));

    let none = Config::from_toml("election = \"x\"").unwrap();
    assert_eq!(
        none.backend.name(),
        "file",
        "no backend table means the file backend"
    );
}

#[test]
fn environment_overrides_the_config_and_ignores_other_backends() {
    let mut config = Config::from_url("consul://h/billing?ttl=20s").unwrap();
    config
        .apply_env([
            ("ELECT_TTL", "30s"),
            ("ELECT_CONSUL_TOKEN", "tok"),
            ("ELECT_ETCD_PASSWORD", "ignored"),
            ("ELECT_ENDPOINTS", "a:1,b:2"),
            // What `elect run` gives its child is never read back.
            ("ELECT_ELECTION", "other"),
            ("ELECT_CANDIDATE_ID", "someone"),
        ])
        .unwrap();
    assert_eq!(config.election.as_ref().unwrap().as_str(), "billing");
    assert_eq!(config.id, None);
    let BackendConfig::Consul(consul) = config.backend else {
        panic!()
    };
    assert_eq!(consul.ttl, Duration::from_secs(30));
    assert_eq!(consul.token.as_ref().map(Secret::expose), Some("tok"));
    assert_eq!(consul.endpoints.len(), 2);
}
