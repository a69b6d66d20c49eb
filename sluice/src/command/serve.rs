//! `sluice serve`: the predict API's flags, and the three modes (a model
//! repository, a remote registry, the registry embedded in this process).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use sluice_common::clock::Clock;
use sluice_common::listen::connections::DEFAULT_MAX_CONCURRENT_STREAMS;
use sluice_common::listen::{DEFAULT_BODY_READ_TIMEOUT, DEFAULT_DRAIN_TIMEOUT, Http2Limits};
use sluice_gateway::backend::available_cores;
use sluice_gateway::config::{
    DEFAULT_COMPUTE_QUEUE, DEFAULT_FEEDBACK_BYTES_PER_HOUR, DEFAULT_LISTEN, DEFAULT_MAX_FEEDBACK_BYTES,
    DEFAULT_MAX_REQUEST_BYTES, DEFAULT_MAX_RESPONSE_BYTES, DEFAULT_POLL_INTERVAL,
    DEFAULT_PREDICTION_LOG_QUEUE, DEFAULT_REQUEST_TIMEOUT, DEFAULT_SHADOW_QUEUE, DEFAULT_SHADOW_THREADS,
    DEFAULT_STATS_INTERVAL, ServeSettings, ServerLimits, default_body_budget, default_per_model,
    memory_limit,
};
use sluice_gateway::guard::{DEFAULT_GUARD_ERRORS, DEFAULT_GUARD_WINDOW, GuardLimits};
use sluice_gateway::predlog::{DEFAULT_SEGMENT_MAX_AGE, DEFAULT_SEGMENT_MAX_BYTES, SegmentLimits};
use sluice_registry::RegistryConfig;
use sluice_registry::config::DEFAULT_ADMIN_LISTEN;
use sluice_registry_client::ClientTls;

use super::engines::EngineArgs;
use super::registry::RegistryArgs;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address of the predict API.
    #[arg(long, env = "SLUICE_LISTEN", default_value_t = DEFAULT_LISTEN)]
    pub listen: SocketAddr,

    /// A second address for the predict API, for clients configured with a
    /// gRPC port of its own (Triton's 8001): it serves what --listen serves,
    /// which already answers gRPC beside HTTP.
    #[arg(long, env = "SLUICE_GRPC_LISTEN", value_name = "ADDR")]
    pub grpc_listen: Option<SocketAddr>,

    /// Streams (requests) open at once on one HTTP/2 or gRPC connection of the predict API.
    #[arg(long, env = "SLUICE_MAX_CONCURRENT_STREAMS", default_value_t = DEFAULT_MAX_CONCURRENT_STREAMS)]
    pub max_concurrent_streams: u32,

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
    #[arg(long, env = "SLUICE_ADMIN_LISTEN", default_value_t = DEFAULT_ADMIN_LISTEN)]
    pub admin_listen: SocketAddr,

    /// Where downloaded artifacts and the last served deployments are cached [default: DATA_DIR/cache].
    #[arg(long, env = "SLUICE_CACHE_DIR", value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,

    #[command(flatten)]
    pub registry_args: RegistryArgs,

    /// How often the model repository is scanned for new, changed or removed versions, in milliseconds.
    #[arg(long, env = "SLUICE_REPOSITORY_POLL_MS", default_value_t = DEFAULT_POLL_INTERVAL.as_millis() as u64, value_parser = clap::value_parser!(u64).range(10..))]
    pub repository_poll_ms: u64,

    /// Ready only once every model in the repository serves a version (Triton's `--strict-readiness`);
    /// `false`: ready once the first scan is done, with each model's own readiness, and the load error
    /// of one that did not load, at `/v2/models/{m}/ready` and `POST /v2/repository/index`.
    #[arg(long, env = "SLUICE_STRICT_READINESS", default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub strict_readiness: bool,

    /// Largest request body accepted, in bytes, after decompression; larger ones get 413.
    #[arg(long, env = "SLUICE_MAX_REQUEST_BYTES", default_value_t = DEFAULT_MAX_REQUEST_BYTES)]
    pub max_request_bytes: usize,

    /// Inference threads [default: the number of cores].
    #[arg(long, env = "SLUICE_COMPUTE_THREADS")]
    pub compute_threads: Option<usize>,

    /// Inference requests that may wait for a thread; beyond it requests get 503 with Retry-After.
    #[arg(long, env = "SLUICE_COMPUTE_QUEUE", default_value_t = DEFAULT_COMPUTE_QUEUE)]
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
    #[arg(long, env = "SLUICE_REQUEST_TIMEOUT_MS", default_value_t = DEFAULT_REQUEST_TIMEOUT.as_millis() as u64)]
    pub request_timeout_ms: u64,

    /// A run still going after this many milliseconds is hung: its version is marked unhealthy (not ready, its
    /// requests answered 503) until the run ends, and ONNX Runtime is told to stop it; tract cannot stop a run
    /// (0: never) [default: the request timeout, when nobody can still be waiting for the run].
    #[arg(long, env = "SLUICE_HUNG_RUN_MS")]
    pub hung_run_ms: Option<u64>,

    /// How long a client may take to send a request's body, in milliseconds; past it the answer is 408.
    #[arg(long, env = "SLUICE_BODY_READ_TIMEOUT_MS", default_value_t = DEFAULT_BODY_READ_TIMEOUT.as_millis() as u64, value_parser = clap::value_parser!(u64).range(1..))]
    pub body_read_timeout_ms: u64,

    /// On SIGTERM, how long readiness reports 503 before the listener closes, in milliseconds, so that load
    /// balancers stop sending first (Kubernetes: set it above the readiness probe's period).
    #[arg(long, env = "SLUICE_SHUTDOWN_DELAY_MS", default_value_t = 0)]
    pub shutdown_delay_ms: u64,

    /// On SIGTERM, how long in-flight requests may take to finish once the listener is closed, in milliseconds;
    /// connections still open then are cut. Keep the shutdown delay plus this under the orchestrator's grace period
    /// (Kubernetes: 30 s by default).
    #[arg(long, env = "SLUICE_DRAIN_TIMEOUT_MS", default_value_t = DEFAULT_DRAIN_TIMEOUT.as_millis() as u64)]
    pub drain_timeout_ms: u64,

    /// Threads that run mirrored requests on shadow versions.
    #[arg(long, env = "SLUICE_SHADOW_THREADS", default_value_t = DEFAULT_SHADOW_THREADS)]
    pub shadow_threads: usize,

    /// Mirrored requests that may wait for a shadow thread; beyond it they are dropped and counted.
    #[arg(long, env = "SLUICE_SHADOW_QUEUE", default_value_t = DEFAULT_SHADOW_QUEUE)]
    pub shadow_queue: usize,

    /// How often per-version statistics are reported to the registry, in milliseconds.
    #[arg(long, env = "SLUICE_STATS_INTERVAL_MS", default_value_t = DEFAULT_STATS_INTERVAL.as_millis() as u64, value_parser = clap::value_parser!(u64).range(10..))]
    pub stats_interval_ms: u64,

    /// Local guard: a canary's last requests that are watched (0 turns the guard off).
    #[arg(long, env = "SLUICE_GUARD_WINDOW", default_value_t = DEFAULT_GUARD_WINDOW as u64, value_parser = clap::value_parser!(u64).range(0..=1024))]
    pub guard_window: u64,

    /// Local guard: server errors, engine refusals beyond the stable version's, slow answers (past twice its p99 and 1 ms more), or disagreeing comparisons, among those that stop routing to the canary.
    #[arg(long, env = "SLUICE_GUARD_ERRORS", default_value_t = DEFAULT_GUARD_ERRORS as u64)]
    pub guard_errors: u64,

    /// Predictions that may wait for the log's writer; beyond it they are dropped and counted.
    #[arg(long, env = "SLUICE_PREDICTION_LOG_QUEUE", default_value_t = DEFAULT_PREDICTION_LOG_QUEUE)]
    pub prediction_log_queue: usize,

    /// A prediction log segment is written once it holds this many bytes.
    #[arg(long, env = "SLUICE_SEGMENT_MAX_BYTES", default_value_t = DEFAULT_SEGMENT_MAX_BYTES)]
    pub segment_max_bytes: usize,

    /// ... or once it is this old, in milliseconds.
    #[arg(long, env = "SLUICE_SEGMENT_MAX_AGE_MS", default_value_t = DEFAULT_SEGMENT_MAX_AGE.as_millis() as u64, value_parser = clap::value_parser!(u64).range(10..))]
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
        let mut connections = self.registry_args.connections.limits()?;
        // The predict API also speaks HTTP/2: gRPC, and h2c.
        if self.max_concurrent_streams == 0 {
            return Err("--max-concurrent-streams must be positive".into());
        }
        connections.http2_opt = Some(Http2Limits {
            max_concurrent_streams: self.max_concurrent_streams,
            ..Http2Limits::default()
        });
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
            grpc_listen_opt: self.grpc_listen,
            poll_interval: Duration::from_millis(self.repository_poll_ms),
            strict_readiness: self.strict_readiness,
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
            clock: Clock::System,
        };
        Ok((mode, cache_dir, settings))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{Cli, Command};
    use clap::Parser;

    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    /// One source for each default: with no flag, `sluice serve` is the
    /// gateway's `ServeSettings::default()` and, embedded, the registry's
    /// `RegistryConfig::new` under the default data directory.
    #[test]
    fn no_flags_are_the_libraries_defaults() {
        let cli = Cli::try_parse_from(["sluice", "serve"]).unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("parsed serve");
        };
        let (mode, cache_dir, settings) = args.into_parts(None).unwrap();
        let data_dir = PathBuf::from(sluice_registry::config::DEFAULT_DATA_DIR);
        assert_eq!(
            ServeSettings {
                logs_opt: None,
                ..settings.clone()
            },
            ServeSettings::default()
        );
        // The embedded registry's logs: where the gateway writes them.
        assert_eq!(
            settings.logs_opt,
            Some(sluice_common::objects::LogDirs {
                predictions: sluice_common::objects::Location::Dir(data_dir.join("predictions")),
                feedback: sluice_common::objects::Location::Dir(data_dir.join("feedback")),
            })
        );
        assert_eq!(cache_dir, data_dir.join("cache"));
        let ServeMode::Embedded {
            registry,
            admin_listen,
            demo,
        } = mode
        else {
            panic!("no flag is the embedded mode");
        };
        assert_eq!((admin_listen, demo), (DEFAULT_ADMIN_LISTEN, false));
        // Debug, not PartialEq: the policy and actions types have no equality.
        assert_eq!(
            format!("{registry:?}"),
            format!("{:?}", RegistryConfig::new(&data_dir))
        );
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
