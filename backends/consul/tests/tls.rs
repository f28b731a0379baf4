//! Issue 14, item 8: https to a Consul agent of our own that requires client certificates
//! (`verify_incoming_https`), with a CA made here. The right CA and certificate lead; no
//! certificate, one of another CA, or a CA that did not sign the agent's certificate fail
//! within a bound; with no CA given, the system's trust store is used (`SSL_CERT_FILE`
//! points it at our CA here; the bundled roots `elect` used before would not know it).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use elect_consul::ConsulElector;
use elect_core::config::{ConsulConfig, TlsConfig};
use elect_core::{Candidate, Elector};
use elect_test_support::pki::{Ca, Pair};

const HTTPS: &str = "127.0.0.1:18551";

struct Agent(Child);
impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_agent(dir: &Path, ca: &Ca, server: &Pair) -> Agent {
    let config = dir.join("tls.hcl");
    std::fs::write(
        &config,
        format!(
            "ports {{ dns = -1, grpc = -1, http = -1, https = 18551, serf_lan = 18351, serf_wan = 18352, server = 18350 }}\n\
             ca_file = \"{}\"\ncert_file = \"{}\"\nkey_file = \"{}\"\nverify_incoming_https = true\n",
            ca.pem.display(),
            server.cert.display(),
            server.key.display()
        ),
    )
    .unwrap();
    let child = Command::new(elect_test_support::server_bin("consul"))
        .args([
            "agent",
            "-dev",
            "-bind",
            "127.0.0.1",
            "-client",
            "127.0.0.1",
        ])
        .args(["-log-level", "error"])
        .arg(format!("-config-file={}", config.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start a Consul agent with TLS");
    Agent(child)
}

fn config(ca: Option<&Path>, client: Option<&Pair>) -> ConsulConfig {
    let mut config = ConsulConfig::new(vec![HTTPS.parse().unwrap()]);
    config.tls = Some(TlsConfig {
        ca: ca.map(Path::to_path_buf),
        cert: client.map(|p| p.cert.clone()),
        key: client.map(|p| p.key.clone()),
    });
    config
}

#[tokio::test]
async fn mutual_tls_with_a_custom_ca_and_the_system_trust_store() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "consul");
    let server = ca.server("server");
    let client = ca.client("client", "elect");
    let stranger = Ca::new(dir.path(), "stranger");
    let strangers_client = stranger.client("client", "elect");
    let _agent = start_agent(dir.path(), &ca, &server);

    // The right CA and client certificate: a full term (waiting for the agent to come up).
    let good = config(Some(&ca.pem), Some(&client));
    let started = Instant::now();
    let elector = loop {
        match ConsulElector::connect(&good).await {
            Ok(elector) => break elector,
            Err(error) => {
                assert!(
                    started.elapsed() < Duration::from_secs(30),
                    "the TLS agent did not accept us: {error}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    let election = "tls".parse().unwrap();
    let leadership = elector
        .campaign(&election, &Candidate::new("a", "a").unwrap())
        .await
        .unwrap();
    leadership.fenced_put("tls-data", "x").await.unwrap();
    leadership.resign().await.unwrap();
    elector.close().await.unwrap();

    let cases = [
        (config(Some(&ca.pem), None), "no client certificate"),
        (
            config(Some(&ca.pem), Some(&strangers_client)),
            "a client certificate of another CA",
        ),
        (
            config(Some(&stranger.pem), Some(&client)),
            "a CA that did not sign the agent's certificate",
        ),
    ];
    for (config, what) in cases {
        let started = Instant::now();
        let result = ConsulElector::connect(&config).await;
        let took = started.elapsed();
        let message = result.as_ref().err().map(ToString::to_string);
        eprintln!("{what}: after {took:?}: {message:?}");
        let message = message.unwrap_or_else(|| panic!("{what}: connected"));
        assert!(
            message.to_lowercase().contains("certificate"),
            "{what}: the error says what is wrong: {message}"
        );
        assert!(took < Duration::from_secs(10), "{what}: took {took:?}");
    }

    // No CA given: the system's trust store, here pointed at our CA.
    std::env::set_var("SSL_CERT_FILE", &ca.pem);
    let system = ConsulElector::connect(&config(None, Some(&client))).await;
    std::env::remove_var("SSL_CERT_FILE");
    let system = system.expect("no CA given: the system's trust store (SSL_CERT_FILE) is used");
    system.close().await.unwrap();
}
