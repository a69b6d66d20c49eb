//! A loaded model version: its session and everything one served version
//! owns (its batch queue, its runs in flight, its statistics window, its
//! guard's record, its contract, drift counter and slicer, its shadow
//! comparison counters), and how a version is loaded (warmed by
//! [`crate::warmup`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use std::time::{Duration, Instant};

use sluice_registry_client::types::Batching;

use sluice_registry_client::warmup::Warmup;

use crate::backend::{BackendChoice, BackendKind, Engines, Session, onnx};
use crate::batcher::Batcher;
use crate::error::Result;
use crate::runwatch::{RunWatch, WatchedSession};
use crate::signature::Signature;
use crate::tensor::Tensor;
use crate::warmup::Warmth;

/// Warm runs timed after the first, to decide whether a model runs inline.
const WARM_RUNS: usize = 5;

/// A model version ready to serve: immutable, shared by every request that
/// routed to it, dropped when the last of them finishes after a swap.
pub struct LoadedModel {
    pub name: String,
    pub version: u64,
    /// `version` as text, kept to answer `model_version` without formatting.
    pub version_label: String,
    pub backend: BackendKind,
    pub signature: Signature,
    pub session: Arc<dyn Session>,
    /// Where requests queue to be run together, when the model is batched.
    pub batcher_opt: Option<Batcher>,
    /// Fast enough to run on the thread that read the request: the hand-off
    /// to a compute thread and back would cost more than the run. Cleared
    /// for good once a run takes longer than [`crate::runwatch::INLINE_LIMIT`].
    runs_inline: AtomicBool,
    /// Its runs in flight, for the watchdog (shared with `session`).
    pub watch: Arc<RunWatch>,
    /// How its warm-up went, for its metadata and metrics.
    pub warmth: Warmth,
    pub metrics: crate::metrics::ModelMetrics,
    /// Counts since the last report to the registry.
    pub stats: crate::stats::VersionStats,
    /// This version's last answers, while it is a canary.
    pub guard: crate::guard::Guard,
    /// Its features' counts in its reference profile's bins, once the
    /// profile is known (a registry version that has one).
    pub drift: std::sync::OnceLock<crate::drift::DriftCounter>,
    /// Its data contract, once known (a registry version that has one).
    pub contract: std::sync::OnceLock<crate::contract::ContractChecker>,
    /// Its card's slice feature, read for the prediction log.
    pub slicer: std::sync::OnceLock<crate::slicer::Slicer>,
    /// Registered the first time this version shadows, so that versions
    /// that never do add no series.
    shadow_metrics: std::sync::OnceLock<crate::comparison::ShadowMetrics>,
}

impl LoadedModel {
    pub fn new(name: &str, version: u64, backend: BackendKind, session: Box<dyn Session>) -> Arc<Self> {
        let watch = Arc::new(RunWatch::default());
        let session = Arc::new(WatchedSession::new(session, watch.clone()));
        let warmth = Warmth::Cold {
            reason: "built without a warm-up".into(),
        };
        LoadedModel::new_with(name, version, backend, session, watch, None, false, warmth)
    }

    /// `session` must report its runs to `watch` (a
    /// [`WatchedSession`] on it).
    #[allow(clippy::too_many_arguments)]
    pub fn new_with(
        name: &str,
        version: u64,
        backend: BackendKind,
        session: Arc<dyn Session>,
        watch: Arc<RunWatch>,
        batcher_opt: Option<Batcher>,
        runs_inline: bool,
        warmth: Warmth,
    ) -> Arc<Self> {
        let version_label = version.to_string();
        metrics::gauge!(crate::metrics::MODEL_WARM, "model" => name.to_string(), "version" => version_label.clone())
            .set(f64::from(u8::from(warmth.is_warm())));
        Arc::new(LoadedModel {
            name: name.to_string(),
            version,
            metrics: crate::metrics::ModelMetrics::new(name, &version_label),
            version_label,
            backend,
            signature: session.signature().clone(),
            session,
            batcher_opt,
            runs_inline: AtomicBool::new(runs_inline),
            watch,
            warmth,
            shadow_metrics: std::sync::OnceLock::new(),
            stats: crate::stats::VersionStats::default(),
            guard: crate::guard::Guard::default(),
            drift: std::sync::OnceLock::new(),
            contract: std::sync::OnceLock::new(),
            slicer: std::sync::OnceLock::new(),
        })
    }

    /// Parses, loads and warms one model version with the synthetic
    /// warm-up (see [`LoadedModel::load_warmed`]).
    pub fn load(
        engines: &Engines,
        name: &str,
        version: u64,
        artifact: &[u8],
        choice: BackendChoice,
        batching_opt: Option<&Batching>,
    ) -> Result<Arc<LoadedModel>> {
        LoadedModel::load_warmed(
            engines,
            name,
            version,
            artifact,
            choice,
            batching_opt,
            &Warmup::default(),
        )
    }

    /// Parses, loads and warms one model version, with a batch queue when
    /// `batching_opt` asks and the model has a batch dimension (else it is
    /// served unbatched, and the reason logged). `warmup` says how it is
    /// warmed ([`crate::warmup`]). Runs for milliseconds to seconds: call
    /// it off the request path.
    pub fn load_warmed(
        engines: &Engines,
        name: &str,
        version: u64,
        artifact: &[u8],
        choice: BackendChoice,
        batching_opt: Option<&Batching>,
        warmup: &Warmup,
    ) -> Result<Arc<LoadedModel>> {
        let started = Instant::now();
        let (artifact, signature) = onnx::prepare(artifact)?;
        let (kind, session) = engines.load_session(name, version, &artifact, &signature, choice)?;
        // The batcher and the model share one watched session: every run,
        // batched or not, is seen by the watchdog.
        let watch = Arc::new(RunWatch::default());
        let session: Arc<dyn Session> = Arc::new(WatchedSession::new(session, watch.clone()));
        let (warmth, warm_inputs_opt) = crate::warmup::warm(session.as_ref(), warmup)?;
        if let Warmth::Cold { reason } = &warmth {
            tracing::warn!(model = name, version, %reason, "the model serves without a warm-up: its first requests pay for it");
        }
        let label = version.to_string();
        let batcher_opt = batching_opt.and_then(|batching| {
            Batcher::start(name, &label, session.clone(), batching)
                .inspect_err(|reason| {
                    tracing::warn!(model = name, version, %reason, "batching asked for but not possible: serving unbatched");
                })
                .ok()
        });
        // A batched model always queues; another runs inline when its
        // fastest of a few warm runs beats the hand-off it would save. A
        // cold model has no run to time: it runs on the compute pool.
        let warm = warm_inputs_opt
            .and_then(|inputs| {
                (0..WARM_RUNS)
                    .map(|_| {
                        let started = Instant::now();
                        let _ = session.run(inputs.clone());
                        started.elapsed()
                    })
                    .min()
            })
            .unwrap_or(Duration::MAX);
        let runs_inline = batcher_opt.is_none() && warm < engines.inline_below();
        let model = LoadedModel::new_with(
            name,
            version,
            kind,
            session,
            watch,
            batcher_opt,
            runs_inline,
            warmth,
        );
        let elapsed = started.elapsed();
        metrics::histogram!(crate::metrics::MODEL_LOAD_DURATION, "model" => name.to_string(), "backend" => kind.name())
            .record(elapsed.as_secs_f64());
        tracing::info!(
            model = name,
            version,
            backend = kind.name(),
            elapsed_ms = elapsed.as_millis() as u64,
            warm_run_us = warm.as_micros() as u64,
            runs_inline,
            batched = model.batcher_opt.is_some(),
            warmed = model.warmth.is_warm(),
            "model loaded"
        );
        Ok(model)
    }

    pub fn shadow_metrics(&self) -> &crate::comparison::ShadowMetrics {
        self.shadow_metrics
            .get_or_init(|| crate::comparison::ShadowMetrics::new(&self.name, &self.version_label))
    }

    /// Whether a request runs on the thread that read it (see `runs_inline`).
    pub fn runs_inline(&self) -> bool {
        self.runs_inline.load(Ordering::Relaxed)
    }

    /// From now on, requests run on the compute pool: a run took too long
    /// for the thread that reads requests.
    pub fn stop_inline(&self) {
        if self.runs_inline.swap(false, Ordering::Relaxed) {
            tracing::info!(
                model = %self.name,
                version = self.version,
                limit_ms = crate::runwatch::INLINE_LIMIT.as_millis() as u64,
                "a run took longer than an inline run may: this version runs on the compute pool from now on"
            );
        }
    }

    /// Runs inputs given in signature order; outputs come back in signature order.
    pub fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        self.session.run(inputs)
    }

    /// [`LoadedModel::run`] unless it would wait for a busy engine; then the
    /// inputs come back.
    pub fn try_run(&self, inputs: Vec<Tensor>) -> std::result::Result<Result<Vec<Tensor>>, Vec<Tensor>> {
        self.session.try_run(inputs)
    }
}

impl std::fmt::Debug for LoadedModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedModel")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}
