//! `GET /api/v1/gateways`: the fleet. Every gateway that follows this
//! registry says in each statistics report what it serves; this lists them
//! beside the revision they should serve, so that one left behind (cut off,
//! stuck on a load, down) shows.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use sluice_registry_client::types::Fleet;

use super::AppState;
use crate::auth::{Caller, Permission};
use crate::error::Result;
use crate::store::deployments;

#[utoipa::path(
    get,
    path = "/api/v1/gateways",
    tag = "gateways",
    responses((status = 200, body = Fleet))
)]
pub async fn list_gateways(State(state): State<Arc<AppState>>, caller: Caller) -> Result<Json<Fleet>> {
    caller.require(Permission::Read)?;
    // The store's, not this process's feed: another registry may have written since.
    let revision = state
        .blocking(|store, _| store.read(deployments::revision))
        .await?;
    Ok(Json(Fleet {
        revision,
        gateways: state.stats.gateways(state.clock.now_ms()),
    }))
}
