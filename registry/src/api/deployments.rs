//! Deployments (the desired traffic of each endpoint), the long-poll watch
//! gateways follow, and the audit log.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use sluice_registry_client::types::{Deployment, Deployments, Event, SetDeployment};

use super::{AppState, Body, PathParams, Query};
use crate::auth::{Caller, Permission};
use crate::error::{Error, Result};
use crate::store::{deployments, events};

/// How long a watch waits when the caller does not say.
const DEFAULT_WATCH: Duration = Duration::from_secs(30);
/// The longest a watch may wait: proxies cut idle connections after minutes.
const MAX_WATCH: Duration = Duration::from_secs(300);

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct WatchQuery {
    /// Answer once the registry-wide revision passes this.
    watch: Option<u64>,
    timeout_ms: Option<u64>,
}

#[utoipa::path(
    get,
    path = "/api/v1/deployments",
    tag = "deployments",
    params(WatchQuery),
    responses((status = 200, body = Deployments))
)]
/// `GET /api/v1/deployments[?watch=REVISION&timeout_ms=...]`.
pub async fn list_deployments(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Query(query): Query<WatchQuery>,
) -> Result<Json<Deployments>> {
    caller.require(Permission::Read)?;
    if let Some(seen) = query.watch {
        let timeout = query
            .timeout_ms
            .map_or(DEFAULT_WATCH, Duration::from_millis)
            .min(MAX_WATCH);
        let mut revision = state.revision.subscribe();
        let mut stopping = state.stopping.clone();
        tokio::select! {
            // `!=`, not `>`: a caller ahead of this registry (its database
            // was restored from an older backup) gets the truth at once.
            _ = revision.wait_for(|current| *current != seen) => {}
            _ = stopping.wait_for(|stopped| *stopped) => {}
            _ = tokio::time::sleep(timeout) => {}
        }
    }
    state
        .blocking(|store, _| store.read(deployments::list))
        .await
        .map(Json)
}

#[utoipa::path(
    get,
    path = "/api/v1/deployments/{model}",
    tag = "deployments",
    params(("model" = String, Path, description = "A model name")),
    responses((status = 200, body = Deployment))
)]
pub async fn get_deployment(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathParams(model): PathParams<String>,
) -> Result<Json<Deployment>> {
    caller.require(Permission::Read)?;
    state
        .blocking(move |store, _| {
            store.read(|connection| {
                crate::store::models::get(connection, &model)?;
                deployments::find(connection, &model)?
                    .ok_or_else(|| Error::not_found(format!("model '{model}' has no deployment")))
            })
        })
        .await
        .map(Json)
}

#[utoipa::path(
    put,
    path = "/api/v1/deployments/{model}",
    tag = "deployments",
    params(("model" = String, Path, description = "A model name")),
    request_body = SetDeployment,
    responses((status = 200, body = Deployment))
)]
pub async fn set_deployment(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathParams(model): PathParams<String>,
    Body(body): Body<SetDeployment>,
) -> Result<Json<Deployment>> {
    caller.require(Permission::Deploy)?;
    let feed = state.revision.clone();
    let deployment = state
        .blocking(move |store, policy| {
            let deployment = store.write(|tx| deployments::set(tx, policy, &caller.actor, &model, &body))?;
            feed.publish(deployment.revision);
            Ok(deployment)
        })
        .await?;
    Ok(Json(deployment))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeleteQuery {
    if_revision: Option<u64>,
    reason: Option<String>,
}

#[utoipa::path(
    delete,
    path = "/api/v1/deployments/{model}",
    tag = "deployments",
    params(("model" = String, Path, description = "A model name"), DeleteQuery),
    responses((status = 204, description = "The deployment is gone"))
)]
pub async fn delete_deployment(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathParams(model): PathParams<String>,
    Query(query): Query<DeleteQuery>,
) -> Result<StatusCode> {
    caller.require(Permission::Deploy)?;
    let feed = state.revision.clone();
    state
        .blocking(move |store, _| {
            let revision = store.write(|tx| {
                deployments::delete(
                    tx,
                    &caller.actor,
                    &model,
                    query.if_revision,
                    query.reason.as_deref(),
                )?;
                deployments::revision(tx)
            })?;
            feed.publish(revision);
            Ok(())
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Events with an id above this (a cursor: the last id seen).
    since: Option<u64>,
    /// Events with an id below this (a newest-first page's cursor).
    before: Option<u64>,
    limit: Option<u32>,
    model: Option<String>,
    actor: Option<String>,
    /// `traffic.set`, or a prefix: `rollout.*`.
    action: Option<String>,
    /// `asc` (the default: oldest first, for following) or `desc`.
    order: Option<String>,
}

#[utoipa::path(
    get,
    path = "/api/v1/events",
    tag = "audit",
    params(EventsQuery),
    responses((status = 200, body = Vec<Event>))
)]
pub async fn list_events(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Query(query): Query<EventsQuery>,
) -> Result<Json<Vec<Event>>> {
    caller.require(Permission::Read)?;
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    let newest_first = match query.order.as_deref() {
        None | Some("asc") => false,
        Some("desc") => true,
        Some(other) => {
            return Err(Error::bad_request(format!(
                "order '{other}': expected asc (oldest first) or desc (newest first)"
            )));
        }
    };
    let filter = events::EventFilter {
        since: query.since.unwrap_or(0),
        before: query.before.unwrap_or(0),
        model: query.model,
        actor: query.actor,
        action: query.action,
        newest_first,
    };
    state
        .blocking(move |store, _| store.read(|connection| events::query(connection, &filter, limit)))
        .await
        .map(Json)
}
