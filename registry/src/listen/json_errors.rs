//! `{"error": ...}` for the answers hyper writes on its own.
//!
//! A request whose head does not parse (431 for one past
//! `max_header_bytes` or with more than 100 fields, 414 for a URI too long,
//! 400 for bad framing) never reaches a handler: hyper answers it with an
//! empty body and closes the connection. Clients of the Open Inference
//! Protocol expect every error as JSON, so [`JsonErrors`] recognises that
//! one answer on its way out (a 4xx head with `content-length: 0`, which
//! no handler of ours writes: every error we answer has a body) and
//! writes it with a body that says what was wrong.

use std::io::IoSlice;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::connections::{DEFAULT_MAX_HEADER_BYTES, MAX_HEADERS};

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

/// A connection's stream, with hyper's bodiless error answers made JSON.
pub struct JsonErrors<S> {
    inner: S,
    max_header_bytes: usize,
    /// A replacement answer not yet written whole.
    pending: Vec<u8>,
}

impl<S> JsonErrors<S> {
    pub fn new(inner: S, max_header_bytes: usize) -> Self {
        JsonErrors {
            inner,
            max_header_bytes: if max_header_bytes == 0 {
                DEFAULT_MAX_HEADER_BYTES
            } else {
                max_header_bytes
            },
            pending: Vec::new(),
        }
    }
}

impl<S: AsyncWrite + Unpin> JsonErrors<S> {
    /// Writes what is pending; ready once it all went.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        while !self.pending.is_empty() {
            let written = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending))?;
            if written == 0 {
                return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
            }
            self.pending.drain(..written);
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for JsonErrors<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for JsonErrors<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        ready!(self.poll_pending(cx))?;
        // Only a head alone in its write can be hyper's own answer.
        if buf.len() < 4096
            && buf.starts_with(b"HTTP/1.1 4")
            && let Some(json) = replacement(buf, self.max_header_bytes)
        {
            self.pending = json;
            // Taken whole: the rest goes out on the next write or flush.
            let _ = self.poll_pending(cx)?;
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
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
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
