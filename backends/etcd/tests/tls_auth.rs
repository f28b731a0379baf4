//! TLS and authentication: etcd members of our own, started with client TLS (certificates
//! made here) and with auth enabled, or requiring client certificates; `elect` connects with
//! the CA and a password, or with a client certificate, and the wrong or missing credentials
//! are clear errors, never hangs.

mod support;

use std::path::{Path, PathBuf};

use elect_test_support::server_bin;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use elect_core::config::{EtcdConfig, TlsConfig};
use elect_core::testkit::{assert_refused_at_once, campaign_as};
use elect_core::Elector;
use elect_etcd::EtcdElector;
use elect_test_support::pki::Ca;
use elect_test_support::process::KillOnDrop;

const CLIENT: &str = "127.0.0.1:23790";
const PEER: &str = "127.0.0.1:23800";
/// The member that requires client certificates.
const MTLS_CLIENT: &str = "127.0.0.1:23791";
const MTLS_PEER: &str = "127.0.0.1:23801";

/// A CA, and a server certificate for 127.0.0.1 signed by it: (ca, cert, key) PEM files.
fn make_certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let ca = Ca::new(dir, "etcd");
    let server = ca.server("server");
    (ca.pem, server.cert, server.key)
}

fn etcdctl(ca: &Path, user: Option<&str>, args: &[&str]) -> std::process::Output {
    let mut command = Command::new(server_bin("etcdctl"));
    command
        .arg(format!("--endpoints=https://{CLIENT}"))
        .arg(format!("--cacert={}", ca.display()));
    if let Some(user) = user {
        command.arg(format!("--user={user}"));
    }
    command.args(args).output().expect("run etcdctl")
}

/// An etcd member serving TLS on `client` with `cert`/`key`, plus `extra` flags.
fn spawn_member(
    dir: &Path,
    (client, peer): (&str, &str),
    (cert, key): (&Path, &Path),
    extra: &[String],
) -> KillOnDrop {
    let child = Command::new(server_bin("etcd"))
        .args(["--name", "tls", "--log-level", "error"])
        .arg(format!(
            "--data-dir={}",
            dir.join(format!("data-{client}")).display()
        ))
        .arg(format!("--listen-client-urls=https://{client}"))
        .arg(format!("--advertise-client-urls=https://{client}"))
        .arg(format!("--listen-peer-urls=http://{peer}"))
        .arg(format!("--initial-advertise-peer-urls=http://{peer}"))
        .arg(format!("--initial-cluster=tls=http://{peer}"))
        .arg(format!("--cert-file={}", cert.display()))
        .arg(format!("--key-file={}", key.display()))
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start etcd");
    KillOnDrop(child)
}

fn start_member(dir: &Path, ca: &Path, cert: &Path, key: &Path) -> KillOnDrop {
    let member = spawn_member(dir, (CLIENT, PEER), (cert, key), &[]);
    let started = Instant::now();
    while !etcdctl(ca, None, &["endpoint", "health"]).status.success() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the TLS member did not become healthy"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    for args in [
        &["user", "add", "root:root-pw"][..],
        &["user", "add", "nobody:nobody-pw"][..],
        &["auth", "enable"][..],
    ] {
        let out = etcdctl(ca, None, args);
        assert!(
            out.status.success(),
            "etcdctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    member
}

fn config(ca: Option<&Path>, user: Option<(&str, &str)>) -> EtcdConfig {
    let mut config = EtcdConfig::new(vec![CLIENT.parse().unwrap()]);
    config.ttl = Duration::from_secs(2);
    config.tls = ca.map(TlsConfig::with_ca);
    if let Some((name, password)) = user {
        config.username = Some(name.to_owned());
        config.password = Some(password.into());
    }
    config
}

#[tokio::test]
async fn tls_and_password_auth() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = make_certificates(dir.path());
    let _member = start_member(dir.path(), &ca, &cert, &key);

    // The right CA and password: a full term.
    let elector = EtcdElector::connect(&config(Some(&ca), Some(("root", "root-pw"))))
        .await
        .expect("connect with TLS and a password");
    let debug = format!("{elector:?}");
    assert!(!debug.contains("root-pw"), "{debug}");
    let election = "secure".parse().unwrap();
    let leadership = campaign_as(&elector, &election, "a").await;
    assert_eq!(
        elector.leader(&election).await.unwrap().unwrap().token,
        leadership.token()
    );
    leadership.fenced_put("secure-data", "x").await.unwrap();
    leadership.resign().await.unwrap();
    elector.close().await.unwrap();

    // Wrong password, no user, a user without a role: permission errors, at once.
    let cases: [(Option<(&str, &str)>, &str); 3] = [
        (Some(("root", "wrong")), "wrong password"),
        (None, "no user"),
        (Some(("nobody", "nobody-pw")), "a user without a role"),
    ];
    for (user, what) in cases {
        assert_refused_at_once(what, EtcdElector::connect(&config(Some(&ca), user))).await;
    }

    // Plain HTTP/2 against a TLS listener, or TLS without our CA: the cluster is unreachable.
    for (tls, what) in [
        (None, "no TLS"),
        (Some(cert.clone()), "the server's own certificate as CA"),
    ] {
        let mut bad = config(None, Some(("root", "root-pw")));
        if let Some(path) = tls {
            bad.tls = Some(TlsConfig::with_ca(path));
        }
        let result = EtcdElector::connect(&bad).await;
        assert!(result.is_err(), "{what}: connected");
        eprintln!("{what}: {}", result.unwrap_err());
    }
}

/// Issue 14, item 8: etcd with client-certificate authentication (`--client-cert-auth`).
#[tokio::test]
async fn client_certificate_authentication() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "mtls");
    let server = ca.server("server");
    let _member = spawn_member(
        dir.path(),
        (MTLS_CLIENT, MTLS_PEER),
        (&server.cert, &server.key),
        &[
            "--client-cert-auth".to_owned(),
            format!("--trusted-ca-file={}", ca.pem.display()),
        ],
    );
    let files = ca.tls_files(dir.path());
    elect_core::testkit::tls_cases(&files, "TLS", |tls| async move {
        let mut config = EtcdConfig::new(vec![MTLS_CLIENT.parse().unwrap()]);
        config.ttl = Duration::from_secs(2);
        config.tls = Some(tls);
        EtcdElector::connect(&config).await
    })
    .await;
}
