//! The engines' flags, shared by `sluice serve` and `sluice registry` (which
//! loads each upload to read its signature).

use std::path::PathBuf;

use clap::Args;
use sluice_gateway::backend::EngineOptions;

/// The engines, shared by `serve` and `registry` (which loads each upload to read its signature).
#[derive(Debug, Args)]
pub struct EngineArgs {
    /// The ONNX Runtime library (libonnxruntime.so, 1.31 or newer). Falls back to
    /// ORT_DYLIB_PATH; without either, models run on tract.
    #[arg(long, env = "SLUICE_ORT_LIBRARY", value_name = "FILE")]
    pub ort_library: Option<PathBuf>,

    /// ONNX Runtime sessions per model, so concurrent requests do not wait on one [default: compute threads].
    #[arg(long, env = "SLUICE_ORT_SESSIONS")]
    pub ort_sessions: Option<usize>,

    /// ONNX Runtime intra-op threads per session.
    #[arg(long, env = "SLUICE_ORT_INTRA_THREADS", default_value_t = EngineOptions::DEFAULT_ORT_INTRA_THREADS)]
    pub ort_intra_threads: usize,

    /// Run a model on the request's own thread, skipping the hand-off to a compute thread, when
    /// its warm-up run takes less than this many microseconds and the request body is small;
    /// 0, the default, sends every model to the pool (faster on the machines measured:
    /// benches/RESULTS.md, "Inline or pool").
    #[arg(long, env = "SLUICE_INLINE_BELOW_US", default_value_t = EngineOptions::DEFAULT_INLINE_BELOW_US)]
    pub inline_below_us: u64,
}

impl EngineArgs {
    pub fn into_options(
        self,
        compute_threads: usize,
        ort_dylib_path_opt: Option<PathBuf>,
    ) -> Result<EngineOptions, String> {
        let ort_sessions = self.ort_sessions.unwrap_or(compute_threads);
        if ort_sessions == 0 || self.ort_intra_threads == 0 {
            return Err("--ort-sessions and --ort-intra-threads must be positive".into());
        }
        Ok(EngineOptions {
            ort_library_opt: self.ort_library.or(ort_dylib_path_opt),
            ort_sessions,
            ort_intra_threads: self.ort_intra_threads,
            inline_below: std::time::Duration::from_micros(self.inline_below_us),
        })
    }
}
