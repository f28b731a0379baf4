//! Issue 14, item 8: ZooKeeper over TLS. A standalone server of our own listens only on a
//! `secureClientPort` (Netty, PEM key and trust stores made here) and requires client
//! certificates. The right CA and certificate lead; no certificate, one of another CA, or a CA
//! that did not sign the server's certificate fail within a bound; with no CA given, the
//! system's trust store is used (`SSL_CERT_FILE` points it at our CA here).

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use elect_core::config::ZookeeperConfig;
use elect_core::testkit::tls_cases;
use elect_test_support::pki::{Ca, Pair};
use elect_test_support::process::KillOnDrop;
use elect_zookeeper::ZookeeperElector;

const SECURE: &str = "127.0.0.1:12281";

fn start_server(dir: &Path, ca: &Ca, server: &Pair) -> KillOnDrop {
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
    KillOnDrop(child)
}

#[tokio::test]
async fn tls_with_client_certificates_and_the_system_trust_store() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "zk");
    let _server = start_server(dir.path(), &ca, &ca.server("server"));
    let files = ca.tls_files(dir.path());
    tls_cases(&files, "TLS", |tls| async move {
        let mut config = ZookeeperConfig::new(vec![SECURE.parse().unwrap()]);
        config.session_timeout = Duration::from_secs(4);
        config.tls = Some(tls);
        ZookeeperElector::connect(&config).await
    })
    .await;
}
