//! Follows the registry's deployments and converges the routing table to them.
//!
//! The loop long-polls `GET /api/v1/deployments?watch=REVISION`. For each new
//! revision it fetches the artifacts it lacks (checking their sha256 and
//! caching them on disk), loads and warms new versions on blocking threads,
//! and swaps the whole table in one store. It never makes the data plane wait:
//!
//! - registry unreachable: the last good table keeps serving, calls retry
//!   with backoff;
//! - registry down at start-up: the deployments last served in full are read
//!   from the cache, with their cached artifacts;
//! - a version that fails to load never replaces what served its endpoint.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::HeaderName;
use sluice_common::clock::Clock;
use sluice_registry_client::RegistryClient;
use sluice_registry_client::contract::{CONTRACT_DOCUMENT, ContractMode, DataContract};
use sluice_registry_client::profile::{PROFILE_DOCUMENT, ReferenceProfile};
use sluice_registry_client::types::{Batching, DeployedVersion, Deployment, Deployments, TrafficSpec};
use sluice_registry_client::warmup::Warmup;
use tokio::sync::watch;

use crate::backend::{BackendChoice, Engines};
use crate::cache::{ArtifactCache, Cached, sha256_hex};
use crate::contract::ContractChecker;
use crate::drift::DriftCounter;
use crate::fast_rollback::Guarded;
use crate::model::LoadedModel;
use crate::repository::Health;
use crate::routing::{RolloutRoles, Route, Routes, RoutingTable, ShadowRoute};
use crate::slicer::Slicer;

/// How long one long-poll waits for a change.
const WATCH_TIMEOUT: Duration = Duration::from_secs(30);
const MIN_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// A version, by endpoint, number, artifact, batching and warm-up (as JSON):
/// a change of batching loads the version again with its new queue, swapped
/// in whole; a change of warm-up runs it again on a fresh load.
type Key = (String, u64, String, Option<Batching>, String);

/// The key of `deployed` under `spec`.
fn key_of(model: &str, deployed: &DeployedVersion, spec: &TrafficSpec) -> Key {
    let warmup = spec
        .warmup
        .as_ref()
        .map(|warmup| serde_json::to_string(warmup).unwrap_or_default())
        .unwrap_or_default();
    (
        model.to_string(),
        deployed.version,
        deployed.sha256.clone(),
        spec.batching.clone(),
        warmup,
    )
}

/// How far an apply got.
#[derive(Debug, Clone, Copy)]
struct Applied {
    /// Nothing is left to retry (no download failed).
    settled: bool,
    /// Every version of every deployment loaded: worth saving as the cache's
    /// last served state.
    complete: bool,
}

/// Why a version is not loaded: worth retrying, or not until it changes.
enum Failure {
    /// The registry did not answer, or the download broke: retried.
    Transient(String),
    /// The bytes are wrong or no engine loads them: retried at the next revision.
    Permanent(String),
}

pub struct Follower {
    client: RegistryClient,
    cache: Arc<ArtifactCache>,
    engines: Arc<Engines>,
    routes: Arc<Routes>,
    health: Arc<Health>,
    loaded: HashMap<Key, Arc<LoadedModel>>,
    /// Versions that failed to load, with why: not loaded again until the
    /// deployment changes, and shown in the repository index.
    failed: HashMap<Key, String>,
    /// Canaries this gateway's guard stopped: kept at weight 0 here until
    /// the registry's deployment says the same.
    guarded: Guarded,
    /// When a loaded version's first statistics window begins.
    clock: Clock,
}

impl Follower {
    pub fn new(
        client: RegistryClient,
        cache: ArtifactCache,
        engines: Arc<Engines>,
        routes: Arc<Routes>,
        health: Arc<Health>,
        guarded: Guarded,
        clock: Clock,
    ) -> Follower {
        Follower {
            clock,
            client,
            cache: Arc::new(cache),
            engines,
            routes,
            health,
            loaded: HashMap::new(),
            failed: HashMap::new(),
            guarded,
        }
    }

    /// Converges to `deployments`, as far as the versions load.
    async fn apply(&mut self, deployments: &Deployments) -> Applied {
        let current = self.routes.snapshot();
        let mut table = RoutingTable::default();
        let mut applied = Applied {
            settled: true,
            complete: true,
        };
        let mut all_serving = true;
        let mut keep: HashSet<Key> = HashSet::new();
        for deployment in &deployments.deployments {
            let mut loaded = BTreeMap::new();
            for deployed in &deployment.versions {
                let key = key_of(&deployment.model, deployed, &deployment.spec);
                match self.ensure(&key, deployed, deployment.spec.warmup.as_ref()).await {
                    Ok(model) => {
                        if let Some(mode) = deployment.spec.contract {
                            self.ensure_contract(&model, mode).await;
                        }
                        keep.insert(key);
                        loaded.insert(deployed.version, model);
                    }
                    Err(Failure::Transient(reason)) => {
                        tracing::warn!(model = %deployment.model, version = deployed.version, %reason, "cannot fetch the artifact yet, will retry");
                        applied.settled = false;
                        applied.complete = false;
                    }
                    Err(Failure::Permanent(reason)) => {
                        tracing::error!(model = %deployment.model, version = deployed.version, %reason, "deployed version failed to load");
                        table
                            .load_failures
                            .insert((deployment.model.clone(), deployed.version), reason);
                        applied.complete = false;
                    }
                }
            }
            // A target that did not load would hand its share to the others
            // (a 10% canary would take everything): until every target loads,
            // what served the endpoint keeps serving, or nothing does.
            let targets_loaded = deployment
                .spec
                .targets
                .iter()
                .all(|target| loaded.contains_key(&target.version));
            let route = if targets_loaded {
                route_for(deployment, loaded).map(Arc::new)
            } else {
                current.routes.get(&deployment.model).cloned()
            };
            match route {
                Some(route) => {
                    table.routes.insert(deployment.model.clone(), route);
                }
                None => all_serving = false,
            }
        }
        // Keep what serves and what loaded for the pending deployment, so a
        // retry does not load it all again.
        self.loaded.retain(|key, model| {
            keep.contains(key)
                || table
                    .routes
                    .get(&key.0)
                    .and_then(|route| route.versions.get(&key.1))
                    .is_some_and(|live| Arc::ptr_eq(live, model))
        });
        table.revision = deployments.revision;
        // The guard's stops are applied under the writers' lock, so a trip
        // between this apply's start and its publish is not undone.
        let guarded = self.guarded.clone();
        self.routes
            .publish_with(move |_current| crate::fast_rollback::apply_guards(table, &guarded));
        metrics::gauge!(crate::metrics::DEPLOYMENTS_REVISION).set(deployments.revision as f64);
        if all_serving && !self.health.is_ready() && !self.health.is_stopping() {
            tracing::info!(revision = deployments.revision, "every deployment serves: ready");
            self.health.set_ready(true);
        }
        applied
    }

    /// The loaded model for `deployed`: already loaded, or read from the
    /// cache, or downloaded, then loaded and warmed.
    async fn ensure(
        &mut self,
        key: &Key,
        deployed: &DeployedVersion,
        warmup_opt: Option<&Warmup>,
    ) -> Result<Arc<LoadedModel>, Failure> {
        let name = key.0.as_str();
        if let Some(model) = self.loaded.get(key) {
            return Ok(model.clone());
        }
        if let Some(reason) = self.failed.get(key) {
            return Err(Failure::Permanent(reason.clone()));
        }
        let bytes = self.artifact(&deployed.sha256).await?;
        let engines = self.engines.clone();
        let (model_name, version) = (name.to_string(), deployed.version);
        let batching = key.3.clone();
        let warmup = warmup_opt.cloned().unwrap_or_default();
        let loaded = tokio::task::spawn_blocking(move || {
            // An engine that panics on a malformed graph fails this version alone.
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                LoadedModel::load_warmed(
                    &engines,
                    &model_name,
                    version,
                    &bytes,
                    BackendChoice::Auto,
                    batching.as_ref(),
                    &warmup,
                )
            }))
            .unwrap_or_else(|_| Err(crate::Error::Load("the engine panicked while loading it".into())))
        })
        .await
        .map_err(|err| Failure::Transient(format!("load task failed: {err}")))?;
        match loaded {
            Ok(model) => {
                // Its first statistics window begins now, as it reports it.
                model.stats.begin(self.clock.now_ms());
                self.attach_profile(&model).await;
                if let Some(spec) = &deployed.slice {
                    match Slicer::new(spec, &model.signature) {
                        Some(slicer) => {
                            let _ = model.slicer.set(slicer);
                        }
                        None => {
                            tracing::warn!(model = %name, version = deployed.version, feature = %spec.feature, "the card's slice feature is no input column of the model: rows are logged without a slice");
                        }
                    }
                }
                self.loaded.insert(key.clone(), model.clone());
                Ok(model)
            }
            Err(err) => {
                metrics::counter!(crate::metrics::MODEL_LOAD_FAILURES, "model" => name.to_string())
                    .increment(1);
                self.failed.insert(key.clone(), err.to_string());
                Err(Failure::Permanent(err.to_string()))
            }
        }
    }

    /// Counts the version's features for drift when the registry holds its
    /// reference profile. Without one (or the registry down) it serves
    /// without drift accounting.
    async fn attach_profile(&self, model: &Arc<LoadedModel>) {
        let Some(profile) = self
            .document::<ReferenceProfile>(model, PROFILE_DOCUMENT, "no drift accounting for this version")
            .await
        else {
            return;
        };
        if let Some(counter) = DriftCounter::new(&profile, &model.signature) {
            if !counter.unmatched().is_empty() {
                tracing::warn!(model = %model.name, version = model.version, columns = ?counter.unmatched(), "profiled columns the model does not carry as [N], [N, 1] or [N, K] tensors are not counted");
            }
            let _ = model.drift.set(counter);
        }
    }

    /// Compiles the version's data contract when the registry holds one.
    /// Without one (or the registry down) the version serves unchecked, even
    /// under a `reject` deployment: the contract is the version's, and an
    /// outage must not turn into refused traffic.
    async fn attach_contract(&self, model: &Arc<LoadedModel>) {
        let Some(contract) = self
            .document::<DataContract>(model, CONTRACT_DOCUMENT, "this version serves unchecked")
            .await
        else {
            return;
        };
        let checker = ContractChecker::new(&contract, &model.signature, &model.name, &model.version_label);
        if !checker.unmatched().is_empty() {
            tracing::warn!(model = %model.name, version = model.version, checks = ?checker.unmatched(), "contract features and rules the model has no input column for are not checked");
        }
        let _ = model.contract.set(checker);
    }

    /// Compiles the contract of a version its deployment checks, when it
    /// has none yet: at its first deployment that checks, and again at each
    /// change while it has none (stored after it loaded, or the registry was
    /// down). Still without one it serves unchecked, said once per change
    /// when the deployment means to reject.
    async fn ensure_contract(&self, model: &Arc<LoadedModel>, mode: ContractMode) {
        if model.contract.get().is_some() {
            return;
        }
        self.attach_contract(model).await;
        if model.contract.get().is_none() && mode == ContractMode::Reject {
            tracing::warn!(model = %model.name, version = model.version, "the deployment rejects data-contract violations but this version has no contract: it serves unchecked");
        }
    }

    /// The version's document `name` as a `T`; `None` when it has none, and,
    /// logged with `without` (what the version lacks then), when the registry
    /// cannot be read or the document is not a `T`.
    async fn document<T: serde::de::DeserializeOwned>(
        &self,
        model: &LoadedModel,
        name: &str,
        without: &str,
    ) -> Option<T> {
        let reference = model.version.to_string();
        let document = match self.client.get_document(&model.name, &reference, name).await {
            Ok(document) => document,
            Err(err) if err.is_not_found() => return None,
            Err(err) => {
                tracing::warn!(model = %model.name, version = model.version, document = name, error = %err, "cannot read the document; {without}");
                return None;
            }
        };
        serde_json::from_value(document.body)
            .inspect_err(|err| {
                tracing::warn!(model = %model.name, version = model.version, document = name, error = %err, "the document is not what Sluice writes under that name; {without}");
            })
            .ok()
    }

    /// The artifact's bytes, from the cache if intact, else from the registry.
    async fn artifact(&self, sha256: &str) -> Result<Vec<u8>, Failure> {
        let cache = self.cache.clone();
        let wanted = sha256.to_string();
        let cached = tokio::task::spawn_blocking(move || cache.read(&wanted))
            .await
            .map_err(|err| Failure::Transient(format!("cache task failed: {err}")))?;
        if let Cached::Intact(bytes) = cached {
            return Ok(bytes);
        }
        let bytes = self
            .client
            .download_artifact(sha256)
            .await
            .map_err(|err| Failure::Transient(err.to_string()))?;
        let cache = self.cache.clone();
        let wanted = sha256.to_string();
        tokio::task::spawn_blocking(move || {
            let actual = sha256_hex(&bytes);
            if actual != wanted {
                // Likely a broken transfer or store: worth fetching again.
                return Err(Failure::Transient(format!(
                    "downloaded artifact hashes to {actual}, not {wanted}"
                )));
            }
            if let Err(err) = cache.write(&wanted, &bytes) {
                tracing::warn!(error = %err, "cannot cache the artifact; serving it anyway");
            }
            Ok(bytes)
        })
        .await
        .map_err(|err| Failure::Transient(format!("cache task failed: {err}")))?
    }
}

/// The route a deployment asks for, over the versions that loaded. Only its
/// targets may be pinned by path; a shadow-only version is not served.
fn route_for(deployment: &Deployment, mut loaded: BTreeMap<u64, Arc<LoadedModel>>) -> Option<Route> {
    let spec = &deployment.spec;
    let weights = spec.weights();
    // The registry checked the header name; a bad one would only lose stickiness.
    let sticky_header = spec
        .sticky_header
        .as_deref()
        .and_then(|name| HeaderName::from_bytes(name.as_bytes()).ok());
    let shadow = spec.shadow.and_then(|shadow| {
        loaded.get(&shadow.version).map(|model| ShadowRoute {
            model: model.clone(),
            sample_rate: shadow.sample_rate,
        })
    });
    loaded.retain(|version, _| weights.iter().any(|(target, _)| target == version));
    // The registry writes {canary, stable, policy} here while a rollout runs.
    let rollout_opt = spec.rollout.as_ref();
    let version_of = |key: &str| {
        rollout_opt
            .and_then(|rollout| rollout.get(key))
            .and_then(|v| v.as_u64())
    };
    let roles = version_of("canary")
        .zip(version_of("stable"))
        .map(|(canary, stable)| RolloutRoles { canary, stable });
    let compare_canary = rollout_opt
        .and_then(|rollout| rollout.get("policy"))
        .and_then(|policy| policy.get("max_shadow_disagreement"))
        .is_some_and(|limit| !limit.is_null());
    Route::split(loaded, &weights, sticky_header, shadow).map(|route| {
        route
            .with_rollout(roles, compare_canary)
            .with_logging(spec.log_sample_rate)
            .with_contract(spec.contract)
    })
}

/// Follows the registry until `shutdown` turns true.
pub async fn follow(mut follower: Follower, mut shutdown: watch::Receiver<bool>) {
    let mut served_revision_opt: Option<u64> = None;
    let mut settled = false;
    let mut backoff = MIN_BACKOFF;
    let mut registry_down = false;
    loop {
        let asked = Instant::now();
        let watching = settled && served_revision_opt.is_some();
        let call = async {
            match served_revision_opt {
                Some(revision) if watching => {
                    follower.client.watch_deployments(revision, WATCH_TIMEOUT).await
                }
                _ => follower.client.list_deployments().await,
            }
        };
        let result = tokio::select! {
            result = call => result,
            _ = shutdown.wait_for(|stopped| *stopped) => return,
        };
        let pause = match result {
            Ok(deployments) => {
                if registry_down {
                    tracing::info!(registry = follower.client.base_url(), "registry answers again");
                    registry_down = false;
                }
                backoff = MIN_BACKOFF;
                let changed = served_revision_opt != Some(deployments.revision);
                if changed {
                    // A new revision retries versions that failed to load.
                    follower.failed.clear();
                }
                if changed || !settled {
                    let applied = follower.apply(&deployments).await;
                    settled = applied.settled;
                    served_revision_opt = Some(deployments.revision);
                    if applied.complete {
                        save(&follower.cache, deployments).await;
                    }
                }
                if !settled {
                    // A download failed: retry soon, not in a spin.
                    Some(MAX_BACKOFF)
                } else if watching && !changed && asked.elapsed() < Duration::from_secs(1) {
                    // A watch should wait for a change; one that answers at
                    // once with nothing new must not become a busy loop.
                    Some(MIN_BACKOFF)
                } else {
                    None
                }
            }
            Err(err) => {
                metrics::counter!(crate::metrics::REGISTRY_ERRORS).increment(1);
                if !registry_down {
                    match err.status() {
                        Some(401 | 403) => {
                            tracing::error!(registry = follower.client.base_url(), error = %err, "the registry refuses this gateway's token (`sluice serve --token` or SLUICE_SERVE_TOKEN, of role gateway): serving the last good routing table")
                        }
                        Some(_) => {
                            tracing::warn!(registry = follower.client.base_url(), error = %err, "the registry failed: serving the last good routing table")
                        }
                        None => {
                            tracing::warn!(registry = follower.client.base_url(), error = %err, "registry unreachable: serving the last good routing table")
                        }
                    }
                    registry_down = true;
                }
                if served_revision_opt.is_none()
                    && let Some(cached) = follower.cache.load_deployments()
                {
                    tracing::info!(
                        revision = cached.revision,
                        "serving the cached deployments until the registry answers"
                    );
                    settled = follower.apply(&cached).await.settled;
                    served_revision_opt = Some(cached.revision);
                }
                let pause = backoff;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                Some(pause)
            }
        };
        if let Some(pause) = pause {
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = shutdown.wait_for(|stopped| *stopped) => return,
            }
        }
    }
}

async fn save(cache: &Arc<ArtifactCache>, deployments: Deployments) {
    let cache = cache.clone();
    let saved = tokio::task::spawn_blocking(move || cache.save_deployments(&deployments)).await;
    if let Ok(Err(err)) = saved {
        tracing::warn!(error = %err, "cannot cache the deployments; a restart without the registry would serve nothing");
    }
}
