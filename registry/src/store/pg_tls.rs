//! TLS to PostgreSQL (rustls), with libpq's `sslmode` meanings, so the URL
//! a managed database's console hands out works as it is.
//!
//! The driver (`tokio-postgres`) knows `disable`, `prefer` and `require` and
//! refuses the rest; libpq's `verify-ca`, `verify-full`, `sslrootcert`,
//! `sslcert` and `sslkey` are taken out of the URL here and become the TLS
//! client's configuration:
//!
//! | `sslmode`            | encrypted                | server certificate checked         |
//! |----------------------|--------------------------|------------------------------------|
//! | `disable`            | never                    | -                                  |
//! | `allow`, `prefer`    | when the server offers it | no (libpq's meaning)              |
//! | `require`            | always                   | no, unless `sslrootcert` is given  |
//! | `verify-ca`          | always                   | chain, not the host name           |
//! | `verify-full`        | always                   | chain and host name                |
//!
//! The chain is checked against `sslrootcert` (a PEM file), or the
//! system's CAs when it is absent or `system`. The default is `prefer`, as
//! in libpq: a server without TLS is still reached in plain text. SCRAM
//! channel binding is not offered (plain SCRAM-SHA-256 is).

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

use crate::tls::{CertificateCheck, Verifying};

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
/// connector its `sslmode` asks for. Errors say what was expected.
pub fn parse(url: &str) -> Result<(Config, MakeRustls), String> {
    let (base, query_opt) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let mut passed = Vec::new();
    let mut libpq = std::collections::BTreeMap::new();
    for pair in query_opt.into_iter().flat_map(|query| query.split('&')) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if TAKEN.contains(&key) {
            libpq.insert(key, decode(value)?);
        } else if !pair.is_empty() {
            passed.push(pair);
        }
    }
    let mode = libpq.get("sslmode").map_or("prefer", String::as_str);
    let root_opt = libpq.get("sslrootcert").map(String::as_str);
    let (driver_mode, check) = match mode {
        "disable" => ("disable", Check::Nothing),
        "allow" | "prefer" if root_opt.is_some() => ("prefer", Check::Chain),
        "allow" | "prefer" => ("prefer", Check::Nothing),
        // libpq: `require` with a root certificate checks the chain.
        "require" if root_opt.is_some() => ("require", Check::Chain),
        "require" => ("require", Check::Nothing),
        "verify-ca" => ("require", Check::Chain),
        "verify-full" => ("require", Check::Full),
        other => {
            return Err(format!(
                "sslmode={other} is not one of disable, allow, prefer, require, verify-ca, verify-full"
            ));
        }
    };
    passed.push(match driver_mode {
        "disable" => "sslmode=disable",
        "prefer" => "sslmode=prefer",
        _ => "sslmode=require",
    });
    let driver_url = format!("{base}?{}", passed.join("&"));
    let config = driver_url
        .parse::<Config>()
        .map_err(|err| super::sql::describe(&err))?;
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
    let provider = crate::tls::provider();
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
    match client_auth_opt {
        None => Ok(builder.with_no_client_auth()),
        Some((cert, key)) => {
            let chain = certificates(cert)?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|err| format!("sslkey {}: no private key in it: {err}", key.display()))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|err| format!("sslcert and sslkey: {err} (does the key belong to the certificate?)"))
        }
    }
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
    crate::tls::certificates(path, &pem)
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
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<RustlsStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        let connector = tokio_rustls::TlsConnector::from(self.config);
        let host = self.host;
        Box::pin(async move {
            let name = ServerName::try_from(host.clone()).map_err(|err| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{host:?} is not a host name TLS can check: {err}"),
                )
            })?;
            let stream = connector.connect(name, stream).await?;
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
        let (config, _) =
            parse("postgres://u:p%40ss@db:5433/sluice?application_name=x&sslmode=verify-full").unwrap();
        assert_eq!(config.get_ssl_mode(), postgres::config::SslMode::Require);
        assert_eq!(config.get_application_name(), Some("x"));
        assert_eq!(config.get_password(), Some(&b"p@ss"[..]));
        let (plain, _) = parse("postgresql://db/sluice").unwrap();
        assert_eq!(
            plain.get_ssl_mode(),
            postgres::config::SslMode::Prefer,
            "libpq's default"
        );
        let (off, _) = parse("postgres://db/sluice?sslmode=disable").unwrap();
        assert_eq!(off.get_ssl_mode(), postgres::config::SslMode::Disable);
    }

    #[test]
    fn mistakes_say_what_was_expected() {
        let mode = parse("postgres://db/x?sslmode=on").err().unwrap();
        assert!(mode.contains("verify-full"), "{mode}");
        let half = parse("postgres://db/x?sslmode=require&sslcert=/c.pem")
            .err()
            .unwrap();
        assert!(half.contains("go together"), "{half}");
        let missing = parse("postgres://db/x?sslmode=verify-ca&sslrootcert=/nonexistent/ca.pem")
            .err()
            .unwrap();
        assert!(missing.contains("/nonexistent/ca.pem"), "{missing}");
        let escape = parse("postgres://db/x?sslrootcert=%zz").err().unwrap();
        assert!(escape.contains("two hex digits"), "{escape}");
        let unknown = parse("postgres://db/x?colour=blue").err().unwrap();
        assert!(unknown.contains("colour"), "{unknown}");
    }
}
