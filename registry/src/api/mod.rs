//! `/api/v1`: routes, the shared state, and extractors that turn every
//! malformed request into `{"error": ...}` with a 4xx.
//!
//! Handlers authenticate first (the [`Caller`] extractor), then run their
//! store work on a blocking thread: SQLite calls never block the reactor.

mod deployments;
mod drift;
mod governance;
mod performance;
mod quality;
mod rollouts;
mod triggers;
mod versions;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{Method, Uri, header};
use axum::routing::{get, post, put};
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use crate::Inspector;
use crate::artifacts::ArtifactStore;
use crate::auth::{Caller, Role, Tokens};
use crate::error::{Error, Result};
use crate::policy::Policy;
use crate::rollout::Decided;
use crate::stats::Stats;
use crate::store::Store;
use sluice_registry_client::limits::quote;

/// Largest JSON body (documents such as drift profiles included).
const MAX_JSON_BYTES: usize = 16 * 1024 * 1024;

pub struct AppState {
    pub store: Store,
    pub artifacts: ArtifactStore,
    pub tokens: Tokens,
    pub policy: Arc<Policy>,
    pub inspector: Arc<dyn Inspector>,
    pub max_artifact_bytes: usize,
    pub upload_idle_timeout: std::time::Duration,
    /// The registry-wide deployments revision, for long-polling watchers.
    pub revision: Arc<RevisionFeed>,
    /// Turns true at shutdown, so long-polls answer at once.
    pub stopping: watch::Receiver<bool>,
    /// What gateways report about each version, for rollouts.
    pub stats: Arc<Stats>,
    /// Ground truth joined with predictions, for realized performance.
    pub joiner: Arc<crate::feedback::Joiner>,
    /// Where trigger commands keep their context and output.
    pub data_dir: std::path::PathBuf,
    /// What policies may make the registry run and call.
    pub actions: Arc<crate::actions::Actions>,
    pub(crate) webhooks: reqwest::Client,
}

impl AppState {
    /// The state of a registry configured by `config` (its policy, limits,
    /// data directory and logs), over `store` at deployments `revision`.
    pub fn new(
        store: Store,
        revision: u64,
        artifacts: ArtifactStore,
        tokens: Tokens,
        inspector: Arc<dyn Inspector>,
        stopping: watch::Receiver<bool>,
        config: &crate::config::RegistryConfig,
    ) -> Result<AppState> {
        let joiner = crate::feedback::Joiner::open(&config.monitor)
            .map_err(|err| Error::Internal(format!("cannot open the prediction and feedback logs: {err}")))?;
        Ok(AppState {
            store,
            artifacts,
            tokens,
            policy: Arc::new(config.policy.clone()),
            inspector,
            max_artifact_bytes: config.max_artifact_bytes,
            upload_idle_timeout: config.upload_idle_timeout,
            revision: Arc::new(RevisionFeed(watch::channel(revision).0)),
            stopping,
            stats: Arc::new(Stats::default()),
            joiner: Arc::new(joiner),
            data_dir: config.data_dir.clone(),
            actions: Arc::new(config.actions.clone()),
            webhooks: webhook_client()?,
        })
    }

    /// After a rollout decision committed: tells watchers, logs it, and calls
    /// the rollout's webhook when it just ended (best effort, off the caller).
    pub fn announce(&self, decided: &Decided) {
        if let Some(revision) = decided.revision_opt {
            self.revision.publish(revision);
        }
        let rollout = &decided.rollout;
        tracing::info!(model = %rollout.model, canary = rollout.canary, status = ?rollout.status, weight = rollout.canary_weight, "rollout decision");
        let Some(url) = rollout.policy.webhook.clone().filter(|_| decided.finished) else {
            return;
        };
        // Checked when the rollout started, and again now: the operator
        // may have taken the host off the list since.
        if let Err(refused) = self.actions.check_url(&url) {
            tracing::warn!(model = %rollout.model, %refused, "rollout webhook not called");
            return;
        }
        let request = self.webhooks.post(&url).json(rollout);
        tokio::spawn(async move {
            match request.send().await {
                Ok(response) if response.status().is_success() => {}
                Ok(response) => tracing::warn!(%url, status = %response.status(), "rollout webhook refused"),
                Err(err) => tracing::warn!(%url, error = %err, "rollout webhook failed"),
            }
        });
    }

    /// Runs store work on a blocking thread.
    pub async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Store, &Policy) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let store = self.store.clone();
        let policy = self.policy.clone();
        tokio::task::spawn_blocking(move || work(&store, &policy))
            .await
            .map_err(|err| Error::Internal(format!("store task failed: {err}")))?
    }
}

/// The deployments revision as watchers see it.
pub struct RevisionFeed(watch::Sender<u64>);

impl RevisionFeed {
    /// Tells watchers about a committed revision. Called on the thread that
    /// committed it, right after the commit, so that a handler dropped while
    /// awaiting (a client that hung up) cannot leave watchers behind the
    /// database. Never moves backwards when two writes finish out of order.
    pub fn publish(&self, revision: u64) {
        self.0.send_if_modified(|current| {
            let newer = revision > *current;
            if newer {
                *current = revision;
            }
            newer
        });
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.0.subscribe()
    }
}

/// The client that delivers trigger and rollout webhooks. It follows no
/// redirect: the allowed host would otherwise send it anywhere. `https://`
/// hooks need the system's CA bundle; a host without one (a distroless
/// image) still starts, delivers `http://` hooks, and says why the others fail.
fn webhook_client() -> Result<reqwest::Client> {
    let timeout = std::time::Duration::from_secs(5);
    let builder = || {
        reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
    };
    builder()
        .build()
        .or_else(|err| {
            tracing::warn!(error = %err, "no system CA certificates: https:// webhooks will fail");
            builder().tls_certs_only([]).build()
        })
        .map_err(|err| Error::Internal(format!("webhook client: {err}")))
}

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
        .route("/api/v1/rollouts/{model}", get(get_rollout).post(start_rollout))
        .route("/api/v1/rollouts/{model}/{action}", post(rollout_action))
        .route("/api/v1/stats", post(report_stats))
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
        let caller = state.tokens.authenticate(header_opt)?;
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
