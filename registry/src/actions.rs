//! What policies may make the registry do on its host and its network, as
//! the operator declared it (`--actions-file`), never the API: the programs
//! a training trigger may run, the hosts a trigger or rollout webhook may
//! call, and the environment variables a webhook header may name.
//!
//! ```toml
//! # Hosts webhooks may call: `host` (any port), `host:port`, `*.domain`.
//! webhook_hosts = ["airflow.internal:8080", "*.hooks.example.com"]
//!
//! # Variables of the registry's environment a header may name as ${NAME},
//! # each sent only to the hosts listed with it (a list of names alone:
//! # to any allowed host).
//! [webhook_env]
//! AIRFLOW_TOKEN = ["airflow.internal:8080"]
//!
//! [commands.retrain]
//! program = "python3"
//! args = ["/opt/sluice/retrain.py"]
//! env = { SLUICE_TOKEN_FILE = "/var/lib/sluice/retrain.token" }
//! inherit_env = ["PATH", "HOME"]   # the default; nothing else is passed on
//! timeout_ms = 3600000
//!
//! [commands.retrain.params]
//! min_rows = { flag = "--min-rows", type = "integer", min = 1, max = 1000000 }
//! approve = { flag = "--approve", type = "switch" }
//! ```
//!
//! A policy names a command and fills its declared parameters
//! (`{"command": {"name": "retrain", "params": {"min_rows": 300}}}`): an
//! integer, a number, a switch or one of a list of choices, each passed as
//! its own argument after its flag, never through a shell. A deployer can
//! neither add a program nor an argument the operator did not write.
//!
//! The environment is read once, here, when the file is loaded: a command
//! gets only the variables its declaration inherits or sets, and a header
//! only the variables `webhook_env` lists, to the hosts it lists them for.
//! Headers that steer the request itself (`Host`, framing, hop-by-hop) are
//! refused: behind an allowed proxy they would reach another virtual host.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sluice_registry_client::limits::quote;

/// Variables a command inherits from the registry when its declaration
/// says nothing: enough to find programs and a home, no secret.
pub const DEFAULT_INHERITED_ENV: [&str; 6] = ["PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR"];

/// How long a command may run when its declaration says nothing: an hour.
pub const DEFAULT_COMMAND_TIMEOUT_MS: u64 = 3600 * 1000;

/// Headers a policy may not set: they steer the request itself (which
/// virtual host, its framing, its connection), not what it tells the hook.
const RESERVED_HEADERS: [&str; 13] = [
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
    "expect",
    "proxy-authorization",
    "proxy-connection",
    "forwarded",
];

/// The operator's declarations, with the environment they name read once.
/// Its `Debug` names variables, never their values.
#[derive(Clone, Default)]
pub struct Actions {
    /// Where they came from, for the operator's log (`None`: no file).
    source_opt: Option<PathBuf>,
    commands: BTreeMap<String, DeclaredCommand>,
    webhook_hosts: Vec<HostPattern>,
    /// Each allowed variable: its value when the registry started (`None`:
    /// unset) and the hosts it may go to (none listed: any allowed host).
    webhook_env: BTreeMap<String, (Option<String>, Vec<HostPattern>)>,
}

impl std::fmt::Debug for Actions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Actions")
            .field("source", &self.source_opt)
            .field("commands", &self.commands.keys().collect::<Vec<_>>())
            .field("webhook_hosts", &self.webhook_hosts)
            .field("webhook_env", &self.webhook_env.keys().collect::<Vec<_>>())
            .finish()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ActionsFile {
    #[serde(default)]
    webhook_hosts: Vec<String>,
    #[serde(default)]
    webhook_env: WebhookEnvFile,
    #[serde(default)]
    commands: BTreeMap<String, CommandFile>,
}

/// `webhook_env`: names alone (to any allowed host), or each with its hosts.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum WebhookEnvFile {
    Names(Vec<String>),
    ToHosts(BTreeMap<String, Vec<String>>),
}

impl Default for WebhookEnvFile {
    fn default() -> Self {
        WebhookEnvFile::Names(Vec::new())
    }
}

/// Where a webhook goes, as the allow-lists compare it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    host: String,
    port: u16,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CommandFile {
    program: String,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    inherit_env: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    timeout_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    working_dir: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    params: BTreeMap<String, Param>,
}

/// A value a policy may give a command, and the argument it becomes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Param {
    /// The argument the value follows (`--min-rows`); a switch is the flag alone.
    pub flag: String,
    #[serde(rename = "type")]
    pub kind: ParamKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// For `choice`: the values allowed, as written.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub choices: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParamKind {
    /// `true` passes the flag, `false` nothing.
    Switch,
    Integer,
    Number,
    Choice,
}

/// A command as declared, its inherited environment read (never shown).
#[derive(Clone)]
struct DeclaredCommand {
    declared: CommandFile,
    /// The variables it inherits, with the registry's values at start.
    inherited: Vec<(String, String)>,
}

/// A command ready to start: what the operator declared, plus the
/// arguments of the parameters a policy filled.
#[derive(Debug, Clone, PartialEq)]
pub struct Invocation {
    /// The declared name, for logs and run details.
    pub name: String,
    pub program: String,
    pub args: Vec<String>,
    /// The whole environment of the command (it inherits nothing else).
    pub env: Vec<(String, String)>,
    pub working_dir_opt: Option<PathBuf>,
    pub timeout: Duration,
}

/// One allowed webhook host: a name or an address, or every subdomain of
/// a domain; any port, or one.
#[derive(Debug, Clone, PartialEq, Eq)]
struct HostPattern {
    host: String,
    subdomains: bool,
    port_opt: Option<u16>,
}

impl Actions {
    /// Reads `path`, taking each variable it names from `env` (the
    /// process's environment, in the binary).
    pub fn load(path: &Path, env: impl Fn(&str) -> Option<String>) -> Result<Actions, String> {
        let file: ActionsFile = sluice_common::documents::read(path)?;
        let mut actions =
            Actions::from_file(file, env).map_err(|err| format!("{}: {err}", path.display()))?;
        actions.source_opt = Some(path.to_path_buf());
        Ok(actions)
    }

    /// A file's text (TOML), checked.
    pub fn parse(text: &str, env: impl Fn(&str) -> Option<String>) -> Result<Actions, String> {
        let file: ActionsFile = toml::from_str(text).map_err(|err| err.to_string())?;
        Actions::from_file(file, env)
    }

    fn from_file(file: ActionsFile, env: impl Fn(&str) -> Option<String>) -> Result<Actions, String> {
        let webhook_hosts = file
            .webhook_hosts
            .iter()
            .map(|entry| HostPattern::parse(entry).map_err(|err| format!("webhook_hosts: {err}")))
            .collect::<Result<Vec<_>, _>>()?;
        let env_hosts: Vec<(String, Vec<String>)> = match file.webhook_env {
            WebhookEnvFile::Names(names) => names.into_iter().map(|name| (name, Vec::new())).collect(),
            WebhookEnvFile::ToHosts(bound) => bound.into_iter().collect(),
        };
        let mut webhook_env = BTreeMap::new();
        for (name, hosts) in env_hosts {
            check_variable_name(&name).map_err(|err| format!("webhook_env: {err}"))?;
            let hosts = hosts
                .iter()
                .map(|entry| HostPattern::parse(entry).map_err(|err| format!("webhook_env.{name}: {err}")))
                .collect::<Result<Vec<_>, _>>()?;
            let value_opt = env(&name);
            webhook_env.insert(name, (value_opt, hosts));
        }
        let mut commands = BTreeMap::new();
        for (name, declared) in file.commands {
            check_command(&name, &declared).map_err(|err| format!("commands.{name}: {err}"))?;
            let inherited = match &declared.inherit_env {
                Some(names) => names.clone(),
                None => DEFAULT_INHERITED_ENV
                    .iter()
                    .map(|name| name.to_string())
                    .collect(),
            }
            .into_iter()
            .filter_map(|name| env(&name).map(|value| (name, value)))
            .collect();
            commands.insert(name, DeclaredCommand { declared, inherited });
        }
        Ok(Actions {
            source_opt: None,
            commands,
            webhook_hosts,
            webhook_env,
        })
    }

    /// Variables `webhook_env` names that were not set at start: a header
    /// naming one would go out empty, so delivery fails instead.
    pub fn unset_webhook_env(&self) -> Vec<&str> {
        self.webhook_env
            .iter()
            .filter(|(_, (value, _))| value.is_none())
            .map(|(name, _)| name.as_str())
            .collect()
    }

    /// Where the declarations live, as callers are told (the file's path
    /// is the operator's, for the log).
    fn where_declared(&self) -> &'static str {
        match &self.source_opt {
            Some(_) => "the registry's --actions-file",
            None => "the registry's --actions-file, which it was started without",
        }
    }

    /// The file the declarations came from, for the operator's log.
    pub fn source(&self) -> Option<&Path> {
        self.source_opt.as_deref()
    }

    /// The command `name` with a policy's `params` filled in, or why not.
    pub fn command(&self, name: &str, params: &BTreeMap<String, Value>) -> Result<Invocation, String> {
        let Some(command) = self.commands.get(name) else {
            let declared: Vec<&str> = self.commands.keys().map(String::as_str).collect();
            return Err(match declared.is_empty() {
                true => format!(
                    "no command '{}' is declared: a policy may only name a command declared in {}, which declares none",
                    quote(name),
                    self.where_declared()
                ),
                false => format!(
                    "no command '{}' is declared: expected one of {} (declared in {})",
                    quote(name),
                    declared.join(", "),
                    self.where_declared()
                ),
            });
        };
        let declared = &command.declared;
        let mut args = declared.args.clone();
        for (key, value) in params {
            let Some(param) = declared.params.get(key) else {
                return Err(format!(
                    "command '{name}' has no parameter '{}': it takes {}",
                    quote(key),
                    describe_params(&declared.params)
                ));
            };
            param
                .arguments(value, &mut args)
                .map_err(|err| format!("command '{name}' parameter '{key}': {err}"))?;
        }
        let mut env = command.inherited.clone();
        env.extend(
            declared
                .env
                .iter()
                .map(|(key, value)| (key.clone(), value.clone())),
        );
        Ok(Invocation {
            name: name.to_string(),
            program: declared.program.clone(),
            args,
            env,
            working_dir_opt: declared.working_dir.clone(),
            timeout: Duration::from_millis(declared.timeout_ms.unwrap_or(DEFAULT_COMMAND_TIMEOUT_MS)),
        })
    }

    /// Where `url` goes, when the registry may call it for a policy: http or
    /// https, no credentials in it, on a host `webhook_hosts` allows.
    pub fn check_url(&self, url: &str) -> Result<Target, String> {
        let shown = quote(url);
        let parsed = reqwest::Url::parse(url).map_err(|err| format!("'{shown}': {err}"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(format!("'{shown}': expected http or https"));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(format!(
                "'{shown}' carries credentials, which every viewer would read: send them in a header whose value is ${{NAME}}"
            ));
        }
        let host = parsed
            .host_str()
            .ok_or_else(|| format!("'{shown}' has no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        let port = parsed.port_or_known_default().unwrap_or(0);
        if self
            .webhook_hosts
            .iter()
            .any(|pattern| pattern.allows(&host, port))
        {
            return Ok(Target { host, port });
        }
        Err(match self.webhook_hosts.is_empty() {
            true => format!(
                "'{shown}': the registry calls no webhook host: its operator allows hosts in webhook_hosts of {}",
                self.where_declared()
            ),
            false => format!(
                "'{shown}': host {host} port {port} is not allowed: expected one of {} (webhook_hosts of {})",
                self.webhook_hosts
                    .iter()
                    .map(HostPattern::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
                self.where_declared()
            ),
        })
    }

    /// Header `name` as sent to `target`: a name that does not steer the
    /// request, and a value whose `${NAME}` is the variable NAME when
    /// `webhook_env` allows it to `target` and it was set; anything else
    /// is literal.
    pub fn header(&self, target: &Target, name: &str, value: &str) -> Result<String, String> {
        let shown = quote(name);
        if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err(format!("'{shown}' is not an HTTP header name"));
        }
        if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
            return Err(format!(
                "'{shown}' steers the request itself, not what it tells the hook: a policy may not set it"
            ));
        }
        let Some(variable) = value.strip_prefix("${").and_then(|rest| rest.strip_suffix('}')) else {
            return match reqwest::header::HeaderValue::from_str(value) {
                Ok(_) => Ok(value.to_string()),
                Err(_) => Err(format!("the value of '{shown}' is not a valid header value")),
            };
        };
        let Some((value_opt, hosts)) = self.webhook_env.get(variable) else {
            return Err(format!(
                "${{{}}} is not a variable a header may name: expected one of [{}] (webhook_env of {})",
                quote(variable),
                self.webhook_env.keys().cloned().collect::<Vec<_>>().join(", "),
                self.where_declared()
            ));
        };
        if !hosts.is_empty()
            && !hosts
                .iter()
                .any(|pattern| pattern.allows(&target.host, target.port))
        {
            return Err(format!(
                "${{{variable}}} may go to {} only, not to {} port {}",
                hosts
                    .iter()
                    .map(HostPattern::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
                target.host,
                target.port
            ));
        }
        let Some(value) = value_opt else {
            return Err(format!(
                "${{{variable}}} is allowed but was not set in the registry's environment when it started"
            ));
        };
        match reqwest::header::HeaderValue::from_str(value) {
            Ok(_) => Ok(value.clone()),
            Err(_) => Err(format!("${{{variable}}} does not hold a valid header value")),
        }
    }

    /// The name of a declared command that is exactly `program` with
    /// `args` and `env` and no parameters: how a policy stored by an older
    /// release, with the program inline, is moved to name it.
    pub fn find_declared(
        &self,
        program: &str,
        args: &[String],
        env: &BTreeMap<String, String>,
    ) -> Option<&str> {
        self.commands
            .iter()
            .find(|(_, command)| {
                let declared = &command.declared;
                declared.program == program && declared.args == args && &declared.env == env
            })
            .map(|(name, _)| name.as_str())
    }

    /// The TOML an operator adds to declare `program` as command `name`.
    pub fn declaration(name: &str, program: &str, args: &[String], env: &BTreeMap<String, String>) -> String {
        let command = CommandFile {
            program: program.to_string(),
            args: args.to_vec(),
            env: env.clone(),
            inherit_env: None,
            timeout_ms: None,
            working_dir: None,
            params: BTreeMap::new(),
        };
        let mut commands = toml::Table::new();
        commands.insert(
            name.to_string(),
            toml::Value::try_from(command).unwrap_or(toml::Value::Table(toml::Table::new())),
        );
        let mut file = toml::Table::new();
        file.insert("commands".to_string(), toml::Value::Table(commands));
        toml::to_string(&file).unwrap_or_default()
    }
}

impl Param {
    /// Appends the arguments `value` becomes, or says why it is refused.
    fn arguments(&self, value: &Value, args: &mut Vec<String>) -> Result<(), String> {
        let in_range = |number: f64| {
            self.min.is_none_or(|min| number >= min) && self.max.is_none_or(|max| number <= max)
        };
        let text = match (self.kind, value) {
            (ParamKind::Switch, Value::Bool(on)) => {
                if *on {
                    args.push(self.flag.clone());
                }
                return Ok(());
            }
            (ParamKind::Integer, Value::Number(number)) if number.as_i64().is_some() => {
                let integer = number.as_i64().unwrap_or_default();
                if !in_range(integer as f64) {
                    return Err(format!("{integer} is outside {}", self.describe()));
                }
                integer.to_string()
            }
            (ParamKind::Number, Value::Number(number)) => {
                let float = number
                    .as_f64()
                    .filter(|float| float.is_finite())
                    .unwrap_or(f64::NAN);
                if !float.is_finite() || !in_range(float) {
                    return Err(format!("{number} is outside {}", self.describe()));
                }
                float.to_string()
            }
            (ParamKind::Choice, Value::String(choice)) if self.choices.contains(choice) => choice.clone(),
            _ => {
                let text = value.to_string();
                return Err(format!("{}: expected {}", quote(&text), self.describe()));
            }
        };
        args.push(self.flag.clone());
        args.push(text);
        Ok(())
    }

    fn describe(&self) -> String {
        let bound = |value: Option<f64>| value.map_or_else(String::new, |value| value.to_string());
        match self.kind {
            ParamKind::Switch => "true or false".to_string(),
            ParamKind::Integer => format!("an integer in [{}, {}]", bound(self.min), bound(self.max)),
            ParamKind::Number => format!("a number in [{}, {}]", bound(self.min), bound(self.max)),
            ParamKind::Choice => format!("one of {}", self.choices.join(", ")),
        }
    }
}

fn describe_params(params: &BTreeMap<String, Param>) -> String {
    if params.is_empty() {
        return "no parameters".to_string();
    }
    params
        .iter()
        .map(|(name, param)| format!("{name} ({})", param.describe()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn check_command(name: &str, declared: &CommandFile) -> Result<(), String> {
    if name.is_empty()
        || !name
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch))
    {
        return Err("a command's name is letters, digits, '-', '_' or '.'".into());
    }
    if declared.program.trim().is_empty() {
        return Err("program is empty".into());
    }
    if declared.timeout_ms == Some(0) {
        return Err("timeout_ms must be positive".into());
    }
    for key in declared.env.keys().chain(declared.inherit_env.iter().flatten()) {
        check_variable_name(key).map_err(|err| format!("env: {err}"))?;
    }
    for (key, param) in &declared.params {
        if param.flag.is_empty() {
            return Err(format!("params.{key}: flag is empty"));
        }
        if param.kind == ParamKind::Choice && param.choices.is_empty() {
            return Err(format!("params.{key}: a choice needs its choices"));
        }
        let bounded = param.min.is_some() || param.max.is_some();
        if bounded && !matches!(param.kind, ParamKind::Integer | ParamKind::Number) {
            return Err(format!("params.{key}: min and max bound numbers only"));
        }
    }
    Ok(())
}

fn check_variable_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && !name.starts_with(|ch: char| ch.is_ascii_digit())
        && name.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_');
    match valid {
        true => Ok(()),
        false => Err(format!("'{name}' is not a variable name")),
    }
}

impl HostPattern {
    fn parse(entry: &str) -> Result<HostPattern, String> {
        let entry = entry.trim().to_ascii_lowercase();
        if entry.contains(['/', '@', ' ']) {
            return Err(format!(
                "'{entry}': expected host, host:port or *.domain (no scheme, no path)"
            ));
        }
        let (host, port_opt) = if let Some(rest) = entry.strip_prefix('[') {
            // An IPv6 address: [::1] or [::1]:8080.
            let (address, tail) = rest
                .split_once(']')
                .ok_or_else(|| format!("'{entry}': an IPv6 address ends with ]"))?;
            let port_opt = match tail.strip_prefix(':') {
                Some(port) => Some(port),
                None if tail.is_empty() => None,
                None => return Err(format!("'{entry}': expected [address] or [address]:port")),
            };
            (address.to_string(), port_opt)
        } else {
            match entry.rsplit_once(':') {
                Some((host, port)) => (host.to_string(), Some(port)),
                None => (entry.clone(), None),
            }
        };
        let port_opt = port_opt
            .map(|port| {
                port.parse::<u16>()
                    .map_err(|_| format!("'{entry}': the port must be a number up to 65535"))
            })
            .transpose()?;
        let (host, subdomains) = match host.strip_prefix("*.") {
            Some(domain) => (domain.to_string(), true),
            None => (host, false),
        };
        if host.is_empty() || host.contains('*') {
            return Err(format!(
                "'{entry}': expected host, host:port or *.domain (no scheme, no path)"
            ));
        }
        Ok(HostPattern {
            host,
            subdomains,
            port_opt,
        })
    }

    fn allows(&self, host: &str, port: u16) -> bool {
        let host_matches = match self.subdomains {
            true => host
                .strip_suffix(self.host.as_str())
                .is_some_and(|prefix| prefix.ends_with('.') && prefix.len() > 1),
            false => host == self.host,
        };
        host_matches && self.port_opt.is_none_or(|allowed| allowed == port)
    }
}

impl std::fmt::Display for HostPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.subdomains {
            f.write_str("*.")?;
        }
        match self.host.contains(':') {
            true => write!(f, "[{}]", self.host)?,
            false => f.write_str(&self.host)?,
        }
        match self.port_opt {
            Some(port) => write!(f, ":{port}"),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
webhook_hosts = ["airflow.internal:8080", "*.hooks.example.com", "127.0.0.1", "[::1]:9000"]

[webhook_env]
AIRFLOW_TOKEN = ["airflow.internal:8080"]
UNSET_ONE = []

[commands.retrain]
program = "python3"
args = ["retrain.py"]
env = { SLUICE_TOKEN_FILE = "/t" }

[commands.retrain.params]
min_rows = { flag = "--min-rows", type = "integer", min = 1, max = 1000 }
approve = { flag = "--approve", type = "switch" }
rate = { flag = "--rate", type = "number", min = 0, max = 1 }
mode = { flag = "--mode", type = "choice", choices = ["fast", "full"] }
"#;

    fn env(name: &str) -> Option<String> {
        match name {
            "PATH" => Some("/usr/bin".into()),
            "AIRFLOW_TOKEN" => Some("s3cret".into()),
            "AWS_SECRET_ACCESS_KEY" => Some("never".into()),
            _ => None,
        }
    }

    fn actions() -> Actions {
        Actions::parse(FILE, env).unwrap()
    }

    #[test]
    fn a_policy_fills_only_declared_parameters() {
        let actions = actions();
        let params: BTreeMap<String, Value> = serde_json::from_value(serde_json::json!({
            "min_rows": 300, "approve": true, "rate": 0.5, "mode": "fast"
        }))
        .unwrap();
        let invocation = actions.command("retrain", &params).unwrap();
        assert_eq!(invocation.program, "python3");
        assert_eq!(
            invocation.args,
            [
                "retrain.py",
                "--approve",
                "--min-rows",
                "300",
                "--mode",
                "fast",
                "--rate",
                "0.5"
            ]
        );
        // Only what was inherited or declared: no secret of the registry's.
        assert_eq!(
            invocation.env,
            [
                ("PATH".to_string(), "/usr/bin".to_string()),
                ("SLUICE_TOKEN_FILE".to_string(), "/t".to_string())
            ]
        );
        assert_eq!(
            invocation.timeout,
            Duration::from_millis(DEFAULT_COMMAND_TIMEOUT_MS)
        );
        let off: BTreeMap<String, Value> = [("approve".to_string(), Value::Bool(false))].into();
        assert_eq!(actions.command("retrain", &off).unwrap().args, ["retrain.py"]);
    }

    #[test]
    fn a_policy_cannot_add_a_program_or_an_argument() {
        let actions = actions();
        let refused = |params: Value| {
            let params: BTreeMap<String, Value> = serde_json::from_value(params).unwrap();
            actions.command("retrain", &params).unwrap_err()
        };
        assert!(refused(serde_json::json!({"min_rows": "300; rm -rf /"})).contains("expected an integer"));
        assert!(refused(serde_json::json!({"min_rows": 0})).contains("outside"));
        assert!(refused(serde_json::json!({"min_rows": 1.5})).contains("expected an integer"));
        assert!(refused(serde_json::json!({"mode": "--evil"})).contains("one of fast, full"));
        assert!(refused(serde_json::json!({"rate": 2})).contains("outside"));
        assert!(refused(serde_json::json!({"approve": "yes"})).contains("true or false"));
        assert!(refused(serde_json::json!({"data": "/etc"})).contains("has no parameter 'data'"));
        let unknown = actions.command("sh", &BTreeMap::new()).unwrap_err();
        assert!(unknown.contains("expected one of retrain"), "{unknown}");
        let none = Actions::default()
            .command("retrain", &BTreeMap::new())
            .unwrap_err();
        assert!(none.contains("declares none"), "{none}");
    }

    #[test]
    fn webhooks_go_only_to_allowed_hosts() {
        let actions = actions();
        for allowed in [
            "http://airflow.internal:8080/api/v1/dags/x/dagRuns",
            "https://a.hooks.example.com/x",
            "http://127.0.0.1:1234/hook",
            "http://[::1]:9000/",
            "HTTP://AIRFLOW.INTERNAL:8080/",
        ] {
            assert!(actions.check_url(allowed).is_ok(), "{allowed}");
        }
        for refused in [
            "http://airflow.internal:8081/",
            "http://hooks.example.com/",
            "http://evilhooks.example.com/",
            "http://169.254.169.254/latest/meta-data",
            "http://127.0.0.2/",
            "file:///etc/passwd",
            "http://user:pass@airflow.internal:8080/",
        ] {
            assert!(actions.check_url(refused).is_err(), "{refused}");
        }
        let nothing = Actions::default().check_url("http://127.0.0.1/").unwrap_err();
        assert!(nothing.contains("calls no webhook host"), "{nothing}");
    }

    #[test]
    fn headers_expand_only_allowed_variables_to_their_hosts() {
        let actions = actions();
        let airflow = actions.check_url("http://airflow.internal:8080/x").unwrap();
        let hooks = actions.check_url("https://a.hooks.example.com/x").unwrap();
        let header = |target: &Target, name: &str, value: &str| actions.header(target, name, value);
        assert_eq!(
            header(&airflow, "authorization", "${AIRFLOW_TOKEN}").unwrap(),
            "s3cret"
        );
        // The token is the Airflow host's: no other allowed host gets it.
        assert!(
            header(&hooks, "authorization", "${AIRFLOW_TOKEN}")
                .unwrap_err()
                .contains("may go to airflow.internal:8080 only")
        );
        assert_eq!(header(&hooks, "x-team", "Bearer x").unwrap(), "Bearer x");
        assert!(
            header(&hooks, "x-a", "${AWS_SECRET_ACCESS_KEY}")
                .unwrap_err()
                .contains("not a variable")
        );
        assert!(
            header(&hooks, "x-a", "${UNSET_ONE}")
                .unwrap_err()
                .contains("not set")
        );
        for steering in ["Host", "content-length", "Transfer-Encoding", "connection"] {
            assert!(
                header(&hooks, steering, "x")
                    .unwrap_err()
                    .contains("steers the request"),
                "{steering}"
            );
        }
        assert!(
            header(&hooks, "bad header", "x")
                .unwrap_err()
                .contains("not an HTTP header name")
        );
        assert!(
            header(&hooks, "x-a", "line\nbreak")
                .unwrap_err()
                .contains("not a valid header value")
        );
        assert_eq!(actions.unset_webhook_env(), ["UNSET_ONE"]);
        // Names alone go to any allowed host.
        let names = Actions::parse(
            "webhook_hosts = [\"a.example\", \"b.example\"]\nwebhook_env = [\"TOKEN\"]",
            |_| Some("t".into()),
        )
        .unwrap();
        let b = names.check_url("http://b.example/").unwrap();
        assert_eq!(names.header(&b, "authorization", "${TOKEN}").unwrap(), "t");
        assert!(!format!("{names:?}").contains("\"t\""), "{names:?}");
    }

    #[test]
    fn mistakes_in_the_file_are_refused() {
        let bad = |text: &str| Actions::parse(text, env).unwrap_err();
        assert!(bad("webhook_hosts = [\"http://x/\"]").contains("no scheme"));
        assert!(bad("webhook_hosts = [\"x:99999\"]").contains("65535"));
        assert!(bad("webhook_env = [\"A-B\"]").contains("not a variable name"));
        assert!(bad("[commands.x]\nprogram = \"\"").contains("program is empty"));
        assert!(bad("[commands.x]\nprogram = \"a\"\nshell = true").contains("unknown field"));
        assert!(
            bad("[commands.x]\nprogram = \"a\"\nparams = { m = { flag = \"--m\", type = \"choice\" } }")
                .contains("needs its choices")
        );
    }

    #[test]
    fn an_inline_command_finds_its_declaration() {
        let actions = actions();
        let env: BTreeMap<String, String> = [("SLUICE_TOKEN_FILE".to_string(), "/t".to_string())].into();
        assert_eq!(
            actions.find_declared("python3", &["retrain.py".into()], &env),
            Some("retrain")
        );
        assert_eq!(actions.find_declared("python3", &["other.py".into()], &env), None);
        let text = Actions::declaration("m-retrain", "sh", &["-c".into(), "x".into()], &env);
        let parsed = Actions::parse(&text, |_| None).unwrap();
        assert_eq!(
            parsed.find_declared("sh", &["-c".into(), "x".into()], &env),
            Some("m-retrain")
        );
    }
}
