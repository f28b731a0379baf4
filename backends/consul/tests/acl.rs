//! ACLs (default deny) on an agent of our own: a token with `key:write` and `session:write`
//! leads; a token without them, no token, or an unknown token is a clear permission error
//! within seconds, never a silent hang.

use std::time::{Duration, Instant};

use elect_consul::ConsulElector;
use elect_core::config::ConsulConfig;
use elect_core::testkit::assert_refused_at_once;
use elect_core::{Candidate, Elector};
use elect_test_support::process::KillOnDrop;

const HTTP: &str = "127.0.0.1:18500";
const MASTER: &str = "acl-test-master";

/// One HTTP request with a token: `(status, body)`.
fn http(method: &str, path: &str, token: &str, body: &str) -> (u16, String) {
    elect_test_support::http(HTTP, method, path, &[("X-Consul-Token", token)], body)
}

fn start_agent(dir: &std::path::Path) -> KillOnDrop {
    let config = dir.join("acl.hcl");
    std::fs::write(
        &config,
        format!(
            "acl {{\n  enabled = true\n  default_policy = \"deny\"\n  tokens {{ master = \"{MASTER}\" }}\n}}\n\
             ports {{ dns = -1, grpc = -1, http = 18500, serf_lan = 18301, serf_wan = 18302, server = 18300 }}\n"
        ),
    )
    .unwrap();
    let agent = elect_test_support::consul_dev_agent(&config, "with ACLs");
    let started = Instant::now();
    loop {
        let ready = std::net::TcpStream::connect(HTTP).is_ok()
            && http("GET", "/v1/status/leader", MASTER, "").1.contains(':');
        if ready && http("GET", "/v1/acl/policies", MASTER, "").0 == 200 {
            return agent;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the ACL agent did not come up"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A token with the given rules.
fn token(name: &str, rules: &str) -> String {
    let policy = serde_json::json!({"Name": name, "Rules": rules}).to_string();
    let (status, body) = http("PUT", "/v1/acl/policy", MASTER, &policy);
    assert_eq!(status, 200, "create policy {name}: {body}");
    let token = serde_json::json!({"Policies": [{"Name": name}]}).to_string();
    let (status, body) = http("PUT", "/v1/acl/token", MASTER, &token);
    assert_eq!(status, 200, "create token {name}: {body}");
    let created: serde_json::Value = serde_json::from_str(&body).unwrap();
    created["SecretID"].as_str().unwrap().to_owned()
}

fn config(token: Option<String>) -> ConsulConfig {
    let mut config = ConsulConfig::new(vec![HTTP.parse().unwrap()]);
    config.token = token.map(Into::into);
    config
}

#[tokio::test]
async fn tokens_without_rights_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let _agent = start_agent(dir.path());
    let writer = token(
        "elect-rw",
        "key_prefix \"\" { policy = \"write\" }\nsession_prefix \"\" { policy = \"write\" }",
    );
    let reader = token("elect-read", "key_prefix \"\" { policy = \"read\" }");
    let election = "secured".parse().unwrap();
    let me = Candidate::new("a", "a").unwrap();

    let elector = ConsulElector::connect(&config(Some(writer.clone())))
        .await
        .expect("a token with rights connects");
    let debug = format!("{elector:?}");
    assert!(!debug.contains(&writer), "{debug}");
    let leadership = elector
        .campaign(&election, &me)
        .await
        .expect("a token with rights leads");
    leadership.fenced_put("secured-data", "x").await.unwrap();
    leadership.resign().await.unwrap();
    elector.close().await.unwrap();

    for (token, what) in [
        (Some(reader), "read-only token"),
        (None, "no token"),
        (Some("not-a-token".to_owned()), "unknown token"),
    ] {
        let attempt = async {
            let elector = ConsulElector::connect(&config(token)).await?;
            elector.campaign(&election, &me).await.map(drop)
        };
        assert_refused_at_once(what, attempt).await;
    }
}
