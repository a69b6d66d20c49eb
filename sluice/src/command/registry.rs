//! `sluice registry`, and the registry's flags, which `sluice serve`
//! flattens too (its embedded registry), validated into a
//! [`RegistryConfig`].

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;
use sluice_common::clock::Clock;
use sluice_common::listen::connections::{DEFAULT_HEADER_READ_TIMEOUT, DEFAULT_MAX_HEADER_BYTES};
use sluice_common::listen::{ConnectionLimits, DEFAULT_DRAIN_TIMEOUT};
use sluice_common::objects::{Location, LogDirs};
use sluice_common::tls::{DEFAULT_RELOAD_INTERVAL, TlsFiles};
use sluice_registry::actions::Actions;
use sluice_registry::config::{
    DEFAULT_ADMIN_LISTEN, DEFAULT_DATA_DIR, DEFAULT_FEEDBACK_BUCKET, DEFAULT_FEEDBACK_GRACE,
    DEFAULT_FEEDBACK_HORIZON, DEFAULT_FEEDBACK_MAX_PENDING, DEFAULT_MAX_ARTIFACT_BYTES,
    DEFAULT_MAX_WAITING_BYTES, DEFAULT_METADATA_LOCK_WAIT, DEFAULT_MONITOR_TICK, DEFAULT_ROLLOUT_TICK,
    DEFAULT_UPLOAD_IDLE_TIMEOUT, MonitorConfig, RegistryConfig,
};
use sluice_registry::policy::Policy;

use super::engines::EngineArgs;

#[derive(Debug, Args)]
pub struct RegistryServeArgs {
    /// Address of the registry API. Every call needs a bearer token, whatever the address.
    #[arg(long, env = "SLUICE_ADMIN_LISTEN", default_value_t = DEFAULT_ADMIN_LISTEN)]
    pub listen: SocketAddr,

    #[command(flatten)]
    pub registry: RegistryArgs,

    #[command(flatten)]
    pub engines: EngineArgs,
}

#[derive(Debug, Clone, Args)]
pub struct RegistryArgs {
    /// Where the registry keeps its metadata (registry.db), artifacts and tokens.
    #[arg(
        long,
        env = "SLUICE_DATA_DIR",
        default_value = DEFAULT_DATA_DIR,
        value_name = "DIR"
    )]
    pub data_dir: PathBuf,

    /// The metadata database: `postgres://USER:PASSWORD@HOST/DB` (when
    /// the database should live apart from the registry's machine: managed,
    /// replicated, backed up), or `sqlite://FILE` [default:
    /// DATA_DIR/registry.db]. One registry per database. TLS as libpq's
    /// parameters say: `?sslmode=verify-full&sslrootcert=CA.pem` checks the
    /// server, `require` without `sslrootcert` only encrypts. Prefer the
    /// variable: a flag's password shows in the process list.
    #[arg(long, env = "SLUICE_METADATA", value_name = "URL", hide_env_values = true)]
    pub metadata: Option<String>,

    /// Bearer tokens (TOML, hashed). Without it the registry keeps its own
    /// under the data dir and creates an admin token there on first start.
    #[arg(long, env = "SLUICE_TOKENS_FILE", value_name = "FILE")]
    pub tokens_file: Option<PathBuf>,

    /// Governance policy (TOML or JSON): approvals, metric gates, behavioural
    /// suites and slice gates per stage, the stages that may take traffic and
    /// how much, one production version with a rollback window, and what a
    /// rollout needs to start (`examples/policies/governance.toml`,
    /// `deploy/policy.toml`). Default: staging needs a technical approval,
    /// production a technical and a business one.
    #[arg(long, env = "SLUICE_POLICY_FILE", value_name = "FILE")]
    pub policy_file: Option<PathBuf>,

    /// What trigger and rollout policies may make the registry do (TOML or JSON):
    /// the commands a training trigger may run, with the parameters a
    /// policy may fill; the hosts webhooks may call; the variables a
    /// webhook header may name. Without it no policy runs a command or
    /// calls a webhook (SECURITY.md, "Actions").
    #[arg(long, env = "SLUICE_ACTIONS_FILE", value_name = "FILE")]
    pub actions_file: Option<PathBuf>,

    /// Largest artifact accepted, in bytes.
    #[arg(long, env = "SLUICE_MAX_ARTIFACT_BYTES", default_value_t = DEFAULT_MAX_ARTIFACT_BYTES)]
    pub max_artifact_bytes: usize,

    /// Directory that versions may be registered from by `file://` URI.
    #[arg(long, env = "SLUICE_IMPORT_ROOT", value_name = "DIR")]
    pub import_root: Option<PathBuf>,

    /// How often the rollout controller looks for intervals to judge, in milliseconds.
    #[arg(long, env = "SLUICE_ROLLOUT_TICK_MS", default_value_t = DEFAULT_ROLLOUT_TICK.as_millis() as u64, value_parser = clap::value_parser!(u64).range(10..))]
    pub rollout_tick_ms: u64,

    /// The prediction log: gateways write it, the registry joins feedback
    /// with it [default: DATA_DIR/predictions].
    #[arg(long, env = "SLUICE_PREDICTIONS_DIR", value_name = "DIR")]
    pub predictions_dir: Option<PathBuf>,

    /// Ground-truth feedback, as gateways write it [default: DATA_DIR/feedback].
    #[arg(long, env = "SLUICE_FEEDBACK_DIR", value_name = "DIR")]
    pub feedback_dir: Option<PathBuf>,

    /// Artifacts, predictions and feedback in an S3-compatible bucket:
    /// `s3://BUCKET/PREFIX` (under PREFIX/artifacts, PREFIX/predictions,
    /// PREFIX/feedback), instead of the data dir. The registry and every
    /// gateway name the same URL. Credentials, region and endpoint from the
    /// standard AWS variables (AWS_ACCESS_KEY_ID, AWS_REGION,
    /// AWS_ENDPOINT_URL, ...).
    #[arg(
        long,
        env = "SLUICE_STORE",
        value_name = "URL",
        conflicts_with_all = ["predictions_dir", "feedback_dir"]
    )]
    pub store: Option<String>,

    /// How often the monitor joins feedback, measures drift for the gauges
    /// and evaluates training triggers, in milliseconds.
    #[arg(long, env = "SLUICE_MONITOR_TICK_MS", default_value_t = DEFAULT_MONITOR_TICK.as_millis() as u64, value_parser = clap::value_parser!(u64).range(10..))]
    pub monitor_tick_ms: u64,

    /// How long a logged prediction waits for its label; feedback after that
    /// is counted late.
    #[arg(long, env = "SLUICE_FEEDBACK_HORIZON_MS", default_value_t = DEFAULT_FEEDBACK_HORIZON.as_millis() as u64)]
    pub feedback_horizon_ms: u64,

    /// Most predictions waiting for a label at once (memory bound: about
    /// 100 bytes each); the oldest are let go first and count as late.
    #[arg(long, env = "SLUICE_FEEDBACK_MAX_PENDING", default_value_t = DEFAULT_FEEDBACK_MAX_PENDING)]
    pub feedback_max_pending: usize,

    /// Memory for labels whose prediction is not in the log yet, in bytes;
    /// past it the oldest are let go and counted as dropped
    /// (`sluice_feedback_unmatched{kind="dropped"}`).
    #[arg(long, env = "SLUICE_FEEDBACK_MAX_WAITING_BYTES", default_value_t = DEFAULT_MAX_WAITING_BYTES)]
    pub feedback_max_waiting_bytes: usize,

    /// How long a label whose prediction is not in the log yet is retried
    /// before it counts as unknown; at least the gateways'
    /// --segment-max-age-ms plus a monitor tick. Performance windows are
    /// judged this long after they end, once their labels have joined.
    #[arg(long, env = "SLUICE_FEEDBACK_GRACE_MS", default_value_t = DEFAULT_FEEDBACK_GRACE.as_millis() as u64)]
    pub feedback_grace_ms: u64,

    /// The resolution of realized-performance windows, in milliseconds: a
    /// performance rule's window must be a multiple of it.
    #[arg(long, env = "SLUICE_FEEDBACK_BUCKET_MS", default_value_t = DEFAULT_FEEDBACK_BUCKET.as_millis() as u64, value_parser = clap::value_parser!(u64).range(1..))]
    pub feedback_bucket_ms: u64,

    /// Do not serve the web console (`/console/` on the admin API's
    /// listener). The API and its document (`/openapi.json`) stay.
    #[arg(long, env = "SLUICE_NO_CONSOLE")]
    pub no_console: bool,

    #[command(flatten)]
    pub tls: TlsArgs,

    #[command(flatten)]
    pub connections: ConnectionArgs,
}

/// What bounds a listener's connections: both the predict API's and the
/// admin API's (each listener holds its own count).
#[derive(Debug, Clone, Args)]
pub struct ConnectionArgs {
    /// How long a client may take to send a request's headers, in milliseconds (slow clients are cut off). hyper
    /// also counts a keep-alive connection's idle time against it: keep it above the idle timeout of the proxies in
    /// front (60 s for most load balancers).
    #[arg(long, env = "SLUICE_HEADER_READ_TIMEOUT_MS", default_value_t = DEFAULT_HEADER_READ_TIMEOUT.as_millis() as u64, value_parser = clap::value_parser!(u64).range(1..))]
    pub header_read_timeout_ms: u64,

    /// Connections each listener holds at once. At the bound the oldest idle one is closed to make room; when all
    /// are busy a new one is answered 503 and closed (`sluice_connections_refused_total`) [default: a quarter of
    /// the open-files limit, which `sluice` raises to its hard limit, between 64 and 65536].
    #[arg(long, env = "SLUICE_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,

    /// Connections one client address may hold on a listener; past it a new one is answered 503 (0: no bound;
    /// behind a load balancer or a Kubernetes Service, every client may share one address).
    #[arg(long, env = "SLUICE_MAX_CONNECTIONS_PER_ADDRESS", default_value_t = 0)]
    pub max_connections_per_address: usize,

    /// Largest request head (request line and headers), in bytes; past it, and past 100 header fields, 431.
    #[arg(long, env = "SLUICE_MAX_HEADER_BYTES", default_value_t = DEFAULT_MAX_HEADER_BYTES as u64, value_parser = clap::value_parser!(u64).range(1024..))]
    pub max_header_bytes: u64,
}

impl ConnectionArgs {
    pub fn limits(&self) -> Result<ConnectionLimits, String> {
        let defaults = ConnectionLimits::default();
        Ok(ConnectionLimits {
            max_connections: match self.max_connections {
                Some(0) => return Err("--max-connections must be positive".into()),
                Some(max) => max,
                None => defaults.max_connections,
            },
            max_per_address: self.max_connections_per_address,
            header_read_timeout: std::time::Duration::from_millis(self.header_read_timeout_ms),
            max_header_bytes: usize::try_from(self.max_header_bytes).unwrap_or(usize::MAX),
            // The admin API speaks HTTP/1.1; `sluice serve` turns HTTP/2 on for the predict API.
            http2_opt: None,
        })
    }
}

/// HTTPS for the listeners of this process (the predict API and the admin API).
#[derive(Debug, Clone, Args)]
pub struct TlsArgs {
    /// PEM certificate, then its chain: every listener of this process
    /// speaks HTTPS only. Read again every --tls-reload-ms: a renewed
    /// certificate serves new connections without a restart.
    #[arg(long, env = "SLUICE_TLS_CERT", value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of --tls-cert.
    #[arg(long, env = "SLUICE_TLS_KEY", value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Mutual TLS on the admin API: a client must present a certificate
    /// signed by one of these PEM CAs (bearer tokens are still required).
    /// Standalone registry only (`sluice registry`).
    #[arg(
        long,
        env = "SLUICE_ADMIN_CLIENT_CA",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub admin_client_ca: Option<PathBuf>,

    /// How often the certificate files are read again, in milliseconds.
    #[arg(long, env = "SLUICE_TLS_RELOAD_MS", default_value_t = DEFAULT_RELOAD_INTERVAL.as_millis() as u64, value_parser = clap::value_parser!(u64).range(100..))]
    pub tls_reload_ms: u64,
}

impl TlsArgs {
    /// The files of a listener; `with_client_ca`: the admin API's, which asks
    /// for client certificates when --admin-client-ca is set.
    pub fn files(&self, with_client_ca: bool) -> Option<TlsFiles> {
        Some(TlsFiles {
            cert: self.tls_cert.clone()?,
            key: self.tls_key.clone()?,
            client_ca_opt: self.admin_client_ca.clone().filter(|_| with_client_ca),
            reload_interval: std::time::Duration::from_millis(self.tls_reload_ms),
        })
    }
}

impl RegistryArgs {
    /// `--store`, parsed.
    pub fn store(&self) -> Result<Option<Location>, String> {
        self.store.as_deref().map(Location::parse_store).transpose()
    }

    pub fn log_dirs(&self) -> Result<LogDirs, String> {
        if let Some(store) = self.store()? {
            return Ok(LogDirs {
                predictions: store.child("predictions"),
                feedback: store.child("feedback"),
            });
        }
        Ok(LogDirs {
            predictions: Location::Dir(
                self.predictions_dir
                    .clone()
                    .unwrap_or_else(|| self.data_dir.join("predictions")),
            ),
            feedback: Location::Dir(
                self.feedback_dir
                    .clone()
                    .unwrap_or_else(|| self.data_dir.join("feedback")),
            ),
        })
    }

    pub fn into_config(self) -> Result<RegistryConfig, String> {
        if self.max_artifact_bytes == 0 {
            return Err("--max-artifact-bytes must be positive".into());
        }
        if let Some(url) = &self.metadata {
            let known = ["postgres://", "postgresql://", "sqlite://"];
            if !known.iter().any(|scheme| url.starts_with(scheme)) {
                return Err("--metadata must be a postgres:// or sqlite:// URL".into());
            }
        }
        let policy = match &self.policy_file {
            Some(path) => Policy::load(path)?,
            None => Policy::default(),
        };
        // The config layer reads the environment, once: a command inherits,
        // and a header names, only what the operator listed.
        let actions = match &self.actions_file {
            Some(path) => Actions::load(path, |name| std::env::var(name).ok())?,
            None => Actions::default(),
        };
        for name in actions.unset_webhook_env() {
            tracing::warn!(
                variable = name,
                "webhook_env names a variable that is not set: headers naming it fail"
            );
        }
        let monitor = MonitorConfig {
            logs: self.log_dirs()?,
            tick: std::time::Duration::from_millis(self.monitor_tick_ms),
            horizon_ms: self.feedback_horizon_ms,
            max_pending: self.feedback_max_pending.max(1),
            max_waiting_bytes: self.feedback_max_waiting_bytes,
            grace_ms: self.feedback_grace_ms,
            bucket_ms: self.feedback_bucket_ms,
        };
        Ok(RegistryConfig {
            monitor,
            store_opt: self.store()?,
            data_dir: self.data_dir,
            metadata_opt: self.metadata,
            metadata_lock_wait: DEFAULT_METADATA_LOCK_WAIT,
            tokens_file_opt: self.tokens_file,
            policy,
            actions,
            max_artifact_bytes: self.max_artifact_bytes,
            import_root_opt: self.import_root,
            process_tokens: Vec::new(),
            rollout_tick: std::time::Duration::from_millis(self.rollout_tick_ms),
            connections: self.connections.limits()?,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            upload_idle_timeout: DEFAULT_UPLOAD_IDLE_TIMEOUT,
            tls_opt: self.tls.files(true),
            clock: Clock::System,
            console: !self.no_console,
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use sluice_gateway::backend::{EngineOptions, available_cores};

    use super::*;
    use crate::command::{Cli, Command};

    /// With no flag, `sluice registry` is the registry's `RegistryConfig::new`
    /// under the default data directory, on the default address, with the
    /// engines' defaults.
    #[test]
    fn no_flags_are_the_libraries_defaults() {
        let cli = Cli::try_parse_from(["sluice", "registry"]).unwrap();
        let Command::Registry(args) = cli.command else {
            panic!("parsed registry");
        };
        assert_eq!(args.listen, DEFAULT_ADMIN_LISTEN);
        assert_eq!(
            args.engines.into_options(available_cores(), None).unwrap(),
            EngineOptions::default()
        );
        // Debug, not PartialEq: the policy and actions types have no equality.
        assert_eq!(
            format!("{:?}", args.registry.into_config().unwrap()),
            format!("{:?}", RegistryConfig::new(DEFAULT_DATA_DIR))
        );
    }
}
