//! Flags and subcommands of the registry CLI (`sluice models`, `versions`,
//! `stage`, `alias`, `traffic`, `events`), and the parsers that turn
//! `KEY=VALUE`-style arguments into typed values. Malformed input fails here,
//! as a usage error (exit 2) that says what was expected, before any request
//! reaches the registry.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use sluice_registry_client::ClientTls;
use sluice_registry_client::contract::ContractMode;
use sluice_registry_client::types::{Shadow, Stage, TrafficTarget};

// Flattened into every registry command. The flags are global so that they
// may follow the subcommand (`sluice models list --json`), where people type
// them. No `///` comment on the struct: clap would make it the command's about.
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// Address of the registry.
    #[arg(
        long,
        env = "SLUICE_REGISTRY_URL",
        default_value = "http://127.0.0.1:8081",
        value_name = "URL",
        value_parser = parse_registry_url,
        global = true
    )]
    pub registry_url: String,

    /// Bearer token. Without it, the admin token the embedded registry created under --data-dir is used,
    /// when there is one.
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

    /// Print the registry's JSON instead of a table.
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

impl ClientArgs {
    pub fn tls(&self) -> ClientTls {
        ClientTls {
            ca_opt: self.ca_cert.clone(),
            identity_opt: self.client_cert.clone().zip(self.client_key.clone()),
        }
    }
}

#[derive(Debug, Clone, Subcommand)]
pub enum ModelsCommand {
    /// Register a new model: the named endpoint that versions are pushed to.
    Create {
        /// Name of the model, as clients call it (`/v2/models/{name}/infer`).
        name: String,

        /// What the model is for, for people browsing the registry.
        #[arg(long, value_name = "TEXT")]
        description: Option<String>,

        /// A tag, KEY=VALUE; repeat for several.
        #[arg(long = "tag", value_name = "KEY=VALUE", value_parser = parse_key_value)]
        tags: Vec<(String, String)>,
    },

    /// List every model with its latest version.
    List,

    /// Show one model.
    Show {
        /// Name of the model.
        name: String,
    },
}

#[derive(Debug, Clone, Subcommand)]
pub enum VersionsCommand {
    /// Upload an ONNX file and register it as the model's next version, with its lineage.
    // Boxed: its many flags would make every other variant as large (clippy::large_enum_variant).
    Push(Box<PushArgs>),

    /// List the versions of a model.
    List {
        /// Name of the model.
        model: String,
    },

    /// Show one version: artifact, signature and lineage.
    Show {
        /// Name of the model.
        model: String,

        /// Version number, or an alias such as `champion`.
        version: String,
    },

    /// Run the model's behavioural suite on a version and print the report; exit 1 when it fails.
    Test {
        /// Name of the model.
        model: String,

        /// Version number, or an alias such as `champion`.
        version: String,

        /// The suite revision to run [default: the latest].
        #[arg(long)]
        revision: Option<u64>,
    },
}

// The flags of `versions push`; see `VersionsCommand::Push` for its help text.
#[derive(Debug, Clone, Args)]
pub struct PushArgs {
    /// The ONNX file to upload.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,

    /// Model to register the version under; it must exist (`sluice models create`).
    #[arg(long, value_name = "MODEL")]
    pub model: String,

    /// An evaluation metric, NAME=NUMBER (`auc=0.91`), as stage gates check; repeat for several.
    #[arg(long = "metric", value_name = "NAME=NUMBER", value_parser = parse_metric)]
    pub metrics: Vec<(String, f64)>,

    /// A training parameter, KEY=VALUE (`max_depth=6`); repeat for several.
    #[arg(long = "param", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub parameters: Vec<(String, String)>,

    /// A language or library version, KEY=VALUE (`python=3.11`); repeat for several.
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub environment: Vec<(String, String)>,

    /// URI of the dataset the version was trained on.
    #[arg(long, value_name = "URI")]
    pub dataset: Option<String>,

    /// sha256 of that dataset, so it can be told from a later one at the same URI.
    #[arg(long, value_name = "SHA256", requires = "dataset")]
    pub dataset_sha256: Option<String>,

    /// Commit of the training code.
    #[arg(long, value_name = "SHA")]
    pub commit: Option<String>,

    /// Id of the training run (in your experiment tracker).
    #[arg(long, value_name = "ID")]
    pub run_id: Option<String>,

    /// What the version is meant to be used for (model card).
    #[arg(long, value_name = "TEXT")]
    pub intended_use: Option<String>,

    /// Known limitations (model card).
    #[arg(long, value_name = "TEXT")]
    pub limitations: Option<String>,

    /// The version this one was retrained from (lineage).
    #[arg(long, value_name = "VERSION")]
    pub parent_version: Option<u64>,

    /// The training trigger run that asked for this version; registering it
    /// completes the run (`sluice triggers history`).
    #[arg(long, value_name = "ID", env = "SLUICE_TRIGGER_ID")]
    pub trigger_id: Option<u64>,

    /// The feature realized performance is broken down by (model card): an input, or `x[k]`.
    #[arg(long, value_name = "FEATURE")]
    pub slice_feature: Option<String>,

    /// Band edges of the slice feature, ascending (`30,45,60`); without them each value is a slice.
    #[arg(
        long,
        value_name = "EDGES",
        value_delimiter = ',',
        allow_hyphen_values = true,
        requires = "slice_feature"
    )]
    pub slice_edges: Vec<f64>,
}

#[derive(Debug, Clone, Subcommand)]
pub enum StageCommand {
    /// Ask to move a version to another stage; applied at once when the policy needs no approval.
    Request {
        /// Name of the model.
        model: String,

        /// Version number, or an alias such as `champion`.
        version: String,

        /// Stage to move to: staging, production or archived.
        #[arg(value_name = "STAGE")]
        to_stage: Stage,

        /// Why, for the reviewers and the audit log.
        #[arg(long, value_name = "TEXT")]
        comment: Option<String>,
    },

    /// Approve a pending transition; it is applied once every approval it needs is given.
    Approve {
        /// Id of the transition (`sluice stage list --pending`).
        id: u64,

        /// Which approval this is (`technical`, `business`); needed only while more than one is missing.
        #[arg(long = "as", value_name = "APPROVAL")]
        approval: Option<String>,

        /// A note for the audit log.
        #[arg(long, value_name = "TEXT")]
        comment: Option<String>,
    },

    /// Reject a pending transition.
    Reject {
        /// Id of the transition (`sluice stage list --pending`).
        id: u64,

        /// Why, for the requester and the audit log.
        #[arg(long, value_name = "TEXT")]
        comment: Option<String>,
    },

    /// List transition requests, newest first.
    List {
        /// Only those of this model.
        #[arg(long, value_name = "MODEL")]
        model: Option<String>,

        /// Only those still waiting for approvals.
        #[arg(long)]
        pending: bool,
    },
}

#[derive(Debug, Clone, Subcommand)]
pub enum AliasCommand {
    /// Point an alias (`champion`) at a version, creating it if needed.
    Set {
        /// Name of the model.
        model: String,

        /// Name of the alias.
        alias: String,

        /// Version number to point it at.
        version: u64,

        /// Only if the alias points at this version now: refused with exit code 4 if someone moved it.
        #[arg(long, value_name = "VERSION")]
        if_version: Option<u64>,

        /// Only if the alias does not exist yet.
        #[arg(long, conflicts_with = "if_version")]
        if_absent: bool,
    },

    /// List the aliases of a model.
    List {
        /// Name of the model.
        model: String,
    },
}

// Parsed once per command line: the size of `Set` costs nothing worth a Box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Subcommand)]
pub enum TrafficCommand {
    /// Set how a model's traffic is split between versions (the weights add up to 100).
    ///
    /// This replaces the whole deployment: a shadow, sticky header or rollout policy not given again
    /// is cleared.
    Set {
        /// Name of the model.
        model: String,

        /// Versions and their percent of traffic, VERSION=WEIGHT (`3=90 4=10`).
        #[arg(value_name = "VERSION=WEIGHT", required = true, value_parser = parse_target)]
        targets: Vec<TrafficTarget>,

        /// Mirror a sample of requests to a version whose answers are compared, never returned,
        /// VERSION:RATE (`5:0.2` for 20%).
        #[arg(long, value_name = "VERSION:RATE", value_parser = parse_shadow)]
        shadow: Option<Shadow>,

        /// Header whose value pins a caller to one version (`x-user-id`).
        #[arg(long, value_name = "HEADER")]
        sticky_header: Option<String>,

        /// Log every prediction (request id, outputs) to the prediction log, and this fraction of
        /// them with their inputs (0 to 1).
        #[arg(long, value_name = "RATE")]
        log_sample_rate: Option<f64>,

        #[command(flatten)]
        batching: BatchingArgs,

        /// Check each version's data contract: `observe` counts violations, `reject` answers 422.
        #[arg(long, value_name = "MODE")]
        contract: Option<ContractMode>,

        /// Only if the deployment is at this revision now (0: only if it does not exist yet);
        /// refused with exit code 4 otherwise.
        #[arg(long, value_name = "REVISION")]
        if_revision: Option<u64>,

        /// Why, for the audit log.
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
    },

    /// Show how a model's traffic is split.
    Show {
        /// Name of the model.
        model: String,
    },
}

/// Dynamic batching of a deployment's requests (Triton's `dynamic_batching`).
#[derive(Debug, Clone, Default, Args)]
pub struct BatchingArgs {
    /// Batch requests, up to this many rows per run; the other batching flags need it.
    #[arg(long, value_name = "ROWS")]
    pub max_batch_size: Option<usize>,

    /// How long a batch's first request waits for others, in microseconds [default: 0].
    #[arg(long, value_name = "MICROSECONDS", requires = "max_batch_size")]
    pub max_queue_delay_us: Option<u64>,

    /// Batch sizes run at once without waiting out the delay (`8,16`).
    #[arg(long, value_name = "ROWS", value_delimiter = ',', requires = "max_batch_size")]
    pub preferred_batch_sizes: Vec<usize>,

    /// Requests waiting at most before 503 [default: 1024].
    #[arg(long, value_name = "REQUESTS", requires = "max_batch_size")]
    pub max_queue_size: Option<usize>,

    /// Batches that may run at once [default: 2].
    #[arg(long, value_name = "N", requires = "max_batch_size")]
    pub batch_instances: Option<usize>,
}

impl BatchingArgs {
    /// `None` without `--max-batch-size`.
    pub fn into_batching(self) -> Option<sluice_registry_client::types::Batching> {
        let mut batching = sluice_registry_client::types::Batching::with_max_batch_size(self.max_batch_size?);
        batching.max_queue_delay_us = self.max_queue_delay_us.unwrap_or(0);
        batching.preferred_batch_sizes = self.preferred_batch_sizes;
        if let Some(size) = self.max_queue_size {
            batching.max_queue_size = size;
        }
        if let Some(instances) = self.batch_instances {
            batching.instances = instances;
        }
        Some(batching)
    }
}

// The flags of `sluice events`.
#[derive(Debug, Clone, Args)]
pub struct EventsArgs {
    /// Only events after this id; the last id of one page starts the next.
    #[arg(long, value_name = "ID", default_value_t = 0)]
    pub since: u64,

    /// Most events to list, 1 to 1000.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 50,
        value_parser = clap::value_parser!(u32).range(1..=1000)
    )]
    pub limit: u32,
}

/// `KEY=VALUE`; the value may itself hold `=`, the key may not be empty.
fn parse_key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!("expected KEY=VALUE, got '{text}'")),
    }
}

/// `NAME=NUMBER`, finite: NaN or infinity would pass or fail every stage gate
/// for no reason anyone could see.
fn parse_metric(text: &str) -> Result<(String, f64), String> {
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

/// `VERSION=WEIGHT`, the weight a percent.
fn parse_target(text: &str) -> Result<TrafficTarget, String> {
    let expected = || format!("expected VERSION=WEIGHT such as 3=90, got '{text}'");
    let (version_text, weight_text) = text.split_once('=').ok_or_else(expected)?;
    let version = version_text.trim().parse::<u64>().map_err(|_| expected())?;
    let weight = weight_text.trim().parse::<u32>().map_err(|_| expected())?;
    if weight > 100 {
        return Err(format!(
            "weight of version {version} is a percent, 0 to 100, got {weight}"
        ));
    }
    Ok(TrafficTarget { version, weight })
}

/// `VERSION:RATE`, the rate a fraction in (0, 1].
fn parse_shadow(text: &str) -> Result<Shadow, String> {
    let expected = || format!("expected VERSION:RATE such as 5:0.2, got '{text}'");
    let (version_text, rate_text) = text.split_once(':').ok_or_else(expected)?;
    let version = version_text.trim().parse::<u64>().map_err(|_| expected())?;
    let sample_rate = rate_text.trim().parse::<f64>().map_err(|_| expected())?;
    // Both comparisons are false for NaN, so NaN is refused too.
    let in_range = (0.0..=1.0).contains(&sample_rate);
    if !in_range {
        return Err(format!(
            "shadow sample rate is a fraction from 0 (paused) to 1 (0.2 for 20%), got '{rate_text}'"
        ));
    }
    Ok(Shadow { version, sample_rate })
}

/// An `http://` or `https://` address. Checked here because reqwest would
/// only fail at the first request, reported as an unreachable registry.
fn parse_registry_url(text: &str) -> Result<String, String> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    use crate::command::{Cli, Command};

    /// Parses `line` as the `sluice` binary does.
    fn parse(line: &str) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("sluice").chain(line.split_whitespace()))
    }

    fn pair(key: &str, value: &str) -> (String, String) {
        (key.to_string(), value.to_string())
    }

    #[test]
    fn key_value_splits_at_the_first_equals_sign() {
        assert_eq!(parse_key_value("team=risk").unwrap(), pair("team", "risk"));
        assert_eq!(parse_key_value("query=a=b").unwrap(), pair("query", "a=b"));
        assert_eq!(parse_key_value("empty=").unwrap(), pair("empty", ""));
        assert_eq!(
            parse_key_value("team").unwrap_err(),
            "expected KEY=VALUE, got 'team'"
        );
        assert!(parse_key_value("=risk").is_err());
    }

    #[test]
    fn metric_values_are_finite_numbers() {
        assert_eq!(parse_metric("auc=0.91").unwrap(), ("auc".to_string(), 0.91));
        assert_eq!(
            parse_metric("latency_ms= 12").unwrap(),
            ("latency_ms".to_string(), 12.0)
        );
        let not_a_number = parse_metric("auc=high").unwrap_err();
        assert!(not_a_number.contains("must be a finite number"), "{not_a_number}");
        assert!(parse_metric("auc=NaN").is_err());
        assert!(parse_metric("auc=inf").is_err());
        assert!(parse_metric("auc").unwrap_err().contains("expected NAME=NUMBER"));
    }

    #[test]
    fn targets_are_version_equals_percent() {
        assert_eq!(
            parse_target("3=90").unwrap(),
            TrafficTarget {
                version: 3,
                weight: 90
            }
        );
        assert_eq!(
            parse_target("4=0").unwrap(),
            TrafficTarget {
                version: 4,
                weight: 0
            }
        );
        assert_eq!(
            parse_target("3:90").unwrap_err(),
            "expected VERSION=WEIGHT such as 3=90, got '3:90'"
        );
        assert!(parse_target("v3=90").is_err());
        assert!(parse_target("3=-1").is_err());
        assert!(parse_target("3=101").unwrap_err().contains("0 to 100"));
    }

    #[test]
    fn shadow_is_version_colon_fraction() {
        assert_eq!(
            parse_shadow("5:0.2").unwrap(),
            Shadow {
                version: 5,
                sample_rate: 0.2
            }
        );
        assert_eq!(
            parse_shadow("5:1").unwrap(),
            Shadow {
                version: 5,
                sample_rate: 1.0
            }
        );
        assert_eq!(
            parse_shadow("5=0.2").unwrap_err(),
            "expected VERSION:RATE such as 5:0.2, got '5=0.2'"
        );
        assert!(parse_shadow("5:0").is_ok(), "a paused shadow");
        assert!(parse_shadow("5:-0.1").is_err());
        assert!(parse_shadow("5:20").is_err());
        assert!(parse_shadow("5:NaN").is_err());
    }

    #[test]
    fn registry_url_needs_a_scheme() {
        assert!(parse_registry_url("http://127.0.0.1:8081").is_ok());
        assert!(parse_registry_url("https://registry.example").is_ok());
        assert!(parse_registry_url("127.0.0.1:8081").is_err());
        assert!(parse_registry_url("http://").is_err());
    }

    #[test]
    fn push_takes_lineage_flags_and_client_flags_after_the_subcommand() {
        let line = "versions push model.onnx --model credit_risk --metric auc=0.91 --param max_depth=6 \
                    --env python=3.11 --dataset s3://bucket/train.parquet --dataset-sha256 ab12 --json";
        let cli = parse(line).unwrap();
        let Command::Versions {
            command: VersionsCommand::Push(push),
            client,
        } = cli.command
        else {
            panic!("parsed as another command");
        };
        assert!(client.json);
        assert_eq!(push.file, PathBuf::from("model.onnx"));
        assert_eq!(push.model, "credit_risk");
        assert_eq!(push.metrics, vec![("auc".to_string(), 0.91)]);
        assert_eq!(push.parameters, vec![("max_depth".to_string(), "6".to_string())]);
        assert_eq!(push.environment, vec![("python".to_string(), "3.11".to_string())]);
        assert_eq!(push.dataset_sha256.as_deref(), Some("ab12"));
    }

    #[test]
    fn malformed_arguments_are_usage_errors() {
        let bad_lines = [
            "versions push model.onnx --model credit_risk --dataset-sha256 ab12",
            "versions push model.onnx --model credit_risk --metric auc=high",
            "versions push model.onnx",
            "alias set credit_risk champion 3 --if-version 2 --if-absent",
            "traffic set credit_risk",
            "traffic set credit_risk 3=abc",
            "traffic set credit_risk 3=100 --shadow 5:2",
            "stage request credit_risk 3 live",
            "events --limit 0",
            "events --limit 1001",
            "models list --registry-url localhost:8081",
        ];
        for line in bad_lines {
            let error = parse(line).map(drop).expect_err(line);
            assert_eq!(error.exit_code(), 2, "{line}");
        }
    }

    #[test]
    fn traffic_and_alias_arguments_parse() {
        let cli = parse("traffic set credit_risk 3=90 4=10 --shadow 5:0.2 --if-revision 7").unwrap();
        let Command::Traffic {
            command:
                TrafficCommand::Set {
                    targets,
                    shadow,
                    if_revision,
                    ..
                },
            ..
        } = cli.command
        else {
            panic!("parsed as another command");
        };
        assert_eq!(
            targets,
            vec![
                TrafficTarget {
                    version: 3,
                    weight: 90
                },
                TrafficTarget {
                    version: 4,
                    weight: 10
                }
            ]
        );
        assert_eq!(
            shadow,
            Some(Shadow {
                version: 5,
                sample_rate: 0.2
            })
        );
        assert_eq!(if_revision, Some(7));

        let cli = parse("alias set credit_risk champion 3 --if-absent").unwrap();
        let Command::Alias {
            command:
                AliasCommand::Set {
                    version,
                    if_absent,
                    if_version,
                    ..
                },
            ..
        } = cli.command
        else {
            panic!("parsed as another command");
        };
        assert_eq!((version, if_absent, if_version), (3, true, None));

        let cli = parse("stage request credit_risk champion production --comment ship").unwrap();
        let Command::Stage {
            command: StageCommand::Request {
                to_stage, version, ..
            },
            ..
        } = cli.command
        else {
            panic!("parsed as another command");
        };
        assert_eq!((to_stage, version.as_str()), (Stage::Production, "champion"));
    }
}
