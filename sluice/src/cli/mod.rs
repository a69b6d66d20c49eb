//! The registry subcommands of `sluice` (`models`, `versions`, `stage`,
//! `alias`, `traffic`, `rollout`, `profile`, `drift`, `performance`,
//! `triggers`, `contract`, `events`, `tokens`, `gateways`, `context`): a thin client of the registry's `/api/v1`.
//!
//! A file per topic holds its subcommands' flags, makes the calls and
//! renders the answers: `models`, `versions`, `governance` (stage and
//! alias), `traffic`, `rollout`, `profile` (and drift), `contract`,
//! `quality` (and suites), `triggers` (and performance), `events`, `tokens`. `args`
//! is what they share (the client flags, argument parsers), `table` lays
//! text out. This file picks the token, runs one command, writes its output
//! and turns its failure into an exit code that scripts can branch on
//! ([`ExitReason`]).

mod args;
mod context;
mod contract;
mod events;
mod gateways;
mod governance;
mod models;
mod outputs;
mod profile;
mod quality;
mod rollout;
mod table;
#[cfg(test)]
mod tests;
mod tokens;
mod traffic;
mod traffic_changes;
mod triggers;
mod versions;
mod watch;
mod yaml;

use std::io::{ErrorKind, Write};
use std::path::Path;
use std::process::ExitCode;

use sluice_registry_client::{ClientError, RegistryClient};

pub use args::{ClientArgs, DEFAULT_REGISTRY_URL, GLOBAL_OPTIONS, Output};
pub use context::ContextCommand;
pub use contract::ContractCommand;
pub use events::EventsArgs;
pub use governance::{AliasCommand, StageCommand};
pub use models::ModelsCommand;
pub use profile::{DriftCommand, ProfileCommand};
pub use quality::{QualityCommand, SuiteCommand};
pub use rollout::RolloutCommand;
pub use tokens::TokensCommand;
pub use traffic::TrafficCommand;
pub use triggers::{PerformanceCommand, TriggersCommand};
pub use versions::VersionsCommand;

/// The file the registry writes its bootstrap admin token to under its data
/// directory (the registry's `auth::ADMIN_TOKEN_FILE`).
const ADMIN_TOKEN_FILE: &str = "admin.token";

/// A registry command, once clap has parsed it; `main` builds it from its own
/// `Command` variants, which also carry the [`ClientArgs`].
#[derive(Debug, Clone)]
pub enum ClientCommand {
    Models(ModelsCommand),
    Versions(VersionsCommand),
    Stage(StageCommand),
    Alias(AliasCommand),
    Traffic(TrafficCommand),
    Rollout(RolloutCommand),
    Profile(ProfileCommand),
    Drift(DriftCommand),
    Contract(ContractCommand),
    Performance(PerformanceCommand),
    Suite(SuiteCommand),
    Quality(QualityCommand),
    Triggers(TriggersCommand),
    Events(EventsArgs),
    Tokens(TokensCommand),
    Context(ContextCommand),
    Gateways,
}

/// How a registry command ended, as its exit code:
///
/// | code | meaning |
/// |------|---------|
/// | 0 | success |
/// | 1 | the registry refused the request (400, 413, 422), or the command failed here (running a version on local data) |
/// | 2 | usage error: a missing or malformed argument (clap exits with it before anything is sent), or an input file that is missing, unreadable or malformed |
/// | 3 | not found (404) |
/// | 4 | conflict (409): the registry's state refuses it (it already exists, is pending, or changed since you read it); read it again before deciding to retry |
/// | 5 | the registry is unreachable, failing (5xx), or answered something that is not its API |
/// | 6 | unauthorized or forbidden (401, 403): no token, an unknown one, or one whose role may not do this |
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitReason {
    Success = 0,
    Refused = 1,
    Usage = 2,
    NotFound = 3,
    Conflict = 4,
    Unavailable = 5,
    Unauthorized = 6,
}

impl ExitReason {
    pub fn for_error(error: &ClientError) -> ExitReason {
        match error {
            ClientError::Api { status: 404, .. } => ExitReason::NotFound,
            ClientError::Api { status: 409, .. } => ExitReason::Conflict,
            ClientError::Api {
                status: 401 | 403, ..
            } => ExitReason::Unauthorized,
            ClientError::Api { status, .. } if *status >= 500 => ExitReason::Unavailable,
            ClientError::Io(_) => ExitReason::Usage,
            ClientError::Api { .. } | ClientError::Local(_) => ExitReason::Refused,
            ClientError::Unreachable { .. } | ClientError::Decode(_) => ExitReason::Unavailable,
        }
    }

    pub fn code(self) -> u8 {
        self as u8
    }
}

impl From<ExitReason> for ExitCode {
    fn from(reason: ExitReason) -> ExitCode {
        ExitCode::from(reason.code())
    }
}

/// Runs one registry command against the registry `client_args` names and
/// prints its answer; failures go to stderr as `error: ...`, with a `hint:`
/// where the fix is usually the same. See [`ExitReason`] for the exit codes.
pub async fn run(command: ClientCommand, client_args: ClientArgs) -> ExitCode {
    let output = client_args.output();
    // Contexts are local: no registry is reached for them.
    if let ClientCommand::Context(command) = command {
        let result =
            context::config_path(&client_args).and_then(|path| context::run_context(&path, command, output));
        return match result {
            Ok(text) => write_stdout(&text),
            Err(error) => report_failure(&error, DEFAULT_REGISTRY_URL),
        };
    }
    let target = match context::target(&client_args) {
        Ok(target) => target,
        Err(err) => return report_failure(&err, DEFAULT_REGISTRY_URL),
    };
    let token_opt = target
        .token_opt
        .clone()
        .or_else(|| local_admin_token(&client_args.data_dir, &target.registry_url));
    let client = match RegistryClient::with_tls(&target.registry_url, token_opt, &target.tls) {
        Ok(client) => client,
        Err(err) => return report_failure(&err, &target.registry_url),
    };
    // A suite's verdict is printed either way; a failure sets the exit code.
    let suite_opt = match &command {
        ClientCommand::Suite(suite) => Some(suite.clone()),
        ClientCommand::Versions(VersionsCommand::Test {
            model,
            version,
            revision,
        }) => Some(SuiteCommand::Run {
            model: model.clone(),
            version: version.clone(),
            revision: *revision,
        }),
        _ => None,
    };
    if let Some(suite) = suite_opt {
        return match quality::run_suite(&client, suite, output).await {
            Ok((text, ExitReason::Success)) => write_stdout(&text),
            Ok((text, reason)) => {
                let _ = write_stdout(&text);
                ExitCode::from(reason)
            }
            Err(error) => report_failure(&error, client.base_url()),
        };
    }
    let result = match command {
        ClientCommand::Models(models) => models::run_models(&client, models, output).await,
        ClientCommand::Versions(versions) => versions::run_versions(&client, versions, output).await,
        ClientCommand::Stage(stage) => governance::run_stage(&client, stage, output).await,
        ClientCommand::Alias(alias) => governance::run_alias(&client, alias, output).await,
        ClientCommand::Traffic(traffic) => traffic::run_traffic(&client, traffic, output).await,
        ClientCommand::Rollout(command) => rollout::run_rollout(&client, command, output).await,
        ClientCommand::Profile(command) => profile::run_profile(&client, command, output).await,
        ClientCommand::Contract(command) => contract::run_contract(&client, command, output).await,
        ClientCommand::Drift(command) => profile::run_drift(&client, command, output).await,
        ClientCommand::Performance(command) => triggers::run_performance(&client, command, output).await,
        ClientCommand::Quality(command) => quality::run_quality(&client, command, output).await,
        ClientCommand::Suite(_) => unreachable!("suite commands ran above"),
        ClientCommand::Triggers(command) => triggers::run_triggers(&client, command, output).await,
        ClientCommand::Events(events) => events::run_events(&client, events, output).await,
        ClientCommand::Tokens(command) => tokens::run_tokens(&client, command, output).await,
        ClientCommand::Context(_) => unreachable!("contexts ran above"),
        ClientCommand::Gateways => gateways::run_gateways(&client, output).await,
    };
    match result {
        Ok(text) => write_stdout(&text),
        Err(error) => report_failure(&error, client.base_url()),
    }
}

/// Without a token given or a context's, the admin token a registry
/// bootstrapped under `data_dir`: so that `sluice serve` then `sluice models
/// create` works on one machine with nothing to set up. The local admin
/// token only ever goes to a registry on this machine (a loopback URL).
fn local_admin_token(data_dir: &Path, url: &str) -> Option<String> {
    if !is_loopback(url) {
        return None;
    }
    let path = data_dir.join(ADMIN_TOKEN_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => Some(text.trim().to_string()).filter(|token| !token.is_empty()),
        Err(err) if err.kind() == ErrorKind::NotFound => None,
        Err(err) => {
            // Going on without it still works against a registry that needs no
            // token; against one that does, the 401 hint says what to set.
            eprintln!("warning: cannot read {}: {err}", path.display());
            None
        }
    }
}

/// Whether `url` names this machine (`127.x`, `localhost`, `[::1]`).
fn is_loopback(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split('/').next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(bracketed) => bracketed.split(']').next().unwrap_or_default(),
        None => authority.rsplit_once(':').map_or(authority, |(host, _)| host),
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|address| address.is_loopback())
}

fn write_stdout(text: &str) -> ExitCode {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::from(ExitReason::Success),
        // The reader stopped early (`| head`): the command itself succeeded.
        Err(err) if err.kind() == ErrorKind::BrokenPipe => ExitCode::from(ExitReason::Success),
        Err(err) => {
            eprintln!("error: cannot write the output: {err}");
            ExitCode::from(ExitReason::Refused)
        }
    }
}

fn report_failure(error: &ClientError, registry_url: &str) -> ExitCode {
    eprintln!("error: {error}");
    match error {
        ClientError::Api { status: 401, .. } => {
            eprintln!("hint: set SLUICE_TOKEN (or --token) to a token the registry knows");
        }
        ClientError::Unreachable { .. } => {
            eprintln!(
                "hint: is the registry running at {registry_url}? `sluice serve` starts one on 127.0.0.1:8081"
            );
        }
        ClientError::Decode(_) => {
            eprintln!("hint: is {registry_url} the address of a Sluice registry?");
        }
        ClientError::Api { .. } | ClientError::Io(_) | ClientError::Local(_) => {}
    }
    ExitCode::from(ExitReason::for_error(error))
}
