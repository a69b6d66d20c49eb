//! The registry's flags (each with a `SLUICE_*` variable), validated once
//! into a [`RegistryConfig`]. The `sluice` binary flattens [`RegistryArgs`]
//! into both `sluice registry` and the embedded `sluice serve`.

use std::path::PathBuf;

use clap::Args;

use crate::auth::{Caller, Tokens};
use crate::policy::Policy;

#[derive(Debug, Clone, Args)]
pub struct RegistryArgs {
    /// Where the registry keeps its metadata (registry.db), artifacts and tokens.
    #[arg(
        long,
        env = "SLUICE_DATA_DIR",
        default_value = "./sluice-data",
        value_name = "DIR"
    )]
    pub data_dir: PathBuf,

    /// Bearer tokens (TOML, hashed). Without it the registry keeps its own
    /// under the data dir and creates an admin token there on first start.
    #[arg(long, env = "SLUICE_TOKENS_FILE", value_name = "FILE")]
    pub tokens_file: Option<PathBuf>,

    /// Governance policy (TOML): approvals and metric gates per stage, and the
    /// stages that may take traffic. Default: staging needs a technical
    /// approval, production a technical and a business one.
    #[arg(long, env = "SLUICE_POLICY_FILE", value_name = "FILE")]
    pub policy_file: Option<PathBuf>,

    /// Largest artifact accepted, in bytes.
    #[arg(long, env = "SLUICE_MAX_ARTIFACT_BYTES", default_value_t = 1 << 30)]
    pub max_artifact_bytes: usize,

    /// Directory that versions may be registered from by `file://` URI.
    #[arg(long, env = "SLUICE_IMPORT_ROOT", value_name = "DIR")]
    pub import_root: Option<PathBuf>,

    /// How often the rollout controller looks for intervals to judge, in milliseconds.
    #[arg(long, env = "SLUICE_ROLLOUT_TICK_MS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(10..))]
    pub rollout_tick_ms: u64,
}

/// A validated registry configuration.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    pub data_dir: PathBuf,
    pub tokens_file_opt: Option<PathBuf>,
    pub policy: Policy,
    pub max_artifact_bytes: usize,
    pub import_root_opt: Option<PathBuf>,
    /// Tokens known to this process only (the embedded gateway's), in clear.
    pub process_tokens: Vec<(String, Caller)>,
    pub rollout_tick: std::time::Duration,
}

impl RegistryConfig {
    /// Defaults under `data_dir`, as tests and embedders start from.
    pub fn new(data_dir: impl Into<PathBuf>) -> RegistryConfig {
        RegistryConfig {
            data_dir: data_dir.into(),
            tokens_file_opt: None,
            policy: Policy::default(),
            max_artifact_bytes: 1 << 30,
            import_root_opt: None,
            process_tokens: Vec::new(),
            rollout_tick: std::time::Duration::from_secs(1),
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

impl RegistryArgs {
    pub fn into_config(self) -> Result<RegistryConfig, String> {
        if self.max_artifact_bytes == 0 {
            return Err("--max-artifact-bytes must be positive".into());
        }
        let policy = match &self.policy_file {
            Some(path) => Policy::load(path)?,
            None => Policy::default(),
        };
        Ok(RegistryConfig {
            data_dir: self.data_dir,
            tokens_file_opt: self.tokens_file,
            policy,
            max_artifact_bytes: self.max_artifact_bytes,
            import_root_opt: self.import_root,
            process_tokens: Vec::new(),
            rollout_tick: std::time::Duration::from_millis(self.rollout_tick_ms),
        })
    }
}
