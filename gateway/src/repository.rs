//! A Triton-style model repository on disk, polled and reconciled into the
//! routing table.
//!
//! Layout: `DIR/{model}/{version}/model.onnx`, with an optional
//! `DIR/{model}/config.toml` (`backend`, `version_policy`, `[batching]`). Each pass scans
//! the tree, loads and warms what is new or changed (off the request path),
//! drops what vanished, and swaps the whole table in one store. A version
//! that fails to load is logged and counted and never replaces a working one.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use serde::Deserialize;
use sluice_registry_client::types::Batching;
use sluice_registry_client::warmup::Warmup;

use crate::backend::{BackendChoice, Engines};
use crate::error::Error;
use crate::model::LoadedModel;
use crate::routing::{Route, Routes, RoutingTable};

pub const MODEL_FILE: &str = "model.onnx";
pub const CONFIG_FILE: &str = "config.toml";

/// `DIR/{model}/config.toml`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    #[serde(default)]
    pub backend: BackendChoice,
    #[serde(default)]
    pub version_policy: VersionPolicy,
    /// Dynamic batching (Triton's `dynamic_batching`); absent: off.
    #[serde(default)]
    pub batching: Option<Batching>,
    /// Warm-up requests (Triton's `model_warmup`), or a strict synthetic
    /// warm-up; absent: a synthetic one that lets a cold model serve.
    #[serde(default)]
    pub warmup: Option<Warmup>,
}

/// Which of the versions on disk are served (TF Serving's and Triton's policies).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VersionPolicy {
    /// The highest version only.
    #[default]
    Latest,
    All,
    /// `version_policy = { specific = [1, 3] }`.
    Specific(Vec<u64>),
}

impl VersionPolicy {
    fn select(&self, on_disk: &BTreeSet<u64>) -> BTreeSet<u64> {
        match self {
            VersionPolicy::Latest => on_disk.iter().next_back().copied().into_iter().collect(),
            VersionPolicy::All => on_disk.clone(),
            VersionPolicy::Specific(wanted) => {
                wanted.iter().filter(|v| on_disk.contains(v)).copied().collect()
            }
        }
    }
}

/// Size and modification time of the file, the engine, the batching and
/// the warm-up asked for: a version whose file or config changes is loaded
/// again.
type Fingerprint = (
    u64,
    Option<SystemTime>,
    BackendChoice,
    Option<Batching>,
    Option<Warmup>,
);

#[derive(Debug)]
struct ScannedModel {
    config: Result<ModelConfig, String>,
    /// Version number → its `model.onnx`, its size and modification time.
    versions: BTreeMap<u64, (PathBuf, u64, Option<SystemTime>)>,
}

type Key = (String, u64);

/// Readiness: set once a pass has every model in the repository serving a
/// version (`--strict-readiness`, the default), or once the first pass is
/// done, whatever loaded (`--strict-readiness=false`, Triton's flag: each
/// model's own readiness then says which serve). It stays set: a broken
/// model added later is reported (log and metric) but does not take a
/// serving replica out of its load balancer. Shutting down clears it for
/// good, so that balancers stop sending first.
#[derive(Debug, Default)]
pub struct Health {
    ready: AtomicBool,
    stopping: AtomicBool,
}

impl Health {
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire) && !self.is_stopping()
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    pub fn set_stopping(&self) {
        self.stopping.store(true, Ordering::Release);
    }
}

/// Owns what is loaded; lives on the polling task, never on the request path.
pub struct Reconciler {
    root: PathBuf,
    engines: Arc<Engines>,
    routes: Arc<Routes>,
    health: Arc<Health>,
    loaded: HashMap<Key, (Fingerprint, Arc<LoadedModel>)>,
    /// Versions that failed, by fingerprint, so a broken file is reported
    /// once, with the error the repository index and metadata show.
    failed: HashMap<Key, (Fingerprint, String)>,
    /// Ready only once every model serves (see [`Health`]).
    strict_readiness: bool,
}

impl Reconciler {
    pub fn new(root: PathBuf, engines: Arc<Engines>, routes: Arc<Routes>, health: Arc<Health>) -> Reconciler {
        Reconciler {
            root,
            engines,
            routes,
            health,
            loaded: HashMap::new(),
            failed: HashMap::new(),
            strict_readiness: true,
        }
    }

    /// `false`: ready once the first pass is done, whatever loaded.
    pub fn with_strict_readiness(mut self, strict: bool) -> Reconciler {
        self.strict_readiness = strict;
        self
    }

    /// One scan, load and swap. Blocking: run it on a blocking thread.
    pub fn pass(&mut self) {
        let scanned = match scan(&self.root) {
            Ok(scanned) => scanned,
            Err(err) => {
                // A transient I/O error must not unload everything: keep serving.
                tracing::error!(repository = %self.root.display(), error = %err, "cannot scan the model repository");
                return;
            }
        };
        let mut desired: BTreeSet<Key> = BTreeSet::new();
        for (name, scan_result) in &scanned {
            let config_result = scan_result.as_ref().map_err(String::clone).and_then(|model| {
                model
                    .config
                    .as_ref()
                    .map(|config| (model, config))
                    .map_err(String::clone)
            });
            let (model, config) = match config_result {
                Ok(found) => found,
                Err(reason) => {
                    tracing::error!(model = %name, %reason, "cannot read the model's directory or config, keeping what is loaded");
                    desired.extend(self.loaded.keys().filter(|(m, _)| m == name).cloned());
                    continue;
                }
            };
            let on_disk: BTreeSet<u64> = model.versions.keys().copied().collect();
            let mut complete = true;
            for version in config.version_policy.select(&on_disk) {
                let (path, size, modified) = &model.versions[&version];
                let key = (name.clone(), version);
                let fingerprint = (
                    *size,
                    *modified,
                    config.backend,
                    config.batching.clone(),
                    config.warmup.clone(),
                );
                complete &= self.ensure_loaded(&key, path, fingerprint);
                desired.insert(key);
            }
            if !complete {
                // A version that failed never replaces a working one: what
                // served this model before keeps serving until it loads.
                desired.extend(self.loaded.keys().filter(|(m, _)| m == name).cloned());
            }
        }
        self.loaded.retain(|key, _| desired.contains(key));
        self.failed.retain(|key, _| desired.contains(key));
        self.publish();
        let mut all_serving = true;
        for name in scanned.keys() {
            let serving = self.loaded.keys().any(|(model, _)| model == name);
            metrics::gauge!(crate::metrics::MODEL_READY, "model" => name.clone())
                .set(f64::from(u8::from(serving)));
            all_serving &= serving;
        }
        let ready = all_serving || !self.strict_readiness;
        if ready && !self.health.is_ready() && !self.health.is_stopping() {
            match all_serving {
                true => tracing::info!("every model serves a version: ready"),
                false => tracing::warn!(
                    "ready without every model (--strict-readiness=false): see the repository index for why some did not load"
                ),
            }
            self.health.set_ready(true);
        }
    }

    /// Loads `key` unless it is loaded from this very file; true when a
    /// model for `key` is loaded afterwards.
    fn ensure_loaded(&mut self, key: &Key, path: &Path, fingerprint: Fingerprint) -> bool {
        let current_opt = self.loaded.get(key).map(|(loaded, _)| loaded);
        if current_opt == Some(&fingerprint) {
            return true;
        }
        let serving = current_opt.is_some();
        if self
            .failed
            .get(key)
            .is_some_and(|(failed, _)| failed == &fingerprint)
        {
            return serving;
        }
        let (_, _, backend, batching_opt, warmup_opt) = &fingerprint;
        let no_warmup = Warmup::default();
        let warmup = warmup_opt.as_ref().unwrap_or(&no_warmup);
        let (name, version) = key;
        let engines = &self.engines;
        // An engine that panics on a malformed graph fails this version
        // alone; the poller lives on.
        let loaded = std::fs::read(path)
            .map_err(|err| Error::Load(format!("cannot read {}: {err}", path.display())))
            .and_then(|artifact| {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    LoadedModel::load_warmed(
                        engines,
                        name,
                        *version,
                        &artifact,
                        *backend,
                        batching_opt.as_ref(),
                        warmup,
                    )
                }))
                .unwrap_or_else(|_| Err(Error::Load("the engine panicked while loading it".into())))
            });
        match loaded {
            Ok(model) => {
                self.failed.remove(key);
                self.loaded.insert(key.clone(), (fingerprint, model));
                true
            }
            Err(err) => {
                metrics::counter!(crate::metrics::MODEL_LOAD_FAILURES, "model" => name.clone()).increment(1);
                tracing::error!(
                    model = %name,
                    version,
                    error = %err,
                    keeps_serving = serving,
                    "model version failed to load"
                );
                self.failed.insert(key.clone(), (fingerprint, err.to_string()));
                serving
            }
        }
    }

    /// Builds the table from what is loaded and publishes it.
    fn publish(&self) {
        let mut by_model: BTreeMap<&str, BTreeMap<u64, Arc<LoadedModel>>> = BTreeMap::new();
        for ((name, version), (_, model)) in &self.loaded {
            by_model.entry(name).or_default().insert(*version, model.clone());
        }
        let mut table = RoutingTable::default();
        table.load_failures = self
            .failed
            .iter()
            .map(|(key, (_, error))| (key.clone(), error.clone()))
            .collect();
        for (name, versions) in by_model {
            if let Some(route) = Route::new(versions) {
                table.routes.insert(name.to_string(), Arc::new(route));
            }
        }
        self.routes.publish(table);
    }
}

/// Polls the repository every `interval` until `shutdown` resolves.
pub async fn watch(
    mut reconciler: Reconciler,
    interval: Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        reconciler = match tokio::task::spawn_blocking(move || {
            reconciler.pass();
            reconciler
        })
        .await
        {
            Ok(reconciler) => reconciler,
            Err(err) => {
                tracing::error!(error = %err, "model repository poller crashed; the last table keeps serving");
                return;
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Model directories and their numbered version directories holding
/// `model.onnx`. Only an unreadable root fails the scan; an unreadable model
/// directory fails that model alone. Symbolic links are followed (Kubernetes
/// volumes are made of them).
fn scan(root: &Path) -> std::io::Result<BTreeMap<String, Result<ScannedModel, String>>> {
    let mut models = BTreeMap::new();
    for entry in std::fs::read_dir(root)? {
        let entry = entry?;
        let Some(name) = entry
            .file_name()
            .to_str()
            .filter(|name| valid_model_name(name))
            .map(str::to_string)
        else {
            continue;
        };
        let dir = entry.path();
        if !dir.is_dir() {
            continue;
        }
        let scanned = scan_model(&dir).map_err(|err| format!("{}: {err}", dir.display()));
        models.insert(name, scanned);
    }
    Ok(models)
}

fn scan_model(dir: &Path) -> std::io::Result<ScannedModel> {
    let config = read_config(&dir.join(CONFIG_FILE));
    let mut versions = BTreeMap::new();
    for version_entry in std::fs::read_dir(dir)? {
        let version_entry = version_entry?;
        let Some(version) = version_entry
            .file_name()
            .to_str()
            .and_then(|v| v.parse::<u64>().ok())
        else {
            continue;
        };
        let path = version_entry.path().join(MODEL_FILE);
        // The file may vanish between listing and stat: then it is simply absent.
        if let Ok(meta) = std::fs::metadata(&path)
            && meta.is_file()
        {
            versions.insert(version, (path, meta.len(), meta.modified().ok()));
        }
    }
    Ok(ScannedModel { config, versions })
}

fn read_config(path: &Path) -> Result<ModelConfig, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => ModelConfig::parse(&text).map_err(|err| format!("{}: {err}", path.display())),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(ModelConfig::default()),
        Err(err) => Err(format!("{}: {err}", path.display())),
    }
}

impl ModelConfig {
    /// A `config.toml`'s text, checked (the fuzz target `model_config` feeds it anything).
    pub fn parse(text: &str) -> Result<ModelConfig, String> {
        let config: ModelConfig = toml::from_str(text).map_err(|err| err.to_string())?;
        if let Some(batching) = &config.batching {
            batching.validate()?;
        }
        Ok(config)
    }
}

/// Names that are safe in a URL path segment and a metric label.
pub fn valid_model_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_parses_backend_and_each_policy() {
        let config: ModelConfig = toml::from_str("backend = \"ort\"\nversion_policy = \"all\"").unwrap();
        assert_eq!(config.backend, BackendChoice::Ort);
        assert_eq!(config.version_policy, VersionPolicy::All);
        let config: ModelConfig = toml::from_str("version_policy = { specific = [1, 3] }").unwrap();
        assert_eq!(config.version_policy, VersionPolicy::Specific(vec![1, 3]));
        assert_eq!(toml::from_str::<ModelConfig>("").unwrap(), ModelConfig::default());
        assert!(toml::from_str::<ModelConfig>("backend = \"gpu\"").is_err());
        assert!(toml::from_str::<ModelConfig>("bakend = \"ort\"").is_err());
    }

    #[test]
    fn config_parses_batching_and_refuses_impossible_settings() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(CONFIG_FILE);
        std::fs::write(
            &path,
            "[batching]\nmax_batch_size = 32\nmax_queue_delay_us = 500\npreferred_batch_sizes = [8, 16]\n",
        )
        .unwrap();
        let batching = read_config(&path).unwrap().batching.unwrap();
        assert_eq!(batching.max_batch_size, 32);
        assert_eq!(batching.max_queue_delay_us, 500);
        assert_eq!(batching.preferred_batch_sizes, vec![8, 16]);
        assert_eq!(batching.max_queue_size, 1024, "default");

        std::fs::write(&path, "[batching]\nmax_batch_size = 0\n").unwrap();
        let err = read_config(&path).unwrap_err();
        assert!(err.contains("max_batch_size is 0"), "{err}");
        std::fs::write(&path, "[batching]\nmax_batch = 8\n").unwrap();
        assert!(read_config(&path).is_err(), "unknown keys are refused");
    }

    #[test]
    fn policies_select_versions() {
        let on_disk: BTreeSet<u64> = [1, 2, 5].into();
        assert_eq!(VersionPolicy::Latest.select(&on_disk), [5].into());
        assert_eq!(VersionPolicy::All.select(&on_disk), on_disk);
        assert_eq!(VersionPolicy::Specific(vec![2, 7]).select(&on_disk), [2].into());
        assert!(VersionPolicy::Latest.select(&BTreeSet::new()).is_empty());
    }
}
