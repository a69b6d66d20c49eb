//! The clap tree: every flag with its `SLUICE_*` variable and its default
//! (each default a named constant of the library that owns the setting),
//! validated once, at start-up, into the gateway's and the registry's
//! typed configurations.
//!
//! - [`serve`]: `sluice serve` and its three modes;
//! - [`registry`]: `sluice registry`, and the registry's flags `sluice serve`
//!   shares with it;
//! - [`engines`]: the engines' flags, for both;
//! - [`tokens`]: `sluice tokens` and `sluice predict-token`.
//!
//! `docs/configuration.md` is generated from this tree ([`crate::reference`]).

pub mod engines;
pub mod registry;
pub mod serve;
pub mod tokens;

use clap::{Parser, Subcommand, ValueEnum};

pub use engines::EngineArgs;
pub use registry::RegistryServeArgs;
pub use serve::{ServeArgs, ServeMode};
pub use tokens::{PredictTokenArgs, TokensArgs, TokensCommand};

use crate::cli::{
    AliasCommand, ClientArgs, ContextCommand, ContractCommand, DriftCommand, EventsArgs, GLOBAL_OPTIONS,
    ModelsCommand, PerformanceCommand, ProfileCommand, QualityCommand, RolloutCommand, StageCommand,
    SuiteCommand, TrafficCommand, TriggersCommand, VersionsCommand,
};

/// Sluice: a model serving gateway for ONNX models, speaking the Open
/// Inference Protocol (KServe V2).
#[derive(Debug, Parser)]
#[command(name = "sluice", version)]
pub struct Cli {
    /// Log format.
    #[arg(long, env = "SLUICE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true, help_heading = GLOBAL_OPTIONS)]
    pub log_format: LogFormat,

    /// Log filter, in `tracing` env-filter syntax (e.g. `info`, `sluice_gateway=debug`).
    #[arg(long, env = "SLUICE_LOG", default_value = "info", global = true, help_heading = GLOBAL_OPTIONS)]
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
    /// Create, list and revoke the registry's bearer tokens, live; or add one to a tokens file.
    Tokens {
        #[command(subcommand)]
        command: TokensCommand,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// The gateways that follow the registry: the revision each serves, its versions, its last report.
    Gateways {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Named registries with their tokens, as kubectl's contexts: `sluice context use prod`.
    Context {
        #[command(subcommand)]
        command: ContextCommand,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Print a shell completion script: `source <(sluice completion bash)`.
    Completion {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Add a predict token (for inference clients) to a predict tokens file;
    /// prints the token, the only time it is shown.
    PredictToken(PredictTokenArgs),
}
