//! Issue 14, item 8: https to a Consul agent of our own that requires client certificates
//! (`verify_incoming_https`), with a CA made here. The right CA and certificate lead; no
//! certificate, one of another CA, or a CA that did not sign the agent's certificate fail
//! within a bound; with no CA given, the system's trust store is used (`SSL_CERT_FILE`
//! points it at our CA here; the bundled roots `elect` used before would not know it).

use std::path::Path;

use elect_consul::ConsulElector;
use elect_core::config::ConsulConfig;
use elect_core::testkit::tls_cases;
use elect_test_support::pki::{Ca, Pair};
use elect_test_support::process::KillOnDrop;

const HTTPS: &str = "127.0.0.1:18551";

fn start_agent(dir: &Path, ca: &Ca, server: &Pair) -> KillOnDrop {
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
    elect_test_support::consul_dev_agent(&config, "with TLS")
}

#[tokio::test]
async fn mutual_tls_with_a_custom_ca_and_the_system_trust_store() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "consul");
    let _agent = start_agent(dir.path(), &ca, &ca.server("server"));
    let files = ca.tls_files(dir.path());
    tls_cases(&files, "certificate", |tls| async move {
        let mut config = ConsulConfig::new(vec![HTTPS.parse().unwrap()]);
        config.tls = Some(tls);
        ConsulElector::connect(&config).await
    })
    .await;
}
