//! The predict API's OpenAPI 3.1 document, served at `/openapi.json` and
//! committed as `docs/openapi/v2.json`.
//!
//! The routes are registered with their `#[utoipa::path]` (`handlers`), so
//! none is served undescribed. The metadata documents are the types the
//! handlers serialize. Inference requests and answers are parsed and
//! written by hand for speed (`protocol::json`, `protocol::response`), so
//! their schemas are described here, as the Open Inference Protocol's
//! REST specification states them; the conformance tests and schemathesis
//! hold the two together.

use std::collections::BTreeMap;

use utoipa::ToSchema;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ComponentsBuilder, InfoBuilder, OpenApi, OpenApiBuilder, SecurityRequirement};

/// A tensor's element type, by its protocol name.
#[derive(ToSchema)]
#[allow(dead_code, clippy::upper_case_acronyms)]
pub enum Datatype {
    BOOL,
    UINT8,
    UINT16,
    UINT32,
    UINT64,
    INT8,
    INT16,
    INT32,
    INT64,
    FP16,
    FP32,
    FP64,
    BYTES,
}

/// `POST /v2/models/{model}/infer`'s JSON body (or, with the binary tensor
/// extension, its JSON part).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct InferenceRequest {
    /// Echoed in the answer; the prediction log's id when no `x-request-id` is sent.
    id: Option<String>,
    /// `timeout` (milliseconds), `binary_data_output`, and the protocol's others.
    parameters: Option<BTreeMap<String, serde_json::Value>>,
    inputs: Vec<RequestInput>,
    /// The outputs wanted; all of them when absent.
    outputs: Option<Vec<RequestOutput>>,
}

/// One input tensor.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct RequestInput {
    name: String,
    /// Dimensions; their product is the number of elements in `data`.
    shape: Vec<i64>,
    datatype: Datatype,
    /// `binary_data_size` when the tensor follows the JSON part as bytes.
    parameters: Option<BTreeMap<String, serde_json::Value>>,
    /// The elements, row-major, flat or nested; absent when sent as binary.
    data: Option<serde_json::Value>,
}

/// One output asked for.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct RequestOutput {
    name: String,
    /// `binary_data` (bool), `classification` (top N as strings).
    parameters: Option<BTreeMap<String, serde_json::Value>>,
}

/// An inference's answer (with the binary extension, its JSON part).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct InferenceResponse {
    model_name: String,
    /// The version that answered (also the `x-model-version` header).
    model_version: Option<String>,
    id: Option<String>,
    parameters: Option<BTreeMap<String, serde_json::Value>>,
    outputs: Vec<ResponseOutput>,
}

/// One output tensor.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ResponseOutput {
    name: String,
    shape: Vec<i64>,
    datatype: Datatype,
    /// `binary_data_size` when the tensor follows the JSON part; `labels` for classifiers.
    parameters: Option<BTreeMap<String, serde_json::Value>>,
    /// The elements, row-major and flat; absent when sent as binary.
    data: Option<Vec<serde_json::Value>>,
}

/// `GET /v2/health/live`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Live {
    live: bool,
}

/// `GET /v2/health/ready`: 200 when ready, 503 when not.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Ready {
    ready: bool,
}

/// A model's or a version's readiness: 200 when ready, 503 when its runs hang.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ModelReady {
    name: String,
    version: String,
    ready: bool,
}

/// `POST /v2/repository/index`'s optional body.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct IndexRequest {
    /// List the ready versions alone.
    ready: Option<bool>,
}

/// One version in the repository index.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct IndexEntry {
    name: String,
    version: String,
    /// `READY` or `UNAVAILABLE`.
    state: String,
    /// Why it is unavailable: its load error.
    reason: Option<String>,
}

/// One ground-truth label for an answered prediction.
#[derive(serde::Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct Label {
    /// The prediction's `x-request-id` (or its request's `id`).
    request_id: String,
    /// The true value: a number, a string, or an array of them.
    label: serde_json::Value,
}

/// `POST /v2/models/{model}/feedback`'s body: one label or an array of them.
#[derive(serde::Deserialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum Labels {
    One(Label),
    Many(Vec<Label>),
}

/// What a feedback call stored.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct FeedbackAccepted {
    accepted: u64,
    /// Whether this gateway logs the model's predictions (labels join with them).
    logged: bool,
    /// Why the labels may join nothing, when `logged` is false.
    warning: Option<String>,
}

pub fn base() -> OpenApi {
    let bearer = SecurityScheme::Http(
        HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .description(Some(
                "A predict token (`--predict-tokens-file`), for the models it names; also gRPC's `authorization` metadata",
            ))
            .build(),
    );
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("Sluice predict API (Open Inference Protocol, KServe V2)")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "The REST half of the Open Inference Protocol, as Triton and KServe speak it, with the binary \
                     tensor extension. A model may need a predict token (`Authorization: Bearer`); the same \
                     calls are served over gRPC on the same port (docs/grpc.md).",
                ))
                .build(),
        )
        .components(Some(ComponentsBuilder::new().security_scheme("bearer", bearer).build()))
        // A model needs a token only where the operator gave it predict tokens.
        .security(Some([
            SecurityRequirement::default(),
            SecurityRequirement::new("bearer", Vec::<String>::new()),
        ]))
        .build()
}

/// The document with every operation's error answer.
pub fn finish(document: OpenApi) -> OpenApi {
    sluice_common::openapi::with_errors(
        document,
        "An error: a client mistake (4xx), overload (503 with `Retry-After`) or the model's (5xx)",
    )
}
