//! The accept loop of both listeners (the registry's API and the gateway's
//! predict API): HTTP/1.1 connections with a header read timeout, so a
//! client that trickles its headers (slow loris) is cut off instead of
//! holding a connection forever, and a graceful drain at shutdown.
//!
//! `axum::serve` has neither knob: it runs hyper without a timer, which
//! turns hyper's header timeout off. hyper starts that timer when it waits
//! for a request's head, so it is also how long an idle keep-alive
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

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::tls::Tls;

/// Serves `app` on `listener` until `stop` turns true; then closes the
/// listener (new connections are refused), lets every open connection
/// finish its request in flight, and returns once all have closed. With
/// `tls_opt`, speaks HTTPS only, and reloads the certificate while serving.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls_opt: Option<Arc<Tls>>,
    header_read_timeout: Duration,
    mut stop: watch::Receiver<bool>,
) {
    if let Some(tls) = &tls_opt {
        tokio::spawn(tls.clone().watch(stop.clone()));
    }
    let graceful = GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    let stop_handshakes = stop.clone();
    // The watch's guard must not live across an await of this task.
    let stopped = async move {
        let _ = stop.wait_for(|stopped| *stopped).await;
    };
    tokio::pin!(stopped);
    let mut connections = JoinSet::new();
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                // The client gave up before we accepted: nothing to do.
                Err(err) if is_connection_error(&err) => continue,
                Err(err) => {
                    // Out of file descriptors, say: keep serving the open
                    // connections, and try again once some may have closed.
                    tracing::error!(error = %err, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            },
            () = &mut stopped => break,
        };
        // Answers are small and latency matters more than packet count.
        let _ = stream.set_nodelay(true);
        let (builder, app, watcher) = (builder.clone(), app.clone(), graceful.watcher());
        match &tls_opt {
            None => connections.spawn(serve_connection(builder, stream, app, watcher)),
            Some(tls) => {
                let acceptor = tls.acceptor();
                // A connection that never finishes its handshake (a port
                // scanner, a load balancer's pre-connect) must not hold a
                // shutdown for the whole drain: it is dropped at the stop.
                let mut stopping = stop_handshakes.clone();
                connections.spawn(async move {
                    let handshake = tokio::time::timeout(header_read_timeout, acceptor.accept(stream));
                    let handshaken = tokio::select! {
                        handshaken = handshake => handshaken,
                        _ = stopping.wait_for(|stopped| *stopped) => return,
                    };
                    match handshaken {
                        Ok(Ok(stream)) => serve_connection(builder, stream, app, watcher).await,
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
    graceful.shutdown().await;
}

async fn serve_connection<S>(
    builder: hyper::server::conn::http1::Builder,
    stream: S,
    app: Router,
    watcher: Watcher,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let connection = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app));
    if let Err(err) = watcher.watch(connection).await {
        tracing::debug!(error = %err, "connection ended with an error");
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
