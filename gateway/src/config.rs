//! The gateway's configuration, validated: where it learns what to serve
//! ([`Source`]), its pools and queues, and the bounds of [`ServerLimits`].
//! The `sluice` binary builds it from flags; embedders and tests start from
//! [`ServeConfig::for_repository`] or [`ServeConfig::for_registry`].

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::time::Duration;

use sluice_common::clock::Clock;
use sluice_common::listen::{
    ConnectionLimits, DEFAULT_BODY_READ_TIMEOUT, DEFAULT_DRAIN_TIMEOUT, Http2Limits,
};
use sluice_common::objects::{Location, LogDirs};
use sluice_common::tls::TlsFiles;
use sluice_registry_client::RegistryClient;

use crate::backend::{EngineOptions, available_cores};
use crate::guard::GuardLimits;
use crate::predlog::SegmentLimits;

/// Where the gateway learns what to serve.
#[derive(Debug, Clone)]
pub enum Source {
    /// A directory polled for `{model}/{version}/model.onnx`.
    Repository(PathBuf),
    /// A registry's deployments, followed through its API; artifacts cached under `cache_dir`.
    Registry {
        client: RegistryClient,
        cache_dir: PathBuf,
    },
}

/// A validated server configuration: where it learns what to serve, and
/// everything else.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub source: Source,
    pub settings: ServeSettings,
}

impl ServeConfig {
    /// Defaults for a repository, as tests and embedders start from.
    pub fn for_repository(model_repository: impl Into<PathBuf>) -> ServeConfig {
        ServeConfig {
            source: Source::Repository(model_repository.into()),
            settings: ServeSettings::default(),
        }
    }

    /// Defaults for following a registry; the prediction log goes beside the cache.
    pub fn for_registry(client: RegistryClient, cache_dir: impl Into<PathBuf>) -> ServeConfig {
        let cache_dir = cache_dir.into();
        let settings = ServeSettings {
            logs_opt: Some(LogDirs {
                predictions: Location::Dir(cache_dir.join("predictions")),
                feedback: Location::Dir(cache_dir.join("feedback")),
            }),
            ..ServeSettings::default()
        };
        ServeConfig {
            source: Source::Registry { client, cache_dir },
            settings,
        }
    }
}

/// How the gateway serves, whatever its source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeSettings {
    /// The predict API: HTTP/1.1, h2c and gRPC.
    pub listen: SocketAddr,
    /// A second address serving the same (for gRPC on a port of its own,
    /// as Triton's 8001).
    pub grpc_listen_opt: Option<SocketAddr>,
    /// How often a model repository is scanned.
    pub poll_interval: Duration,
    /// Ready only once every repository model serves (see `repository::Health`).
    pub strict_readiness: bool,
    pub max_request_bytes: usize,
    pub compute_threads: usize,
    pub compute_queue: usize,
    pub limits: ServerLimits,
    pub shadow_threads: usize,
    pub shadow_queue: usize,
    pub stats_interval: Duration,
    pub guard_limits: GuardLimits,
    /// Where predictions and feedback are written; `None`: neither is (a model repository).
    pub logs_opt: Option<LogDirs>,
    pub prediction_log_queue: usize,
    pub segment_limits: SegmentLimits,
    pub engines: EngineOptions,
    /// HTTPS for the predict API; `None`: plain HTTP.
    pub tls_opt: Option<TlsFiles>,
    /// Predict tokens (`server::access`); `None`: every model is open.
    pub predict_tokens_opt: Option<PathBuf>,
    /// What statistics windows, prediction and label timestamps read as
    /// now: the system's, or a test's manual clock (`sluice_common::clock`).
    pub clock: Clock,
}

impl Default for ServeSettings {
    /// What `sluice serve` does without flags (a test in the `sluice` crate
    /// parses it and compares), logs aside: they go where the source says.
    fn default() -> ServeSettings {
        let cores = available_cores();
        ServeSettings {
            listen: DEFAULT_LISTEN,
            grpc_listen_opt: None,
            poll_interval: DEFAULT_POLL_INTERVAL,
            strict_readiness: true,
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            compute_threads: cores,
            compute_queue: DEFAULT_COMPUTE_QUEUE,
            limits: ServerLimits::for_pool(cores, DEFAULT_COMPUTE_QUEUE),
            shadow_threads: DEFAULT_SHADOW_THREADS,
            shadow_queue: DEFAULT_SHADOW_QUEUE,
            stats_interval: DEFAULT_STATS_INTERVAL,
            guard_limits: GuardLimits::default(),
            logs_opt: None,
            prediction_log_queue: DEFAULT_PREDICTION_LOG_QUEUE,
            segment_limits: SegmentLimits::default(),
            engines: EngineOptions::default(),
            tls_opt: None,
            predict_tokens_opt: None,
            clock: Clock::System,
        }
    }
}

/// What bounds a request and a connection, and how the server stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// Inference requests admitted at once; beyond it 503, the body discarded unkept.
    pub max_in_flight: usize,
    /// Of those, how many one model may hold.
    pub max_in_flight_per_model: usize,
    /// Bytes of request bodies held at once.
    pub max_body_bytes_in_flight: usize,
    /// Largest response, judged before it is built.
    pub max_response_bytes: usize,
    /// Largest feedback body.
    pub max_feedback_bytes: usize,
    /// Bytes of labels written per clock hour (0: no bound).
    pub feedback_bytes_per_hour: u64,
    /// A request's deadline when it sets none (`parameters.timeout`).
    pub request_timeout_opt: Option<Duration>,
    /// How long a run may go before its version is marked unhealthy.
    pub hung_run_after_opt: Option<Duration>,
    /// What bounds the listener's connections and request heads.
    pub connections: ConnectionLimits,
    pub body_read_timeout: Duration,
    /// Not ready, still serving, before the listener closes.
    pub shutdown_delay: Duration,
    /// How long in-flight requests may finish after the listener closed.
    pub drain_timeout: Duration,
}

impl ServerLimits {
    /// The defaults `sluice serve` has for a pool of `threads` and `queue`.
    pub fn for_pool(threads: usize, queue: usize) -> ServerLimits {
        let max_in_flight = threads.saturating_add(queue);
        ServerLimits {
            max_in_flight,
            max_in_flight_per_model: default_per_model(max_in_flight),
            max_body_bytes_in_flight: default_body_budget(memory_limit(), DEFAULT_MAX_REQUEST_BYTES),
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            max_feedback_bytes: DEFAULT_MAX_FEEDBACK_BYTES,
            feedback_bytes_per_hour: DEFAULT_FEEDBACK_BYTES_PER_HOUR,
            request_timeout_opt: Some(DEFAULT_REQUEST_TIMEOUT),
            hung_run_after_opt: Some(DEFAULT_REQUEST_TIMEOUT),
            // gRPC and h2c beside HTTP/1.1 on the predict API.
            connections: ConnectionLimits {
                http2_opt: Some(Http2Limits::default()),
                ..ConnectionLimits::default()
            },
            body_read_timeout: DEFAULT_BODY_READ_TIMEOUT,
            shutdown_delay: Duration::ZERO,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
        }
    }
}

/// Address of the predict API.
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 8080));

/// How often a model repository is scanned for changes.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(2);

/// Inference requests that may wait for a compute thread.
pub const DEFAULT_COMPUTE_QUEUE: usize = 1024;

/// Threads that run mirrored requests on shadow versions, and their queue.
pub const DEFAULT_SHADOW_THREADS: usize = 1;
pub const DEFAULT_SHADOW_QUEUE: usize = 256;

/// How often per-version statistics go to the registry.
pub const DEFAULT_STATS_INTERVAL: Duration = Duration::from_secs(5);

/// Predictions that may wait for the log's writer.
pub const DEFAULT_PREDICTION_LOG_QUEUE: usize = 10_000;

/// A request's deadline when it sets none; also when a run counts as hung.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Largest request body, after decompression.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 64 * 1024 * 1024;

/// Largest response: as large as the largest request.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = DEFAULT_MAX_REQUEST_BYTES;

/// Largest feedback body: 10,000 labels of a few hundred bytes each.
pub const DEFAULT_MAX_FEEDBACK_BYTES: usize = 4 * 1024 * 1024;

/// Labels written per hour by one gateway: about 3.6 million labels of 300
/// bytes (1,000 a second), far above what applications send, and a bound on
/// how fast a flood of labels fills the store.
pub const DEFAULT_FEEDBACK_BYTES_PER_HOUR: u64 = 1 << 30;

/// One model may hold half the slots: a slow one leaves the rest to others.
pub fn default_per_model(max_in_flight: usize) -> usize {
    max_in_flight.div_ceil(2).max(1)
}

/// A quarter of the memory the process may use, for request bodies; at
/// least one body of the largest size.
pub fn default_body_budget(memory_limit: u64, max_request_bytes: usize) -> usize {
    usize::try_from(memory_limit / 4)
        .unwrap_or(usize::MAX)
        .max(max_request_bytes)
}

/// The memory this process may use: its cgroup's limit (v2, then v1) when
/// it has one, else the machine's.
pub fn memory_limit() -> u64 {
    let read = |path: &str| std::fs::read_to_string(path).ok();
    let cgroup = read("/sys/fs/cgroup/memory.max")
        .or_else(|| read("/sys/fs/cgroup/memory/memory.limit_in_bytes"))
        .and_then(|text| text.trim().parse::<u64>().ok());
    let machine = read("/proc/meminfo")
        .and_then(|text| {
            let line = text
                .lines()
                .find(|line| line.starts_with("MemTotal:"))?
                .to_string();
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .map_or(8 << 30, |kib| kib * 1024);
    // An unlimited cgroup v1 reads as a huge number: the machine bounds it.
    cgroup.map_or(machine, |limit| limit.min(machine))
}
