//! `sluice tokens` (live through the registry's API, or `add` to a tokens
//! file before a registry runs) and `sluice predict-token`: each prints a
//! new token, the only time it is shown.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use sluice_registry::auth::Role;

use crate::cli;

#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    #[command(flatten)]
    Live(cli::TokensCommand),
    /// Add a token to a tokens file, which a registry reads at its next start
    /// (`--tokens-file`): how the first tokens exist before a registry does.
    Add(TokensArgs),
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
    Role::parse(text)
}
