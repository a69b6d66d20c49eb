//! Command line and environment: every flag has a `SLUICE_*` variable, and is
//! validated once, at start-up, into the gateway's typed
//! [`ServeSettings`] and the registry's config.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use sluice_gateway::backend::EngineOptions;
use sluice_gateway::config::{
    DEFAULT_FEEDBACK_BYTES_PER_HOUR, DEFAULT_MAX_FEEDBACK_BYTES, DEFAULT_MAX_REQUEST_BYTES,
    DEFAULT_MAX_RESPONSE_BYTES, ServeSettings, ServerLimits, available_cores, default_body_budget,
    default_per_model, memory_limit,
};
use sluice_gateway::guard::GuardLimits;
use sluice_gateway::predlog::SegmentLimits;
use sluice_registry::auth::Role;
use sluice_registry::{RegistryArgs, RegistryConfig};
use sluice_registry_client::ClientTls;

use crate::cli::{
    AliasCommand, ClientArgs, ContractCommand, DriftCommand, EventsArgs, ModelsCommand, PerformanceCommand,
    ProfileCommand, QualityCommand, RolloutCommand, StageCommand, SuiteCommand, TrafficCommand,
    TriggersCommand, VersionsCommand,
};

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
    /// Serve models over the Open Inference Protocol. With neither
    /// --registry nor --model-repository, runs the registry in the same
    /// process on --admin-listen and serves what it deploys.
    Serve(Box<ServeArgs>),
    /// Run the model registry alone (the control plane of several gateways).
    Registry(RegistryServeArgs),
    /// Create, list and show models.
    Models {
        #[command(subcommand)]
        command: ModelsCommand,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Push, list and show versions.
    Versions {
        #[command(subcommand)]
        command: VersionsCommand,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Request, approve and reject stage transitions.
    Stage {
        #[command(subcommand)]
        command: StageCommand,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Move and list aliases (champion, challenger).
    Alias {
        #[command(subcommand)]
        command: AliasCommand,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Set and show the traffic of an endpoint.
    Traffic {
        #[command(subcommand)]
        command: TrafficCommand,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Start, steer and watch progressive rollouts (canary steps judged each interval).
    Rollout {
        #[command(subcommand)]
        command: RolloutCommand,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Build and store reference profiles (the training data's distribution), for drift.
    Profile {
        #[command(subcommand)]
        command: ProfileCommand,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show how a model's live traffic drifted from its training data.
    Drift {
        #[command(subcommand)]
        command: DriftCommand,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Data contracts: what a version's inputs may hold, derived from its profile.
    Contract {
        #[command(subcommand)]
        command: ContractCommand,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show how a model's predictions fared against the labels sent back.
    Performance {
        #[command(subcommand)]
        command: PerformanceCommand,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Behavioural test suites: golden, invariance, directional and minimum-functionality cases, run on versions.
    Suite {
        #[command(subcommand)]
        command: SuiteCommand,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Model quality: realized performance per slice, the gaps between slices, the latest suite verdict.
    Quality {
        #[command(subcommand)]
        command: QualityCommand,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Training triggers: policies (drift, performance, schedule), firing, history.
    Triggers {
        #[command(subcommand)]
        command: TriggersCommand,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Read the registry's audit log.
    Events {
        #[command(flatten)]
        args: EventsArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Add a bearer token to a tokens file; prints the token, the only time it is shown.
    Tokens(TokensArgs),
    /// Add a predict token (for inference clients) to a predict tokens file;
    /// prints the token, the only time it is shown.
    PredictToken(PredictTokenArgs),
}

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
    #[arg(long, env = "SLUICE_ORT_INTRA_THREADS", default_value_t = 1)]
    pub ort_intra_threads: usize,

    /// Run a model on the request's own thread, skipping the hand-off to a compute thread, when
    /// its warm-up run takes less than this many microseconds and the request body is small
    /// (benches/RESULTS.md has the measurement behind the default); 0 sends every model to the pool.
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

#[derive(Debug, Args)]
pub struct RegistryServeArgs {
    /// Address of the registry API. Every call needs a bearer token, whatever the address.
    #[arg(long, env = "SLUICE_ADMIN_LISTEN", default_value = "127.0.0.1:8081")]
    pub listen: SocketAddr,

    #[command(flatten)]
    pub registry: RegistryArgs,

    #[command(flatten)]
    pub engines: EngineArgs,
}

#[derive(Debug, Args)]
pub struct PredictTokenArgs {
    /// The predict tokens file to add to (created if missing); give it to `sluice serve --predict-tokens-file`.
    #[arg(long, env = "SLUICE_PREDICT_TOKENS_FILE", value_name = "FILE")]
    pub predict_tokens_file: PathBuf,

    /// Who the token is for (a service name): in metrics and error messages.
    #[arg(long)]
    pub name: String,

    /// A model the token may call, or `*` for every model; repeat for several.
    #[arg(long = "model", value_name = "MODEL", required = true)]
    pub models: Vec<String>,

    /// Sustained requests per second the token may make; unlimited without it.
    #[arg(long)]
    pub rate_per_s: Option<f64>,

    /// Requests the token may make at once, above the rate [default: one second's worth].
    #[arg(long, requires = "rate_per_s")]
    pub burst: Option<u32>,
}

#[derive(Debug, Args)]
pub struct TokensArgs {
    /// The tokens file to add to (created if missing); give it to the registry with --tokens-file.
    #[arg(long, env = "SLUICE_TOKENS_FILE", value_name = "FILE")]
    pub tokens_file: PathBuf,

    /// Who the token speaks for; recorded as the actor of every change made with it.
    #[arg(long)]
    pub actor: String,

    /// viewer, deployer, approver, gateway or admin.
    #[arg(long, value_parser = parse_role)]
    pub role: Role,
}

fn parse_role(text: &str) -> Result<Role, String> {
    serde_json::from_value(serde_json::Value::String(text.to_string()))
        .map_err(|_| format!("unknown role '{text}': expected viewer, deployer, approver, gateway or admin"))
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address of the predict API.
    #[arg(long, env = "SLUICE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Serve a Triton-style model repository: DIR/{model}/{version}/model.onnx,
    /// with an optional DIR/{model}/config.toml. No registry is involved.
    #[arg(long, env = "SLUICE_MODEL_REPOSITORY", value_name = "DIR", conflicts_with_all = ["registry", "demo"])]
    pub model_repository: Option<PathBuf>,

    /// Serve what a remote registry deploys (`sluice registry`), e.g. http://registry:8081.
    /// Its variable is not the CLI's SLUICE_REGISTRY_URL: exporting that one
    /// for `sluice models ...` must not change what `sluice serve` does.
    #[arg(
        long,
        env = "SLUICE_SERVE_REGISTRY_URL",
        value_name = "URL",
        conflicts_with = "demo"
    )]
    pub registry: Option<String>,

    /// Bearer token for --registry, of role gateway.
    #[arg(long, env = "SLUICE_SERVE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// PEM CA certificates to trust for an https:// --registry, besides the system's.
    #[arg(
        long,
        env = "SLUICE_SERVE_REGISTRY_CA_CERT",
        value_name = "FILE",
        requires = "registry"
    )]
    pub registry_ca_cert: Option<PathBuf>,

    /// PEM client certificate for a --registry that requires mutual TLS.
    #[arg(long, env = "SLUICE_SERVE_REGISTRY_CLIENT_CERT", value_name = "FILE", requires_all = ["registry", "registry_client_key"])]
    pub registry_client_cert: Option<PathBuf>,

    /// PEM private key of --registry-client-cert.
    #[arg(
        long,
        env = "SLUICE_SERVE_REGISTRY_CLIENT_KEY",
        value_name = "FILE",
        requires = "registry_client_cert"
    )]
    pub registry_client_key: Option<PathBuf>,

    /// Register and deploy the built-in example models (credit_risk, digits)
    /// through the embedded registry; needs nothing else installed.
    #[arg(long, env = "SLUICE_DEMO")]
    pub demo: bool,

    /// Predict tokens (TOML, hashed; `sluice predict-token` adds one): a
    /// model one names needs a token on inference and feedback, with the
    /// token's rate limit. Without it every model is open.
    #[arg(long, env = "SLUICE_PREDICT_TOKENS_FILE", value_name = "FILE")]
    pub predict_tokens_file: Option<PathBuf>,

    /// Address of the embedded registry's API.
    #[arg(long, env = "SLUICE_ADMIN_LISTEN", default_value = "127.0.0.1:8081")]
    pub admin_listen: SocketAddr,

    /// Where downloaded artifacts and the last served deployments are cached [default: DATA_DIR/cache].
    #[arg(long, env = "SLUICE_CACHE_DIR", value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,

    #[command(flatten)]
    pub registry_args: RegistryArgs,

    /// How often the model repository is scanned for new, changed or removed versions, in milliseconds.
    #[arg(long, env = "SLUICE_REPOSITORY_POLL_MS", default_value_t = 2000, value_parser = clap::value_parser!(u64).range(10..))]
    pub repository_poll_ms: u64,

    /// Largest request body accepted, in bytes, after decompression; larger ones get 413.
    #[arg(long, env = "SLUICE_MAX_REQUEST_BYTES", default_value_t = DEFAULT_MAX_REQUEST_BYTES)]
    pub max_request_bytes: usize,

    /// Inference threads [default: the number of cores].
    #[arg(long, env = "SLUICE_COMPUTE_THREADS")]
    pub compute_threads: Option<usize>,

    /// Inference requests that may wait for a thread; beyond it requests get 503 with Retry-After.
    #[arg(long, env = "SLUICE_COMPUTE_QUEUE", default_value_t = 1024)]
    pub compute_queue: usize,

    /// Inference requests admitted at once, from reading the body to the answer; beyond it a request gets 503 with
    /// Retry-After without keeping its body [default: compute threads + compute queue].
    #[arg(long, env = "SLUICE_MAX_IN_FLIGHT")]
    pub max_in_flight: Option<usize>,

    /// Of those, how many one model may hold, so that a slow model leaves slots to the others; beyond it a request
    /// to that model gets 503 [default: half of --max-in-flight].
    #[arg(long, env = "SLUICE_MAX_IN_FLIGHT_PER_MODEL")]
    pub max_in_flight_per_model: Option<usize>,

    /// Bytes of request bodies held at once, counted as they arrive; a request that would go past it gets 503 with
    /// Retry-After [default: a quarter of the memory the process may use (its cgroup's limit, else the machine's),
    /// and at least --max-request-bytes].
    #[arg(long, env = "SLUICE_MAX_BODY_BYTES_IN_FLIGHT")]
    pub max_body_bytes_in_flight: Option<u64>,

    /// Largest response, in bytes, judged before it is built (each value at its longest text); past it the answer
    /// is 413, and the client may ask for fewer rows or outputs, or binary ones.
    #[arg(long, env = "SLUICE_MAX_RESPONSE_BYTES", default_value_t = DEFAULT_MAX_RESPONSE_BYTES)]
    pub max_response_bytes: usize,

    /// Largest feedback body (ground-truth labels), in bytes, after decompression; larger ones get 413.
    #[arg(long, env = "SLUICE_MAX_FEEDBACK_BYTES", default_value_t = DEFAULT_MAX_FEEDBACK_BYTES)]
    pub max_feedback_bytes: usize,

    /// Bytes of labels this gateway writes to the feedback store in one clock hour; past it feedback gets 429 with
    /// Retry-After until the next hour (0: no bound).
    #[arg(long, env = "SLUICE_FEEDBACK_BYTES_PER_HOUR", default_value_t = DEFAULT_FEEDBACK_BYTES_PER_HOUR)]
    pub feedback_bytes_per_hour: u64,

    /// A request's deadline when it gives no `timeout` parameter, and the most any request waits, in milliseconds:
    /// past it the answer is 504, and a request that had not started is not run (0: no limit).
    #[arg(long, env = "SLUICE_REQUEST_TIMEOUT_MS", default_value_t = 30_000)]
    pub request_timeout_ms: u64,

    /// A run still going after this many milliseconds is hung: its version is marked unhealthy (not ready, its
    /// requests answered 503) until the run ends, and ONNX Runtime is told to stop it; tract cannot stop a run
    /// (0: never) [default: the request timeout, when nobody can still be waiting for the run].
    #[arg(long, env = "SLUICE_HUNG_RUN_MS")]
    pub hung_run_ms: Option<u64>,

    /// How long a client may take to send a request's body, in milliseconds; past it the answer is 408.
    #[arg(long, env = "SLUICE_BODY_READ_TIMEOUT_MS", default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub body_read_timeout_ms: u64,

    /// On SIGTERM, how long readiness reports 503 before the listener closes, in milliseconds, so that load
    /// balancers stop sending first (Kubernetes: set it above the readiness probe's period).
    #[arg(long, env = "SLUICE_SHUTDOWN_DELAY_MS", default_value_t = 0)]
    pub shutdown_delay_ms: u64,

    /// On SIGTERM, how long in-flight requests may take to finish once the listener is closed, in milliseconds;
    /// connections still open then are cut. Keep the shutdown delay plus this under the orchestrator's grace period
    /// (Kubernetes: 30 s by default).
    #[arg(long, env = "SLUICE_DRAIN_TIMEOUT_MS", default_value_t = 20_000)]
    pub drain_timeout_ms: u64,

    /// Threads that run mirrored requests on shadow versions.
    #[arg(long, env = "SLUICE_SHADOW_THREADS", default_value_t = 1)]
    pub shadow_threads: usize,

    /// Mirrored requests that may wait for a shadow thread; beyond it they are dropped and counted.
    #[arg(long, env = "SLUICE_SHADOW_QUEUE", default_value_t = 256)]
    pub shadow_queue: usize,

    /// How often per-version statistics are reported to the registry, in milliseconds.
    #[arg(long, env = "SLUICE_STATS_INTERVAL_MS", default_value_t = 5000, value_parser = clap::value_parser!(u64).range(10..))]
    pub stats_interval_ms: u64,

    /// Local guard: a canary's last requests that are watched (0 turns the guard off).
    #[arg(long, env = "SLUICE_GUARD_WINDOW", default_value_t = 20, value_parser = clap::value_parser!(u64).range(0..=1024))]
    pub guard_window: u64,

    /// Local guard: server errors among those that stop routing to the canary.
    #[arg(long, env = "SLUICE_GUARD_ERRORS", default_value_t = 10)]
    pub guard_errors: u64,

    /// Predictions that may wait for the log's writer; beyond it they are dropped and counted.
    #[arg(long, env = "SLUICE_PREDICTION_LOG_QUEUE", default_value_t = 10_000)]
    pub prediction_log_queue: usize,

    /// A prediction log segment is written once it holds this many bytes.
    #[arg(long, env = "SLUICE_SEGMENT_MAX_BYTES", default_value_t = 8 * 1024 * 1024)]
    pub segment_max_bytes: usize,

    /// ... or once it is this old, in milliseconds.
    #[arg(long, env = "SLUICE_SEGMENT_MAX_AGE_MS", default_value_t = 60_000, value_parser = clap::value_parser!(u64).range(10..))]
    pub segment_max_age_ms: u64,

    #[command(flatten)]
    pub engines: EngineArgs,
}

/// How `sluice serve` runs, once its flags are validated.
pub enum ServeMode {
    Repository(PathBuf),
    Remote {
        url: String,
        token_opt: Option<String>,
        tls: ClientTls,
    },
    /// The registry in this process, with its config and address.
    Embedded {
        registry: Box<RegistryConfig>,
        admin_listen: SocketAddr,
        demo: bool,
    },
}

impl ServeArgs {
    /// The mode and the gateway's settings; `Source` is filled in by the
    /// caller once the mode is running (an embedded registry needs a port
    /// first). `ort_dylib_path_opt` is `ORT_DYLIB_PATH`.
    pub fn into_parts(
        self,
        ort_dylib_path_opt: Option<PathBuf>,
    ) -> Result<(ServeMode, PathBuf, ServeSettings), String> {
        if self.max_request_bytes == 0 {
            return Err("--max-request-bytes must be positive".into());
        }
        let compute_threads = self.compute_threads.unwrap_or_else(available_cores);
        if compute_threads == 0 {
            return Err("--compute-threads must be positive".into());
        }
        let engines = self.engines.into_options(compute_threads, ort_dylib_path_opt)?;
        let cache_dir = self
            .cache_dir
            .unwrap_or_else(|| self.registry_args.data_dir.join("cache"));
        // The registry joins feedback with predictions: both use the same directories or bucket.
        let logs = self.registry_args.log_dirs()?;
        let logs_opt = self.model_repository.is_none().then_some(logs);
        if self.registry_args.tls.admin_client_ca.is_some() {
            // The embedded gateway follows its registry over loopback, and
            // has no client certificate to show it.
            return Err(
                "--admin-client-ca is for the standalone registry (`sluice registry`): \
                 `sluice serve` has no admin API of its own to ask client certificates on"
                    .into(),
            );
        }
        let tls_opt = self.registry_args.tls.files(false);
        // Both listeners of the process hold to the same bounds, each its own count.
        let connections = self.registry_args.connections.limits()?;
        let mode = match (self.model_repository, self.registry) {
            (Some(dir), _) => ServeMode::Repository(dir),
            (None, Some(url)) => ServeMode::Remote {
                url,
                token_opt: self.token,
                tls: ClientTls {
                    ca_opt: self.registry_ca_cert,
                    identity_opt: self.registry_client_cert.zip(self.registry_client_key),
                },
            },
            (None, None) => ServeMode::Embedded {
                registry: Box::new(RegistryConfig {
                    upload_idle_timeout: Duration::from_millis(self.body_read_timeout_ms),
                    drain_timeout: Duration::from_millis(self.drain_timeout_ms),
                    ..self.registry_args.into_config()?
                }),
                admin_listen: self.admin_listen,
                demo: self.demo,
            },
        };
        let millis = Duration::from_millis;
        let max_in_flight = match self.max_in_flight {
            Some(0) => return Err("--max-in-flight must be positive".into()),
            Some(max) => max,
            None => compute_threads.saturating_add(self.compute_queue),
        };
        let limits = ServerLimits {
            max_in_flight,
            max_in_flight_per_model: match self.max_in_flight_per_model {
                Some(0) => return Err("--max-in-flight-per-model must be positive".into()),
                Some(max) => max.min(max_in_flight),
                None => default_per_model(max_in_flight),
            },
            max_body_bytes_in_flight: match self.max_body_bytes_in_flight {
                Some(bytes) if (bytes as usize) < self.max_request_bytes => {
                    return Err(format!(
                        "--max-body-bytes-in-flight ({bytes}) must hold at least one body of --max-request-bytes ({})",
                        self.max_request_bytes
                    ));
                }
                Some(bytes) => usize::try_from(bytes).unwrap_or(usize::MAX),
                None => default_body_budget(memory_limit(), self.max_request_bytes),
            },
            max_response_bytes: self.max_response_bytes.max(1),
            max_feedback_bytes: self.max_feedback_bytes.max(1),
            feedback_bytes_per_hour: self.feedback_bytes_per_hour,
            request_timeout_opt: (self.request_timeout_ms > 0).then(|| millis(self.request_timeout_ms)),
            hung_run_after_opt: match self.hung_run_ms.unwrap_or(self.request_timeout_ms) {
                0 => None,
                hung_ms => Some(millis(hung_ms)),
            },
            connections,
            body_read_timeout: millis(self.body_read_timeout_ms),
            shutdown_delay: millis(self.shutdown_delay_ms),
            drain_timeout: millis(self.drain_timeout_ms),
        };
        let settings = ServeSettings {
            listen: self.listen,
            poll_interval: Duration::from_millis(self.repository_poll_ms),
            max_request_bytes: self.max_request_bytes,
            compute_threads,
            compute_queue: self.compute_queue.max(1),
            limits,
            shadow_threads: self.shadow_threads.max(1),
            shadow_queue: self.shadow_queue.max(1),
            stats_interval: Duration::from_millis(self.stats_interval_ms),
            guard_limits: GuardLimits {
                window: self.guard_window as usize,
                errors: self.guard_errors.max(1) as usize,
            },
            logs_opt,
            prediction_log_queue: self.prediction_log_queue.max(1),
            segment_limits: SegmentLimits {
                max_bytes: self.segment_max_bytes.max(1),
                max_age: Duration::from_millis(self.segment_max_age_ms),
            },
            engines,
            tls_opt,
            predict_tokens_opt: self.predict_tokens_file,
        };
        Ok((mode, cache_dir, settings))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    fn serve_mode(args: &[&str]) -> Result<ServeMode, String> {
        let mut argv = vec!["sluice", "serve"];
        argv.extend_from_slice(args);
        let cli = Cli::try_parse_from(argv).map_err(|err| err.to_string())?;
        let Command::Serve(serve) = cli.command else {
            panic!("parsed serve");
        };
        serve.into_parts(None).map(|(mode, _, _)| mode)
    }

    #[test]
    fn serve_picks_repository_remote_or_embedded() {
        assert!(matches!(
            serve_mode(&["--model-repository", "x"]),
            Ok(ServeMode::Repository(_))
        ));
        assert!(matches!(
            serve_mode(&["--registry", "http://r:8081"]),
            Ok(ServeMode::Remote { .. })
        ));
        assert!(matches!(
            serve_mode(&[]),
            Ok(ServeMode::Embedded { demo: false, .. })
        ));
        assert!(matches!(
            serve_mode(&["--demo"]),
            Ok(ServeMode::Embedded { demo: true, .. })
        ));
        assert!(serve_mode(&["--demo", "--model-repository", "x"]).is_err());
        assert!(serve_mode(&["--registry", "http://r", "--model-repository", "x"]).is_err());
    }

    /// With no flags, admission fits the process's memory and leaves each
    /// model half the slots; the library's defaults are the same.
    #[test]
    fn admission_defaults_fit_memory() {
        let cli = Cli::try_parse_from(["sluice", "serve", "--compute-threads", "2"]).unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("parsed serve");
        };
        let (_, _, settings) = args.into_parts(None).unwrap();
        let limits = settings.limits;
        assert_eq!(limits.max_in_flight, 2 + 1024);
        assert_eq!(limits.max_in_flight_per_model, 513);
        let memory = memory_limit();
        assert!(memory > 0);
        assert_eq!(
            limits.max_body_bytes_in_flight,
            (memory as usize / 4).max(DEFAULT_MAX_REQUEST_BYTES)
        );
        assert_eq!(limits, ServerLimits::for_pool(2, 1024));
        // A budget that cannot hold one body is refused at start.
        let cli = Cli::try_parse_from(["sluice", "serve", "--max-body-bytes-in-flight", "1024"]).unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("parsed serve");
        };
        let refused = args.into_parts(None).err().unwrap();
        assert!(refused.contains("must hold at least one body"), "{refused}");
    }

    #[test]
    fn ort_library_flag_wins_over_ort_dylib_path() {
        let cli = Cli::try_parse_from(["sluice", "serve", "--ort-library", "/a.so"]).unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("parsed serve");
        };
        let (_, _, settings) = args.into_parts(Some("/b.so".into())).unwrap();
        assert_eq!(settings.engines.ort_library_opt, Some(PathBuf::from("/a.so")));
    }
}
