//! Progressive rollouts (start, status, pause, resume, promote, abort), the
//! statistics gateways report, and their local guards' rollbacks.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use sluice_registry_client::rollout::{GuardReport, Rollout, StartRollout, StatsReport, VersionWindow};

use super::{AppState, Body, PathParams, Query};
use crate::auth::{Caller, Permission};
use crate::error::{Error, Result};
use crate::rollout;
use crate::store::{models, rollouts, versions};

#[utoipa::path(
    post,
    path = "/api/v1/rollouts/{model}",
    tag = "rollouts",
    params(("model" = String, Path, description = "A model name")),
    request_body = StartRollout,
    responses((status = 201, body = Rollout))
)]
pub async fn start_rollout(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathParams(model): PathParams<String>,
    Body(body): Body<StartRollout>,
) -> Result<(StatusCode, Json<Rollout>)> {
    caller.require(Permission::Deploy)?;
    if let Some(url) = &body.policy.webhook {
        state
            .actions
            .check_url(url)
            .map_err(|err| Error::bad_request(format!("policy.webhook: {err}")))?;
    }
    let gates = crate::quality::QualityGates::for_rollout(&state.policy);
    if gates.require_suite {
        // The cheap refusals before the suite, which loads the model.
        let (model, check) = (model.clone(), body.clone());
        let at = rollout::StartAt::of(&state);
        let version = state
            .blocking(move |store, _| {
                store.read(|connection| {
                    rollout::check_start(connection, &model, &check, at)?;
                    versions::get(connection, &model, check.canary)
                })
            })
            .await?;
        gates.check(&state, &version, &caller.actor).await?;
    }
    let feed = state.revision.clone();
    let at = rollout::StartAt::of(&state);
    let decided = state
        .blocking(move |store, policy| {
            let decided = store.write(|tx| rollout::start(tx, policy, &caller.actor, &model, &body, at))?;
            if let Some(revision) = decided.revision_opt {
                feed.publish(revision);
            }
            Ok(decided)
        })
        .await?;
    decided.announce(&state);
    Ok((StatusCode::CREATED, Json(decided.rollout)))
}

#[utoipa::path(
    get,
    path = "/api/v1/rollouts/{model}",
    tag = "rollouts",
    params(("model" = String, Path, description = "A model name")),
    responses((status = 200, body = Rollout))
)]
pub async fn get_rollout(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathParams(model): PathParams<String>,
) -> Result<Json<Rollout>> {
    caller.require(Permission::Read)?;
    state
        .blocking(move |store, _| {
            store.read(|connection| {
                models::get(connection, &model)?;
                rollouts::find(connection, &model)?
                    .ok_or_else(|| Error::not_found(format!("model '{model}' has no rollout")))
            })
        })
        .await
        .map(Json)
}

#[utoipa::path(
    post,
    path = "/api/v1/rollouts/{model}/{action}",
    tag = "rollouts",
    params(("model" = String, Path, description = "A model name"), ("action" = String, Path, description = "pause, resume, promote or abort")),
    responses((status = 200, body = Rollout))
)]
pub async fn rollout_action(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathParams((model, action)): PathParams<(String, String)>,
) -> Result<Json<Rollout>> {
    caller.require(Permission::Deploy)?;
    let feed = state.revision.clone();
    let now = state.clock.now_ms();
    let decided = state
        .blocking(move |store, policy| {
            let decided = store.write(|tx| {
                models::get(tx, &model)?;
                rollout::act(tx, policy, &caller.actor, &model, &action, now)
            })?;
            if let Some(revision) = decided.revision_opt {
                feed.publish(revision);
            }
            Ok(decided)
        })
        .await?;
    decided.announce(&state);
    Ok(Json(decided.rollout))
}

#[utoipa::path(
    post,
    path = "/api/v1/stats",
    tag = "gateways",
    request_body = StatsReport,
    responses((status = 204, description = "Recorded"))
)]
pub async fn report_stats(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Body(report): Body<StatsReport>,
) -> Result<StatusCode> {
    caller.require(Permission::Report)?;
    if let Some(window) = report.versions.iter().find(|window| !window.is_well_formed()) {
        return Err(Error::bad_request(format!(
            "window of {} version {}: expected {} latency buckets and finite differences",
            window.model,
            window.version,
            sluice_registry_client::rollout::LATENCY_BUCKETS_MS.len() + 1
        )));
    }
    state.stats.record(report, state.clock.now_ms());
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StatsQuery {
    /// How far back, in milliseconds (default a minute).
    window_ms: Option<u64>,
}

#[utoipa::path(
    get,
    path = "/api/v1/stats/{model}",
    tag = "monitoring",
    params(("model" = String, Path, description = "A model name"), StatsQuery),
    responses((status = 200, body = Vec<VersionWindow>))
)]
pub async fn model_stats(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathParams(model): PathParams<String>,
    Query(query): Query<StatsQuery>,
) -> Result<Json<Vec<VersionWindow>>> {
    caller.require(Permission::Read)?;
    let window = Duration::from_millis(query.window_ms.unwrap_or(60_000));
    let since = state.clock.now_ms().saturating_sub(window.as_millis() as u64);
    Ok(Json(state.stats.model_since(&model, since)))
}

#[utoipa::path(
    post,
    path = "/api/v1/guard/{model}",
    tag = "gateways",
    params(("model" = String, Path, description = "A model name")),
    request_body = GuardReport,
    responses((status = 204, description = "Recorded"))
)]
pub async fn report_guard(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathParams(model): PathParams<String>,
    Body(report): Body<GuardReport>,
) -> Result<StatusCode> {
    caller.require(Permission::Report)?;
    let feed = state.revision.clone();
    let decided_opt = state
        .blocking(move |store, policy| {
            let decided_opt = store.write(|tx| {
                models::get(tx, &model)?;
                rollout::guard(tx, policy, &caller.actor, &model, &report)
            })?;
            // The guard's rollback moved weights with or without a rollout.
            feed.publish(store.read(crate::store::deployments::revision)?);
            Ok(decided_opt)
        })
        .await?;
    if let Some(decided) = decided_opt {
        decided.announce(&state);
    }
    Ok(StatusCode::NO_CONTENT)
}
