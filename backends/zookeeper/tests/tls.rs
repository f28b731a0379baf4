//! Issue 14, item 8: ZooKeeper over TLS. A standalone server of our own listens only on a
//! `secureClientPort` (Netty, PEM key and trust stores made here) and requires client
//! certificates. The right CA and certificate lead; no certificate, one of another CA, or a CA
//! that did not sign the server's certificate fail within a bound; with no CA given, the
//! system's trust store is used (`SSL_CERT_FILE` points it at our CA here).

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use elect_core::config::{TlsConfig, ZookeeperConfig};
use elect_core::{Candidate, Elector};
use elect_test_support::pki::{Ca, Pair};
use elect_zookeeper::ZookeeperElector;

const SECURE: &str = "127.0.0.1:12281";

struct Server(Child);
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_server(dir: &Path, ca: &Ca, server: &Pair) -> Server {
    // ZooKeeper's PEM key store holds the key and the certificate in one file.
    let bundle = dir.join("server-bundle.pem");
    let key = std::fs::read_to_string(&server.key).unwrap();
    let cert = std::fs::read_to_string(&server.cert).unwrap();
    std::fs::write(&bundle, format!("{key}{cert}")).unwrap();
    let config = dir.join("zoo.cfg");
    std::fs::write(
        &config,
        format!(
            "tickTime=500\ndataDir={}\nsecureClientPort=12281\nadmin.enableServer=false\n",
            dir.join("data").display()
        ),
    )
    .unwrap();
    let properties = [
        (
            "zookeeper.serverCnxnFactory",
            "org.apache.zookeeper.server.NettyServerCnxnFactory".to_owned(),
        ),
        (
            "zookeeper.authProvider.x509",
            "org.apache.zookeeper.server.auth.X509AuthenticationProvider".to_owned(),
        ),
        (
            "zookeeper.ssl.keyStore.location",
            bundle.display().to_string(),
        ),
        ("zookeeper.ssl.keyStore.type", "PEM".to_owned()),
        (
            "zookeeper.ssl.trustStore.location",
            ca.pem.display().to_string(),
        ),
        ("zookeeper.ssl.trustStore.type", "PEM".to_owned()),
        ("zookeeper.ssl.clientAuth", "need".to_owned()),
    ];
    let mut java = elect_test_support::zookeeper_java();
    for (key, value) in properties {
        java.arg(format!("-D{key}={value}"));
    }
    let child = java
        .arg("org.apache.zookeeper.server.quorum.QuorumPeerMain")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start ZooKeeper (java)");
    Server(child)
}

fn config(ca: Option<&Path>, client: Option<&Pair>) -> ZookeeperConfig {
    let mut config = ZookeeperConfig::new(vec![SECURE.parse().unwrap()]);
    config.session_timeout = Duration::from_secs(4);
    config.tls = Some(TlsConfig {
        ca: ca.map(Path::to_path_buf),
        cert: client.map(|p| p.cert.clone()),
        key: client.map(|p| p.key.clone()),
    });
    config
}

#[tokio::test]
async fn tls_with_client_certificates_and_the_system_trust_store() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "zk");
    let server = ca.server("server");
    let client = ca.client("client", "elect");
    let stranger = Ca::new(dir.path(), "stranger");
    let strangers_client = stranger.client("client", "elect");
    let _server = start_server(dir.path(), &ca, &server);

    // The right CA and client certificate: a full term (waiting for the server to come up).
    let good = config(Some(&ca.pem), Some(&client));
    let started = Instant::now();
    let elector = loop {
        match ZookeeperElector::connect(&good).await {
            Ok(elector) => break elector,
            Err(error) => {
                assert!(
                    started.elapsed() < Duration::from_secs(60),
                    "the TLS server did not accept us: {error}"
                );
                tokio::time::sleep(Duration::from_millis(250)).await;
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
            "a CA that did not sign the server's certificate",
        ),
    ];
    for (config, what) in cases {
        let started = Instant::now();
        let result = ZookeeperElector::connect(&config).await;
        let took = started.elapsed();
        let message = result.as_ref().err().map(ToString::to_string);
        eprintln!("{what}: after {took:?}: {message:?}");
        let message = message.unwrap_or_else(|| panic!("{what}: connected"));
        assert!(
            message.contains("TLS"),
            "{what}: the error says where to look: {message}"
        );
        assert!(took < Duration::from_secs(10), "{what}: took {took:?}");
    }

    // No CA given: the system's trust store, here pointed at our CA.
    std::env::set_var("SSL_CERT_FILE", &ca.pem);
    let system = ZookeeperElector::connect(&config(None, Some(&client))).await;
    std::env::remove_var("SSL_CERT_FILE");
    let system = system.expect("no CA given: the system's trust store (SSL_CERT_FILE) is used");
    system.close().await.unwrap();
}
