//! A connection's stream, as the listener wraps it ([`Guarded`]): the
//! answers hyper writes on its own made JSON, and a client that stops
//! reading its answer cut off.
//!
//! A request whose head does not parse (431 for one past
//! `max_header_bytes` or with more than 100 fields, 414 for a URI too long,
//! 400 for bad framing) never reaches a handler: hyper answers it with an
//! empty body and closes the connection. Clients of the Open Inference
//! Protocol expect every error as JSON, so the stream recognises that one
//! answer on its way out (a 4xx head with `content-length: 0`, alone in its
//! write, while no request is in flight on the connection: every error a
//! handler answers has a body, and is written while its request is) and
//! writes it with a body that says what was wrong.
//!
//! hyper has no write timeout: an answer a client never reads would hold
//! its connection, and the answer's memory, for ever. A write that makes
//! no progress for the stall timeout (the header read timeout) fails, and
//! hyper closes the connection.

use std::future::Future;
use std::io::IoSlice;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

use super::connections::{ConnectionState, MAX_HEADERS};
use super::response;

/// The JSON answer for one of hyper's own, or `None` for anything else.
fn replacement(written: &[u8], max_header_bytes: usize) -> Option<Vec<u8>> {
    let head = std::str::from_utf8(written).ok()?;
    if !head.ends_with("\r\n\r\n") || !head.to_ascii_lowercase().contains("\r\ncontent-length: 0\r\n") {
        return None;
    }
    let status = head.strip_prefix("HTTP/1.1 ")?.get(..3)?;
    let (code, reason, message) = match status {
        "431" => (
            431,
            "Request Header Fields Too Large",
            format!(
                "the request's headers are too large: at most {max_header_bytes} bytes with the request line, and {MAX_HEADERS} fields"
            ),
        ),
        "414" => (414, "URI Too Long", "the request's URI is too long".to_string()),
        "400" => (
            400,
            "Bad Request",
            "the request is not valid HTTP/1.1 (its request line, a header, or its framing)".to_string(),
        ),
        _ => return None,
    };
    Some(response(code, reason, &message, &[]))
}

/// A connection's stream, with hyper's bodiless error answers made JSON
/// and stalled writes cut.
pub struct Guarded<S> {
    inner: S,
    /// Whether a request is in flight (hyper's own answers come between).
    connection: Arc<ConnectionState>,
    max_header_bytes: usize,
    /// A replacement answer not yet written whole.
    pending: Vec<u8>,
    stall_timeout: Duration,
    /// Running while a write waits on the client.
    stalled_opt: Option<Pin<Box<Sleep>>>,
}

impl<S> Guarded<S> {
    pub fn new(
        inner: S,
        connection: Arc<ConnectionState>,
        max_header_bytes: usize,
        stall_timeout: Duration,
    ) -> Self {
        Guarded {
            inner,
            connection,
            max_header_bytes,
            pending: Vec::new(),
            stall_timeout,
            stalled_opt: None,
        }
    }
}

impl<S: AsyncWrite + Unpin> Guarded<S> {
    /// A write's outcome, failing it when the client has not taken a byte
    /// for the stall timeout.
    fn watch<T>(
        &mut self,
        cx: &mut Context<'_>,
        outcome: Poll<std::io::Result<T>>,
    ) -> Poll<std::io::Result<T>> {
        if outcome.is_ready() {
            self.stalled_opt = None;
            return outcome;
        }
        let timeout = self.stall_timeout;
        let stalled = self
            .stalled_opt
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match stalled.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the client took no byte of its answer for the stall timeout",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Writes what is pending; ready once it all went.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        while !self.pending.is_empty() {
            let outcome = Pin::new(&mut self.inner).poll_write(cx, &self.pending);
            let written = ready!(self.watch(cx, outcome))?;
            if written == 0 {
                return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
            }
            self.pending.drain(..written);
        }
        Poll::Ready(Ok(()))
    }

    /// The JSON answer for `buf`, when it is one of hyper's own.
    fn replacing(&self, buf: &[u8]) -> Option<Vec<u8>> {
        let candidate = buf.len() < 4096 && buf.starts_with(b"HTTP/1.1 4") && !self.connection.is_busy();
        candidate
            .then(|| replacement(buf, self.max_header_bytes))
            .flatten()
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Guarded<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        ready!(self.poll_pending(cx))?;
        if let Some(json) = self.replacing(buf) {
            self.pending = json;
            // Taken whole: the rest goes out on the next write or flush.
            let _ = self.poll_pending(cx)?;
            return Poll::Ready(Ok(buf.len()));
        }
        let outcome = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.watch(cx, outcome)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        ready!(self.poll_pending(cx))?;
        let mut nonempty = bufs.iter().filter(|buf| !buf.is_empty());
        if let (Some(only), None) = (nonempty.next(), nonempty.next())
            && only.starts_with(b"HTTP/1.1 4")
        {
            return self.poll_write(cx, only);
        }
        let outcome = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.watch(cx, outcome)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        let outcome = Pin::new(&mut self.inner).poll_flush(cx);
        self.watch(cx, outcome)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    fn idle_connection() -> Arc<ConnectionState> {
        let table = super::super::connections::ConnectionTable::new("test", Default::default());
        table.admit([127, 0, 0, 1].into()).unwrap().state.clone()
    }

    /// A client that takes no byte of its answer is cut after the stall
    /// timeout, instead of holding the connection and the answer for ever.
    #[tokio::test]
    async fn a_write_the_client_never_reads_fails_after_the_stall_timeout() {
        let (server, _client) = tokio::io::duplex(64);
        let stall = Duration::from_millis(200);
        let mut guarded = Guarded::new(server, idle_connection(), 1024, stall);
        let started = tokio::time::Instant::now();
        let written = guarded.write_all(&[b'x'; 4096]).await;
        assert_eq!(written.unwrap_err().kind(), std::io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= stall, "{:?}", started.elapsed());
    }

    /// hyper's own answer, written between requests, goes out as JSON.
    #[tokio::test]
    async fn hypers_own_answer_goes_out_as_json() {
        use tokio::io::AsyncReadExt;
        let (server, mut client) = tokio::io::duplex(64 * 1024);
        let mut guarded = Guarded::new(server, idle_connection(), 1024, Duration::from_secs(3));
        guarded
            .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
            .await
            .unwrap();
        guarded.shutdown().await.unwrap();
        let mut answer = String::new();
        client.read_to_string(&mut answer).await.unwrap();
        assert!(
            answer.starts_with("HTTP/1.1 400 Bad Request\r\ncontent-type: application/json"),
            "{answer}"
        );
        assert!(answer.ends_with("framing)\"}"), "{answer}");
    }

    #[test]
    fn only_hypers_own_answers_are_replaced() {
        let own = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: Sun, 06 Dec 2026 10:00:00 GMT\r\n\r\n";
        let json = String::from_utf8(replacement(own, 1024).unwrap()).unwrap();
        assert!(json.starts_with("HTTP/1.1 431 "), "{json}");
        assert!(json.contains("content-type: application/json"), "{json}");
        assert!(json.ends_with(r#"{"error":"the request's headers are too large: at most 1024 bytes with the request line, and 100 fields"}"#), "{json}");
        // Ours always carry a body; a success is never touched.
        let ours =
            b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 20\r\n\r\n";
        assert_eq!(replacement(ours, 1024), None);
        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(replacement(ok, 1024), None);
    }
}
