//! TLS on both listeners (rustls), with the certificate reloaded from disk
//! while serving and, for the admin API, optional client certificates
//! (mutual TLS).
//!
//! Certificates rotate under a running process (cert-manager renews a
//! Kubernetes Secret, the kubelet swaps the mounted files): [`Tls::watch`]
//! re-reads the files every few seconds and swaps the new config in when
//! they changed and parse. A broken renewal is logged and counted, and the
//! old certificate keeps serving: a bad file must not take the listener
//! down. Each connection takes the config current at its accept, one
//! `ArcSwap` load; a reload never touches connections already open.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

/// How often certificate files are read again.
pub const DEFAULT_RELOAD_INTERVAL: Duration = Duration::from_secs(10);

/// The files a TLS listener is configured from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM: the server's certificate, then its chain.
    pub cert: PathBuf,
    /// PEM: the certificate's private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM: the CAs a client certificate must chain to. Set, every client
    /// must present one (mutual TLS); unset, none is asked for.
    pub client_ca_opt: Option<PathBuf>,
    /// How often the files are read again for a renewed certificate.
    pub reload_interval: Duration,
}

/// A listener's TLS: the current server config and the files behind it.
#[derive(Debug)]
pub struct Tls {
    files: TlsFiles,
    /// Offer HTTP/2 (`h2`) by ALPN before HTTP/1.1: the predict API's gRPC.
    http2: bool,
    current: ArcSwap<Loaded>,
    /// The hash of the files' bytes last loaded (or last refused), so an
    /// unchanged file is not parsed again and a broken one is logged once.
    seen: Mutex<[u8; 32]>,
}

#[derive(Debug)]
struct Loaded {
    config: Arc<ServerConfig>,
    /// The leaf certificate, for the in-process clients that pin it.
    leaf: CertificateDer<'static>,
    /// The one it replaced, still pinned for connections accepted before.
    previous_leaf_opt: Option<CertificateDer<'static>>,
}

impl Tls {
    /// Reads and checks the files: a missing or malformed file, or a key
    /// that does not match the certificate, is an error naming the file.
    pub fn load(files: TlsFiles) -> Result<Arc<Tls>, String> {
        Tls::load_offering(files, false)
    }

    /// As [`Tls::load`], offering HTTP/2 by ALPN when `http2`.
    pub fn load_offering(files: TlsFiles, http2: bool) -> Result<Arc<Tls>, String> {
        let bytes = FileBytes::read(&files)?;
        let loaded = parse(&files, &bytes, http2)?;
        Ok(Arc::new(Tls {
            files,
            http2,
            current: ArcSwap::from_pointee(loaded),
            seen: Mutex::new(bytes.digest),
        }))
    }

    /// The acceptor for one new connection, with the current certificate.
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.current.load().config.clone())
    }

    /// Reads the files again; swaps the config in if they changed and are
    /// valid. `Ok(true)`: a new certificate serves from the next connection.
    pub fn reload(&self) -> Result<bool, String> {
        let files = FileBytes::read(&self.files)?;
        let mut seen = self.seen.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if *seen == files.digest {
            return Ok(false);
        }
        // Refused or not, these bytes are seen: a broken renewal is
        // reported once, not at every tick until someone fixes it.
        *seen = files.digest;
        let mut loaded = parse(&self.files, &files, self.http2)?;
        // A client pinning the certificate may have verified against the
        // one its connection was accepted with, just before the swap.
        loaded.previous_leaf_opt = Some(self.current.load().leaf.clone());
        self.current.store(Arc::new(loaded));
        Ok(true)
    }

    /// Reloads every `reload_interval` until `stop` turns true.
    pub async fn watch(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut ticks = tokio::time::interval(self.files.reload_interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = stop.wait_for(|stopped| *stopped) => return,
            }
            let tls = self.clone();
            let reloaded = tokio::task::spawn_blocking(move || tls.reload()).await;
            match reloaded {
                Ok(Ok(false)) => {}
                Ok(Ok(true)) => {
                    metrics::counter!("sluice_tls_reloads_total", "result" => "ok").increment(1);
                    tracing::info!(cert = %self.files.cert.display(), "TLS certificate reloaded");
                }
                Ok(Err(err)) => {
                    metrics::counter!("sluice_tls_reloads_total", "result" => "error").increment(1);
                    tracing::error!(error = %err, "TLS certificate not reloaded: the previous one keeps serving");
                }
                Err(err) => tracing::error!(error = %err, "TLS reload task failed"),
            }
        }
    }

    /// A client config for this process's own clients of this listener
    /// (the embedded gateway following its registry over loopback): it
    /// trusts exactly the certificate the listener serves now, whatever
    /// names it carries, since `127.0.0.1` is rarely one of them.
    pub fn loopback_client_config(self: &Arc<Self>) -> ClientConfig {
        let provider = provider();
        ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("the default provider supports the default protocol versions")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Verifying {
                check: Pinned { tls: self.clone() },
                provider,
            }))
            .with_no_client_auth()
    }
}

pub fn describe() {
    metrics::describe_counter!(
        "sluice_tls_reloads_total",
        "Certificate reloads from disk, by result (ok, error: the previous certificate keeps serving)"
    );
    metrics::describe_counter!(
        "sluice_tls_handshake_failures_total",
        "TLS handshakes that failed or timed out (a client without a valid certificate under mutual TLS, a plain-HTTP client)"
    );
}

/// The one crypto provider of every listener and client (aws-lc-rs).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The files' bytes, read once: what is hashed is what is parsed.
struct FileBytes {
    cert: Vec<u8>,
    key: Vec<u8>,
    client_ca_opt: Option<Vec<u8>>,
    digest: [u8; 32],
}

impl FileBytes {
    fn read(files: &TlsFiles) -> Result<FileBytes, String> {
        let read = |path: &Path| std::fs::read(path).map_err(|err| format!("{}: {err}", path.display()));
        let cert = read(&files.cert)?;
        let key = read(&files.key)?;
        let client_ca_opt = files.client_ca_opt.as_deref().map(read).transpose()?;
        let mut hasher = Sha256::new();
        for bytes in [Some(&cert), Some(&key), client_ca_opt.as_ref()]
            .into_iter()
            .flatten()
        {
            hasher.update((bytes.len() as u64).to_le_bytes());
            hasher.update(bytes);
        }
        Ok(FileBytes {
            cert,
            key,
            client_ca_opt,
            digest: hasher.finalize().into(),
        })
    }
}

fn parse(files: &TlsFiles, bytes: &FileBytes, http2: bool) -> Result<Loaded, String> {
    let chain = certificates(&files.cert, &bytes.cert)?;
    let key = PrivateKeyDer::from_pem_slice(&bytes.key).map_err(|err| {
        format!(
            "{}: no private key (expected a PEM 'PRIVATE KEY', 'RSA PRIVATE KEY' or 'EC PRIVATE KEY'): {err}",
            files.key.display()
        )
    })?;
    let provider = provider();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|err| format!("TLS protocol versions: {err}"))?;
    let builder = match (&files.client_ca_opt, &bytes.client_ca_opt) {
        (Some(path), Some(pem)) => {
            let mut roots = RootCertStore::empty();
            for cert in certificates(path, pem)? {
                roots
                    .add(cert)
                    .map_err(|err| format!("{}: not a CA certificate: {err}", path.display()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|err| format!("{}: {err}", path.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
        _ => builder.with_no_client_auth(),
    };
    let leaf = chain[0].clone();
    let mut config = builder.with_single_cert(chain, key).map_err(|err| {
        format!(
            "{} and {}: {err} (does the key belong to the certificate?)",
            files.cert.display(),
            files.key.display()
        )
    })?;
    config.alpn_protocols = match http2 {
        true => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        false => vec![b"http/1.1".to_vec()],
    };
    Ok(Loaded {
        config: Arc::new(config),
        leaf,
        previous_leaf_opt: None,
    })
}

/// The PEM certificates in `pem` (read from `path`), at least one.
pub fn certificates(path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let chain = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| format!("{}: {err}", path.display()))?;
    if chain.is_empty() {
        return Err(format!("{}: no PEM 'CERTIFICATE' in it", path.display()));
    }
    Ok(chain)
}

/// Trusts the one certificate its listener serves now (see
/// [`Tls::loopback_client_config`]); signatures are still checked, so only
/// the holder of that certificate's key passes.
#[derive(Debug)]
struct Pinned {
    tls: Arc<Tls>,
}

impl CertificateCheck for Pinned {
    fn check(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let loaded = self.tls.current.load();
        let mut pinned = std::iter::once(&loaded.leaf).chain(&loaded.previous_leaf_opt);
        if pinned.any(|leaf| leaf.as_ref() == end_entity.as_ref()) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(
                "not the certificate this process serves".into(),
            ))
        }
    }
}

/// How a [`Verifying`] client decides about the server's certificate.
pub trait CertificateCheck: std::fmt::Debug + Send + Sync {
    fn check(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error>;
}

/// A client's server-certificate verifier that decides about the
/// certificate with its own [`CertificateCheck`]. The handshake's signature
/// is checked as always: whoever presents a certificate holds its key.
#[derive(Debug)]
pub struct Verifying<C> {
    pub check: C,
    pub provider: Arc<CryptoProvider>,
}

impl<C: CertificateCheck> ServerCertVerifier for Verifying<C> {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.check
            .check(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
