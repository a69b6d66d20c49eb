//! Connections to the server, on hyper's client connection API: no pool,
//! no lock. HTTP/1.1 carries one request at a time, so each in-flight slot
//! owns one; an HTTP/2 connection (h2c, or gRPC) carries many streams, so
//! the slots of a worker thread share `--h2-connections` of them
//! ([`Shared`]).
//!
//! A gRPC answer's status is its `grpc-status` (in the trailers, or in the
//! headers of a trailers-only answer), not the HTTP status, which is 200
//! for every call the server answered.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{CONTENT_TYPE, HOST, HeaderValue};
use hyper::{HeaderMap, Request, Uri};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

use crate::error::{Error, Result};

/// How requests travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// The V2 REST API over HTTP/1.1.
    Http1,
    /// The V2 REST API over HTTP/2 without TLS, by prior knowledge.
    H2c,
    /// `inference.GRPCInferenceService/ModelInfer`.
    Grpc,
}

impl Protocol {
    pub fn is_http2(self) -> bool {
        self != Protocol::Http1
    }
}

pub enum Connection {
    Http1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    Http2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

/// A response read to its end, so the connection can carry the next request.
pub struct Answer {
    pub status: u16,
    /// A gRPC call's status code, and its message when it failed.
    pub grpc_opt: Option<(u32, Option<String>)>,
    pub split_value_opt: Option<String>,
    pub body: Bytes,
}

impl Connection {
    pub async fn open(uri: &Uri, protocol: Protocol) -> std::io::Result<Connection> {
        let authority = uri
            .authority()
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "URL has no host"))?;
        let port = authority.port_u16().unwrap_or(80);
        // `[::1]` in a URL is `::1` to the resolver.
        let host = authority.host().trim_start_matches('[').trim_end_matches(']');
        let stream = TcpStream::connect((host, port)).await?;
        stream.set_nodelay(true)?;
        let io = TokioIo::new(stream);
        // The connection's I/O runs beside the requests; it ends with the sender.
        if protocol.is_http2() {
            let (sender, connection) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                .await
                .map_err(std::io::Error::other)?;
            tokio::spawn(async move {
                let _ = connection.await;
            });
            return Ok(Connection::Http2(sender));
        }
        let (sender, connection) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(std::io::Error::other)?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Connection::Http1(sender))
    }

    pub fn is_usable(&self) -> bool {
        match self {
            Connection::Http1(sender) => !sender.is_closed(),
            Connection::Http2(sender) => !sender.is_closed(),
        }
    }

    /// Another handle on an HTTP/2 connection (its streams are shared);
    /// `None` for HTTP/1.1, which carries one request at a time.
    fn share(&self) -> Option<Connection> {
        match self {
            Connection::Http1(_) => None,
            Connection::Http2(sender) => Some(Connection::Http2(sender.clone())),
        }
    }

    pub async fn send(
        &mut self,
        request: Request<Full<Bytes>>,
        split_header_opt: Option<&str>,
    ) -> hyper::Result<Answer> {
        let response = match self {
            Connection::Http1(sender) => {
                sender.ready().await?;
                sender.send_request(request).await?
            }
            Connection::Http2(sender) => {
                sender.ready().await?;
                sender.send_request(request).await?
            }
        };
        let status = response.status().as_u16();
        let (parts, body) = response.into_parts();
        let split_value_opt = split_header_opt
            .and_then(|name| parts.headers.get(name))
            .and_then(|value| value.to_str().ok())
            .map(str::to_string);
        let collected = body.collect().await?;
        let grpc_opt = grpc_status(&parts.headers).or_else(|| collected.trailers().and_then(grpc_status));
        Ok(Answer {
            status,
            grpc_opt,
            split_value_opt,
            body: collected.to_bytes(),
        })
    }
}

fn grpc_status(headers: &HeaderMap) -> Option<(u32, Option<String>)> {
    let code = headers.get("grpc-status")?.to_str().ok()?.parse().ok()?;
    let message_opt = headers
        .get("grpc-message")
        .and_then(|value| value.to_str().ok())
        .map(str::to_string);
    Some((code, message_opt))
}

/// The HTTP/2 connections a worker thread's slots share, opened on first
/// use and again when one closes. Each is opened once however many slots
/// ask for it at the same moment: the first opens it, the others wait for
/// it (a closed-model run wakes every slot at its start).
pub struct Shared {
    connections: Vec<tokio::sync::Mutex<Option<Connection>>>,
}

impl Shared {
    pub fn new(count: usize) -> Shared {
        Shared {
            connections: (0..count.max(1)).map(|_| tokio::sync::Mutex::new(None)).collect(),
        }
    }

    /// Connection `slot % count`, opened to `uri` if it is not open, and
    /// whether this call opened it.
    pub async fn get(
        &self,
        slot: usize,
        uri: &Uri,
        protocol: Protocol,
    ) -> std::io::Result<(Connection, bool)> {
        let mut entry = self.connections[slot % self.connections.len()].lock().await;
        if let Some(open) = entry
            .as_ref()
            .filter(|connection| connection.is_usable())
            .and_then(Connection::share)
        {
            return Ok((open, false));
        }
        let connection = Connection::open(uri, protocol).await?;
        *entry = connection.share();
        Ok((connection, true))
    }
}

/// What every request to one URL shares, parsed once before the run: the
/// request path and the `Host` header.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub url: Uri,
    pub protocol: Protocol,
    path: Uri,
    host: HeaderValue,
}

/// The path of every unary inference call.
const MODEL_INFER: &str = "/inference.GRPCInferenceService/ModelInfer";

impl Endpoint {
    pub fn new(url: Uri, protocol: Protocol) -> Endpoint {
        let path = match protocol {
            Protocol::Grpc => MODEL_INFER,
            Protocol::Http1 | Protocol::H2c => url.path_and_query().map_or("/", |p| p.as_str()),
        }
        .parse()
        .expect("a path of a valid URI parses");
        let host = HeaderValue::from_str(url.authority().map_or("", |a| a.as_str()))
            .expect("an authority is a valid header");
        Endpoint {
            url,
            protocol,
            path,
            host,
        }
    }

    /// A POST with the headers a V2 client sends; `header_length_opt` marks
    /// a binary-extension body. Cheap: clones of shared buffers only.
    pub fn post(&self, body: Bytes, header_length_opt: Option<usize>) -> Request<Full<Bytes>> {
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = hyper::Method::POST;
        match self.protocol {
            // HTTP/2 carries the authority in the URI, not in a Host header.
            Protocol::Http1 => {
                *request.uri_mut() = self.path.clone();
                request.headers_mut().insert(HOST, self.host.clone());
            }
            Protocol::H2c | Protocol::Grpc => {
                let mut parts = self.path.clone().into_parts();
                parts.scheme = Some(hyper::http::uri::Scheme::HTTP);
                parts.authority = self.url.authority().cloned();
                *request.uri_mut() = Uri::from_parts(parts).expect("a path and an authority make a URI");
            }
        }
        let headers = request.headers_mut();
        if self.protocol == Protocol::Grpc {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
            headers.insert("te", HeaderValue::from_static("trailers"));
            return request;
        }
        match header_length_opt {
            Some(length) => {
                headers.insert("inference-header-content-length", HeaderValue::from(length));
                headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
            }
            // As curl, requests and KServe's client send it; servers built on
            // FastAPI refuse a JSON body without it (422).
            None => {
                headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            }
        }
        request
    }
}

/// One GET, for model metadata before a run (over HTTP/1.1 always: the
/// REST API answers beside gRPC on Sluice's port, as on Triton's HTTP one).
pub async fn get(uri: &Uri) -> Result<(u16, Bytes)> {
    let mut connection = Connection::open(uri, Protocol::Http1)
        .await
        .map_err(|err| Error::Setup(format!("cannot connect to {uri}: {err}")))?;
    let mut builder = Request::get(uri.path_and_query().map_or("/", |p| p.as_str()));
    if let Some(authority) = uri.authority() {
        builder = builder.header(HOST, authority.as_str());
    }
    let request = builder
        .body(Full::new(Bytes::new()))
        .expect("a GET from a valid URI builds");
    let answer = connection
        .send(request, None)
        .await
        .map_err(|err| Error::Setup(format!("GET {uri} failed: {err}")))?;
    Ok((answer.status, answer.body))
}
