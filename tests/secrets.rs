//! Issue 14, item 3: credentials are never echoed — not in errors about the config, not in
//! `{:?}` of the library's types — and the command `elect run` starts does not inherit them
//! unless asked to.

use std::fs;
use std::process::{Command, Output};

use elect_core::config::{BackendConfig, Config};

const SECRET: &str = "Hunter2Secret";

fn elect(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_elect"));
    elect_test_support::process::without_elect_env(&mut command);
    command
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

fn all_output(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn no_config_error_echoes_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    fs::write(&good, "election = \"x\"\n[file]\n").unwrap();
    let unquoted = dir.path().join("unquoted.toml");
    fs::write(&unquoted, format!("[consul]\ntoken = {SECRET}\n")).unwrap();
    let good = good.to_str().unwrap();
    let unquoted = unquoted.to_str().unwrap();
    let with_password = format!("etcd://user:{SECRET}@h:2379/x");
    // What is wrong, the arguments, the environment.
    type Case<'a> = (&'a str, Vec<String>, Vec<(&'a str, String)>);
    let cases: Vec<Case> = vec![
        (
            "--config and --url both given",
            vec![
                "--config".into(),
                good.into(),
                "--url".into(),
                with_password.clone(),
            ],
            vec![],
        ),
        (
            "ELECT_URL with --config",
            vec!["--config".into(), good.into()],
            vec![("ELECT_URL", with_password.clone())],
        ),
        (
            "a mistyped scheme",
            vec!["--url".into(), format!("etcdd://user:{SECRET}@h/x")],
            vec![],
        ),
        (
            "a duplicate token",
            vec![
                "--url".into(),
                format!("consul://h/x?token=a{SECRET}&token={SECRET}"),
            ],
            vec![],
        ),
        (
            "an unknown auth parameter",
            vec!["--url".into(), format!("consul://h/x?auth={SECRET}")],
            vec![],
        ),
        (
            "an unknown password parameter",
            vec!["--url".into(), format!("etcd://h/x?password={SECRET}")],
            vec![],
        ),
        (
            "a TOML syntax error on an unquoted token",
            vec!["--config".into(), unquoted.into()],
            vec![],
        ),
        (
            "a bad ZooKeeper auth",
            vec!["--url".into(), "zk://h/x".into()],
            vec![("ELECT_ZK_AUTH", SECRET.to_owned())],
        ),
    ];
    let mut leaked = Vec::new();
    for (what, args, env) in &cases {
        for sub in ["status", "observe"] {
            let mut argv = vec![sub];
            argv.extend(args.iter().map(String::as_str));
            let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let out = elect(&argv, &env);
            let text = all_output(&out);
            eprintln!("{what} ({sub}): {:?}: {}", out.status.code(), text.trim());
            assert!(!out.status.success(), "{what}: {text}");
            if text.contains(SECRET) {
                leaked.push(format!("{what} ({sub}): {text}"));
            }
        }
    }
    assert!(leaked.is_empty(), "secrets echoed:\n{}", leaked.join("\n"));
}

#[test]
fn debug_output_of_configs_hides_credentials() {
    let urls = [
        format!("etcd://user:{SECRET}@h:2379/x"),
        format!("consul://h:8500/x?token={SECRET}"),
        format!("zk://user:{SECRET}@h:2181/x"),
    ];
    for url in urls {
        let config = Config::from_url(&url).unwrap();
        let debug = format!("{config:?} {:?}", config.backend);
        assert!(!debug.contains(SECRET), "{debug}");
        let exposed = match &config.backend {
            BackendConfig::Etcd(c) => c.password.as_ref().map(|s| s.expose().to_owned()),
            BackendConfig::Consul(c) => c.token.as_ref().map(|s| s.expose().to_owned()),
            BackendConfig::Zookeeper(c) => c.auth.as_ref().map(|s| s.expose().to_owned()),
            _ => None,
        };
        assert!(
            exposed.unwrap().contains(SECRET),
            "the client still gets it"
        );
    }
}

#[test]
fn the_command_does_not_inherit_credentials_unless_asked() {
    let dir = tempfile::tempdir().unwrap();
    let locks = dir.path().join("locks");
    let env = [
        ("ELECT_FILE_DIR", locks.to_str().unwrap()),
        ("ELECT_ETCD_PASSWORD", SECRET),
        ("ELECT_CONSUL_TOKEN", SECRET),
        ("ELECT_ZK_AUTH", SECRET),
    ];
    let run = |extra: &[&str]| {
        let mut args = vec!["run", "--election", "env"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--", "env"]);
        let out = elect(&args, &env);
        assert!(out.status.success(), "{}", all_output(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let stripped = run(&[]);
    assert!(stripped.contains("ELECT_FENCING_TOKEN="), "{stripped}");
    assert!(!stripped.contains(SECRET), "{stripped}");
    let passed = run(&["--pass-credentials"]);
    for name in elect::run::CREDENTIAL_VARIABLES {
        assert!(passed.contains(&format!("{name}={SECRET}")), "{passed}");
    }
}
