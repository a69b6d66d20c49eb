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

/// Collects the raw body, refusing more than `limit` bytes without buffering them.
pub async fn collect(body: Body, headers: &HeaderMap, limit: usize) -> Result<Bytes> {
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
