//! The gateway's one error type and the one place that maps it to HTTP
//! statuses and to gRPC codes.
//!
//! Client mistakes carry a message that names the field and what was expected;
//! internal failures answer a generic 500 and their detail goes to the log.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sluice_registry_client::limits::{bound_message, quote};

/// nginx's code for a request the client closed before the answer: what
/// the statistics and the guard record for it (no one reads the answer).
pub const CLIENT_CLOSED: u16 = 499;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A malformed or invalid request: the message says what was expected.
    #[error("{0}")]
    BadRequest(String),
    // Names and paths come from the client: quoted, never whole.
    #[error("unknown model '{}'", quote(.0))]
    ModelNotFound(String),
    #[error("unknown version {} of model '{}'", quote(.version), quote(.model))]
    VersionNotFound { model: String, version: String },
    #[error("no such endpoint: {}", quote(.0))]
    RouteNotFound(String),
    #[error("method not allowed: {}", quote(.0))]
    MethodNotAllowed(String),
    #[error("request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("unsupported content encoding '{0}': expected gzip, deflate or identity")]
    UnsupportedEncoding(String),
    /// The compute queue is full: the client should retry later.
    #[error("server is overloaded: the inference queue is full, retry later")]
    Overloaded,
    #[error("server is shutting down")]
    ShuttingDown,
    /// The version the request routed to has a run past the hang bound.
    #[error("{0}")]
    Unhealthy(String),
    /// `--max-in-flight` requests are being served: refused without keeping the body.
    #[error("server is overloaded: {0} requests are in flight, retry later")]
    TooManyInFlight(usize),
    /// The model holds its share of the slots (`--max-in-flight-per-model`).
    #[error(
        "model '{model}' is overloaded: {limit} requests to it are in flight, its share of the server; retry later"
    )]
    ModelBusy { model: String, limit: usize },
    /// Request bodies in flight hold `--max-body-bytes-in-flight`.
    #[error("server is overloaded: the request bodies in flight hold its memory budget, retry later")]
    BodyBudget,
    /// The answer would be larger than `--max-response-bytes`: not built.
    #[error(
        "the response would take up to {bound} bytes, over the limit of {limit}: ask for fewer rows or outputs, or for binary outputs (binary_data_output)"
    )]
    ResponseTooLarge { bound: usize, limit: usize },
    /// This gateway wrote `--feedback-bytes-per-hour` of labels this hour.
    #[error("this gateway has taken its {limit} bytes of feedback for this hour: retry in {retry_after_s} s")]
    FeedbackBudget { limit: u64, retry_after_s: u64 },
    /// The model needs a predict token, and none or an unknown one came.
    #[error("{0}")]
    Unauthorized(String),
    /// The predict token may not call this model.
    #[error("{0}")]
    Forbidden(String),
    /// The predict token is past its rate limit.
    #[error("predict token {token} is over its rate limit: retry in {retry_after_s} s")]
    RateLimited { token: String, retry_after_s: u64 },
    /// The client took longer than `--body-read-timeout-ms` to send its body.
    #[error("the request body did not arrive within {0} ms")]
    BodyTimeout(u64),
    /// The request's deadline (its `timeout` parameter) passed before it ran:
    /// it was not computed.
    #[error("{0}")]
    DeadlineExceeded(String),
    /// The request breaks the version's data contract under a `reject`
    /// deployment: the message names each violation.
    #[error("{0}")]
    ContractViolated(String),
    /// The model is in the repository, but no version of it loaded: the
    /// message holds the load error.
    #[error("model '{}' has no version that loaded: {reason}", quote(.model))]
    ModelUnavailable { model: String, reason: String },
    /// A store the request needs is failing; the client may retry.
    #[error("{0}")]
    Unavailable(String),
    /// A model could not be loaded; never caused by a request.
    #[error("cannot load model: {0}")]
    Load(String),
    /// The engine failed on input that passed validation: our fault, not the client's.
    #[error("inference failed: {0}")]
    Inference(String),
    /// The engine refused, as invalid, input that passed the gateway's
    /// validation (ONNX Runtime's `INVALID_ARGUMENT`: an index out of range,
    /// a shape computed from values). Answered 400, as Triton does; counted
    /// as the version's `engine_refused` in its statistics, where a rollout
    /// judges the canary's refusals beyond the stable version's.
    #[error("the model rejected the input: {0}")]
    EngineRefused(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    pub fn bad_request(message: impl Into<String>) -> Error {
        Error::BadRequest(message.into())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Error::BadRequest(_) | Error::EngineRefused(_) => StatusCode::BAD_REQUEST,
            Error::ModelNotFound(_) | Error::VersionNotFound { .. } | Error::RouteNotFound(_) => {
                StatusCode::NOT_FOUND
            }
            Error::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Error::PayloadTooLarge { .. } | Error::ResponseTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Error::UnsupportedEncoding(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Error::Overloaded
            | Error::ShuttingDown
            | Error::TooManyInFlight(_)
            | Error::ModelBusy { .. }
            | Error::BodyBudget
            | Error::Unavailable(_)
            | Error::ModelUnavailable { .. }
            | Error::Unhealthy(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::RateLimited { .. } | Error::FeedbackBudget { .. } => StatusCode::TOO_MANY_REQUESTS,
            Error::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Error::DeadlineExceeded(_) => StatusCode::GATEWAY_TIMEOUT,
            Error::ContractViolated(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Error::Load(_) | Error::Inference(_) | Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The gRPC code of the same failure: overload is `UNAVAILABLE`, which
    /// gRPC clients retry with backoff; a predict token over its rate is
    /// `RESOURCE_EXHAUSTED`, as a quota is.
    pub fn code(&self) -> tonic::Code {
        use tonic::Code;
        match self {
            Error::BadRequest(_) | Error::EngineRefused(_) | Error::ContractViolated(_) => {
                Code::InvalidArgument
            }
            Error::ModelNotFound(_) | Error::VersionNotFound { .. } | Error::RouteNotFound(_) => {
                Code::NotFound
            }
            Error::MethodNotAllowed(_) | Error::UnsupportedEncoding(_) => Code::Unimplemented,
            Error::PayloadTooLarge { .. } | Error::ResponseTooLarge { .. } => Code::ResourceExhausted,
            Error::RateLimited { .. } | Error::FeedbackBudget { .. } => Code::ResourceExhausted,
            Error::Overloaded
            | Error::ShuttingDown
            | Error::TooManyInFlight(_)
            | Error::ModelBusy { .. }
            | Error::BodyBudget
            | Error::Unavailable(_)
            | Error::ModelUnavailable { .. }
            | Error::Unhealthy(_) => Code::Unavailable,
            Error::Unauthorized(_) => Code::Unauthenticated,
            Error::Forbidden(_) => Code::PermissionDenied,
            Error::BodyTimeout(_) | Error::DeadlineExceeded(_) => Code::DeadlineExceeded,
            Error::Load(_) | Error::Inference(_) | Error::Internal(_) => Code::Internal,
        }
    }

    /// What the caller reads, bounded: our own failures are logged here
    /// and answered without their detail.
    fn public_message(&self) -> String {
        let status = self.status();
        let says_why = matches!(
            status,
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT
        );
        if status.is_server_error() && !says_why {
            tracing::error!(error = %self, "request failed");
            return "internal server error".to_string();
        }
        bound_message(&self.to_string()).into_owned()
    }
}

impl From<Error> for tonic::Status {
    fn from(error: Error) -> tonic::Status {
        let mut status = tonic::Status::new(error.code(), error.public_message());
        let retry_after_opt = match &error {
            Error::RateLimited { retry_after_s, .. } | Error::FeedbackBudget { retry_after_s, .. } => {
                Some(*retry_after_s)
            }
            _ if error.code() == tonic::Code::Unavailable => Some(1),
            _ => None,
        };
        if let Some(seconds) = retry_after_opt {
            status
                .metadata_mut()
                .insert("retry-after", tonic::metadata::MetadataValue::from(seconds));
        }
        status
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = self.public_message();
        let mut response = (status, error_body(&message)).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        match &self {
            Error::Unauthorized(_) => {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            Error::RateLimited { retry_after_s, .. } | Error::FeedbackBudget { retry_after_s, .. } => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_s));
            }
            _ => {}
        }
        // A refused body may not have been read to its end: the connection
        // cannot carry another request.
        // (A refused token's body is drained the same way, but its
        // connection stays: a client over its rate would otherwise pay a
        // new connection, and a TLS handshake, for every refusal.)
        if matches!(
            self,
            Error::TooManyInFlight(_) | Error::ModelBusy { .. } | Error::BodyBudget
        ) {
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

/// `{"error": "..."}`, the body every failure answers with.
pub fn error_body(message: &str) -> String {
    serde_json::json!({ "error": message }).to_string()
}
