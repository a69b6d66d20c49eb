//! Command line and environment: every flag has a `SLUICE_*` variable, and is
//! validated once, at start-up, into a typed [`ServeConfig`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::backend::EngineOptions;

/// Sluice: a model serving gateway for ONNX models, speaking the Open
/// Inference Protocol (KServe V2).
#[derive(Debug, Parser)]
#[command(name = "sluice", version)]
pub struct Cli {
    /// Log format.
    #[arg(long, env = "SLUICE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,

    /// Log filter, in `tracing` env-filter syntax (e.g. `info`, `sluice_gateway=debug`).
    #[arg(long, env = "SLUICE_LOG", default_value = "info", global = true)]
    pub log: String,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve models over the Open Inference Protocol.
    Serve(ServeArgs),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address of the predict API.
    #[arg(long, env = "SLUICE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Serve a Triton-style model repository: DIR/{model}/{version}/model.onnx,
    /// with an optional DIR/{model}/config.toml.
    #[arg(
        long,
        env = "SLUICE_MODEL_REPOSITORY",
        value_name = "DIR",
        required_unless_present = "demo"
    )]
    pub model_repository: Option<PathBuf>,

    /// Serve the built-in example models (credit_risk, digits); needs nothing else installed.
    #[arg(long, env = "SLUICE_DEMO", conflicts_with = "model_repository")]
    pub demo: bool,

    /// How often the model repository is scanned for new, changed or removed versions, in milliseconds.
    #[arg(long, env = "SLUICE_REPOSITORY_POLL_MS", default_value_t = 2000, value_parser = clap::value_parser!(u64).range(10..))]
    pub repository_poll_ms: u64,

    /// Largest request body accepted, in bytes, after decompression; larger ones get 413.
    #[arg(long, env = "SLUICE_MAX_REQUEST_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub max_request_bytes: usize,

    /// Inference threads [default: the number of cores].
    #[arg(long, env = "SLUICE_COMPUTE_THREADS")]
    pub compute_threads: Option<usize>,

    /// Inference requests that may wait for a thread; beyond it requests get 503 with Retry-After.
    #[arg(long, env = "SLUICE_COMPUTE_QUEUE", default_value_t = 1024)]
    pub compute_queue: usize,

    /// The ONNX Runtime library (libonnxruntime.so, 1.31 or newer). Falls back to
    /// ORT_DYLIB_PATH; without either, models run on tract.
    #[arg(long, env = "SLUICE_ORT_LIBRARY", value_name = "FILE")]
    pub ort_library: Option<PathBuf>,

    /// ONNX Runtime sessions per model, so concurrent requests do not wait on one [default: compute threads].
    #[arg(long, env = "SLUICE_ORT_SESSIONS")]
    pub ort_sessions: Option<usize>,

    /// ONNX Runtime intra-op threads per session.
    #[arg(long, env = "SLUICE_ORT_INTRA_THREADS", default_value_t = 1)]
    pub ort_intra_threads: usize,
}

/// A validated server configuration.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    pub model_repository: PathBuf,
    pub poll_interval: Duration,
    pub max_request_bytes: usize,
    pub compute_threads: usize,
    pub compute_queue: usize,
    pub engines: EngineOptions,
}

impl ServeConfig {
    /// Defaults for a repository, as tests and embedders start from.
    pub fn for_repository(model_repository: impl Into<PathBuf>) -> ServeConfig {
        let cores = available_cores();
        ServeConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            model_repository: model_repository.into(),
            poll_interval: Duration::from_secs(2),
            max_request_bytes: 64 * 1024 * 1024,
            compute_threads: cores,
            compute_queue: 1024,
            engines: EngineOptions {
                ort_library_opt: None,
                ort_sessions: cores,
                ort_intra_threads: 1,
            },
        }
    }
}

impl ServeArgs {
    /// `repository` is where the model repository is, once `--demo` has been
    /// resolved to a directory; `ort_dylib_path_opt` is `ORT_DYLIB_PATH`.
    pub fn into_config(
        self,
        repository: PathBuf,
        ort_dylib_path_opt: Option<PathBuf>,
    ) -> Result<ServeConfig, String> {
        if self.max_request_bytes == 0 {
            return Err("--max-request-bytes must be positive".into());
        }
        let compute_threads = self.compute_threads.unwrap_or_else(available_cores);
        if compute_threads == 0 {
            return Err("--compute-threads must be positive".into());
        }
        let ort_sessions = self.ort_sessions.unwrap_or(compute_threads);
        if ort_sessions == 0 || self.ort_intra_threads == 0 {
            return Err("--ort-sessions and --ort-intra-threads must be positive".into());
        }
        Ok(ServeConfig {
            listen: self.listen,
            model_repository: repository,
            poll_interval: Duration::from_millis(self.repository_poll_ms),
            max_request_bytes: self.max_request_bytes,
            compute_threads,
            compute_queue: self.compute_queue.max(1),
            engines: EngineOptions {
                ort_library_opt: self.ort_library.or(ort_dylib_path_opt),
                ort_sessions,
                ort_intra_threads: self.ort_intra_threads,
            },
        })
    }
}

fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn serve_needs_a_repository_or_demo_but_not_both() {
        assert!(Cli::try_parse_from(["sluice", "serve"]).is_err());
        assert!(Cli::try_parse_from(["sluice", "serve", "--demo"]).is_ok());
        assert!(Cli::try_parse_from(["sluice", "serve", "--demo", "--model-repository", "x"]).is_err());
    }

    #[test]
    fn ort_library_flag_wins_over_ort_dylib_path() {
        let cli = Cli::try_parse_from(["sluice", "serve", "--demo", "--ort-library", "/a.so"]).unwrap();
        let Command::Serve(args) = cli.command;
        let config = args.into_config("repo".into(), Some("/b.so".into())).unwrap();
        assert_eq!(config.engines.ort_library_opt, Some(PathBuf::from("/a.so")));
    }
}
