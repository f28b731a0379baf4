//! Certificates made by the tests: a CA, server certificates for 127.0.0.1 and client
//! certificates signed by it, written as PEM files.

use std::path::{Path, PathBuf};

use elect_core::testkit::TlsFiles;
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};

/// A certificate authority whose certificate is `dir/<name>-ca.pem`.
pub struct Ca {
    cert: Certificate,
    key: KeyPair,
    /// The CA certificate's PEM file.
    pub pem: PathBuf,
    dir: PathBuf,
    name: String,
}

/// A certificate and its key, as PEM files.
#[derive(Debug, Clone)]
pub struct Pair {
    /// The certificate.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
}

impl Ca {
    /// A new CA named `name`, its files in `dir`.
    pub fn new(dir: &Path, name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let pem = dir.join(format!("{name}-ca.pem"));
        std::fs::write(&pem, cert.pem()).unwrap();
        Ca {
            cert,
            key,
            pem,
            dir: dir.to_path_buf(),
            name: name.to_owned(),
        }
    }

    /// A server certificate for 127.0.0.1 and localhost.
    pub fn server(&self, name: &str) -> Pair {
        let params =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
        self.sign(name, params)
    }

    /// A client certificate whose common name is `common_name`.
    pub fn client(&self, name: &str, common_name: &str) -> Pair {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(name, params)
    }

    /// The files of `elect_core::testkit::tls_cases`: this CA, a client of it, and a stranger
    /// CA (made in `dir`) with a client of its own.
    pub fn tls_files(&self, dir: &Path) -> TlsFiles {
        let client = self.client("client", "root");
        let stranger = Ca::new(dir, &format!("{}-stranger", self.name));
        let strangers_client = stranger.client("client", "root");
        TlsFiles {
            ca: self.pem.clone(),
            stranger_ca: stranger.pem,
            client: (client.cert, client.key),
            strangers_client: (strangers_client.cert, strangers_client.key),
        }
    }

    fn sign(&self, name: &str, params: CertificateParams) -> Pair {
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        let pair = Pair {
            cert: self.dir.join(format!("{}-{name}.pem", self.name)),
            key: self.dir.join(format!("{}-{name}-key.pem", self.name)),
        };
        std::fs::write(&pair.cert, cert.pem()).unwrap();
        std::fs::write(&pair.key, key.serialize_pem()).unwrap();
        pair
    }
}
