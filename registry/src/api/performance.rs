//! `GET /api/v1/models/{model}/performance`: realized accuracy, AUC or MAE
//! from the labels joined in a window, next to the version's recorded metrics.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use sluice_registry_client::feedback::{Comparison, Performance};

use super::{AppState, PathParams, Query};
use crate::auth::{Caller, Permission};
use crate::error::{Error, Result};
use crate::store::versions;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PerformanceQuery {
    /// A version number or alias; the version serving most traffic by default.
    version: Option<String>,
    /// How far back, in milliseconds (default an hour).
    window_ms: Option<u64>,
}

#[utoipa::path(
    get,
    path = "/api/v1/models/{model}/performance",
    tag = "monitoring",
    params(("model" = String, Path, description = "A model name"), PerformanceQuery),
    responses((status = 200, body = Performance))
)]
pub async fn model_performance(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathParams(model): PathParams<String>,
    Query(query): Query<PerformanceQuery>,
) -> Result<Json<Performance>> {
    caller.require(Permission::Read)?;
    let window_ms = query.window_ms.unwrap_or(3600 * 1000);
    let version = state
        .blocking(move |store, _| {
            store.read(|connection| {
                crate::store::models::get(connection, &model)?;
                let number = match &query.version {
                    Some(reference) => versions::resolve(connection, &model, reference)?.version,
                    None => crate::trigger::serving_version(connection, &model)?.ok_or_else(|| {
                        Error::bad_request(format!("'{model}' has no deployment: give ?version="))
                    })?,
                };
                versions::get(connection, &model, number)
            })
        })
        .await?;
    let now = state.clock.now_ms();
    let mut performance = state.joiner.performance(
        &version.model,
        version.version,
        now.saturating_sub(window_ms),
        now + 1,
    );
    performance.window_ms = window_ms;
    performance.recorded = version.lineage.metrics.clone();
    performance.compared = compare(&performance);
    Ok(Json(performance))
}

/// Each realized metric beside the recorded one of the same name, or its
/// `val_`, `validation_`, `test_` or `train_` variant, in that order.
fn compare(performance: &Performance) -> Vec<Comparison> {
    let realized = [
        ("accuracy", performance.accuracy),
        ("auc", performance.auc),
        ("mae", performance.mae),
    ];
    realized
        .into_iter()
        .filter_map(|(metric, value_opt)| {
            let value = value_opt?;
            let (name, recorded) = ["", "val_", "validation_", "test_", "train_"]
                .iter()
                .map(|prefix| format!("{prefix}{metric}"))
                .find_map(|name| performance.recorded.get(&name).map(|recorded| (name, *recorded)))?;
            Some(Comparison {
                metric: metric.to_string(),
                realized: value,
                recorded_as: name,
                recorded,
                delta: value - recorded,
            })
        })
        .collect()
}
