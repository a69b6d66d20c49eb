//! What every registry command shares: the client flags ([`ClientArgs`])
//! and the parsers of `KEY=VALUE`-style arguments. Malformed input fails
//! here, as a usage error (exit 2) that says what was expected, before any
//! request reaches the registry.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use serde::Serialize;
use sluice_registry_client::ClientError;

use super::table::to_json;

/// Where the CLI looks for a registry when neither a flag, a variable nor a context says.
pub const DEFAULT_REGISTRY_URL: &str = "http://127.0.0.1:8081";

/// The help section of the options every command takes, apart from its own.
pub const GLOBAL_OPTIONS: &str = "Global options";

// Flattened into every registry command. The flags are global so that they
// may follow the subcommand (`sluice models list --json`), where people type
// them. No `///` comment on the struct: clap would make it the command's about.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = GLOBAL_OPTIONS)]
pub struct ClientArgs {
    /// Address of the registry [default: the context's, else http://127.0.0.1:8081].
    #[arg(
        long,
        env = "SLUICE_REGISTRY_URL",
        value_name = "URL",
        value_parser = parse_registry_url,
        global = true
    )]
    pub registry_url: Option<String>,

    /// The context to use for this command instead of the current one (`sluice context list`).
    #[arg(long, env = "SLUICE_CONTEXT", value_name = "NAME", global = true)]
    pub context: Option<String>,

    /// The contexts file [default: $XDG_CONFIG_HOME/sluice/config.toml, else ~/.config/sluice/config.toml].
    #[arg(long, env = "SLUICE_CONFIG", value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,

    /// Bearer token [default: the context's token file; else, for a registry on this machine, the admin
    /// token the embedded registry created under --data-dir].
    #[arg(
        long,
        env = "SLUICE_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true,
        global = true
    )]
    pub token: Option<String>,

    /// Data directory of the embedded registry; read only to find its admin.token when no token is given.
    #[arg(
        long,
        env = "SLUICE_DATA_DIR",
        default_value = "./sluice-data",
        value_name = "DIR",
        global = true
    )]
    pub data_dir: PathBuf,

    /// How to print the answer: table, wide (no cell shortened, more columns), json or yaml.
    #[arg(
        short = 'o',
        long = "output",
        value_enum,
        default_value_t = Output::Table,
        value_name = "FORMAT",
        global = true
    )]
    pub output: Output,

    /// Shorthand for `-o json`.
    #[arg(long, global = true)]
    pub json: bool,

    /// PEM CA certificates to trust for an https:// registry, besides the system's.
    #[arg(long, env = "SLUICE_CA_CERT", value_name = "FILE", global = true)]
    pub ca_cert: Option<PathBuf>,

    /// PEM client certificate, for a registry that requires mutual TLS (--admin-client-ca).
    #[arg(
        long,
        env = "SLUICE_CLIENT_CERT",
        value_name = "FILE",
        requires = "client_key",
        global = true
    )]
    pub client_cert: Option<PathBuf>,

    /// PEM private key of --client-cert.
    #[arg(
        long,
        env = "SLUICE_CLIENT_KEY",
        value_name = "FILE",
        requires = "client_cert",
        global = true
    )]
    pub client_key: Option<PathBuf>,
}

/// How a command prints its answer (`-o`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Wide,
    Json,
    Yaml,
}

impl Output {
    /// JSON or YAML: the registry's answer as data, for scripts.
    pub fn is_machine(self) -> bool {
        matches!(self, Output::Json | Output::Yaml)
    }

    pub fn is_wide(self) -> bool {
        self == Output::Wide
    }

    /// `value` as YAML under `-o yaml`, else as JSON (a command whose
    /// answer is a document prints it so under `-o table` too).
    pub fn render<T: Serialize>(self, value: &T) -> Result<String, ClientError> {
        if self != Output::Yaml {
            return to_json(value);
        }
        let data = serde_json::to_value(value)
            .map_err(|err| ClientError::Decode(format!("re-encoding the answer: {err}")))?;
        Ok(super::yaml::to_yaml(&data))
    }
}

impl ClientArgs {
    /// `-o`, or JSON under `--json`.
    pub fn output(&self) -> Output {
        if self.json { Output::Json } else { self.output }
    }
}

/// `KEY=VALUE`; the value may itself hold `=`, the key may not be empty.
pub(super) fn parse_key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!("expected KEY=VALUE, got '{text}'")),
    }
}

/// `NAME=NUMBER`, finite: NaN or infinity would pass or fail every stage gate
/// for no reason anyone could see.
pub(super) fn parse_metric(text: &str) -> Result<(String, f64), String> {
    let Some((name, number_text)) = text.split_once('=').filter(|(name, _)| !name.is_empty()) else {
        return Err(format!("expected NAME=NUMBER such as auc=0.91, got '{text}'"));
    };
    match number_text.trim().parse::<f64>() {
        Ok(number) if number.is_finite() => Ok((name.to_string(), number)),
        _ => Err(format!(
            "metric '{name}' must be a finite number, got '{number_text}'"
        )),
    }
}

/// An `http://` or `https://` address. Checked here because reqwest would
/// only fail at the first request, reported as an unreachable registry.
pub(super) fn parse_registry_url(text: &str) -> Result<String, String> {
    let rest_opt = text
        .strip_prefix("http://")
        .or_else(|| text.strip_prefix("https://"));
    match rest_opt {
        Some(rest) if !rest.is_empty() => Ok(text.to_string()),
        _ => Err(format!(
            "expected an address such as http://127.0.0.1:8081, got '{text}'"
        )),
    }
}
