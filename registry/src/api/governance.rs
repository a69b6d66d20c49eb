//! Stage transitions (request, approve, reject) and aliases.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use sluice_registry_client::types::{
    Alias, Decision, GateResult, RequestTransition, ReviewTransition, SetAlias, Stage, Transition,
    TransitionStatus,
};

use super::{AppState, Body, PathParams, Query};
use crate::auth::{Caller, Permission};
use crate::error::Result;
use crate::store::{aliases, governance, versions};

#[utoipa::path(
    post,
    path = "/api/v1/models/{model}/versions/{version}/transitions",
    tag = "governance",
    params(("model" = String, Path, description = "A model name"), ("version" = String, Path, description = "A version number, or an alias")),
    request_body = RequestTransition,
    responses((status = 201, body = Transition))
)]
pub async fn request_transition(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathParams((model, version)): PathParams<(String, String)>,
    Body(body): Body<RequestTransition>,
) -> Result<(StatusCode, Json<Transition>)> {
    caller.require(Permission::Register)?;
    // The cheap refusals first, then the gates, all failures in one
    // answer. A suite loads the model, so it runs outside the write
    // transaction, which checks everything again on the version checked
    // (not on what an alias points at by then).
    let check = body.clone();
    let resolved = state
        .blocking(move |store, _| {
            store.read(|connection| {
                let resolved = versions::resolve(connection, &model, &version)?;
                governance::check_request(connection, &resolved, &check)?;
                Ok(resolved)
            })
        })
        .await?;
    crate::quality::QualityGates::for_stage(&state.policy, body.to_stage)
        .check(&state, &resolved, &caller.actor)
        .await?;
    let transition = state
        .blocking(move |store, policy| {
            store.write(|tx| {
                let version = versions::get(tx, &resolved.model, resolved.version)?;
                governance::request(tx, policy, &caller.actor, &version, &body)
            })
        })
        .await?;
    Ok((StatusCode::CREATED, Json(transition)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TransitionFilter {
    model: Option<String>,
    status: Option<TransitionStatus>,
}

#[utoipa::path(
    get,
    path = "/api/v1/transitions",
    tag = "governance",
    params(TransitionFilter),
    responses((status = 200, body = Vec<Transition>))
)]
pub async fn list_transitions(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Query(filter): Query<TransitionFilter>,
) -> Result<Json<Vec<Transition>>> {
    caller.require(Permission::Read)?;
    state
        .blocking(move |store, policy| {
            store.read(|connection| {
                governance::list(connection, policy, filter.model.as_deref(), filter.status)
            })
        })
        .await
        .map(Json)
}

#[utoipa::path(
    get,
    path = "/api/v1/transitions/{id}",
    tag = "governance",
    params(("id" = u64, Path)),
    responses((status = 200, body = Transition))
)]
pub async fn get_transition(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathParams(id): PathParams<u64>,
) -> Result<Json<Transition>> {
    caller.require(Permission::Read)?;
    state
        .blocking(move |store, policy| store.read(|connection| governance::get(connection, policy, id)))
        .await
        .map(Json)
}

#[utoipa::path(
    get,
    path = "/api/v1/transitions/{id}/gates",
    tag = "governance",
    params(("id" = u64, Path)),
    responses((status = 200, body = Vec<GateResult>))
)]
/// Each gate of the transition's target stage, judged now: what an
/// approver reads before approving.
pub async fn transition_gates(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathParams(id): PathParams<u64>,
) -> Result<Json<Vec<GateResult>>> {
    caller.require(Permission::Read)?;
    let (transition, version) = state
        .blocking(move |store, policy| {
            store.read(|connection| {
                let transition = governance::get(connection, policy, id)?;
                let version = versions::get(connection, &transition.model, transition.version)?;
                Ok((transition, version))
            })
        })
        .await?;
    crate::quality::gate_results(&state, &version, transition.to_stage)
        .await
        .map(Json)
}

#[utoipa::path(
    post,
    path = "/api/v1/transitions/{id}/approve",
    tag = "governance",
    params(("id" = u64, Path)),
    request_body = ReviewTransition,
    responses((status = 200, body = Transition))
)]
pub async fn approve_transition(
    state: State<Arc<AppState>>,
    caller: Caller,
    id: PathParams<u64>,
    body: Body<ReviewTransition>,
) -> Result<Json<Transition>> {
    review(state, caller, id, body, Decision::Approve).await
}

#[utoipa::path(
    post,
    path = "/api/v1/transitions/{id}/reject",
    tag = "governance",
    params(("id" = u64, Path)),
    request_body = ReviewTransition,
    responses((status = 200, body = Transition))
)]
pub async fn reject_transition(
    state: State<Arc<AppState>>,
    caller: Caller,
    id: PathParams<u64>,
    body: Body<ReviewTransition>,
) -> Result<Json<Transition>> {
    review(state, caller, id, body, Decision::Reject).await
}

async fn review(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathParams(id): PathParams<u64>,
    Body(body): Body<ReviewTransition>,
    decision: Decision,
) -> Result<Json<Transition>> {
    caller.require(Permission::Review)?;
    let transition = state
        .blocking(move |store, policy| {
            store.write(|tx| governance::review(tx, policy, &caller.actor, id, decision, &body))
        })
        .await?;
    // A rollout awaiting this production entry finishes now, not at its
    // next tick; in its own transaction, so that the approval stands even
    // if it cannot (the tick tries again).
    if transition.status == TransitionStatus::Applied && transition.to_stage == Stage::Production {
        let model = transition.model.clone();
        let promoted = state
            .blocking(move |store, policy| {
                store.write(|tx| crate::rollout::promote_if_awaiting(tx, policy, &model))
            })
            .await;
        match promoted {
            Ok(Some(decided)) => decided.announce(&state),
            Ok(None) => {}
            Err(err) => {
                tracing::warn!(model = %transition.model, error = %err, "the awaiting rollout was not promoted yet")
            }
        }
    }
    Ok(Json(transition))
}

#[utoipa::path(
    get,
    path = "/api/v1/models/{model}/aliases",
    tag = "governance",
    params(("model" = String, Path, description = "A model name")),
    responses((status = 200, body = Vec<Alias>))
)]
pub async fn list_aliases(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathParams(model): PathParams<String>,
) -> Result<Json<Vec<Alias>>> {
    caller.require(Permission::Read)?;
    state
        .blocking(move |store, _| store.read(|connection| aliases::list(connection, &model)))
        .await
        .map(Json)
}

#[utoipa::path(
    put,
    path = "/api/v1/models/{model}/aliases/{alias}",
    tag = "governance",
    params(("model" = String, Path, description = "A model name"), ("alias" = String, Path, description = "An alias name")),
    request_body = SetAlias,
    responses((status = 200, body = Alias))
)]
pub async fn set_alias(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathParams((model, alias)): PathParams<(String, String)>,
    Body(body): Body<SetAlias>,
) -> Result<Json<Alias>> {
    caller.require(Permission::Deploy)?;
    state
        .blocking(move |store, _| store.write(|tx| aliases::set(tx, &caller.actor, &model, &alias, &body)))
        .await
        .map(Json)
}
