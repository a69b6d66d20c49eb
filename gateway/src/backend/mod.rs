//! Inference engines behind one trait: tract (pure Rust, always built) and
//! ONNX Runtime through `ort` (loaded at run time from `libonnxruntime`).
//!
//! [`Engines::load_session`] picks the engine for a model: `auto` prefers
//! ONNX Runtime when its library loads, else tract; a model tract cannot
//! build falls back to ONNX Runtime, and the reason is logged. A served
//! version is built on the session by `crate::model::LoadedModel::load`.

pub mod onnx;
pub mod ort;
pub mod tract;

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::signature::Signature;
use crate::tensor::Tensor;

/// Which engine a model asks for in its `config.toml` (`backend = "..."`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendChoice {
    #[default]
    Auto,
    Tract,
    Ort,
}

/// The engine a model was actually loaded with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    Tract,
    Ort,
}

impl BackendKind {
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Tract => "tract",
            BackendKind::Ort => "ort",
        }
    }
}

/// An inference engine that turns an ONNX artifact into a runnable session.
pub trait Backend: Send + Sync {
    fn load(&self, artifact: &[u8], signature: &Signature) -> Result<Box<dyn Session>>;
}

/// A loaded model, safe to call from many threads at once.
pub trait Session: Send + Sync {
    fn signature(&self) -> &Signature;
    /// Inputs in signature order; returns every output, in signature order.
    fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>>;

    /// Runs now if that cannot block on another run (an engine whose
    /// sessions are all busy gives the inputs back): what a run on the
    /// reactor thread may do.
    fn try_run(&self, inputs: Vec<Tensor>) -> std::result::Result<Result<Vec<Tensor>>, Vec<Tensor>> {
        Ok(self.run(inputs))
    }

    /// Asks the engine to stop every run that has been going for longer
    /// than `running_for` (a hung one; see [`crate::watchdog`]) and returns
    /// how many it asked. An engine that cannot stop a run (tract) asks none.
    fn interrupt(&self, running_for: Duration) -> usize {
        let _ = running_for;
        0
    }
}

/// Engine settings fixed at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineOptions {
    /// `libonnxruntime.so`; ONNX Runtime is unavailable without it.
    pub ort_library_opt: Option<PathBuf>,
    /// ONNX Runtime sessions per model, so concurrent requests do not queue
    /// on one `&mut Session`; more than one share the model's weights.
    pub ort_sessions: usize,
    /// ONNX Runtime intra-op threads per session.
    pub ort_intra_threads: usize,
    /// A model whose warm-up run is faster than this runs on the request's
    /// own thread (see `crate::model::LoadedModel::runs_inline`); zero: never.
    pub inline_below: Duration,
}

impl EngineOptions {
    /// Never, by default: on the AMD machines this project measures on, the
    /// compute pool served microsecond models twice as fast as inline runs
    /// (its thread runs the engine's code back to back while the reactor
    /// runs HTTP's); on the Intel ones of an earlier run inline won by
    /// 1.2-1.4x. `benches/RESULTS.md` has both.
    pub const DEFAULT_INLINE_BELOW_US: u64 = 0;
    /// One thread per session: concurrency comes from sessions.
    pub const DEFAULT_ORT_INTRA_THREADS: usize = 1;
}

impl Default for EngineOptions {
    /// A session per core, as many as the compute threads by default.
    fn default() -> Self {
        EngineOptions {
            ort_library_opt: None,
            ort_sessions: available_cores(),
            ort_intra_threads: EngineOptions::DEFAULT_ORT_INTRA_THREADS,
            inline_below: Duration::from_micros(EngineOptions::DEFAULT_INLINE_BELOW_US),
        }
    }
}

/// The cores this process may use: the default of compute threads and of
/// ONNX Runtime sessions per model.
pub fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// The engines this process can use, built once at start-up.
pub struct Engines {
    inline_below: Duration,
    tract: tract::TractBackend,
    /// `Err` holds why ONNX Runtime is unavailable, to say so when asked for.
    ort: std::result::Result<ort::OrtBackend, String>,
}

impl Engines {
    pub fn new(options: &EngineOptions) -> Engines {
        let ort = match &options.ort_library_opt {
            None => {
                Err("no ONNX Runtime library configured (set ORT_DYLIB_PATH or --ort-library)".to_string())
            }
            Some(path) => ort::OrtBackend::new(path, options.ort_sessions, options.ort_intra_threads),
        };
        match &ort {
            Ok(_) => tracing::info!("onnx runtime available"),
            Err(reason) => tracing::info!(%reason, "onnx runtime unavailable, serving with tract only"),
        }
        Engines {
            inline_below: options.inline_below,
            tract: tract::TractBackend,
            ort,
        }
    }

    /// A model whose warm runs take less than this runs on the thread that
    /// read its request (`--inline-below-us`).
    pub fn inline_below(&self) -> Duration {
        self.inline_below
    }

    /// Tries the engines in the order `choice` prefers: `auto` is ONNX Runtime
    /// then tract, `tract` is tract then ONNX Runtime (for the ML ops tract
    /// lacks), `ort` is ONNX Runtime alone. Each refusal is logged.
    pub fn load_session(
        &self,
        name: &str,
        version: u64,
        artifact: &[u8],
        signature: &Signature,
        choice: BackendChoice,
    ) -> Result<(BackendKind, Box<dyn Session>)> {
        let order: &[BackendKind] = match choice {
            BackendChoice::Auto => &[BackendKind::Ort, BackendKind::Tract],
            BackendChoice::Tract => &[BackendKind::Tract, BackendKind::Ort],
            BackendChoice::Ort => &[BackendKind::Ort],
        };
        let mut refusals = Vec::new();
        for &kind in order {
            let attempt = match kind {
                BackendKind::Tract => contained(|| self.tract.load(artifact, signature)),
                BackendKind::Ort => match &self.ort {
                    Ok(ort) => contained(|| ort.load(artifact, signature)),
                    // `auto` without the library is plain tract, not a refusal.
                    Err(_) if choice == BackendChoice::Auto => continue,
                    Err(reason) => Err(Error::Load(reason.clone())),
                },
            };
            match attempt {
                Ok(session) => return Ok((kind, session)),
                Err(err) => {
                    let reason = err.to_string();
                    tracing::warn!(model = name, version, backend = kind.name(), %reason, "engine cannot load the model");
                    refusals.push(format!("{}: {reason}", kind.name()));
                }
            }
        }
        Err(Error::Load(refusals.join("; ")))
    }
}

/// Runs engine code that may panic on a hostile graph (tract indexes maps
/// by the names in the file; `fuzz/` found one): a panic becomes an error
/// of this one load, never of the process or of the caller's task.
pub(crate) fn contained<T>(engine_call: impl FnOnce() -> Result<T>) -> Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(engine_call))
        .unwrap_or_else(|_| Err(Error::Load("the engine panicked on this model".into())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_that_are_not_onnx_are_refused_with_a_reason() {
        let err = onnx::read_signature(b"not an onnx file").unwrap_err().to_string();
        assert!(err.contains("not a valid ONNX model"), "{err}");
    }
}
