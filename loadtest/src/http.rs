//! One keep-alive HTTP/1.1 connection per in-flight slot, on hyper's client
//! connection API: no pool, no lock, nothing shared between connections.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Request, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::error::{Error, Result};

pub struct Connection {
    sender: SendRequest<Full<Bytes>>,
}

/// A response read to its end, so the connection can carry the next request.
pub struct Answer {
    pub status: u16,
    pub split_value_opt: Option<String>,
    pub body: Bytes,
}

impl Connection {
    pub async fn open(uri: &Uri) -> std::io::Result<Connection> {
        let authority = uri
            .authority()
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "URL has no host"))?;
        let port = authority.port_u16().unwrap_or(80);
        // `[::1]` in a URL is `::1` to the resolver.
        let host = authority.host().trim_start_matches('[').trim_end_matches(']');
        let stream = TcpStream::connect((host, port)).await?;
        stream.set_nodelay(true)?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(std::io::Error::other)?;
        // The connection's I/O runs beside the requests; it ends with the sender.
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Connection { sender })
    }

    pub fn is_usable(&self) -> bool {
        !self.sender.is_closed()
    }

    pub async fn send(
        &mut self,
        request: Request<Full<Bytes>>,
        split_header_opt: Option<&str>,
    ) -> hyper::Result<Answer> {
        self.sender.ready().await?;
        let response = self.sender.send_request(request).await?;
        let status = response.status().as_u16();
        let split_value_opt = split_header_opt
            .and_then(|name| response.headers().get(name))
            .and_then(|value| value.to_str().ok())
            .map(str::to_string);
        let body = response.into_body().collect().await?.to_bytes();
        Ok(Answer {
            status,
            split_value_opt,
            body,
        })
    }
}

/// What every request to one URL shares, parsed once before the run: the
/// request path and the `Host` header.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub url: Uri,
    path: Uri,
    host: HeaderValue,
}

impl Endpoint {
    pub fn new(url: Uri) -> Endpoint {
        let path = url
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .parse()
            .expect("a path of a valid URI parses");
        let host = HeaderValue::from_str(url.authority().map_or("", |a| a.as_str()))
            .expect("an authority is a valid header");
        Endpoint { url, path, host }
    }

    /// A POST with the headers a V2 client sends; `header_length_opt` marks
    /// a binary-extension body. Cheap: clones of shared buffers only.
    pub fn post(&self, body: Bytes, header_length_opt: Option<usize>) -> Request<Full<Bytes>> {
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = hyper::Method::POST;
        *request.uri_mut() = self.path.clone();
        let headers = request.headers_mut();
        headers.insert(HOST, self.host.clone());
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

/// One GET, for model metadata before a run.
pub async fn get(uri: &Uri) -> Result<(u16, Bytes)> {
    let mut connection = Connection::open(uri)
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
