//! `/api/v1`: routes, and extractors that turn every
//! malformed request into `{"error": ...}` with a 4xx.
//!
//! Handlers authenticate first (the [`Caller`] extractor), then run their
//! store work on a blocking thread: SQLite calls never block the reactor.

pub mod console;
mod deployments;
mod drift;
mod gateways;
mod governance;
pub mod metrics;
mod openapi;
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
use serde::de::DeserializeOwned;
use sluice_registry_client::types::Identity;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{self, Caller, Role};
use crate::error::{Error, Result};
use crate::state::AppState;
use crate::store;
use sluice_common::secrets::hash_token;
use sluice_registry_client::limits::quote;

/// Largest JSON body (documents such as drift profiles included).
const MAX_JSON_BYTES: usize = 16 * 1024 * 1024;

/// The API's routes and its OpenAPI document, from one list: a route is
/// registered with its `#[utoipa::path]`, so none is served undescribed.
pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    use deployments::*;
    use drift::*;
    use governance::*;
    use performance::*;
    use quality::*;
    use rollouts::*;
    use tokens::*;
    use triggers::*;
    use versions::*;
    OpenApiRouter::with_openapi(openapi::base())
        .routes(routes!(health))
        .routes(routes!(whoami))
        .routes(routes!(list_models, create_model))
        .routes(routes!(get_model, update_model))
        .routes(routes!(upload_artifact))
        .routes(routes!(download_artifact))
        .routes(routes!(list_versions, create_version))
        .routes(routes!(get_version))
        .routes(routes!(list_documents))
        .routes(routes!(get_document, put_document))
        .routes(routes!(request_transition))
        .routes(routes!(list_transitions))
        .routes(routes!(get_transition))
        .routes(routes!(transition_gates))
        .routes(routes!(approve_transition))
        .routes(routes!(reject_transition))
        .routes(routes!(list_aliases))
        .routes(routes!(set_alias))
        .routes(routes!(list_deployments))
        .routes(routes!(get_deployment, set_deployment, delete_deployment))
        .routes(routes!(list_events))
        .routes(routes!(list_tokens, create_token))
        .routes(routes!(revoke_token))
        .routes(routes!(get_rollout, start_rollout))
        .routes(routes!(rollout_action))
        .routes(routes!(report_stats))
        .routes(routes!(gateways::list_gateways))
        .routes(routes!(model_stats))
        .routes(routes!(report_guard))
        .routes(routes!(model_drift))
        .routes(routes!(model_performance))
        .routes(routes!(model_slices))
        .routes(routes!(get_suite, put_suite))
        .routes(routes!(run_suite))
        .routes(routes!(suite_report))
        .routes(routes!(fire_trigger))
        .routes(routes!(
            get_trigger_policy,
            set_trigger_policy,
            delete_trigger_policy
        ))
        .routes(routes!(list_trigger_policies))
        .routes(routes!(list_trigger_runs))
        .routes(routes!(get_trigger_run))
        .routes(routes!(complete_trigger_run))
}

/// The API's OpenAPI 3.1 document, as `/openapi.json` serves it and
/// `docs/openapi/registry.json` holds it.
pub fn document() -> utoipa::openapi::OpenApi {
    openapi::finish(routes().into_openapi())
}

/// `/api/v1`, `/openapi.json`, and the console unless `console` is false.
pub fn router(state: Arc<AppState>, console: bool) -> Router {
    let (routes, document) = routes().split_for_parts();
    let document = openapi::finish(document);
    let mut app = routes
        .merge(sluice_common::openapi::router(&document))
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method)
        .layer(DefaultBodyLimit::max(MAX_JSON_BYTES))
        .with_state(state);
    if console {
        app = app.merge(console::router());
    }
    app
}

#[utoipa::path(get, path = "/api/v1/health", tag = "health", security(()), responses((status = 200, body = Health)))]
async fn health() -> axum::Json<Health> {
    axum::Json(Health { status: "ok".into() })
}

/// What `/api/v1/health` answers: the process serves.
#[derive(serde::Serialize, utoipa::ToSchema)]
struct Health {
    /// Always `ok`.
    status: String,
}

#[utoipa::path(get, path = "/api/v1/whoami", tag = "health", responses((status = 200, body = Identity)))]
async fn whoami(caller: Caller) -> axum::Json<Identity> {
    axum::Json(Identity {
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

impl<T: DeserializeOwned + 'static> FromRequest<Arc<AppState>> for Body<T> {
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
        // serde reads a struct from an array too (`[null, null]` as its
        // fields in order): a typed body must be the object it documents.
        let untyped = std::any::TypeId::of::<T>() == std::any::TypeId::of::<serde_json::Value>();
        let first = bytes.iter().find(|byte| !byte.is_ascii_whitespace());
        if !untyped && first == Some(&b'[') {
            return Err(Error::bad_request(
                "invalid JSON body: expected an object, not an array",
            ));
        }
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
