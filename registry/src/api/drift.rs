//! `GET /api/v1/models/{model}/drift`: a version's live traffic against its
//! reference profile, over a sliding window of what gateways reported.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use sluice_registry_client::profile::{DriftReport, DriftThresholds};

use super::{AppState, PathParams, Query};
use crate::auth::{Caller, Permission};
use crate::error::{Error, Result};
use crate::store::{deployments, versions};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DriftQuery {
    /// A version number or alias; the deployment's heaviest target by default.
    version: Option<String>,
    /// How far back, in milliseconds (default ten minutes).
    window_ms: Option<u64>,
    /// How long before now the window ends, in milliseconds (default 0): a
    /// past window, for drift over time, within the statistics the registry
    /// keeps. Relative, so a client needs no clock of the registry's.
    ago_ms: Option<u64>,
    min_rows: Option<u64>,
    psi_drift: Option<f64>,
    psi_warning: Option<f64>,
    js_drift: Option<f64>,
    dataset_share: Option<f64>,
}

#[utoipa::path(
    get,
    path = "/api/v1/models/{model}/drift",
    tag = "monitoring",
    params(("model" = String, Path, description = "A model name"), DriftQuery),
    responses((status = 200, body = DriftReport))
)]
pub async fn model_drift(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathParams(model): PathParams<String>,
    Query(query): Query<DriftQuery>,
) -> Result<Json<DriftReport>> {
    caller.require(Permission::Read)?;
    let defaults = DriftThresholds::default();
    let thresholds = DriftThresholds {
        psi_drift: query.psi_drift.unwrap_or(defaults.psi_drift),
        psi_warning: query.psi_warning.unwrap_or(defaults.psi_warning),
        js_drift: query.js_drift.unwrap_or(defaults.js_drift),
        dataset_share: query.dataset_share.unwrap_or(defaults.dataset_share),
        min_rows: query.min_rows.unwrap_or(defaults.min_rows),
    };
    let window_ms = query.window_ms.unwrap_or(10 * 60 * 1000);
    let reference_opt = query.version.clone();
    let (version, profile) = state
        .blocking(move |store, _| {
            store.read(|connection| {
                crate::store::models::get(connection, &model)?;
                let version = match reference_opt {
                    Some(reference) => versions::resolve(connection, &model, &reference)?,
                    None => {
                        let deployment = deployments::find(connection, &model)?.ok_or_else(|| {
                            Error::bad_request(format!("'{model}' has no deployment: give ?version="))
                        })?;
                        let heaviest = deployment
                            .spec
                            .targets
                            .iter()
                            .max_by_key(|target| (target.weight, target.version))
                            .map(|target| target.version)
                            .unwrap_or_default();
                        versions::get(connection, &model, heaviest)?
                    }
                };
                let profile = crate::drift::load_profile(connection, &model, version.version)?.ok_or_else(|| {
                    Error::not_found(format!(
                        "version {} of '{model}' has no reference profile: store one with `sluice profile create`",
                        version.version
                    ))
                })?;
                Ok((version, profile))
            })
        })
        .await?;
    let now = state.clock.now_ms();
    let window = match query.ago_ms.filter(|ago| *ago > 0) {
        // Up to now, and windows a gateway's clock ends a little ahead.
        None => state
            .stats
            .since(&version.model, version.version, now.saturating_sub(window_ms)),
        Some(ago) => {
            let end = now.saturating_sub(ago);
            state.stats.between(
                &version.model,
                version.version,
                end.saturating_sub(window_ms),
                end,
            )
        }
    };
    Ok(Json(crate::drift::report(
        &version.model,
        version.version,
        window_ms,
        &profile,
        &window,
        thresholds,
    )))
}
