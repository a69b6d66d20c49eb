//! `/metrics` of the standalone registry: the process's series (drift,
//! slices, performance, triggers, rollouts), less those of versions no
//! deployment holds any more, as gateways leave out retired versions'.

use std::collections::HashSet;
use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::error::Result;
use crate::state::AppState;
use crate::store::deployments;
use crate::store::sql::Connection;

/// What renders the process's Prometheus text.
pub type Render = Arc<dyn Fn() -> String + Send + Sync>;

/// `GET /metrics`, unauthenticated as a gateway's is: Prometheus scrapes it.
pub fn router(state: Arc<AppState>, render: Render) -> Router {
    Router::new().route("/metrics", get(move || serve(state.clone(), render.clone())))
}

async fn serve(state: Arc<AppState>, render: Render) -> Response {
    let live = match state.blocking(|store, _| store.read(live_versions)).await {
        Ok(live) => live,
        Err(err) => return err.into_response(),
    };
    let text = sluice_common::exposition::render_live(&render(), &live);
    let mut response = text.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

/// Every version a deployment holds, as a target (whatever its weight: it
/// is loaded, and its monitor gauges are set) or as its shadow.
fn live_versions(connection: &Connection<'_>) -> Result<HashSet<(String, String)>> {
    let mut live = HashSet::new();
    for deployment in deployments::list(connection)?.deployments {
        let shadow = deployment.spec.shadow.iter().map(|shadow| shadow.version);
        for version in deployment
            .spec
            .targets
            .iter()
            .map(|target| target.version)
            .chain(shadow)
        {
            live.insert((deployment.model.clone(), version.to_string()));
        }
    }
    Ok(live)
}
