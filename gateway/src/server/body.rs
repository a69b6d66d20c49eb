//! Reading a request body: a size limit that holds after decompression too,
//! and `gzip`/`deflate` content encodings.

use std::io::Read;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, header};

use super::admission::Admitted;
use crate::error::{Error, Result};

/// How the body was encoded on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Identity,
    Gzip,
    Deflate,
}

impl Encoding {
    pub fn from_headers(headers: &HeaderMap) -> Result<Encoding> {
        let Some(value) = headers.get(header::CONTENT_ENCODING) else {
            return Ok(Encoding::Identity);
        };
        let Ok(text) = value.to_str() else {
            return Err(Error::UnsupportedEncoding("(not ASCII)".into()));
        };
        let text = text.trim().to_ascii_lowercase();
        match text.as_str() {
            "" | "identity" => Ok(Encoding::Identity),
            "gzip" | "x-gzip" => Ok(Encoding::Gzip),
            "deflate" => Ok(Encoding::Deflate),
            _ => Err(Error::UnsupportedEncoding(text)),
        }
    }
}

/// The body's `Content-Length`, when it declares one.
pub fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok())
}

/// Collects the raw body within `timeout` (408 past it: a client trickling
/// its body must not hold an admission slot forever), refusing more than
/// `limit` bytes without buffering them, and holding each byte in the
/// request's part of the budget before it is kept (503 once it is spent).
pub async fn collect(
    body: Body,
    headers: &HeaderMap,
    limit: usize,
    timeout: std::time::Duration,
    admitted: &mut Admitted,
) -> Result<Bytes> {
    tokio::time::timeout(timeout, collect_within(body, headers, limit, admitted))
        .await
        .unwrap_or(Err(Error::BodyTimeout(timeout.as_millis() as u64)))
}

async fn collect_within(
    body: Body,
    headers: &HeaderMap,
    limit: usize,
    admitted: &mut Admitted,
) -> Result<Bytes> {
    use http_body_util::BodyExt;
    if declared_length(headers).is_some_and(|length| length > limit as u64) {
        return Err(Error::PayloadTooLarge { limit });
    }
    // One frame (the usual case) is kept as it came; more are joined.
    let mut first_opt: Option<Bytes> = None;
    let mut joined: Vec<u8> = Vec::new();
    let mut seen = 0usize;
    let mut body = body;
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|err| Error::bad_request(format!("cannot read the request body: {err}")))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        seen = seen.saturating_add(data.len());
        if seen > limit {
            return Err(Error::PayloadTooLarge { limit });
        }
        admitted.cover(seen)?;
        match first_opt.take() {
            None if joined.is_empty() => first_opt = Some(data),
            first => {
                if let Some(first) = first {
                    joined.extend_from_slice(&first);
                }
                joined.extend_from_slice(&data);
            }
        }
    }
    Ok(match first_opt {
        Some(only) => only,
        None => Bytes::from(joined),
    })
}

/// Decompresses a body; CPU work, so it runs on a compute thread.
pub fn decode(raw: Bytes, encoding: Encoding, limit: usize) -> Result<Bytes> {
    let reader: Box<dyn Read> = match encoding {
        Encoding::Identity => return Ok(raw),
        Encoding::Gzip => Box::new(flate2::read::MultiGzDecoder::new(&raw[..])),
        Encoding::Deflate => Box::new(flate2::read::ZlibDecoder::new(&raw[..])),
    };
    let mut decoded = Vec::new();
    // One byte past the limit tells "too large" from "exactly at the limit".
    reader
        .take(limit as u64 + 1)
        .read_to_end(&mut decoded)
        .map_err(|err| Error::bad_request(format!("request body is not valid {encoding:?} data: {err}")))?;
    if decoded.len() > limit {
        return Err(Error::PayloadTooLarge { limit });
    }
    Ok(Bytes::from(decoded))
}

/// How much of an answer is handed to hyper at once (HTTP/2's default
/// frame size).
pub const ANSWER_SLICE: usize = 16 * 1024;

/// An answer's bytes, and what its request holds until they are written:
/// its slots and its part of the memory budget stay taken while a slow
/// client reads.
pub struct HeldBody {
    data_opt: Option<Bytes>,
    /// Bytes not yet handed out.
    length: u64,
    _admitted: Admitted,
}

impl HeldBody {
    pub fn new(data: Vec<u8>, mut admitted: Admitted) -> HeldBody {
        // The answer is built: what the request held becomes the answer's size.
        admitted.bytes.set(data.len());
        HeldBody {
            length: data.len() as u64,
            data_opt: Some(Bytes::from(data)).filter(|data| !data.is_empty()),
            _admitted: admitted,
        }
    }
}

impl http_body::Body for HeldBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<std::result::Result<http_body::Frame<Bytes>, Self::Error>>> {
        // In slices: hyper takes each whole and asks for the next only as
        // the connection drains (HTTP/2: as the client's window opens), so
        // the hold lasts until the answer is nearly written, not until
        // hyper has queued it.
        let Some(data) = self.data_opt.as_mut() else {
            return std::task::Poll::Ready(None);
        };
        let slice = data.split_to(data.len().min(ANSWER_SLICE));
        if data.is_empty() {
            self.data_opt = None;
        }
        self.length -= slice.len() as u64;
        std::task::Poll::Ready(Some(Ok(http_body::Frame::data(slice))))
    }

    fn is_end_stream(&self) -> bool {
        self.data_opt.is_none()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.length)
    }
}
