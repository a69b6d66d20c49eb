//! What the API's handlers and the control loops (rollouts, the monitor,
//! triggers) share: the store, the artifacts, the tokens and policy, the
//! statistics gateways report, the feedback joiner, the deployments
//! revision watchers follow, and the webhook client.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use sluice_common::clock::Clock;
use sluice_registry_client::trigger::RuleProgress;
use tokio::sync::watch;

use crate::Inspector;
use crate::artifacts::ArtifactStore;
use crate::auth::Tokens;
use crate::error::{Error, Result};
use crate::policy::Policy;
use crate::stats::Stats;
use crate::store::Store;

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
    /// Now, for every loop and window (`RegistryConfig::clock`).
    pub clock: Clock,
    /// Each model's windowed trigger rules, where the monitor left them
    /// (written once a tick, read by `GET /api/v1/triggers`).
    pub trigger_progress: Mutex<HashMap<String, Vec<RuleProgress>>>,
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
        let joiner = crate::feedback::Joiner::open(&config.monitor, config.clock.clone())
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
            clock: config.clock.clone(),
            trigger_progress: Mutex::default(),
        })
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
