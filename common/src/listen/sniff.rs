//! Which HTTP a new connection speaks. An HTTP/2 client (gRPC's, or h2c
//! with prior knowledge) opens with the 24-byte connection preface; an
//! HTTP/1.1 client's first bytes are a request line, which differs from
//! the preface by its first byte or soon after. The bytes read to tell
//! are given back to the server in front of the rest ([`Rewind`]).
//!
//! With TLS the same test applies after the handshake: a client that
//! negotiated `h2` by ALPN sends the preface too.

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// What every HTTP/2 connection opens with (RFC 9113, section 3.4).
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Reads until the first bytes match the preface or cannot: `true` for
/// HTTP/2. Returns the bytes read, to be read again. A client that closes
/// first is told from its bytes so far (it is served, and sees the close).
pub async fn is_http2<S: AsyncRead + Unpin>(stream: &mut S) -> std::io::Result<(bool, Vec<u8>)> {
    let mut seen = Vec::with_capacity(PREFACE.len());
    let mut buffer = [0u8; PREFACE.len()];
    while seen.len() < PREFACE.len() {
        let read = stream.read(&mut buffer[..PREFACE.len() - seen.len()]).await?;
        if read == 0 {
            return Ok((false, seen));
        }
        seen.extend_from_slice(&buffer[..read]);
        if !PREFACE.starts_with(&seen) {
            return Ok((false, seen));
        }
    }
    Ok((true, seen))
}

/// A stream with bytes already read from it put back in front.
pub struct Rewind<S> {
    prefix: Vec<u8>,
    /// How much of `prefix` has been read again.
    at: usize,
    inner: S,
}

impl<S> Rewind<S> {
    pub fn new(prefix: Vec<u8>, inner: S) -> Self {
        Rewind { prefix, at: 0, inner }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.at < self.prefix.len() {
            let rest = &self.prefix[self.at..];
            let taken = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..taken]);
            self.at += taken;
            if self.at == self.prefix.len() {
                self.prefix = Vec::new();
                self.at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn sniff(bytes: &[u8]) -> (bool, Vec<u8>, Vec<u8>) {
        let (mut client, mut server) = tokio::io::duplex(64);
        client.write_all(bytes).await.unwrap();
        drop(client);
        let (http2, seen) = is_http2(&mut server).await.unwrap();
        let mut again = Vec::new();
        Rewind::new(seen.clone(), server)
            .read_to_end(&mut again)
            .await
            .unwrap();
        (http2, seen, again)
    }

    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn the_preface_is_http2_and_every_byte_is_read_again() {
        let mut bytes = PREFACE.to_vec();
        bytes.extend_from_slice(b"\x00\x00\x00\x04\x00\x00\x00\x00\x00");
        let (http2, seen, again) = sniff(&bytes).await;
        assert!(http2);
        assert_eq!(seen, PREFACE);
        assert_eq!(again, bytes);
    }

    #[tokio::test]
    async fn a_request_line_is_http1() {
        let request = b"GET /v2/health/live HTTP/1.1\r\nhost: x\r\n\r\n";
        let (http2, seen, again) = sniff(request).await;
        assert!(!http2);
        assert!(request.starts_with(&seen) && !seen.is_empty());
        assert_eq!(again, request);
        // "P" is the preface's first letter, and POST's.
        let post = b"POST /v2/models/m/infer HTTP/1.1\r\n\r\n";
        let (http2, seen, again) = sniff(post).await;
        assert!(!http2);
        assert!(post.starts_with(&seen) && !seen.is_empty());
        assert_eq!(again, post);
    }

    #[tokio::test]
    async fn a_client_that_closes_early_is_not_http2() {
        let (http2, seen, again) = sniff(b"PRI * HT").await;
        assert!(!http2);
        assert_eq!(seen, b"PRI * HT");
        assert_eq!(again, b"PRI * HT");
    }
}
