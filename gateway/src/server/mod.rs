//! The HTTP server: routes, layers, admission, and a graceful shutdown.
//!
//! `start` takes a bound listener, so tests run the real server on an
//! ephemeral port in-process. The accept loop (header read timeout,
//! drain) is the registry's `listen::serve`; `shutdown` turns readiness off, waits the shutdown
//! delay, closes the listener, and gives in-flight requests the drain
//! timeout to finish. [`access`] holds the predict tokens and their rate
//! limits, checked before admission. The REST routes are registered with
//! their OpenAPI descriptions ([`openapi`], `/openapi.json`).

pub mod access;
mod accounting;
mod admission;
mod body;
mod call;
mod grpc;
pub mod handlers;
mod inference;
mod openapi;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tower_http::compression::CompressionLayer;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::cache::ArtifactCache;
use crate::compute::ComputePool;
use crate::config::{ServeConfig, Source};
use crate::error::{Error, Result};
use crate::fast_rollback::Guarded;
use crate::feedback::FeedbackLog;
use crate::guard::GuardLimits;
use crate::guard::Trip;
use crate::predlog::PredictionLog;
use crate::reconcile::Follower;
use crate::repository::{Health, Reconciler};
use crate::routing::Routes;
use crate::shadow::Shadows;
use crate::slots::Slots;
use sluice_common::clock::Clock;
use sluice_common::tls::Tls;

/// What every handler shares. Nothing here is locked on the request path.
pub struct AppState {
    pub routes: Arc<Routes>,
    pub health: Arc<Health>,
    pub compute: ComputePool,
    /// Mirrored requests, queued for the shadow threads.
    pub shadows: Arc<Shadows>,
    pub guard_limits: GuardLimits,
    /// Where predictions are logged, when any deployment asks for it.
    pub predictions_opt: Option<Arc<PredictionLog>>,
    /// Where ground-truth labels go (following a registry only).
    pub feedback_opt: Option<Arc<FeedbackLog>>,
    /// Tripped guards, for the guard task.
    pub trips: mpsc::Sender<Trip>,
    pub metrics: PrometheusHandle,
    pub max_request_bytes: usize,
    /// Inference and feedback requests admitted at once (`max_in_flight`).
    pub admission: Arc<Slots>,
    /// Bytes of bodies, decoded inputs and answers held at once.
    pub body_budget: Arc<Slots>,
    pub limits: crate::config::ServerLimits,
    /// Predict tokens and their rate limits; empty: every model is open.
    pub access: access::PredictAccess,
    /// What labels are stamped with (`ServeSettings::clock`).
    pub clock: Clock,
}

/// The REST routes and their OpenAPI document, from one list: a route is
/// registered with its `#[utoipa::path]`, so none is served undescribed.
fn routes() -> OpenApiRouter<Arc<AppState>> {
    use handlers::*;
    OpenApiRouter::with_openapi(openapi::base())
        .routes(routes!(server_metadata))
        .routes(routes!(live))
        .routes(routes!(ready))
        .routes(routes!(model_metadata))
        .routes(routes!(model_ready))
        .routes(routes!(infer))
        .routes(routes!(version_metadata))
        .routes(routes!(version_ready))
        .routes(routes!(infer_version))
        .routes(routes!(feedback))
        .routes(routes!(repository_index))
        .routes(routes!(prometheus))
}

/// The predict API's OpenAPI 3.1 document, as `/openapi.json` serves it and
/// `docs/openapi/v2.json` holds it.
pub fn document() -> utoipa::openapi::OpenApi {
    openapi::finish(routes().into_openapi())
}

pub fn router(state: Arc<AppState>) -> Router {
    let (routes, document) = routes().split_for_parts();
    routes
        .merge(sluice_common::openapi::router(&openapi::finish(document)))
        .fallback(handlers::no_route)
        .method_not_allowed_fallback(handlers::wrong_method)
        .layer(CompressionLayer::new().gzip(true))
        .with_state(state)
}

/// The predict listener's service: gRPC calls (`content-type:
/// application/grpc`, over HTTP/2) to the gRPC service, everything else to
/// the HTTP routes. Compression is HTTP's own layer: gRPC compresses its
/// messages itself.
pub fn app(state: Arc<AppState>) -> Router {
    use axum::body::Body;
    use tower::ServiceExt;
    let http = router(state.clone());
    let grpc = grpc::routes(state.clone());
    let dispatch = tower::service_fn(move |request: axum::http::Request<Body>| {
        let (http, grpc, state) = (http.clone(), grpc.clone(), state.clone());
        async move {
            match grpc::is_grpc(request.headers()) {
                true => {
                    let response = grpc.oneshot(grpc::prepared(request, &state)).await?;
                    Ok(grpc::holding(response))
                }
                false => http.oneshot(request).await,
            }
        }
    });
    Router::new().fallback_service(dispatch)
}

/// A running gateway: its address, its routing table, and a way to stop it.
pub struct Server {
    pub addr: SocketAddr,
    /// The second address (`--grpc-listen`), when there is one.
    pub grpc_addr_opt: Option<SocketAddr>,
    pub routes: Arc<Routes>,
    pub health: Arc<Health>,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    predictions_opt: Option<Arc<PredictionLog>>,
    limits: crate::config::ServerLimits,
    admission: Arc<Slots>,
    body_budget: Arc<Slots>,
}

impl Server {
    /// Serves `config` on `listener`: the HTTP server answers at once (live,
    /// not ready); the repository poller or the registry follower loads
    /// models and flips readiness.
    pub async fn start(config: ServeConfig, listener: TcpListener) -> Result<Server> {
        let ServeConfig {
            source,
            settings: config,
        } = config;
        let addr = listener
            .local_addr()
            .map_err(|err| Error::Internal(format!("listener has no address: {err}")))?;
        let routes = Arc::new(Routes::with_slots_per_model(
            config.limits.max_in_flight_per_model,
        ));
        let tls_opt = match config.tls_opt.clone() {
            Some(files) => Some(
                Tls::load_offering(files, config.limits.connections.http2_opt.is_some())
                    .map_err(Error::Internal)?,
            ),
            None => None,
        };
        let tls_opt_logged = tls_opt.is_some();
        let access = match &config.predict_tokens_opt {
            Some(path) => access::PredictAccess::load(path).map_err(Error::Internal)?,
            None => access::PredictAccess::default(),
        };
        sluice_common::tls::describe();
        let health = Arc::new(Health::default());
        let engines = Arc::new(crate::backend::Engines::new(&config.engines));
        let (trips, trips_rx) = mpsc::channel(64);
        let guarded = Guarded::default();
        // Pods of a Deployment share their address (0.0.0.0:8080) and pid
        // (1): the host name (the pod's name) tells them apart, in the
        // registry's statistics and in log segment names on a shared volume.
        let gateway_id = match std::env::var("HOSTNAME").ok().filter(|host| !host.is_empty()) {
            Some(host) => format!("{host}/{addr}/{}", std::process::id()),
            None => format!("{addr}/{}", std::process::id()),
        };
        // Log segment names add when this process started: a restarted
        // container has the same address and often the same pid (1), and
        // must not overwrite the segments of its previous life.
        let started_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_millis());
        let log_id = format!("{gateway_id}/{started_ms}");
        let predictions_opt = match &config.logs_opt {
            Some(logs) => Some(Arc::new(
                PredictionLog::start(
                    &logs.predictions,
                    &log_id,
                    config.prediction_log_queue,
                    config.segment_limits,
                    config.clock.clone(),
                )
                .map_err(|err| {
                    Error::Internal(format!(
                        "cannot start the prediction log in {}: {err}",
                        logs.predictions
                    ))
                })?,
            )),
            None => None,
        };
        let feedback_opt = match &config.logs_opt {
            Some(logs) => Some(Arc::new(
                FeedbackLog::open(&logs.feedback, &log_id, config.limits.feedback_bytes_per_hour).map_err(
                    |err| {
                        Error::Internal(format!(
                            "cannot open the feedback log in {}: {err}",
                            logs.feedback
                        ))
                    },
                )?,
            )),
            None => None,
        };
        let admission = Slots::new(config.limits.max_in_flight.max(1));
        let body_budget = Slots::new(config.limits.max_body_bytes_in_flight);
        let state = Arc::new(AppState {
            routes: routes.clone(),
            health: health.clone(),
            compute: ComputePool::new(config.compute_threads, config.compute_queue),
            shadows: Arc::new(Shadows::new(
                config.shadow_threads,
                config.shadow_queue,
                crate::shadow::Guarding {
                    limits: config.guard_limits,
                    trips: trips.clone(),
                },
            )),
            guard_limits: config.guard_limits,
            predictions_opt: predictions_opt.clone(),
            feedback_opt,
            trips,
            metrics: crate::metrics::handle(),
            max_request_bytes: config.max_request_bytes,
            admission: admission.clone(),
            body_budget: body_budget.clone(),
            limits: config.limits,
            access,
            clock: config.clock.clone(),
        });
        let (shutdown, shutdown_rx) = watch::channel(false);
        let source_label = match &source {
            Source::Repository(dir) => {
                let reconciler = Reconciler::new(dir.clone(), engines, routes.clone(), health.clone())
                    .with_strict_readiness(config.strict_readiness);
                tokio::spawn(crate::repository::watch(
                    reconciler,
                    config.poll_interval,
                    shutdown_rx.clone(),
                ));
                format!("repository {}", dir.display())
            }
            Source::Registry { client, cache_dir } => {
                let cache = ArtifactCache::open(cache_dir).map_err(|err| {
                    Error::Internal(format!(
                        "cannot create the artifact cache {}: {err}",
                        cache_dir.display()
                    ))
                })?;
                let follower = Follower::new(
                    client.clone(),
                    cache,
                    engines,
                    routes.clone(),
                    health.clone(),
                    guarded.clone(),
                    config.clock.clone(),
                );
                tokio::spawn(crate::reconcile::follow(follower, shutdown_rx.clone()));
                tokio::spawn(crate::report::report(
                    client.clone(),
                    routes.clone(),
                    gateway_id.clone(),
                    config.stats_interval,
                    config.clock.clone(),
                    shutdown_rx.clone(),
                ));
                format!("registry {}", client.base_url())
            }
        };
        let client_opt = match &source {
            Source::Registry { client, .. } => Some(client.clone()),
            Source::Repository(_) => None,
        };
        if let Some(hung_after) = config.limits.hung_run_after_opt {
            crate::watchdog::spawn(routes.clone(), hung_after, shutdown_rx.clone());
        }
        tokio::spawn(crate::fast_rollback::run(
            trips_rx,
            routes.clone(),
            guarded,
            client_opt,
            gateway_id,
        ));
        let app = app(state);
        let grpc_listener_opt = match config.grpc_listen_opt {
            Some(grpc_listen) => Some(TcpListener::bind(grpc_listen).await.map_err(|err| {
                Error::Internal(format!("cannot listen on {grpc_listen} (--grpc-listen): {err}"))
            })?),
            None => None,
        };
        let grpc_addr_opt = grpc_listener_opt
            .as_ref()
            .and_then(|listener| listener.local_addr().ok());
        let predict = sluice_common::listen::serve(
            listener,
            "predict",
            app.clone(),
            tls_opt.clone(),
            config.limits.connections,
            shutdown_rx.clone(),
        );
        // One task for both addresses: the drain's timeout cuts both.
        let task = match grpc_listener_opt {
            None => tokio::spawn(predict),
            Some(grpc_listener) => {
                let second = sluice_common::listen::serve(
                    grpc_listener,
                    "grpc",
                    app,
                    tls_opt,
                    config.limits.connections,
                    shutdown_rx,
                );
                tokio::spawn(async move {
                    tokio::join!(predict, second);
                })
            }
        };
        tracing::info!(%addr, grpc_addr = ?grpc_addr_opt, tls = tls_opt_logged, source = %source_label, "sluice is listening");
        Ok(Server {
            addr,
            grpc_addr_opt,
            routes,
            health,
            shutdown,
            task,
            predictions_opt,
            limits: config.limits,
            admission,
            body_budget,
        })
    }

    /// Inference and feedback requests being served now (admission slots taken).
    pub fn admitted(&self) -> usize {
        self.admission.held()
    }

    /// Bytes of request bodies, decoded tensors and answers held now
    /// against `--max-body-bytes-in-flight`.
    pub fn body_bytes_held(&self) -> usize {
        self.body_budget.held()
    }

    /// Turns readiness off and waits the shutdown delay (still serving),
    /// then stops accepting and gives in-flight requests the drain timeout
    /// to finish; stops the poller; writes the prediction log out.
    pub async fn shutdown(self) -> Result<()> {
        self.health.set_stopping();
        if !self.limits.shutdown_delay.is_zero() {
            tracing::info!(
                delay_ms = self.limits.shutdown_delay.as_millis() as u64,
                "not ready: draining from load balancers"
            );
            tokio::time::sleep(self.limits.shutdown_delay).await;
        }
        let _ = self.shutdown.send(true);
        let mut task = self.task;
        let served = match tokio::time::timeout(self.limits.drain_timeout, &mut task).await {
            Ok(joined) => joined.map_err(|err| Error::Internal(format!("server task failed: {err}"))),
            Err(_) => {
                tracing::warn!(
                    drain_timeout_ms = self.limits.drain_timeout.as_millis() as u64,
                    "requests still in flight at the drain timeout are cut off"
                );
                task.abort();
                Ok(())
            }
        };
        // Every answered request is in the queue now: write it all out.
        if let Some(log) = self.predictions_opt {
            let _ = tokio::task::spawn_blocking(move || log.close()).await;
        }
        served
    }
}
