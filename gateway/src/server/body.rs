//! Reading a request body: a size limit that holds after decompression too,
//! and `gzip`/`deflate` content encodings.

use std::io::Read;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, header};

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

/// Collects the raw body within `timeout` (408 past it: a client trickling
/// its body must not hold an admission slot forever), refusing more than
/// `limit` bytes without buffering them.
pub async fn collect(
    body: Body,
    headers: &HeaderMap,
    limit: usize,
    timeout: std::time::Duration,
) -> Result<Bytes> {
    tokio::time::timeout(timeout, collect_within(body, headers, limit))
        .await
        .unwrap_or(Err(Error::BodyTimeout(timeout.as_millis() as u64)))
}

async fn collect_within(body: Body, headers: &HeaderMap, limit: usize) -> Result<Bytes> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(Error::PayloadTooLarge { limit });
    }
    axum::body::to_bytes(body, limit).await.map_err(|err| {
        let inner = err.into_inner();
        if inner.is::<http_body_util::LengthLimitError>() {
            Error::PayloadTooLarge { limit }
        } else {
            Error::bad_request(format!("cannot read the request body: {inner}"))
        }
    })
}

/// Reads and discards a body the server will not use (a refused request),
/// up to `limit` bytes and `timeout`, so that the client can read the
/// answer instead of a broken pipe. Nothing is kept: memory stays flat.
pub async fn discard(body: Body, limit: usize, timeout: std::time::Duration) {
    use http_body_util::BodyExt;
    let mut body = body;
    let drain = async {
        let mut seen = 0usize;
        while let Some(Ok(frame)) = body.frame().await {
            seen += frame.data_ref().map_or(0, |data| data.len());
            if seen > limit {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(timeout, drain).await;
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
