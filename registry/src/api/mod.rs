//! `/api/v1`: routes, and extractors that turn every
//! malformed request into `{"error": ...}` with a 4xx.
//!
//! Handlers authenticate first (the [`Caller`] extractor), then run their
//! store work on a blocking thread: SQLite calls never block the reactor.

mod deployments;
mod drift;
mod gateways;
mod governance;
pub mod metrics;
mod performance;
mod quality;
mod rollouts;
mod tokens;
mod triggers;
mod versions;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{Method, Uri, header};
use axum::routing::{get, post, put};
use serde::de::DeserializeOwned;

use crate::auth::{self, Caller, Role};
use crate::error::{Error, Result};
use crate::state::AppState;
use crate::store;
use sluice_common::secrets::hash_token;
use sluice_registry_client::limits::quote;

/// Largest JSON body (documents such as drift profiles included).
const MAX_JSON_BYTES: usize = 16 * 1024 * 1024;

pub fn router(state: Arc<AppState>) -> Router {
    use deployments::*;
    use drift::*;
    use governance::*;
    use performance::*;
    use rollouts::*;
    use triggers::*;
    use versions::*;
    Router::new()
        .route("/api/v1/health", get(health))
        .route("/api/v1/whoami", get(whoami))
        .route("/api/v1/models", get(list_models).post(create_model))
        .route("/api/v1/models/{model}", get(get_model).patch(update_model))
        .route("/api/v1/artifacts", post(upload_artifact))
        .route("/api/v1/artifacts/{sha256}", get(download_artifact))
        .route(
            "/api/v1/models/{model}/versions",
            get(list_versions).post(create_version),
        )
        .route("/api/v1/models/{model}/versions/{version}", get(get_version))
        .route(
            "/api/v1/models/{model}/versions/{version}/documents",
            get(list_documents),
        )
        .route(
            "/api/v1/models/{model}/versions/{version}/documents/{name}",
            get(get_document).put(put_document),
        )
        .route(
            "/api/v1/models/{model}/versions/{version}/transitions",
            post(request_transition),
        )
        .route("/api/v1/transitions", get(list_transitions))
        .route("/api/v1/transitions/{id}", get(get_transition))
        .route("/api/v1/transitions/{id}/approve", post(approve_transition))
        .route("/api/v1/transitions/{id}/reject", post(reject_transition))
        .route("/api/v1/models/{model}/aliases", get(list_aliases))
        .route("/api/v1/models/{model}/aliases/{alias}", put(set_alias))
        .route("/api/v1/deployments", get(list_deployments))
        .route(
            "/api/v1/deployments/{model}",
            get(get_deployment).put(set_deployment).delete(delete_deployment),
        )
        .route("/api/v1/events", get(list_events))
        .route(
            "/api/v1/tokens",
            get(tokens::list_tokens).post(tokens::create_token),
        )
        .route("/api/v1/tokens/{id}/revoke", post(tokens::revoke_token))
        .route("/api/v1/rollouts/{model}", get(get_rollout).post(start_rollout))
        .route("/api/v1/rollouts/{model}/{action}", post(rollout_action))
        .route("/api/v1/stats", post(report_stats))
        .route("/api/v1/gateways", get(gateways::list_gateways))
        .route("/api/v1/stats/{model}", get(model_stats))
        .route("/api/v1/guard/{model}", post(report_guard))
        .route("/api/v1/models/{model}/drift", get(model_drift))
        .route("/api/v1/models/{model}/performance", get(model_performance))
        .route("/api/v1/models/{model}/slices", get(quality::model_slices))
        .route(
            "/api/v1/models/{model}/suite",
            get(quality::get_suite).put(quality::put_suite),
        )
        .route(
            "/api/v1/models/{model}/versions/{version}/suite-runs",
            post(quality::run_suite),
        )
        .route(
            "/api/v1/models/{model}/versions/{version}/suite-report",
            get(quality::suite_report),
        )
        .route("/api/v1/models/{model}/triggers", post(fire_trigger))
        .route(
            "/api/v1/models/{model}/triggers/policy",
            get(get_trigger_policy)
                .put(set_trigger_policy)
                .delete(delete_trigger_policy),
        )
        .route("/api/v1/triggers", get(list_trigger_policies))
        .route("/api/v1/triggers/runs", get(list_trigger_runs))
        .route("/api/v1/triggers/runs/{id}", get(get_trigger_run))
        .route("/api/v1/triggers/runs/{id}/complete", post(complete_trigger_run))
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method)
        .layer(DefaultBodyLimit::max(MAX_JSON_BYTES))
        .with_state(state)
}

async fn health() -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({ "status": "ok" }))
}

async fn whoami(caller: Caller) -> axum::Json<sluice_registry_client::types::Identity> {
    axum::Json(sluice_registry_client::types::Identity {
        actor: caller.actor,
        role: caller.role.to_string(),
    })
}

async fn no_route(uri: Uri) -> Error {
    Error::not_found(format!("no such endpoint: {}", quote(uri.path())))
}

async fn wrong_method(method: Method, uri: Uri) -> Error {
    Error::MethodNotAllowed(format!("method {method} is not allowed on {}", uri.path()))
}

impl FromRequestParts<Arc<AppState>> for Caller {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Caller> {
        let header_opt = parts
            .headers
            .get(header::AUTHORIZATION)
            .map(|value| value.to_str().unwrap_or_default());
        let token = auth::bearer(header_opt)?;
        let caller = match state.tokens.process_caller(token) {
            Some(caller) => caller,
            None => {
                // The store, not a copy: a token revoked a moment ago is refused now.
                let sha256 = hash_token(token);
                let now = state.clock.now();
                let found = state
                    .blocking(move |store, _| {
                        store.read(|connection| store::tokens::find(connection, &sha256))
                    })
                    .await?;
                auth::caller_of(found, now)?
            }
        };
        // Every write also checks its own permission, after its body is
        // read; this refuses a read-only token before any body is, so that
        // no write path can forget a viewer.
        let reads = matches!(parts.method, axum::http::Method::GET | axum::http::Method::HEAD);
        if !reads && caller.role == Role::Viewer {
            return Err(Error::Forbidden(format!(
                "{} has role viewer, which may only read: a change needs a token of role deployer, approver, gateway or admin",
                caller.actor
            )));
        }
        Ok(caller)
    }
}

/// A JSON body, whatever its Content-Type (curl sends form encoding by
/// default); a rejection is a 400 `{"error": ...}` naming the problem. The
/// whole body must arrive within the upload timeout (408): a client
/// trickling one must not hold a connection and a buffer for ever.
pub struct Body<T>(pub T);

impl<T: DeserializeOwned> FromRequest<Arc<AppState>> for Body<T> {
    type Rejection = Error;

    async fn from_request(request: Request, state: &Arc<AppState>) -> Result<Body<T>> {
        let timeout = state.upload_idle_timeout;
        let read = tokio::time::timeout(timeout, bytes::Bytes::from_request(request, state)).await;
        let Ok(read) = read else {
            return Err(Error::BodyTimeout(timeout.as_millis() as u64));
        };
        let bytes = match read {
            Ok(bytes) => bytes,
            Err(rejection) if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE => {
                return Err(Error::BodyTooLarge {
                    limit: MAX_JSON_BYTES,
                });
            }
            Err(rejection) => {
                return Err(Error::bad_request(format!(
                    "cannot read the body: {}",
                    rejection.body_text()
                )));
            }
        };
        serde_json::from_slice(&bytes)
            .map(Body)
            .map_err(|err| Error::bad_request(format!("invalid JSON body: {err}")))
    }
}

/// Query parameters whose rejection is a 400 `{"error": ...}`.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Query<T>> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| Query(value))
            .map_err(|rejection| Error::bad_request(format!("invalid query: {}", rejection.body_text())))
    }
}

/// Path parameters whose rejection is a 400 `{"error": ...}`.
pub struct PathParams<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for PathParams<T> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<PathParams<T>> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| PathParams(value))
            .map_err(|rejection| Error::bad_request(format!("invalid path: {}", rejection.body_text())))
    }
}
