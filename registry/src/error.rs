//! The registry's one error type and the one place that maps it to HTTP.
//!
//! Refusals carry a message that says what was expected; internal failures
//! answer a generic 500 and their detail goes to the log.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use sluice_registry_client::limits::bound_message;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A malformed request: the message names the field and what was expected.
    #[error("{0}")]
    BadRequest(String),
    /// No or an unknown bearer token.
    #[error("{0}")]
    Unauthorized(String),
    /// A known token whose role may not do this.
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    /// A precondition (`if_revision`, `if_version`) or the current state refuses the write.
    #[error("{0}")]
    Conflict(String),
    /// Well-formed, but the policy refuses it (a failed gate, a stage that may not take traffic).
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("the artifact is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("the JSON body is larger than the limit of {limit} bytes")]
    BodyTooLarge { limit: usize },
    /// The client sent nothing for this many milliseconds mid-upload.
    #[error("the upload stalled: no bytes for {0} ms")]
    UploadStalled(u64),
    /// A JSON body took longer than this many milliseconds to arrive.
    #[error("the request body did not arrive within {0} ms")]
    BodyTimeout(u64),
    /// A dependency is busy or down for now (the metadata store locked by
    /// another writer): 503 with `Retry-After`, nothing written.
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    pub fn bad_request(message: impl Into<String>) -> Error {
        Error::BadRequest(message.into())
    }

    pub fn not_found(message: impl Into<String>) -> Error {
        Error::NotFound(message.into())
    }

    pub fn conflict(message: impl Into<String>) -> Error {
        Error::Conflict(message.into())
    }

    pub fn refused(message: impl Into<String>) -> Error {
        Error::Refused(message.into())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Error::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::Conflict(_) => StatusCode::CONFLICT,
            Error::Refused(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Error::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Error::PayloadTooLarge { .. } | Error::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Error::UploadStalled(_) | Error::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<rusqlite::Error> for Error {
    fn from(err: rusqlite::Error) -> Error {
        // Still locked after the busy timeout: the transaction rolled back
        // whole, and the same request can succeed in a moment.
        if let rusqlite::Error::SqliteFailure(failure, _) = &err
            && matches!(
                failure.code,
                rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
            )
        {
            return Error::Unavailable(format!(
                "the metadata store is locked by another writer ({err}): nothing was changed, retry"
            ));
        }
        // The disk filled up: the transaction rolled back whole, and the
        // same request succeeds once the operator has made room.
        if let rusqlite::Error::SqliteFailure(failure, _) = &err
            && failure.code == rusqlite::ErrorCode::DiskFull
        {
            return disk_full("the metadata store");
        }
        Error::Internal(format!("metadata store: {err}"))
    }
}

impl From<object_store::Error> for Error {
    fn from(err: object_store::Error) -> Error {
        // The store could not be reached or did not answer in time (S3
        // down, a network cut): nothing was recorded, and the same request
        // can succeed once it is back. Anything else (a refused credential,
        // a wrong region or bucket, a full disk) is the operator's to fix.
        if store_unreachable(&err) {
            Error::Unavailable(format!(
                "the artifact store is unavailable ({err}): nothing was changed, retry"
            ))
        } else if out_of_space(&err) {
            disk_full("the artifact store")
        } else {
            Error::Internal(format!("artifact store: {err}"))
        }
    }
}

impl From<serde_json::Error> for Error {
    fn from(err: serde_json::Error) -> Error {
        Error::Internal(format!("stored JSON: {err}"))
    }
}

/// 503 with `Retry-After`: nothing was written, and the same request
/// succeeds once there is room again. The operator sees it in the log.
fn disk_full(what: &str) -> Error {
    Error::Unavailable(format!(
        "{what} is out of disk space: nothing was changed; retry once space is freed"
    ))
}

/// Whether a cause of `err` is a full disk or a spent quota.
fn out_of_space(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(current) = cause {
        if let Some(io) = current.downcast_ref::<std::io::Error>()
            && (io.kind() == std::io::ErrorKind::StorageFull
                || io.kind() == std::io::ErrorKind::QuotaExceeded)
        {
            return true;
        }
        cause = current.source();
    }
    false
}

fn store_unreachable(err: &object_store::Error) -> bool {
    use object_store::client::{HttpError, HttpErrorKind};
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(err);
    while let Some(cause) = source {
        if let Some(http) = cause.downcast_ref::<HttpError>() {
            return matches!(
                http.kind(),
                HttpErrorKind::Connect
                    | HttpErrorKind::Request
                    | HttpErrorKind::Timeout
                    | HttpErrorKind::Interrupted
            );
        }
        source = cause.source();
    }
    false
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(error = %self, "registry request failed");
            "internal server error".to_string()
        } else if status == StatusCode::SERVICE_UNAVAILABLE {
            // A dependency down is the operator's to see, not only the client's.
            tracing::warn!(error = %self, "registry request refused for now");
            self.to_string()
        } else {
            self.to_string()
        };
        let body = serde_json::json!({ "error": bound_message(&message) }).to_string();
        let mut response = (status, body).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/json"),
        );
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        }
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer realm=\"sluice\""),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SQLite's own "database or disk is full", from a database capped at
    /// two pages: a 503 that says so, never a 500.
    #[test]
    fn a_full_metadata_store_is_unavailable_not_internal() {
        let connection = rusqlite::Connection::open_in_memory().unwrap();
        connection
            .execute_batch("PRAGMA max_page_count = 2; CREATE TABLE t (x BLOB);")
            .unwrap();
        let full = connection
            .execute("INSERT INTO t VALUES (zeroblob(100000))", [])
            .unwrap_err();
        let error = Error::from(full);
        assert_eq!(error.status(), StatusCode::SERVICE_UNAVAILABLE, "{error}");
        assert!(error.to_string().contains("out of disk space"), "{error}");
        let response = error.into_response();
        assert!(response.headers().contains_key(header::RETRY_AFTER));
    }

    /// The kernel's ENOSPC, as the artifact store passes it on.
    #[test]
    fn a_full_artifact_store_is_unavailable_not_internal() {
        use std::io::Write;
        let mut full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .expect("Linux's /dev/full");
        let enospc = full.write_all(b"x").and_then(|()| full.flush()).unwrap_err();
        let error = Error::from(object_store::Error::Generic {
            store: "LocalFileSystem",
            source: Box::new(enospc),
        });
        assert_eq!(error.status(), StatusCode::SERVICE_UNAVAILABLE, "{error}");
    }
}
