//! Training triggers: each model's policy, firing by hand, the history of
//! runs, and external pipelines reporting a run's end.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use sluice_registry_client::trigger::{
    CompleteRun, FireTrigger, RuleProgress, RunStatus, TriggerRun, TriggerState,
};

use super::{AppState, Body, PathParams, Query};
use crate::auth::{Caller, Permission};
use crate::error::{Error, Result};
use crate::store::events::{self, Change};
use crate::store::{models, triggers};
use crate::trigger::{self, Fired, Firing};

#[utoipa::path(
    get,
    path = "/api/v1/triggers",
    tag = "triggers",
    responses((status = 200, body = Vec<TriggerState>))
)]
pub async fn list_trigger_policies(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> Result<Json<Vec<TriggerState>>> {
    caller.require(Permission::Read)?;
    let mut states = state.blocking(|store, _| store.read(triggers::states)).await?;
    for policy in &mut states {
        policy.progress = progress(&state, &policy.model);
    }
    Ok(Json(states))
}

#[utoipa::path(
    get,
    path = "/api/v1/models/{model}/triggers/policy",
    tag = "triggers",
    params(("model" = String, Path, description = "A model name")),
    responses((status = 200, body = TriggerState))
)]
pub async fn get_trigger_policy(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathParams(model): PathParams<String>,
) -> Result<Json<TriggerState>> {
    caller.require(Permission::Read)?;
    let mut policy = state
        .blocking(move |store, _| store.read(|connection| policy_state(connection, &model)))
        .await?;
    policy.progress = progress(&state, &policy.model);
    Ok(Json(policy))
}

/// Where the monitor left `model`'s windowed rules.
fn progress(state: &AppState, model: &str) -> Vec<RuleProgress> {
    let progress = state
        .trigger_progress
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    progress.get(model).cloned().unwrap_or_default()
}

fn policy_state(connection: &crate::store::sql::Connection<'_>, model: &str) -> Result<TriggerState> {
    models::get(connection, model)?;
    triggers::states(connection)?
        .into_iter()
        .find(|state| state.model == model)
        .ok_or_else(|| Error::not_found(format!("model '{model}' has no trigger policy")))
}

#[utoipa::path(
    put,
    path = "/api/v1/models/{model}/triggers/policy",
    tag = "triggers",
    params(("model" = String, Path, description = "A model name")),
    request_body = sluice_registry_client::trigger::TriggerPolicy,
    responses((status = 200, body = TriggerState))
)]
pub async fn set_trigger_policy(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathParams(model): PathParams<String>,
    Body(body): Body<serde_json::Value>,
) -> Result<Json<TriggerState>> {
    caller.require(Permission::Deploy)?;
    let policy = trigger::parse_policy(body)?;
    trigger::validate(&policy, state.joiner.bucket_ms(), &state.actions)?;
    state
        .blocking(move |store, _| {
            store.write(|tx| {
                models::get(tx, &model)?;
                let before = triggers::find_policy(tx, &model)?;
                triggers::put_policy(tx, &caller.actor, &model, &policy)?;
                let change = Change {
                    actor: &caller.actor,
                    action: "trigger.policy",
                    subject: model.clone(),
                    reason: None,
                    rule: None,
                };
                events::append(tx, change, before.as_ref(), Some(&policy))?;
                policy_state(tx, &model)
            })
        })
        .await
        .map(Json)
}

#[utoipa::path(
    delete,
    path = "/api/v1/models/{model}/triggers/policy",
    tag = "triggers",
    params(("model" = String, Path, description = "A model name")),
    responses((status = 204, description = "The policy is gone"))
)]
pub async fn delete_trigger_policy(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathParams(model): PathParams<String>,
) -> Result<StatusCode> {
    caller.require(Permission::Deploy)?;
    state
        .blocking(move |store, _| {
            store.write(|tx| {
                models::get(tx, &model)?;
                let before = triggers::find_policy(tx, &model)?
                    .ok_or_else(|| Error::not_found(format!("model '{model}' has no trigger policy")))?;
                triggers::delete_policy(tx, &model)?;
                // Runs in progress had only this policy to deliver and expire them.
                for run in triggers::with_status(tx, &[RunStatus::Dispatching, RunStatus::Running])? {
                    if run.model == model {
                        let detail = "the trigger policy was deleted".to_string();
                        trigger::settle(tx, &caller.actor, run.id, RunStatus::Failed, Some(detail))?;
                    }
                }
                let change = Change {
                    actor: &caller.actor,
                    action: "trigger.policy.delete",
                    subject: model.clone(),
                    reason: None,
                    rule: None,
                };
                events::append(tx, change, Some(&before), None::<&()>)?;
                Ok(())
            })
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    post,
    path = "/api/v1/models/{model}/triggers",
    tag = "triggers",
    params(("model" = String, Path, description = "A model name")),
    request_body = FireTrigger,
    responses((status = 201, description = "A new run", body = TriggerRun), (status = 200, description = "The run of the same idempotency key", body = TriggerRun))
)]
/// `POST /api/v1/models/{m}/triggers`: 201 with a new run, 200 with the run
/// an idempotency key already fired, 409 when the concurrency cap holds.
pub async fn fire_trigger(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathParams(model): PathParams<String>,
    Body(body): Body<FireTrigger>,
) -> Result<(StatusCode, Json<TriggerRun>)> {
    caller.require(Permission::Deploy)?;
    if body
        .idempotency_key
        .as_ref()
        .is_some_and(|key| key.trim().is_empty())
    {
        return Err(Error::bad_request("idempotency_key is empty"));
    }
    let now = state.clock.now_ms();
    let fired = state
        .blocking(move |store, _| {
            store.write(|tx| {
                models::get(tx, &model)?;
                let key = body
                    .idempotency_key
                    .clone()
                    .map(|key| format!("manual:{model}:{key}"))
                    .unwrap_or_else(|| format!("manual:{model}:{now}:{}", caller.actor));
                trigger::fire(
                    tx,
                    Firing {
                        actor: &caller.actor,
                        model: &model,
                        reason: "manual",
                        evidence: serde_json::json!({ "note": body.note, "by": caller.actor }),
                        window: (now, now),
                        idempotency_key: key,
                        now_ms: now,
                    },
                )
            })
        })
        .await?;
    match fired {
        Fired::New(run) => Ok((StatusCode::CREATED, Json(run))),
        Fired::Existing(run) => Ok((StatusCode::OK, Json(run))),
        Fired::Skipped(why) => Err(Error::conflict(format!("not fired: {why}"))),
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RunsQuery {
    model: Option<String>,
    /// Newest first; default 50, at most 1000.
    limit: Option<u32>,
}

#[utoipa::path(
    get,
    path = "/api/v1/triggers/runs",
    tag = "triggers",
    params(RunsQuery),
    responses((status = 200, body = Vec<TriggerRun>))
)]
pub async fn list_trigger_runs(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Query(query): Query<RunsQuery>,
) -> Result<Json<Vec<TriggerRun>>> {
    caller.require(Permission::Read)?;
    let limit = query.limit.unwrap_or(50).clamp(1, 1000);
    state
        .blocking(move |store, _| {
            store.read(|connection| {
                if let Some(model) = &query.model {
                    models::get(connection, model)?;
                }
                triggers::list(connection, query.model.as_deref(), limit)
            })
        })
        .await
        .map(Json)
}

#[utoipa::path(
    get,
    path = "/api/v1/triggers/runs/{id}",
    tag = "triggers",
    params(("id" = u64, Path)),
    responses((status = 200, body = TriggerRun))
)]
pub async fn get_trigger_run(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathParams(id): PathParams<u64>,
) -> Result<Json<TriggerRun>> {
    caller.require(Permission::Read)?;
    state
        .blocking(move |store, _| store.read(|connection| triggers::get(connection, id)))
        .await
        .map(Json)
}

#[utoipa::path(
    post,
    path = "/api/v1/triggers/runs/{id}/complete",
    tag = "triggers",
    params(("id" = u64, Path)),
    request_body = CompleteRun,
    responses((status = 200, body = TriggerRun))
)]
/// An external pipeline says its run ended (a run that registered a version
/// has succeeded already).
pub async fn complete_trigger_run(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathParams(id): PathParams<u64>,
    Body(body): Body<CompleteRun>,
) -> Result<Json<TriggerRun>> {
    caller.require(Permission::Register)?;
    let status = if body.succeeded {
        RunStatus::Succeeded
    } else {
        RunStatus::Failed
    };
    state
        .blocking(move |store, _| {
            store.write(|tx| trigger::settle(tx, &caller.actor, id, status, body.detail))
        })
        .await
        .map(Json)
}
