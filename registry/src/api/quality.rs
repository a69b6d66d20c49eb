//! Behavioural suites (`/models/{model}/suite`), their runs on a version
//! (`/versions/{version}/suite-runs`, `/suite-report`), and realized
//! performance per slice (`/models/{model}/slices`).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use sluice_registry_client::slices::SliceReport;
use sluice_registry_client::suite::{RunSuite, StoredSuite, Suite, SuiteReport};

use super::{AppState, Body, PathParams, Query};
use crate::auth::{Caller, Permission};
use crate::error::{Error, Result};
use crate::store::{suites, versions};

#[utoipa::path(
    put,
    path = "/api/v1/models/{model}/suite",
    tag = "quality",
    params(("model" = String, Path, description = "A model name")),
    request_body = Suite,
    responses((status = 201, body = StoredSuite))
)]
pub async fn put_suite(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathParams(model): PathParams<String>,
    Body(suite): Body<Suite>,
) -> Result<(StatusCode, Json<StoredSuite>)> {
    caller.require(Permission::Register)?;
    let stored = state
        .blocking(move |store, _| store.write(|tx| suites::put(tx, &caller.actor, &model, &suite)))
        .await?;
    Ok((StatusCode::CREATED, Json(stored)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SuiteQuery {
    revision: Option<u64>,
}

#[utoipa::path(
    get,
    path = "/api/v1/models/{model}/suite",
    tag = "quality",
    params(("model" = String, Path, description = "A model name"), SuiteQuery),
    responses((status = 200, body = StoredSuite))
)]
pub async fn get_suite(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathParams(model): PathParams<String>,
    Query(query): Query<SuiteQuery>,
) -> Result<Json<StoredSuite>> {
    caller.require(Permission::Read)?;
    state
        .blocking(move |store, _| store.read(|connection| suites::get(connection, &model, query.revision)))
        .await
        .map(Json)
}

#[utoipa::path(
    post,
    path = "/api/v1/models/{model}/versions/{version}/suite-runs",
    tag = "quality",
    params(("model" = String, Path, description = "A model name"), ("version" = String, Path, description = "A version number, or an alias")),
    request_body = RunSuite,
    responses((status = 201, body = SuiteReport))
)]
/// Runs the suite now and answers its report, passed or not (a failed
/// suite is a finding, not an error).
pub async fn run_suite(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathParams((model, reference)): PathParams<(String, String)>,
    Body(body): Body<RunSuite>,
) -> Result<(StatusCode, Json<SuiteReport>)> {
    caller.require(Permission::Register)?;
    let version = state
        .blocking(move |store, _| store.read(|connection| versions::resolve(connection, &model, &reference)))
        .await?;
    let report = crate::quality::run_suite(&state, &version, body.revision, &caller.actor).await?;
    Ok((StatusCode::CREATED, Json(report)))
}

#[utoipa::path(
    get,
    path = "/api/v1/models/{model}/versions/{version}/suite-report",
    tag = "quality",
    params(("model" = String, Path, description = "A model name"), ("version" = String, Path, description = "A version number, or an alias")),
    responses((status = 200, body = SuiteReport))
)]
pub async fn suite_report(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathParams((model, reference)): PathParams<(String, String)>,
) -> Result<Json<SuiteReport>> {
    caller.require(Permission::Read)?;
    state
        .blocking(move |store, _| {
            store.read(|connection| {
                let version = versions::resolve(connection, &model, &reference)?;
                suites::latest_report(connection, &model, version.version)?.ok_or_else(|| {
                    Error::not_found(format!(
                        "version {} of '{model}' has not run a suite: `sluice versions test {model} {}`",
                        version.version, version.version
                    ))
                })
            })
        })
        .await
        .map(Json)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SliceQuery {
    /// A version number or alias; the version serving most traffic by default.
    version: Option<String>,
    /// How far back, in milliseconds; what the join keeps by default (what
    /// slice gates look at).
    window_ms: Option<u64>,
}

#[utoipa::path(
    get,
    path = "/api/v1/models/{model}/slices",
    tag = "quality",
    params(("model" = String, Path, description = "A model name"), SliceQuery),
    responses((status = 200, body = SliceReport))
)]
pub async fn model_slices(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathParams(model): PathParams<String>,
    Query(query): Query<SliceQuery>,
) -> Result<Json<SliceReport>> {
    caller.require(Permission::Read)?;
    let version = state
        .blocking(move |store, _| {
            store.read(|connection| {
                crate::store::models::get(connection, &model)?;
                match &query.version {
                    Some(reference) => versions::resolve(connection, &model, reference),
                    None => {
                        let number =
                            crate::trigger::serving_version(connection, &model)?.ok_or_else(|| {
                                Error::bad_request(format!(
                                    "'{model}' has no deployment: name a version (`?version=`, `--version`)"
                                ))
                            })?;
                        versions::get(connection, &model, number)
                    }
                }
            })
        })
        .await?;
    let window_ms = query.window_ms.unwrap_or_else(|| state.joiner.retained_ms());
    Ok(Json(crate::quality::slice_report(&state, &version, window_ms)))
}
