//! TLS to PostgreSQL (rustls), with libpq's `sslmode` meanings, so the URL
//! a managed database's console hands out works as it is.
//!
//! The driver (`tokio-postgres`) knows `disable`, `prefer` and `require` and
//! refuses the rest; libpq's `verify-ca`, `verify-full`, `sslrootcert`,
//! `sslcert` and `sslkey` are taken out of the URL here and become the TLS
//! client's configuration:
//!
//! | `sslmode`          | encrypted                              | server certificate checked         |
//! |--------------------|----------------------------------------|------------------------------------|
//! | `disable`          | never                                  | -                                  |
//! | `allow`, `prefer`  | if the server offers it and the handshake succeeds, else plain text | the chain if `sslrootcert` is given |
//! | `require`          | always                                 | the chain if `sslrootcert` is given |
//! | `verify-ca`        | always                                 | the chain (`sslrootcert` required), not the host name |
//! | `verify-full`      | always                                 | the chain and the host name        |
//!
//! The chain is checked against `sslrootcert`, a PEM file; `verify-full`
//! without one, or with `sslrootcert=system`, uses the system's CAs (which
//! would let any public certificate through a check without the name, so
//! `system` goes with `verify-full` only, as in libpq). The default is
//! `prefer`, as in libpq. A Unix socket never carries TLS: `require` and
//! above fail there. SCRAM channel binding is not offered (plain
//! SCRAM-SHA-256 is), so `channel_binding=require` is refused.

use std::future::Future;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use postgres::Config;
use postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, RootCertStore};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use sluice_common::tls::{CertificateCheck, Verifying};

/// The URL parameters libpq knows and the driver does not.
const TAKEN: [&str; 4] = ["sslmode", "sslrootcert", "sslcert", "sslkey"];

/// How the server's certificate is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    /// Encrypted, the certificate not checked (libpq's `prefer`, `require`).
    Nothing,
    /// The chain, not the host name (`verify-ca`).
    Chain,
    /// The chain and the host name (`verify-full`).
    Full,
}

/// Parses a `postgres://` URL: the driver's configuration and the TLS
/// connector its `sslmode` asks for. Errors say what was expected, and
/// never repeat the URL (it holds the password).
pub fn parse(url: &str) -> Result<(Config, MakeRustls), String> {
    // The parameters start at the first `?` after the credentials: the
    // driver reads the password up to the first `@`, `?` and all.
    let scheme_end = url.find("://").map_or(0, |at| at + 3);
    let credentials_end = url[scheme_end..]
        .find('@')
        .map_or(scheme_end, |at| scheme_end + at + 1);
    let (base, query) = match url[credentials_end..].find('?') {
        Some(at) => url.split_at(credentials_end + at),
        None => (url, ""),
    };
    let mut passed = Vec::new();
    let mut libpq = std::collections::BTreeMap::new();
    for pair in query
        .trim_start_matches('?')
        .split('&')
        .filter(|pair| !pair.is_empty())
    {
        let (raw_key, value) = pair.split_once('=').unwrap_or((pair, ""));
        // Decoded, as the driver decodes it: `ssl%6Dode` is `sslmode`.
        let key = decode(raw_key)?;
        if TAKEN.contains(&key.as_str()) {
            libpq.insert(key, decode(value)?);
        } else if key == "channel_binding" && decode(value)? == "require" {
            return Err(
                "channel_binding=require: this client offers no SCRAM channel binding; \
                        sslmode=verify-full is what checks the server here"
                    .into(),
            );
        } else {
            passed.push(pair);
        }
    }
    let mode = libpq.get("sslmode").map_or("prefer", String::as_str);
    let root_opt = libpq.get("sslrootcert").map(String::as_str);
    let (driver_mode, check) = match (mode, root_opt) {
        ("disable", _) => ("sslmode=disable", Check::Nothing),
        ("allow" | "prefer" | "require" | "verify-ca", Some("system")) => {
            return Err(format!(
                "sslmode={mode} with sslrootcert=system: any public certificate would pass; \
                 use sslmode=verify-full, or sslrootcert=FILE with your database's CA"
            ));
        }
        // libpq: a root certificate makes `prefer` and `require` check the chain.
        ("allow" | "prefer", Some(_)) => ("sslmode=prefer", Check::Chain),
        ("allow" | "prefer", None) => ("sslmode=prefer", Check::Nothing),
        ("require", Some(_)) => ("sslmode=require", Check::Chain),
        ("require", None) => ("sslmode=require", Check::Nothing),
        ("verify-ca", Some(_)) => ("sslmode=require", Check::Chain),
        ("verify-ca", None) => {
            return Err(
                "sslmode=verify-ca needs sslrootcert=FILE, your database's CA: against the \
                        system's CAs, without the name, any public certificate would pass"
                    .into(),
            );
        }
        ("verify-full", _) => ("sslmode=require", Check::Full),
        (other, _) => {
            return Err(format!(
                "sslmode={other} is not one of disable, allow, prefer, require, verify-ca, verify-full"
            ));
        }
    };
    passed.push(driver_mode);
    let driver_url = format!("{base}?{}", passed.join("&"));
    let mut config = driver_url
        .parse::<Config>()
        .map_err(|err| super::sql::describe(&err))?;
    // TLS needs a name to send and check: with `hostaddr` alone, the
    // address is it (the driver would refuse the handshake otherwise).
    if config.get_hosts().is_empty() {
        for address in config.get_hostaddrs().to_vec() {
            config.host(&address.to_string());
        }
    }
    let client_auth_opt = match (libpq.get("sslcert"), libpq.get("sslkey")) {
        (Some(cert), Some(key)) => Some((Path::new(cert), Path::new(key))),
        (None, None) => None,
        _ => return Err("sslcert and sslkey go together: a client certificate and its key".into()),
    };
    let tls = MakeRustls {
        config: Arc::new(client_config(check, root_opt, client_auth_opt)?),
    };
    Ok((config, tls))
}

/// Whether `err` is a failed TLS handshake (not a refusal of plain text,
/// not a server that offers no TLS): what `prefer` falls back from.
pub fn handshake_failed(err: &postgres::Error) -> bool {
    std::error::Error::source(err).is_some_and(|cause| cause.is::<HandshakeFailed>())
}

/// A TLS handshake with the database that failed.
#[derive(Debug)]
pub struct HandshakeFailed(io::Error);

impl std::fmt::Display for HandshakeFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for HandshakeFailed {}

/// `%XX` escapes in a URL parameter (a path with spaces, say).
fn decode(value: &str) -> Result<String, String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at] == b'%' {
            let hex = value
                .get(at + 1..at + 3)
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                .ok_or_else(|| format!("{value:?}: '%' must be followed by two hex digits"))?;
            out.push(hex);
            at += 3;
        } else {
            out.push(bytes[at]);
            at += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("{value:?} does not decode to UTF-8"))
}

fn client_config(
    check: Check,
    root_opt: Option<&str>,
    client_auth_opt: Option<(&Path, &Path)>,
) -> Result<ClientConfig, String> {
    let provider = sluice_common::tls::provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|err| format!("TLS protocol versions: {err}"))?;
    let webpki_opt = match check {
        Check::Nothing => None,
        Check::Chain | Check::Full => Some(
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots(root_opt)?), provider.clone())
                .build()
                .map_err(|err| format!("the CAs to check the database's certificate against: {err}"))?,
        ),
    };
    let verifier = Arc::new(Verifying {
        check: ModeCheck { check, webpki_opt },
        provider,
    });
    let builder = builder.dangerous().with_custom_certificate_verifier(verifier);
    let mut config = match client_auth_opt {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = certificates(cert)?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|err| format!("sslkey {}: no private key in it: {err}", key.display()))?;
            builder.with_client_auth_cert(chain, key).map_err(|err| {
                format!("sslcert and sslkey: {err} (does the key belong to the certificate?)")
            })?
        }
    };
    // What PostgreSQL 17 expects of a direct TLS connection
    // (`sslnegotiation=direct`); older servers ignore it.
    config.alpn_protocols = vec![b"postgresql".to_vec()];
    Ok(config)
}

/// `sslrootcert`'s CAs, or the system's.
fn roots(root_opt: Option<&str>) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    match root_opt {
        Some(path) if path != "system" => {
            for cert in certificates(Path::new(path))? {
                roots
                    .add(cert)
                    .map_err(|err| format!("sslrootcert {path}: not a CA certificate: {err}"))?;
            }
        }
        _ => {
            let found = rustls_native_certs::load_native_certs();
            if let Some(err) = found.errors.first() {
                tracing::warn!(error = %err, "some of the system's CA certificates could not be read");
            }
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(
                    "the system has no CA certificates to check the database's against: \
                            give sslrootcert=FILE in --metadata"
                        .into(),
                );
            }
        }
    }
    Ok(roots)
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = std::fs::read(path).map_err(|err| format!("{}: {err}", path.display()))?;
    sluice_common::tls::certificates(path, &pem)
}

/// Checks the server's certificate as far as the mode asks (the
/// handshake's signature is checked in every mode: see [`Verifying`]).
#[derive(Debug)]
struct ModeCheck {
    check: Check,
    /// The chain (and name) check; `None` for [`Check::Nothing`].
    webpki_opt: Option<Arc<WebPkiServerVerifier>>,
}

impl CertificateCheck for ModeCheck {
    fn check(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // `prefer` and `require`: encrypted against a passive listener,
        // whoever the server is (libpq's meaning; `verify-full` is the
        // answer to an active one).
        let Some(webpki) = &self.webpki_opt else {
            return Ok(ServerCertVerified::assertion());
        };
        match webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            // `verify-ca`: the names in the certificate are not compared
            // with the host (an address, a proxy). webpki checks the chain
            // first, so a name error means the chain passed.
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if self.check == Check::Chain => Ok(ServerCertVerified::assertion()),
            verified => verified,
        }
    }
}

/// The driver's TLS connector over rustls.
#[derive(Clone)]
pub struct MakeRustls {
    config: Arc<ClientConfig>,
}

impl<S> MakeTlsConnect<S> for MakeRustls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type TlsConnect = RustlsConnect;
    type Error = io::Error;

    /// `host` is empty for a Unix socket, where the server never agrees to
    /// TLS: it is only parsed when a handshake begins.
    fn make_tls_connect(&mut self, host: &str) -> io::Result<RustlsConnect> {
        Ok(RustlsConnect {
            config: self.config.clone(),
            host: host.to_string(),
        })
    }
}

pub struct RustlsConnect {
    config: Arc<ClientConfig>,
    host: String,
}

impl<S> TlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type Error = HandshakeFailed;
    type Future = Pin<Box<dyn Future<Output = Result<RustlsStream<S>, HandshakeFailed>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        let connector = tokio_rustls::TlsConnector::from(self.config);
        let host = self.host;
        Box::pin(async move {
            let name = ServerName::try_from(host.clone()).map_err(|err| {
                HandshakeFailed(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{host:?} is not a host name TLS can check: {err}"),
                ))
            })?;
            let stream = connector.connect(name, stream).await.map_err(HandshakeFailed)?;
            Ok(RustlsStream(Box::new(stream)))
        })
    }
}

/// A TLS connection to the database.
pub struct RustlsStream<S>(Box<tokio_rustls::client::TlsStream<S>>);

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for RustlsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RustlsStream<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream for RustlsStream<S> {
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libpq_parameters_are_taken_out_and_the_rest_passed_on() {
        use postgres::config::SslMode;
        let (config, _) =
            parse("postgres://u:p%40ss@db:5433/sluice?application_name=x&sslmode=verify-full").unwrap();
        assert_eq!(config.get_ssl_mode(), SslMode::Require);
        assert_eq!(config.get_application_name(), Some("x"));
        assert_eq!(config.get_password(), Some(&b"p@ss"[..]));
        let (plain, _) = parse("postgresql://db/sluice").unwrap();
        assert_eq!(plain.get_ssl_mode(), SslMode::Prefer, "libpq's default");
        let (off, _) = parse("postgres://db/sluice?sslmode=disable").unwrap();
        assert_eq!(off.get_ssl_mode(), SslMode::Disable);
        // The driver reads the password up to the first `@`, `?` and all.
        let (question, _) = parse("postgres://u:p?ss@db/x?sslmode=verify-full").unwrap();
        assert_eq!(question.get_password(), Some(&b"p?ss"[..]));
        assert_eq!(question.get_dbname(), Some("x"));
        assert_eq!(question.get_ssl_mode(), SslMode::Require);
        // Keys decode as the driver decodes them: no mode slips past.
        let (encoded, _) = parse("postgres://db/x?ssl%6Dode=verify-full").unwrap();
        assert_eq!(encoded.get_ssl_mode(), SslMode::Require);
        // hostaddr alone: the address is the name TLS sends.
        let (address, _) = parse("postgres:///x?hostaddr=127.0.0.1&sslmode=require").unwrap();
        assert_eq!(address.get_hosts().len(), 1);
    }

    #[test]
    fn mistakes_say_what_was_expected() {
        let refused = |url: &str| parse(url).err().unwrap();
        let mode = refused("postgres://db/x?sslmode=on");
        assert!(mode.contains("verify-full"), "{mode}");
        let half = refused("postgres://db/x?sslmode=require&sslcert=/c.pem");
        assert!(half.contains("go together"), "{half}");
        let missing = refused("postgres://db/x?sslmode=verify-ca&sslrootcert=/nonexistent/ca.pem");
        assert!(missing.contains("/nonexistent/ca.pem"), "{missing}");
        let escape = refused("postgres://db/x?sslrootcert=%zz");
        assert!(escape.contains("two hex digits"), "{escape}");
        let unknown = refused("postgres://db/x?colour=blue");
        assert!(unknown.contains("colour"), "{unknown}");
        // A check that any public certificate would pass is refused.
        let no_ca = refused("postgres://db/x?sslmode=verify-ca");
        assert!(no_ca.contains("needs sslrootcert"), "{no_ca}");
        let system = refused("postgres://db/x?sslmode=require&sslrootcert=system");
        assert!(system.contains("verify-full"), "{system}");
        let binding = refused("postgres://db/x?channel_binding=require");
        assert!(binding.contains("channel binding"), "{binding}");
        // Nothing said repeats the URL's password.
        for url in [
            "postgres://u:secret@db/x?sslmode=on",
            "postgres://u:secret@db/x?port=none",
        ] {
            assert!(!refused(url).contains("secret"), "{}", refused(url));
        }
    }
}
