//! Sluice's control plane: the model registry, one source of truth for
//! models, their versions and lineage, their governance, and the traffic
//! each endpoint should get.
//!
//! Modules point one way, bottom up (`scripts/check-layers.py` holds it):
//!
//! 1. foundations: [`error`] (one error type, one place it becomes a
//!    status), [`policy`] (the approvals and gates each stage needs),
//!    [`auth`] (hashed bearer tokens and roles), [`actions`] (what the
//!    operator lets policies run and call), [`cron`];
//! 2. [`store`]: the metadata in SQLite or PostgreSQL, one transaction per
//!    change with its audit event; [`config`], the validated configuration
//!    and the one source of each default;
//! 3. what the loops and the API share data with: [`artifacts`] (ONNX files
//!    content-addressed in a directory or a bucket; an [`Inspector`], the
//!    gateway's engines, reads each new one's signature), [`stats`] (the
//!    windows gateways report), [`drift`] (PSI, Jensen-Shannon, KS,
//!    chi-square against a reference profile), [`feedback`] (labels joined
//!    with the prediction log into realized accuracy, AUC or MAE);
//! 4. [`state`]: what the API's handlers and the loops share;
//! 5. the domain's decisions: [`quality`] (behavioural suites, slices, the
//!    gates of a transition or a rollout), [`rollout`] (progressive
//!    rollouts judged on the reported windows, and the rollback of what a
//!    gateway's guard stopped), [`trigger`] (training runs, by webhook or a
//!    named command);
//! 6. [`monitor`]: the loop that drives the join, the drift and performance
//!    gauges and the trigger rules;
//! 7. [`api`]: `/api/v1` (axum), the long-poll watch gateways follow,
//!    the API's OpenAPI document (`/openapi.json`), and the web console
//!    (`/console/`, its files compiled in by `build.rs`).
//!
//! [`Registry::start`] runs it on a listener: standalone (`sluice registry`)
//! or inside the gateway's process (`sluice serve`), the same code either
//! way, on `sluice_common::listen`'s accept loop and `sluice_common::tls`.

pub mod actions;
pub mod api;
pub mod artifacts;
pub mod auth;
pub mod config;
pub mod cron;
pub mod drift;
pub mod error;
pub mod feedback;
pub mod monitor;
pub mod policy;
pub mod quality;
pub mod rollout;
pub mod state;
pub mod stats;
pub mod store;
pub mod trigger;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use sluice_common::{files, listen, objects, tls};
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use config::{MonitorConfig, RegistryConfig};
pub use error::{Error, Result};
use sluice_registry_client::types::Signature;

/// Loads artifacts with an engine: to read an upload's signature, and to
/// run a behavioural suite. The gateway provides it, so the registry
/// accepts exactly what gateways can serve and tests versions with the
/// code that will serve them.
pub trait Inspector: Send + Sync + 'static {
    /// The signature, or why no engine can load these bytes.
    fn inspect(&self, artifact: &[u8]) -> std::result::Result<Signature, String>;

    /// Loads `artifact` once and answers each Open Inference Protocol
    /// request body in turn as a gateway would: the response's JSON, or why
    /// the request was refused. `Err` when the artifact does not load.
    fn infer(
        &self,
        artifact: &[u8],
        requests: &[serde_json::Value],
    ) -> std::result::Result<Vec<std::result::Result<serde_json::Value, String>>, String>;
}

/// A running registry: its address, and a way to stop it.
pub struct Registry {
    pub addr: SocketAddr,
    /// Where a just-created admin token was written, on first start.
    pub created_admin_token: Option<PathBuf>,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    drain_timeout: std::time::Duration,
    tls_opt: Option<Arc<tls::Tls>>,
}

impl Registry {
    pub async fn start(
        config: RegistryConfig,
        listener: TcpListener,
        inspector: Arc<dyn Inspector>,
    ) -> Result<Registry> {
        Registry::serve(config, listener, inspector, None).await
    }

    /// [`Registry::start`], also serving `/metrics` (the standalone
    /// registry's): what `render` says, the process's recorder, less the
    /// series of versions no deployment holds.
    pub async fn start_with_metrics(
        config: RegistryConfig,
        listener: TcpListener,
        inspector: Arc<dyn Inspector>,
        render: impl Fn() -> String + Send + Sync + 'static,
    ) -> Result<Registry> {
        Registry::serve(config, listener, inspector, Some(Arc::new(render))).await
    }

    async fn serve(
        config: RegistryConfig,
        listener: TcpListener,
        inspector: Arc<dyn Inspector>,
        render_opt: Option<api::metrics::Render>,
    ) -> Result<Registry> {
        let addr = listener
            .local_addr()
            .map_err(|err| Error::Internal(format!("listener has no address: {err}")))?;
        files::create_dir_all(&config.data_dir)
            .map_err(|err| Error::Internal(format!("cannot create {}: {err}", config.data_dir.display())))?;
        // Before the tokens: a TLS mistake must not leave a bootstrapped
        // admin token behind that no log line announced.
        let tls_opt = match config.tls_opt.clone() {
            Some(files) => Some(tls::Tls::load(files).map_err(Error::Internal)?),
            None => None,
        };
        let (tokens, created_admin_token) = config.tokens().map_err(Error::Internal)?;
        let scheme = if tls_opt.is_some() { "https" } else { "http" };
        if let Some(path) = &created_admin_token {
            tracing::warn!(token_file = %path.display(), "created an admin token (owner-only file): use it as SLUICE_TOKEN");
        }
        // Blocking: PostgreSQL's client runs its own runtime, never on an async thread.
        let (metadata_opt, default_db) = (config.metadata_opt.clone(), config.data_dir.join("registry.db"));
        let lock_wait = config.metadata_lock_wait;
        let actions = config.actions.clone();
        let file_tokens = tokens.clone();
        let (store, revision) = tokio::task::spawn_blocking(move || {
            let store = store::Store::connect(metadata_opt.as_deref(), &default_db, lock_wait)?;
            store.write(|tx| trigger::migrate_inline_commands(tx, &actions))?;
            for revoked in store.write(|tx| store::tokens::import(tx, file_tokens.file_tokens()))? {
                tracing::warn!("{revoked} was revoked through the API: it stays revoked");
            }
            let revision = store.read(store::deployments::revision)?;
            Ok::<_, Error>((store, revision))
        })
        .await
        .map_err(|err| Error::Internal(format!("opening the metadata store failed: {err}")))??;
        let metadata_kind = store.kind();
        let artifacts_at = match &config.store_opt {
            Some(store) => store.child("artifacts"),
            None => objects::Location::Dir(config.data_dir.join("artifacts")),
        };
        let artifacts = artifacts::ArtifactStore::open(&artifacts_at, config.import_root_opt.as_deref())?;
        artifacts.check(&artifacts_at).await?;
        let (shutdown, stop) = watch::channel(false);
        let state = state::AppState::new(
            store,
            revision,
            artifacts,
            tokens,
            inspector,
            stop.clone(),
            &config,
        )?;
        let state = Arc::new(state);
        tokio::spawn(rollout::run(state.clone(), config.rollout_tick, stop.clone()));
        // What a trigger's command calls back: this listener, from this machine.
        let local = match addr.ip() {
            ip if ip.is_unspecified() => SocketAddr::from(([127, 0, 0, 1], addr.port())),
            _ => addr,
        };
        monitor::describe();
        rollout::describe();
        tls::describe();
        tokio::spawn(monitor::run(
            state.clone(),
            config.monitor.tick,
            format!("{scheme}://{local}"),
            stop.clone(),
        ));
        let mut app = api::router(state.clone(), config.console);
        if let Some(render) = render_opt {
            app = app.merge(api::metrics::router(state, render));
        }
        let task = tokio::spawn(listen::serve(
            listener,
            "admin",
            app,
            tls_opt.clone(),
            config.connections,
            stop,
        ));
        tracing::info!(%addr, tls = tls_opt.is_some(), metadata = metadata_kind, data_dir = %config.data_dir.display(), "registry is listening");
        Ok(Registry {
            addr,
            created_admin_token,
            shutdown,
            task,
            drain_timeout: config.drain_timeout,
            tls_opt,
        })
    }

    /// The admin API's address as a URL: `https://` when it serves TLS.
    pub fn url(&self) -> String {
        let scheme = if self.tls_opt.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// The admin API's TLS, when it has one (the embedded gateway pins its certificate).
    pub fn tls(&self) -> Option<&Arc<tls::Tls>> {
        self.tls_opt.as_ref()
    }

    /// Stops accepting and lets in-flight requests finish. Long-polls end
    /// with the shutdown, so a watcher reconnects elsewhere at once.
    /// Requests still in flight at the drain timeout are cut (a slow upload
    /// must not hold a SIGTERM until the orchestrator's SIGKILL).
    pub async fn shutdown(self) -> Result<()> {
        let _ = self.shutdown.send(true);
        let mut task = self.task;
        match tokio::time::timeout(self.drain_timeout, &mut task).await {
            Ok(joined) => joined.map_err(|err| Error::Internal(format!("registry task failed: {err}"))),
            Err(_) => {
                tracing::warn!("registry requests still in flight at the drain timeout are cut off");
                task.abort();
                Ok(())
            }
        }
    }
}
