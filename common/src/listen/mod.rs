//! The accept loop of both listeners (the registry's API and the gateway's
//! predict API): HTTP/1.1 connections (and HTTP/2 where the limits ask
//! for it: gRPC and h2c on the predict API, told apart by [`sniff`]) with a
//! header read timeout, a bound
//! on request heads, a bound on connections ([`connections`]), JSON for the
//! errors hyper answers itself and a bound on stalled writes ([`stream`]),
//! and a graceful drain at shutdown.
//!
//! `axum::serve` has none of these knobs: it runs hyper without a timer,
//! which turns hyper's header timeout off. hyper starts that timer when it
//! waits for a request's head, so it is also how long an idle keep-alive
//! connection stays open: keep it above the idle timeout of the proxies in
//! front (60 s for most), or they will reuse connections this side closed.
//!
//! Connections are tasks of this loop's own set: when the caller gives up
//! on the drain and drops (aborts) the loop, every connection still open
//! is cut with it, instead of running on unseen.
//!
//! With [`Tls`], each connection's handshake runs in its own task, bounded
//! by the same header read timeout: a client that stalls mid-handshake is
//! a slow loris too, and must not hold the accept loop.

pub mod connections;
pub mod sniff;
pub mod stream;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tower::ServiceExt;

use connections::{Busy, ConnectionState, ConnectionTable, EVICTION_GRACE, Slot};
pub use connections::{ConnectionLimits, Http2Limits};
use stream::Guarded;

use crate::tls::Tls;

/// How long in-flight requests may finish at shutdown once the listener is
/// closed, on both listeners: inside Kubernetes' 30 s grace period.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(20);

/// How long a client may take to send a request body (the registry: an
/// upload may go this long without a byte).
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves `app` on `listener` until `stop` turns true; then closes the
/// listener (new connections are refused), lets every open connection
/// finish its request in flight, and returns once all have closed. With
/// `tls_opt`, speaks HTTPS only, and reloads the certificate while serving.
/// `name` labels the listener's connection metrics (`predict`, `admin`).
pub async fn serve(
    listener: TcpListener,
    name: &'static str,
    app: Router,
    tls_opt: Option<Arc<Tls>>,
    limits: ConnectionLimits,
    mut stop: watch::Receiver<bool>,
) {
    if let Some(tls) = &tls_opt {
        tokio::spawn(tls.clone().watch(stop.clone()));
    }
    let builder = Builders::new(&limits);
    let table = ConnectionTable::new(name, limits);
    let connection_stop = stop.clone();
    // The watch's guard must not live across an await of this task.
    let stopped = async move {
        let _ = stop.wait_for(|stopped| *stopped).await;
    };
    tokio::pin!(stopped);
    let mut connections = JoinSet::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                // The client gave up before we accepted: nothing to do.
                Err(err) if is_connection_error(&err) => continue,
                Err(err) => {
                    // Out of file descriptors, say: keep serving the open
                    // connections, and try again once some may have closed.
                    tracing::error!(error = %err, listener = name, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            },
            () = &mut stopped => break,
        };
        let slot = match table.admit(peer.ip()) {
            Ok(slot) => slot,
            Err(refusal) => {
                tracing::debug!(listener = name, peer = %peer, ?refusal, "connection refused");
                table.refuse(stream, refusal, tls_opt.is_some());
                continue;
            }
        };
        // Answers are small and latency matters more than packet count.
        let _ = stream.set_nodelay(true);
        let (builder, app, stop) = (builder.clone(), app.clone(), connection_stop.clone());
        let (state, max_header_bytes, stall) = (
            slot.state.clone(),
            limits.max_header_bytes,
            limits.header_read_timeout,
        );
        match &tls_opt {
            None => {
                let stream = Guarded::new(stream, state, max_header_bytes, stall);
                connections.spawn(serve_connection(builder, stream, app, slot, stop))
            }
            Some(tls) => {
                let acceptor = tls.acceptor();
                let timeout = limits.header_read_timeout;
                // A connection that never finishes its handshake (a port
                // scanner, a load balancer's pre-connect) must not hold a
                // shutdown for the whole drain, nor its descriptor once the
                // table asks it to close: it is dropped then.
                let mut stopping = stop.clone();
                connections.spawn(async move {
                    let handshake = tokio::time::timeout(timeout, acceptor.accept(stream));
                    let handshaken = tokio::select! {
                        handshaken = handshake => handshaken,
                        _ = stopping.wait_for(|stopped| *stopped) => return,
                        () = slot.state.evict.notified() => return,
                    };
                    match handshaken {
                        Ok(Ok(stream)) => {
                            let stream = Guarded::new(stream, state, max_header_bytes, stall);
                            serve_connection(builder, stream, app, slot, stop).await
                        }
                        Ok(Err(err)) => {
                            metrics::counter!("sluice_tls_handshake_failures_total").increment(1);
                            tracing::debug!(error = %err, "TLS handshake failed");
                        }
                        Err(_) => {
                            metrics::counter!("sluice_tls_handshake_failures_total").increment(1);
                            tracing::debug!("TLS handshake timed out");
                        }
                    }
                })
            }
        };
        // Forget the connections that have ended, so the set stays small.
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}

/// How connections are served: HTTP/1.1 always, HTTP/2 when asked.
#[derive(Clone)]
struct Builders {
    http1: hyper::server::conn::http1::Builder,
    http2_opt: Option<hyper::server::conn::http2::Builder<TokioExecutor>>,
    /// How long the first bytes, which tell the two apart, may take.
    first_bytes_timeout: Duration,
}

impl Builders {
    fn new(limits: &ConnectionLimits) -> Builders {
        let mut http1 = hyper::server::conn::http1::Builder::new();
        http1
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .max_header_size(limits.max_header_bytes);
        let http2_opt = limits.http2_opt.map(|bounds| {
            let mut http2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
            http2
                .timer(TokioTimer::new())
                .max_concurrent_streams(bounds.max_concurrent_streams)
                .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
                .max_pending_accept_reset_streams(bounds.max_pending_reset_streams)
                .max_local_error_reset_streams(bounds.max_error_reset_streams)
                .keep_alive_interval(bounds.keep_alive_interval)
                .keep_alive_timeout(bounds.keep_alive_timeout);
            http2
        });
        Builders {
            http1,
            http2_opt,
            first_bytes_timeout: limits.header_read_timeout,
        }
    }
}

/// A connection being served, HTTP/1.1 or HTTP/2.
trait Served: Future<Output = hyper::Result<()>> + Send {
    /// Finishes the requests in flight, takes no new one, then closes.
    fn graceful_shutdown(self: Pin<&mut Self>);
}

impl<I, S> Served for hyper::server::conn::http1::Connection<I, S>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::HttpService<Incoming, ResBody = Body> + Send,
    S::Future: Send,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn graceful_shutdown(self: Pin<&mut Self>) {
        hyper::server::conn::http1::Connection::graceful_shutdown(self)
    }
}

impl<I, S> Served for hyper::server::conn::http2::Connection<I, S, TokioExecutor>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::HttpService<Incoming, ResBody = Body> + Send,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn graceful_shutdown(self: Pin<&mut Self>) {
        hyper::server::conn::http2::Connection::graceful_shutdown(self)
    }
}

/// Serves one connection until it closes: at the stop it finishes the
/// requests in flight (if any) and closes; asked by the table, it has
/// [`EVICTION_GRACE`] to do so, then it is cut.
async fn serve_connection<S>(
    builders: Builders,
    mut stream: S,
    app: Router,
    slot: Slot,
    mut stop: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let state = slot.state.clone();
    let service = Counted {
        app,
        state: state.clone(),
    };
    let opened = tokio::time::Instant::now();
    // An HTTP/1.1 connection whose first bytes were read to tell its
    // protocol: hyper's header timer starts only after that read, so the
    // first request's head is also bounded from here (`first_head`), or a
    // client trickling its first bytes would get the header read timeout twice.
    let mut sniffed_http1 = false;
    let connection: Pin<Box<dyn Served>> = match &builders.http2_opt {
        None => Box::pin(builders.http1.serve_connection(TokioIo::new(stream), service)),
        Some(http2) => {
            // A client that sends nothing is a slow loris here too, and an
            // idle connection the table may close to make room.
            let told = tokio::select! {
                told = tokio::time::timeout(builders.first_bytes_timeout, sniff::is_http2(&mut stream)) => told,
                () = state.evict.notified() => return,
                _ = stop.wait_for(|stopped| *stopped) => return,
            };
            let Ok(Ok((is_http2, seen))) = told else {
                return;
            };
            let stream = TokioIo::new(sniff::Rewind::new(seen, stream));
            sniffed_http1 = !is_http2;
            match is_http2 {
                true => Box::pin(http2.serve_connection(stream, service)),
                false => Box::pin(builders.http1.serve_connection(stream, service)),
            }
        }
    };
    let mut connection = connection;
    // Resolves with whether the table asked (then the close has a deadline).
    let closing = async {
        tokio::select! {
            _ = stop.wait_for(|stopped| *stopped) => false,
            () = state.evict.notified() => true,
        }
    };
    tokio::pin!(closing);
    // Armed (reset) only once the table asks.
    let cut = tokio::time::sleep(EVICTION_GRACE);
    tokio::pin!(cut);
    let first_head = tokio::time::sleep_until(opened + builders.first_bytes_timeout);
    tokio::pin!(first_head);
    let (mut asked_to_close, mut evicted) = (false, false);
    loop {
        tokio::select! {
            served = connection.as_mut() => {
                if let Err(err) = served {
                    tracing::debug!(error = %err, "connection ended with an error");
                }
                break;
            }
            by_table = &mut closing, if !asked_to_close => {
                asked_to_close = true;
                connection.as_mut().graceful_shutdown();
                if by_table {
                    evicted = true;
                    cut.as_mut().reset(tokio::time::Instant::now() + EVICTION_GRACE);
                }
            }
            () = &mut cut, if evicted => {
                tracing::debug!("connection cut: it did not close within the grace");
                break;
            }
            () = &mut first_head, if sniffed_http1 => {
                if !state.has_entered() {
                    tracing::debug!("connection cut: no request head within the header read timeout");
                    break;
                }
                sniffed_http1 = false;
            }
        }
    }
    drop(slot);
}

/// The app, counting each request in flight on its connection from its
/// head to its answer's last byte, so that the table knows which
/// connections are idle.
#[derive(Clone)]
struct Counted {
    app: Router,
    state: Arc<ConnectionState>,
}

impl hyper::service::Service<hyper::Request<Incoming>> for Counted {
    type Response = axum::response::Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, request: hyper::Request<Incoming>) -> Self::Future {
        let busy = self.state.enter();
        let response = self.app.clone().oneshot(request.map(Body::new));
        Box::pin(async move {
            let response = response.await?;
            Ok(response.map(|body| Body::new(Answering { body, _busy: busy })))
        })
    }
}

/// An answer's body, holding its connection busy until it is written.
struct Answering {
    body: Body,
    _busy: Busy,
}

impl http_body::Body for Answering {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

fn is_connection_error(err: &std::io::Error) -> bool {
    matches!(
        err.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}

/// A whole HTTP/1.1 response that closes its connection, `{"error": message}`.
pub fn response(status: u16, reason: &str, message: &str, headers: &[(&str, &str)]) -> Vec<u8> {
    let body = serde_json::json!({ "error": message }).to_string();
    let mut head = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body.as_bytes());
    bytes
}
