//! The Open Inference Protocol endpoints.

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::AppState;
use super::accounting::Accounting;
use super::admission;
use super::body::{self, Encoding};
use super::inference::{self, Logging, Mirrors, SideEffects};
use crate::error::{Error, Result};
use crate::metrics;
use crate::predlog::RouteKind;
use crate::protocol::{self, ModelMetadata, ServerMetadata};
use crate::routing::Picked;
use crate::stats::Outcome;
use sluice_registry_client::limits::check_request_id;

pub const MODEL_VERSION_HEADER: &str = "x-model-version";
pub use super::inference::REQUEST_ID_HEADER;

pub async fn live() -> Json<serde_json::Value> {
    Json(json!({ "live": true }))
}

pub async fn ready(State(state): State<Arc<AppState>>) -> Response {
    let ready = state.health.is_ready();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(json!({ "ready": ready }))).into_response()
}

pub async fn server_metadata() -> Json<ServerMetadata> {
    Json(ServerMetadata {
        name: "sluice",
        version: env!("CARGO_PKG_VERSION"),
        extensions: protocol::EXTENSIONS,
    })
}

pub async fn model_metadata(
    State(state): State<Arc<AppState>>,
    Path(model): Path<String>,
) -> Result<Response> {
    metadata(&state, &model, None)
}

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
    let table = state.routes.load();
    let mut index: Vec<(String, u64, serde_json::Value)> = Vec::new();
    for (name, route) in &table.routes {
        for model in route.versions.values() {
            index.push((
                name.clone(),
                model.version,
                json!({ "name": name, "version": model.version_label, "state": "READY" }),
            ));
        }
    }
    if !ready_only {
        for ((name, version), reason) in &table.load_failures {
            let serving = table
                .routes
                .get(name)
                .is_some_and(|route| route.versions.contains_key(version));
            if !serving {
                let entry = json!({ "name": name, "version": version.to_string(), "state": "UNAVAILABLE", "reason": reason });
                index.push((name.clone(), *version, entry));
            }
        }
    }
    index.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    let entries: Vec<serde_json::Value> = index.into_iter().map(|(_, _, entry)| entry).collect();
    Ok(Json(entries).into_response())
}

pub async fn model_ready(State(state): State<Arc<AppState>>, Path(model): Path<String>) -> Result<Response> {
    model_readiness(&state, &model, None)
}

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

pub async fn infer(
    State(state): State<Arc<AppState>>,
    Path(model): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    infer_and_count(&state, &model, None, &headers, body).await
}

pub async fn infer_version(
    State(state): State<Arc<AppState>>,
    Path((model, version)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    infer_and_count(&state, &model, Some(&version), &headers, body).await
}

/// Keeps the in-flight gauge honest even when a client hangs up mid-request.
struct InFlight;

impl InFlight {
    fn enter() -> InFlight {
        metrics::in_flight().increment(1.0);
        InFlight
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        metrics::in_flight().decrement(1.0);
    }
}

/// A request refused before it reached a version: counted under empty
/// labels, so that a scan of random names cannot explode the metric's
/// cardinality, and never against a version.
fn unrouted(refused: Error, started: Instant) -> Response {
    let response = refused.into_response();
    let code = response.status().as_u16().to_string();
    ::metrics::counter!(metrics::REQUESTS, "model" => "", "version" => "", "code" => code).increment(1);
    ::metrics::histogram!(metrics::REQUEST_DURATION, "model" => "", "version" => "")
        .record(started.elapsed().as_secs_f64());
    response
}

/// The caller's `x-request-id` for a logged prediction: kept with it and
/// joined on by the registry, so it must be short (400 otherwise).
fn logged_request_id(headers: &HeaderMap) -> Result<Option<String>> {
    let Some(value) = headers.get(REQUEST_ID_HEADER) else {
        return Ok(None);
    };
    check_request_id(value.to_str().unwrap_or_default(), REQUEST_ID_HEADER).map_err(Error::BadRequest)?;
    Ok(value.to_str().ok().map(str::to_string))
}

/// Whether and where the prediction is logged (`log_opt`: the route's
/// sample, with its inputs or not), under which caller's id.
fn logging(
    state: &AppState,
    headers: &HeaderMap,
    log_opt: Option<bool>,
    route: RouteKind,
    started: Instant,
) -> Result<Option<Logging>> {
    let (Some(with_inputs), Some(log)) = (log_opt, state.predictions_opt.clone()) else {
        return Ok(None);
    };
    Ok(Some(Logging {
        log,
        with_inputs,
        route,
        started,
        request_id_opt: logged_request_id(headers)?,
    }))
}

async fn infer_and_count(
    state: &AppState,
    model_name: &str,
    version_opt: Option<&str>,
    headers: &HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    // The one routing-table load of this request, and its pick; the Arc
    // keeps the version alive until we answer, whatever swaps happen meanwhile.
    let picked = state.routes.load().pick(model_name, version_opt, headers);
    let Picked {
        model,
        shadow_opt,
        canary,
        pinned,
        compare_with_opt,
        stable_opt,
        log_opt,
        contract_opt,
        slots,
    } = match picked {
        Ok(picked) => picked,
        Err(err) => return unrouted(err, started),
    };
    let (admitted, body) = match admission::admit(state, model_name, Some(&slots), headers, body).await {
        Ok(admitted) => admitted,
        Err(refused) => return unrouted(refused, started),
    };
    let _in_flight = InFlight::enter();
    let canary_of_opt = stable_opt.filter(|_| canary);
    let accounting = Accounting::new(state, model.clone(), canary_of_opt, pinned, started);
    if model.watch.is_hung() {
        // Refused at once rather than queued behind the hung run, and
        // counted against the version: a hung canary fails its checks.
        ::metrics::counter!(metrics::UNHEALTHY_REFUSED, "model" => model.name.clone()).increment(1);
        let unhealthy = Error::Unhealthy(format!(
            "model '{}' version {} is unhealthy: one of its runs has gone past the hang bound; retry later",
            model.name, model.version
        ));
        let mut response = admission::refuse(unhealthy, headers, body).await.into_response();
        response.headers_mut().insert(
            HeaderName::from_static(MODEL_VERSION_HEADER),
            HeaderValue::from_str(&model.version_label).expect("a version number is a valid header value"),
        );
        accounting.finish(response.status().as_u16(), Outcome::Failed);
        return response;
    }
    let mirrors = Mirrors {
        shadow_opt,
        compare_with_opt,
    };
    let route = match (pinned, canary) {
        (true, _) => RouteKind::Pinned,
        (false, true) => RouteKind::Canary,
        (false, false) => RouteKind::Primary,
    };
    let run = match logging(state, headers, log_opt, route, started) {
        Err(refused) => Err(admission::refuse(refused, headers, body).await),
        Ok(logging_opt) => {
            let sides = SideEffects {
                mirrors,
                logging_opt,
                count_drift: !pinned,
                contract_opt,
            };
            inference::run(state, &model, sides, headers, body, admitted, started).await
        }
    };
    let refused = matches!(run, Err(Error::EngineRefused(_)));
    let mut response = match run {
        Ok(response) => response,
        Err(Error::BodyBudget) => admission::rejected(model_name, "bytes", Error::BodyBudget).into_response(),
        Err(err) => err.into_response(),
    };
    // Errors too say which version judged the request.
    response.headers_mut().insert(
        HeaderName::from_static(MODEL_VERSION_HEADER),
        HeaderValue::from_str(&model.version_label).expect("a version number is a valid header value"),
    );
    let code = response.status().as_u16();
    let outcome = if refused {
        Outcome::EngineRefused
    } else if response
        .extensions()
        .get::<inference::NonFiniteOutputs>()
        .is_some()
    {
        Outcome::NonFinite
    } else {
        Outcome::of(code)
    };
    accounting.finish(code, outcome);
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
