//! The registry's validated configuration, and the one source of each of
//! its defaults: [`RegistryConfig::new`] is built from the constants below,
//! and the `sluice` binary's flags name the same constants (a test there
//! parses `sluice registry` with no flags and compares).

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::time::Duration;

use sluice_common::clock::Clock;
use sluice_common::listen::{ConnectionLimits, DEFAULT_BODY_READ_TIMEOUT, DEFAULT_DRAIN_TIMEOUT};
use sluice_common::objects::{Location, LogDirs};
use sluice_common::tls::TlsFiles;

use crate::actions::Actions;
use crate::auth::{Caller, Tokens};
use crate::policy::Policy;

/// Address of the registry's API (`sluice registry --listen`, `sluice serve --admin-listen`).
pub const DEFAULT_ADMIN_LISTEN: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 8081));

/// Where the registry keeps its metadata, artifacts and tokens.
pub const DEFAULT_DATA_DIR: &str = "./sluice-data";

/// Largest artifact accepted: 1 GiB.
pub const DEFAULT_MAX_ARTIFACT_BYTES: usize = 1 << 30;

/// How often the rollout controller looks for intervals to judge.
pub const DEFAULT_ROLLOUT_TICK: Duration = Duration::from_secs(1);

/// How often the monitor joins feedback, measures drift and evaluates triggers.
pub const DEFAULT_MONITOR_TICK: Duration = Duration::from_secs(10);

/// How long a logged prediction waits for its label: a day.
pub const DEFAULT_FEEDBACK_HORIZON: Duration = Duration::from_secs(24 * 3600);

/// Predictions waiting for a label at once (about 100 bytes each).
pub const DEFAULT_FEEDBACK_MAX_PENDING: usize = 1_000_000;

/// Labels waiting for their prediction, at most: 64 MiB.
pub const DEFAULT_MAX_WAITING_BYTES: usize = 64 * 1024 * 1024;

/// How long a label whose prediction is not logged yet is retried: five
/// minutes, well past the gateways' default segment age of one minute.
pub const DEFAULT_FEEDBACK_GRACE: Duration = Duration::from_secs(5 * 60);

/// The resolution of realized-performance windows.
pub const DEFAULT_FEEDBACK_BUCKET: Duration = Duration::from_secs(60);

/// How long an upload may go without a byte before it is answered 408:
/// what the gateway allows a request body.
pub const DEFAULT_UPLOAD_IDLE_TIMEOUT: Duration = DEFAULT_BODY_READ_TIMEOUT;

/// How long a registry starting on PostgreSQL waits for the one it
/// replaces to let go of the database.
pub const DEFAULT_METADATA_LOCK_WAIT: Duration = Duration::from_secs(60);

/// The monitor's settings: feedback join, drift gauges, triggers.
#[derive(Debug, Clone)]
pub struct MonitorConfig {
    pub logs: LogDirs,
    pub tick: std::time::Duration,
    pub horizon_ms: u64,
    pub max_pending: usize,
    /// Memory for labels waiting for their prediction.
    pub max_waiting_bytes: usize,
    /// Feedback whose prediction is not found yet is retried this long
    /// (the gateways' segments are written once a minute by default).
    pub grace_ms: u64,
    /// The resolution of realized-performance windows.
    pub bucket_ms: u64,
}

/// A validated registry configuration.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    pub data_dir: PathBuf,
    /// `--store`: artifacts (and logs) in a bucket; `None`: the data dir.
    pub store_opt: Option<Location>,
    /// `--metadata`; `None`: SQLite in the data dir.
    pub metadata_opt: Option<String>,
    /// How long a registry starting on PostgreSQL waits for the one it
    /// replaces to let go of the database (its connection may outlive it
    /// by the server's keepalive). A minute; tests shorten it.
    pub metadata_lock_wait: std::time::Duration,
    pub tokens_file_opt: Option<PathBuf>,
    pub policy: Policy,
    /// What policies may make the registry run and call (`--actions-file`).
    pub actions: Actions,
    pub max_artifact_bytes: usize,
    pub import_root_opt: Option<PathBuf>,
    /// Tokens known to this process only (the embedded gateway's), in clear.
    pub process_tokens: Vec<(String, Caller)>,
    pub rollout_tick: std::time::Duration,
    pub monitor: MonitorConfig,
    /// What bounds the admin API's connections (`sluice serve` gives its
    /// embedded registry the gateway's).
    pub connections: ConnectionLimits,
    /// How long in-flight requests may finish at shutdown; then they are cut.
    pub drain_timeout: std::time::Duration,
    /// How long an upload may go without sending a byte before it is
    /// answered 408 (a stalled client must not hold a connection; a large
    /// upload on a slow link is not stalled). `sluice serve` sets the
    /// gateway's `--body-read-timeout-ms`; standalone, 30 s.
    pub upload_idle_timeout: std::time::Duration,
    /// HTTPS for the admin API; `None`: plain HTTP.
    pub tls_opt: Option<TlsFiles>,
    /// What rollout intervals, statistics, trigger windows and the feedback
    /// join read as now: the system's, or a test's manual clock.
    pub clock: Clock,
    /// The web console at `/console/` on the admin API's listener
    /// (`--no-console` turns it off).
    pub console: bool,
}

impl RegistryConfig {
    /// Defaults under `data_dir`, as tests and embedders start from.
    pub fn new(data_dir: impl Into<PathBuf>) -> RegistryConfig {
        let data_dir = data_dir.into();
        RegistryConfig {
            monitor: MonitorConfig {
                logs: LogDirs {
                    predictions: Location::Dir(data_dir.join("predictions")),
                    feedback: Location::Dir(data_dir.join("feedback")),
                },
                tick: DEFAULT_MONITOR_TICK,
                horizon_ms: DEFAULT_FEEDBACK_HORIZON.as_millis() as u64,
                max_pending: DEFAULT_FEEDBACK_MAX_PENDING,
                max_waiting_bytes: DEFAULT_MAX_WAITING_BYTES,
                grace_ms: DEFAULT_FEEDBACK_GRACE.as_millis() as u64,
                bucket_ms: DEFAULT_FEEDBACK_BUCKET.as_millis() as u64,
            },
            data_dir,
            store_opt: None,
            metadata_opt: None,
            metadata_lock_wait: DEFAULT_METADATA_LOCK_WAIT,
            tokens_file_opt: None,
            policy: Policy::default(),
            actions: Actions::default(),
            max_artifact_bytes: DEFAULT_MAX_ARTIFACT_BYTES,
            import_root_opt: None,
            process_tokens: Vec::new(),
            rollout_tick: DEFAULT_ROLLOUT_TICK,
            connections: ConnectionLimits::default(),
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            upload_idle_timeout: DEFAULT_UPLOAD_IDLE_TIMEOUT,
            tls_opt: None,
            clock: Clock::System,
            console: true,
        }
    }

    /// The tokens this configuration accepts; `Some(path)` when an admin
    /// token was just created there.
    pub fn tokens(&self) -> Result<(Tokens, Option<PathBuf>), String> {
        let (mut tokens, created) = match &self.tokens_file_opt {
            Some(path) => (Tokens::load(path)?, None),
            None => Tokens::load_or_bootstrap(&self.data_dir)?,
        };
        for (token, caller) in &self.process_tokens {
            tokens.insert(token, caller.clone());
        }
        Ok((tokens, created))
    }
}
