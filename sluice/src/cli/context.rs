//! Contexts, as kubectl's kubeconfig: named registries with the token and
//! certificates to reach each, in one file, and the one in use.
//!
//! ```toml
//! current = "prod"
//!
//! [contexts.prod]
//! registry_url = "https://registry.example.com:8081"
//! token_file = "/home/rel/.config/sluice/prod.token"
//! ca_cert = "/home/rel/.config/sluice/prod-ca.pem"
//! ```
//!
//! The file is `--config`, else `$SLUICE_CONFIG`, else
//! `$XDG_CONFIG_HOME/sluice/config.toml` (`~/.config/sluice/config.toml`).
//! A flag or variable given on the command line (`--registry-url`,
//! `--token`, `--ca-cert`) wins over the context's; `--context` picks
//! another context than the current one for one command.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::Subcommand;
use serde::{Deserialize, Serialize};
use sluice_registry_client::{ClientError, ClientTls};

use super::args::{ClientArgs, DEFAULT_REGISTRY_URL, Output, parse_registry_url};
use super::table::{Table, key_values, or_dash};

#[derive(Debug, Clone, Subcommand)]
pub enum ContextCommand {
    /// Every context, the current one marked `*`.
    List,
    /// Make a context the current one: later commands reach its registry with its token.
    Use {
        /// The context's name.
        name: String,
    },
    /// Create or replace a context; the first one becomes current.
    Set {
        /// The context's name (`prod`, `staging`, `local`).
        name: String,
        /// Address of its registry.
        #[arg(long, value_name = "URL", value_parser = parse_registry_url)]
        registry_url: String,
        /// A file holding its bearer token (kept out of this file, as a secret should be).
        #[arg(long, value_name = "FILE")]
        token_file: Option<PathBuf>,
        /// PEM CA certificates to trust for its https:// registry, besides the system's.
        #[arg(long, value_name = "FILE")]
        ca_cert: Option<PathBuf>,
        /// PEM client certificate, for a registry that requires mutual TLS.
        #[arg(long, value_name = "FILE", requires = "client_key")]
        client_cert: Option<PathBuf>,
        /// PEM private key of --client-cert.
        #[arg(long, value_name = "FILE", requires = "client_cert")]
        client_key: Option<PathBuf>,
        /// Also make it the current context.
        #[arg(long = "use")]
        make_current: bool,
    },
    /// Show a context [default: the current one].
    Show {
        /// The context's name.
        name: Option<String>,
    },
    /// Remove a context.
    Delete {
        /// The context's name.
        name: String,
    },
}

/// One registry and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Context {
    pub registry_url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key: Option<PathBuf>,
}

impl Context {
    /// The token its file holds, trimmed.
    pub fn token(&self) -> Result<Option<String>, ClientError> {
        let Some(path) = &self.token_file else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(path).map_err(|err| {
            ClientError::Io(format!(
                "cannot read the context's token file {}: {err}",
                path.display()
            ))
        })?;
        Ok(Some(text.trim().to_string()).filter(|token| !token.is_empty()))
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Contexts {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<String>,
    #[serde(default)]
    pub contexts: BTreeMap<String, Context>,
}

/// Where the contexts are when neither `--config` nor `SLUICE_CONFIG` says.
pub fn default_path() -> Option<PathBuf> {
    let base = match std::env::var_os("XDG_CONFIG_HOME").filter(|dir| !dir.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME")?).join(".config"),
    };
    Some(base.join("sluice").join("config.toml"))
}

impl Contexts {
    /// The file's contexts; none when it does not exist.
    pub fn load(path: &Path) -> Result<Contexts, ClientError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Contexts::default()),
            Err(err) => return Err(ClientError::Io(format!("cannot read {}: {err}", path.display()))),
        };
        toml::from_str(&text).map_err(|err| ClientError::Io(format!("{}: {err}", path.display())))
    }

    fn save(&self, path: &Path) -> Result<(), ClientError> {
        let text = toml::to_string(self)
            .map_err(|err| ClientError::Local(format!("encoding {}: {err}", path.display())))?;
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|err| ClientError::Local(format!("cannot create {}: {err}", dir.display())))?;
        }
        // Owner-only, as a kubeconfig: it names where secrets are.
        sluice_common::files::replace(path, &text).map_err(ClientError::Local)
    }

    /// The context `name` picks, or the current one; `None` without either.
    pub fn pick(&self, name_opt: Option<&str>) -> Result<Option<(&str, &Context)>, ClientError> {
        let Some(name) = name_opt.or(self.current.as_deref()) else {
            return Ok(None);
        };
        match self.contexts.get_key_value(name) {
            Some((name, context)) => Ok(Some((name.as_str(), context))),
            None => Err(ClientError::Local(format!(
                "no context '{name}': {}",
                self.names_hint()
            ))),
        }
    }

    fn names_hint(&self) -> String {
        if self.contexts.is_empty() {
            "there are none yet; `sluice context set NAME --registry-url URL` makes one".into()
        } else {
            let names: Vec<&str> = self.contexts.keys().map(String::as_str).collect();
            format!("the contexts are {}", names.join(", "))
        }
    }
}

pub fn run_context(path: &Path, command: ContextCommand, output: Output) -> Result<String, ClientError> {
    let mut contexts = Contexts::load(path)?;
    match command {
        ContextCommand::List => {
            if output.is_machine() {
                return output.render(&contexts);
            }
            if contexts.contexts.is_empty() {
                return Ok(format!(
                    "no contexts in {}: {}\n",
                    path.display(),
                    contexts.names_hint()
                ));
            }
            let mut table = Table::new(&["CURRENT", "NAME", "REGISTRY", "TOKEN FILE"]);
            for (name, context) in &contexts.contexts {
                let current = contexts.current.as_deref() == Some(name.as_str());
                table.push(vec![
                    if current { "*".into() } else { String::new() },
                    name.clone(),
                    context.registry_url.clone(),
                    or_dash(
                        &context
                            .token_file
                            .as_ref()
                            .map_or(String::new(), |file| file.display().to_string()),
                    ),
                ]);
            }
            Ok(table.render())
        }
        ContextCommand::Use { name } => {
            if !contexts.contexts.contains_key(&name) {
                return Err(ClientError::Local(format!(
                    "no context '{name}': {}",
                    contexts.names_hint()
                )));
            }
            contexts.current = Some(name.clone());
            contexts.save(path)?;
            Ok(format!(
                "now using context '{name}' ({})\n",
                contexts.contexts[&name].registry_url
            ))
        }
        ContextCommand::Set {
            name,
            registry_url,
            token_file,
            ca_cert,
            client_cert,
            client_key,
            make_current,
        } => {
            // Absolute, so the context works from any directory.
            let absolute =
                |file: Option<PathBuf>| file.map(|file| std::path::absolute(&file).unwrap_or(file));
            let context = Context {
                registry_url,
                token_file: absolute(token_file),
                ca_cert: absolute(ca_cert),
                client_cert: absolute(client_cert),
                client_key: absolute(client_key),
            };
            if let Some(file) = &context.token_file
                && !file.is_file()
            {
                return Err(ClientError::Io(format!(
                    "--token-file {}: no such file",
                    file.display()
                )));
            }
            let replaced = contexts.contexts.insert(name.clone(), context).is_some();
            if make_current || contexts.current.is_none() {
                contexts.current = Some(name.clone());
            }
            contexts.save(path)?;
            let current = contexts.current.as_deref() == Some(name.as_str());
            Ok(format!(
                "context '{name}' {} in {}{}\n",
                if replaced { "replaced" } else { "created" },
                path.display(),
                if current { ", in use" } else { "" }
            ))
        }
        ContextCommand::Show { name } => {
            let Some((name, context)) = contexts.pick(name.as_deref())? else {
                return Err(ClientError::Local(format!(
                    "no current context: {}",
                    contexts.names_hint()
                )));
            };
            if output.is_machine() {
                return output.render(context);
            }
            let file = |file: &Option<PathBuf>| {
                or_dash(&file.as_ref().map_or(String::new(), |f| f.display().to_string()))
            };
            Ok(key_values(&[
                ("name", name.to_string()),
                ("registry", context.registry_url.clone()),
                ("token file", file(&context.token_file)),
                ("ca cert", file(&context.ca_cert)),
                ("client cert", file(&context.client_cert)),
            ]))
        }
        ContextCommand::Delete { name } => {
            if contexts.contexts.remove(&name).is_none() {
                return Err(ClientError::Local(format!(
                    "no context '{name}': {}",
                    contexts.names_hint()
                )));
            }
            if contexts.current.as_deref() == Some(name.as_str()) {
                contexts.current = None;
            }
            contexts.save(path)?;
            Ok(format!("context '{name}' deleted\n"))
        }
    }
}

/// Which registry a command reaches, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub registry_url: String,
    /// The token given or the context's; `None`: the caller may still
    /// find the local admin token.
    pub token_opt: Option<String>,
    pub tls: ClientTls,
}

/// The contexts file these arguments name.
pub fn config_path(args: &ClientArgs) -> Result<PathBuf, ClientError> {
    args.config.clone().or_else(default_path).ok_or_else(|| {
        ClientError::Local("no contexts file: set --config or SLUICE_CONFIG (HOME is not set)".into())
    })
}

/// The flags and variables given, else the context's, else the defaults.
pub fn target(args: &ClientArgs) -> Result<Target, ClientError> {
    let contexts = match config_path(args) {
        Ok(path) => Contexts::load(&path)?,
        // Without HOME nor --config there are no contexts, unless one is asked for.
        Err(err) if args.context.is_some() => return Err(err),
        Err(_) => Contexts::default(),
    };
    let picked = contexts
        .pick(args.context.as_deref())?
        .map(|(_, context)| context);
    let given_token = args
        .token
        .as_deref()
        .map(str::trim)
        .filter(|token| !token.is_empty());
    let token_opt = match (given_token, picked) {
        (Some(token), _) => Some(token.to_string()),
        (None, Some(context)) => context.token()?,
        (None, None) => None,
    };
    let pick = |given: &Option<PathBuf>, from_context: fn(&Context) -> &Option<PathBuf>| {
        given
            .clone()
            .or_else(|| picked.and_then(|context| from_context(context).clone()))
    };
    let ca_opt = pick(&args.ca_cert, |context| &context.ca_cert);
    // A certificate and its key come together, from one place.
    let identity_opt = match (&args.client_cert, &args.client_key) {
        (Some(cert), Some(key)) => Some((cert.clone(), key.clone())),
        _ => picked.and_then(|context| context.client_cert.clone().zip(context.client_key.clone())),
    };
    Ok(Target {
        registry_url: args
            .registry_url
            .clone()
            .or_else(|| picked.map(|context| context.registry_url.clone()))
            .unwrap_or_else(|| DEFAULT_REGISTRY_URL.to_string()),
        token_opt,
        tls: ClientTls { ca_opt, identity_opt },
    })
}
