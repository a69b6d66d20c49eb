//! The Open Inference Protocol endpoints.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::AppState;
use super::admission;
use super::body::{self, Encoding};
use super::call::{self, Call};
use super::inference::{self, Payload};
use super::openapi;
use crate::error::{Error, Result};
use crate::metrics;
use crate::protocol::{self, ModelMetadata, ServerMetadata};

pub const MODEL_VERSION_HEADER: &str = "x-model-version";
pub use super::inference::REQUEST_ID_HEADER;

#[utoipa::path(get, path = "/v2/health/live", tag = "health", responses((status = 200, body = openapi::Live)))]
pub async fn live() -> Json<serde_json::Value> {
    Json(json!({ "live": true }))
}

#[utoipa::path(get, path = "/v2/health/ready", tag = "health", responses((status = 200, body = openapi::Ready), (status = 503, description = "Not ready: loading, draining, or a run hangs", body = openapi::Ready)))]
pub async fn ready(State(state): State<Arc<AppState>>) -> Response {
    let ready = state.health.is_ready();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(json!({ "ready": ready }))).into_response()
}

#[utoipa::path(get, path = "/v2", tag = "metadata", responses((status = 200, body = ServerMetadata)))]
pub async fn server_metadata() -> Json<ServerMetadata> {
    Json(ServerMetadata {
        name: "sluice",
        version: env!("CARGO_PKG_VERSION"),
        extensions: protocol::EXTENSIONS,
    })
}

#[utoipa::path(get, path = "/v2/models/{model}", tag = "metadata", params(("model" = String, Path, description = "A model name")), responses((status = 200, body = ModelMetadata<'_>)))]
pub async fn model_metadata(
    State(state): State<Arc<AppState>>,
    Path(model): Path<String>,
) -> Result<Response> {
    metadata(&state, &model, None)
}

#[utoipa::path(get, path = "/v2/models/{model}/versions/{version}", tag = "metadata", params(("model" = String, Path, description = "A model name"), ("version" = String, Path, description = "A version number, or an alias the registry names")), responses((status = 200, body = ModelMetadata<'_>)))]
pub async fn version_metadata(
    State(state): State<Arc<AppState>>,
    Path((model, version)): Path<(String, String)>,
) -> Result<Response> {
    metadata(&state, &model, Some(&version))
}

fn metadata(state: &AppState, model: &str, version_opt: Option<&str>) -> Result<Response> {
    let table = state.routes.load();
    let loaded = table.resolve(model, version_opt)?;
    let versions = table.routes[model].version_labels();
    Ok(Json(ModelMetadata::of(loaded, versions)).into_response())
}

#[utoipa::path(post, path = "/v2/repository/index", tag = "metadata", request_body(content = Option<openapi::IndexRequest>, description = "No body, or `{\"ready\": true}` for the ready versions alone"), responses((status = 200, body = Vec<openapi::IndexEntry>)))]
/// Triton's repository index: every version loaded (`READY`) or failed
/// (`UNAVAILABLE`, with the load error as `reason`). A body
/// `{"ready": true}` lists the ready ones alone.
pub async fn repository_index(
    State(state): State<Arc<AppState>>,
    body: axum::body::Bytes,
) -> Result<Response> {
    #[derive(serde::Deserialize)]
    struct IndexRequest {
        #[serde(default)]
        ready: bool,
    }
    let ready_only = match body.is_empty() {
        true => false,
        false => {
            serde_json::from_slice::<IndexRequest>(&body)
                .map_err(|err| {
                    Error::bad_request(format!("expected {{\"ready\": true|false}} or no body: {err}"))
                })?
                .ready
        }
    };
    let entries: Vec<serde_json::Value> = index(&state, ready_only)
        .into_iter()
        .map(|entry| match entry.reason_opt {
            Some(reason) => json!({ "name": entry.name, "version": entry.version, "state": entry.state, "reason": reason }),
            None => json!({ "name": entry.name, "version": entry.version, "state": entry.state }),
        })
        .collect();
    Ok(Json(entries).into_response())
}

/// One version in the repository index.
pub(super) struct IndexEntry {
    pub name: String,
    pub version: String,
    /// `READY` or `UNAVAILABLE`.
    pub state: &'static str,
    /// Why it is unavailable: its load error.
    pub reason_opt: Option<String>,
}

/// Every version loaded, and (unless `ready_only`) every one that failed
/// to load and is not served, by name and version.
pub(super) fn index(state: &AppState, ready_only: bool) -> Vec<IndexEntry> {
    let table = state.routes.load();
    let mut index: Vec<(u64, IndexEntry)> = Vec::new();
    for (name, route) in &table.routes {
        for model in route.versions.values() {
            let entry = IndexEntry {
                name: name.clone(),
                version: model.version_label.clone(),
                state: "READY",
                reason_opt: None,
            };
            index.push((model.version, entry));
        }
    }
    if !ready_only {
        for ((name, version), reason) in &table.load_failures {
            let serving = table
                .routes
                .get(name)
                .is_some_and(|route| route.versions.contains_key(version));
            if !serving {
                let entry = IndexEntry {
                    name: name.clone(),
                    version: version.to_string(),
                    state: "UNAVAILABLE",
                    reason_opt: Some(reason.clone()),
                };
                index.push((*version, entry));
            }
        }
    }
    index.sort_by(|a, b| (&a.1.name, a.0).cmp(&(&b.1.name, b.0)));
    index.into_iter().map(|(_, entry)| entry).collect()
}

#[utoipa::path(get, path = "/v2/models/{model}/ready", tag = "health", params(("model" = String, Path, description = "A model name")), responses((status = 200, body = openapi::ModelReady), (status = 503, description = "Its runs hang", body = openapi::ModelReady)))]
pub async fn model_ready(State(state): State<Arc<AppState>>, Path(model): Path<String>) -> Result<Response> {
    model_readiness(&state, &model, None)
}

#[utoipa::path(get, path = "/v2/models/{model}/versions/{version}/ready", tag = "health", params(("model" = String, Path, description = "A model name"), ("version" = String, Path, description = "A version number, or an alias the registry names")), responses((status = 200, body = openapi::ModelReady), (status = 503, description = "Its runs hang", body = openapi::ModelReady)))]
pub async fn version_ready(
    State(state): State<Arc<AppState>>,
    Path((model, version)): Path<(String, String)>,
) -> Result<Response> {
    model_readiness(&state, &model, Some(&version))
}

/// A version in the table has been loaded and warmed: it is ready unless
/// one of its runs hangs (see [`crate::watchdog`]); then 503, as for the server.
fn model_readiness(state: &AppState, model: &str, version_opt: Option<&str>) -> Result<Response> {
    let table = state.routes.load();
    let loaded = table.resolve(model, version_opt)?;
    let ready = !loaded.watch.is_hung();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({ "name": loaded.name, "version": loaded.version_label, "ready": ready });
    Ok((status, Json(body)).into_response())
}

#[utoipa::path(get, path = "/metrics", tag = "metrics", responses((status = 200, description = "Prometheus text exposition", content_type = "text/plain; version=0.0.4; charset=utf-8", body = String)))]
pub async fn prometheus(State(state): State<Arc<AppState>>) -> Response {
    // Served, or shadowing: a shadow's comparisons are its series.
    let table = state.routes.snapshot();
    let mut live = std::collections::HashSet::new();
    for (name, route) in &table.routes {
        let shadow = route.shadow.iter().map(|shadow| &shadow.model);
        for model in route.versions.values().chain(shadow) {
            live.insert((name.clone(), model.version_label.clone()));
        }
    }
    let text = sluice_common::exposition::render_live(&state.metrics.render(), &live);
    let mut response = text.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

#[utoipa::path(post, path = "/v2/models/{model}/infer", tag = "inference", params(("model" = String, Path, description = "A model name"), ("x-request-id" = Option<String>, Header, description = "The prediction log's id"), ("x-user-id" = Option<String>, Header, description = "A sticky deployment's key (the header it names)")), request_body(description = "JSON; or, with the binary tensor extension, the JSON request (`Inference-Header-Content-Length` bytes) then the tensors' bytes", content((openapi::InferenceRequest = "application/json"), (sluice_common::openapi::Bytes = "application/octet-stream"))), responses((status = 200, body = openapi::InferenceResponse, headers(("x-model-version" = String, description = "The version that answered")))))]
pub async fn infer(
    State(state): State<Arc<AppState>>,
    Path(model): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    infer_and_count(&state, &model, None, &headers, body).await
}

#[utoipa::path(post, path = "/v2/models/{model}/versions/{version}/infer", tag = "inference", params(("model" = String, Path, description = "A model name"), ("version" = String, Path, description = "A version number, or an alias the registry names")), request_body(description = "As for the model's `infer`", content((openapi::InferenceRequest = "application/json"), (sluice_common::openapi::Bytes = "application/octet-stream"))), responses((status = 200, body = openapi::InferenceResponse, headers(("x-model-version" = String)))))]
pub async fn infer_version(
    State(state): State<Arc<AppState>>,
    Path((model, version)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    infer_and_count(&state, &model, Some(&version), &headers, body).await
}

/// The HTTP answer to a served inference, saying which version judged it.
async fn infer_and_count(
    state: &AppState,
    model: &str,
    version_opt: Option<&str>,
    headers: &HeaderMap,
    body: Body,
) -> Response {
    let call = Call {
        model,
        version_opt,
        headers,
        payload: Payload::Http(body),
        arrived: std::time::Instant::now(),
        client_deadline_opt: None,
    };
    let served = call::infer(state, call).await;
    let mut response = match served.result {
        Ok(answered) => inference::into_response(answered),
        Err(err) => err.into_response(),
    };
    // Errors too say which version judged the request.
    if let Some(value) = served
        .version_opt
        .and_then(|label| HeaderValue::from_str(&label).ok())
    {
        response
            .headers_mut()
            .insert(HeaderName::from_static(MODEL_VERSION_HEADER), value);
    }
    response
}

/// JSON 404 for paths the protocol does not have.
pub async fn no_route(method: axum::http::Method, uri: axum::http::Uri) -> Error {
    Error::RouteNotFound(format!("{method} {}", uri.path()))
}

/// JSON 405 for a known path called with the wrong method.
pub async fn wrong_method(method: axum::http::Method, uri: axum::http::Uri) -> Error {
    Error::MethodNotAllowed(format!("{method} {}", uri.path()))
}

#[utoipa::path(post, path = "/v2/models/{model}/feedback", tag = "feedback", params(("model" = String, Path, description = "A model name")), request_body = openapi::Labels, responses((status = 200, body = openapi::FeedbackAccepted)))]
/// `POST /v2/models/{m}/feedback`: labels for answered predictions, stored
/// before the answer (200 `{"accepted": N, "logged": bool}`, with a
/// `warning` when this gateway logs none of the model's predictions).
pub async fn feedback(
    State(state): State<Arc<AppState>>,
    Path(model): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<serde_json::Value>> {
    let Some(log) = state.feedback_opt.clone() else {
        return Err(Error::RouteNotFound(format!(
            "/v2/models/{model}/feedback: this gateway serves a model repository, which keeps no prediction log to join labels with"
        )));
    };
    // Only served models take labels: a typo would otherwise be stored for nothing.
    let logged = state.routes.load().logs_predictions(&model)?;
    // Label bodies count against the gateway's slots and memory budget, but
    // not the model's share: a flood of labels must not refuse its predictions.
    let (mut admitted, body) = admission::admit(&state, &model, None, &headers, body).await?;
    let limit = state.limits.max_feedback_bytes;
    let encoding = Encoding::from_headers(&headers)?;
    let raw = body::collect(
        body,
        &headers,
        limit,
        state.limits.body_read_timeout,
        &mut admitted,
    )
    .await?;
    // Decompressing, checking and writing out up to the body limit is CPU
    // work: off the reactor, like inference's.
    let at = state.clock.now();
    let segment_model = model.clone();
    let (lines, accepted) = tokio::task::spawn_blocking(move || {
        let bytes = body::decode(raw, encoding, limit)?;
        let labels = crate::feedback::parse(&bytes)?;
        Ok::<_, Error>((
            crate::feedback::segment(&segment_model, &labels, at),
            labels.len(),
        ))
    })
    .await
    .map_err(|err| Error::Internal(format!("feedback parsing task failed: {err}")))??;
    log.write(&model, lines, at).await?;
    ::metrics::counter!(metrics::FEEDBACK_LABELS, "model" => model.clone()).increment(accepted as u64);
    if !logged {
        // Kept all the same: they may answer predictions logged before
        // logging was turned off, or by another gateway.
        return Ok(Json(json!({
            "accepted": accepted,
            "logged": false,
            "warning": format!(
                "'{model}' logs no predictions here (its deployment has no log_sample_rate): these labels are kept, but join only with predictions logged elsewhere or earlier; `sluice traffic set {model} --log-sample-rate R` turns logging on"
            ),
        })));
    }
    Ok(Json(json!({ "accepted": accepted, "logged": true })))
}
