//! A throwaway PKI for the TLS tests: CAs, and server and client
//! certificates they sign, written as PEM files the way an operator (or
//! cert-manager) would hand them to Sluice.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose};

/// A certificate authority.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate and its key, as PEM files.
pub struct Issued {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("a CA key");
        TestCa {
            issuer: CertifiedIssuer::self_signed(params, key).expect("a self-signed CA"),
        }
    }

    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// The CA's certificate as a PEM file in `dir`.
    pub fn write(&self, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, self.pem()).expect("writing the CA");
        path
    }

    /// A certificate for `names` (DNS names or IP addresses), signed by
    /// this CA, written as `{stem}.crt` and `{stem}.key` in `dir`.
    pub fn issue(&self, dir: &Path, stem: &str, names: &[&str]) -> Issued {
        let names: Vec<String> = names.iter().map(|name| name.to_string()).collect();
        let mut params = CertificateParams::new(names).expect("certificate params");
        params.distinguished_name.push(DnType::CommonName, stem);
        let key = KeyPair::generate().expect("a key");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("signing a certificate");
        let issued = Issued {
            cert: dir.join(format!("{stem}.crt")),
            key: dir.join(format!("{stem}.key")),
        };
        // The key first, each written aside and renamed: a server reloading
        // meanwhile sees the old pair, a mismatched one for a tick at
        // worst, never half a file.
        replace(&issued.key, &key.serialize_pem());
        replace(&issued.cert, &cert.pem());
        issued
    }

    /// A reqwest client that trusts this CA only.
    pub fn client(&self) -> reqwest::Client {
        self.client_builder().build().expect("a TLS client")
    }

    pub fn client_builder(&self) -> reqwest::ClientBuilder {
        let cert = reqwest::Certificate::from_pem(self.pem().as_bytes()).expect("the CA as PEM");
        reqwest::Client::builder().no_proxy().tls_certs_only([cert])
    }
}

fn replace(path: &Path, contents: &str) {
    let aside = path.with_extension("new");
    std::fs::write(&aside, contents).expect("writing a PEM file");
    std::fs::rename(&aside, path).expect("renaming a PEM file");
}
