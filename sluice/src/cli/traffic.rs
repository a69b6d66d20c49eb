//! `sluice traffic`: set and show an endpoint's traffic (weights, shadow,
//! stickiness, batching, logging, contract mode, warm-up), and read or undo
//! its changes ([`super::traffic_changes`]).

use clap::{Args, Subcommand, ValueEnum};
use sluice_registry_client::contract::ContractMode;
use sluice_registry_client::types::*;
use sluice_registry_client::types::{Shadow, TrafficTarget};
use sluice_registry_client::warmup::Warmup;
use sluice_registry_client::{ClientError, RegistryClient};

use super::args::Output;
use super::table::{Table, percent, short_hash};
use super::traffic_changes::{self, changes, describe};
use super::versions::TABLE_HASH_DIGITS;

// Parsed once per command line: the size of `Set` costs nothing worth a Box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Subcommand)]
pub enum TrafficCommand {
    /// Set how a model's traffic is split between versions (the weights add up to 100).
    ///
    /// Changes what it is given and keeps the rest (`--clear SETTING` removes one; `--replace`
    /// sets exactly what is given, clearing the rest). Prints what changed; `--dry-run` only prints it.
    /// Refused with exit code 4 if someone changed the deployment since it was read.
    Set {
        /// Name of the model.
        model: String,

        /// Versions and their percent of traffic, VERSION=WEIGHT (`3=90 4=10`) [default: the
        /// current split, when only settings change].
        #[arg(value_name = "VERSION=WEIGHT", value_parser = parse_target)]
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

        /// Warm each version with these requests before it takes traffic: a JSON file
        /// (`{"requests": [{"inputs": [{"name": "x", "shape": [1, 4], "fill": "random"}]}]}`;
        /// `"strict": true` fails a load whose synthetic warm-up finds no input the model runs).
        #[arg(long, value_name = "FILE", value_parser = parse_warmup)]
        warmup: Option<Warmup>,

        /// Only if the deployment is at this revision now (0: only if it does not exist yet);
        /// refused with exit code 4 otherwise.
        #[arg(long, value_name = "REVISION")]
        if_revision: Option<u64>,

        /// Why, for the audit log.
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,

        /// Remove a setting the deployment has (repeatable).
        #[arg(long, value_name = "SETTING", value_enum)]
        clear: Vec<Setting>,

        /// Set exactly what is given: every setting not given is cleared.
        #[arg(long, conflicts_with = "clear")]
        replace: bool,

        /// Print what would change, and change nothing.
        #[arg(long)]
        dry_run: bool,
    },

    /// Show how a model's traffic is split, and every setting of its deployment.
    Show {
        /// Name of the model.
        model: String,
        /// Print it again each time it changes, until interrupted.
        #[arg(long, short = 'w')]
        watch: bool,
    },

    /// List the changes of a model's traffic, newest first, from the audit log.
    History {
        /// Name of the model.
        model: String,

        /// Changes to list at most.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },

    /// Show what changed between two revisions of a model's deployment.
    Diff {
        /// Name of the model.
        model: String,

        /// The earlier revision (`sluice traffic history`).
        from: u64,

        /// The later revision.
        to: u64,
    },

    /// Restore the deployment as it was before its last change, through the same checks as a set.
    Undo {
        /// Name of the model.
        model: String,

        /// Why, for the audit log [default: undo revision N].
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,

        /// Print what would change, and change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

/// A deployment setting `traffic set --clear` removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Setting {
    Shadow,
    StickyHeader,
    LogSampleRate,
    Batching,
    Contract,
    Warmup,
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

/// `VERSION=WEIGHT`, the weight a percent.
pub(super) fn parse_target(text: &str) -> Result<TrafficTarget, String> {
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
pub(super) fn parse_shadow(text: &str) -> Result<Shadow, String> {
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

pub async fn run_traffic(
    client: &RegistryClient,
    command: TrafficCommand,
    output: Output,
) -> Result<String, ClientError> {
    match command {
        TrafficCommand::Set {
            model,
            targets,
            shadow,
            sticky_header,
            log_sample_rate,
            batching,
            contract,
            warmup,
            if_revision,
            reason,
            clear,
            replace,
            dry_run,
        } => {
            let given = TrafficSpec {
                targets,
                shadow,
                sticky_header,
                rollout: None,
                log_sample_rate,
                batching: batching.into_batching(),
                contract,
                warmup,
            };
            let current_opt = match client.get_deployment(&model).await {
                Ok(current) => Some(current),
                Err(err) if err.is_not_found() => None,
                Err(err) => return Err(err),
            };
            let spec = match (&current_opt, replace) {
                (Some(current), false) => merged(&current.spec, given, &clear),
                _ if given.targets.is_empty() => {
                    return Err(ClientError::Io(format!(
                        "'{model}' {}: give its split as VERSION=WEIGHT (`1=100`)",
                        if replace {
                            "is being replaced"
                        } else {
                            "has no deployment yet"
                        }
                    )));
                }
                _ => given,
            };
            let before_opt = current_opt.as_ref().map(|current| &current.spec);
            let changed = changes(before_opt, &spec);
            if dry_run {
                return Ok(format!(
                    "{model}: would change (dry run, nothing sent)\n{}",
                    describe(&changed)
                ));
            }
            // What was read is what is changed: a write in between is a 409.
            let read_revision = current_opt.as_ref().map_or(0, |current| current.revision);
            let body = SetDeployment {
                if_revision: if_revision.or(Some(read_revision)),
                reason,
                ..SetDeployment::new(spec)
            };
            let deployment = client.set_deployment(&model, &body).await?;
            if output.is_machine() {
                return output.render(&deployment);
            }
            Ok(format!("{}{}", deployment_line(&deployment), describe(&changed)))
        }
        TrafficCommand::History { model, limit } => {
            let history = traffic_changes::history(client, &model).await?;
            if output.is_machine() {
                let events: Vec<&Event> = history
                    .iter()
                    .rev()
                    .take(limit)
                    .map(|change| &change.event)
                    .collect();
                return output.render(&events);
            }
            let mut text = String::new();
            for change in history.iter().rev().take(limit) {
                let headline = match change.revision() {
                    Some(revision) => format!("revision {revision}"),
                    None => "removed".to_string(),
                };
                text.push_str(&format!(
                    "{headline}  {}  by {}  {}\n",
                    change.event.at,
                    change.event.actor,
                    change.event.reason.as_deref().unwrap_or("-")
                ));
                if let Some(after) = &change.after_opt {
                    let before = change.before_opt.as_ref().map(|before| &before.spec);
                    text.push_str(&describe(&changes(before, &after.spec)));
                }
                if let Some(rule) = &change.event.rule {
                    text.push_str(&format!("  allowed by: {rule}\n"));
                }
            }
            if text.is_empty() {
                text = format!("no changes of '{model}' in the audit log\n");
            }
            Ok(text)
        }
        TrafficCommand::Diff { model, from, to } => {
            let history = traffic_changes::history(client, &model).await?;
            let before = traffic_changes::at_revision(&history, &model, from)?;
            let after = traffic_changes::at_revision(&history, &model, to)?;
            Ok(format!(
                "{model}: revision {from} → {to}\n{}",
                describe(&changes(Some(before), after))
            ))
        }
        TrafficCommand::Undo {
            model,
            reason,
            dry_run,
        } => {
            let current = client.get_deployment(&model).await?;
            let history = traffic_changes::history(client, &model).await?;
            let last = history
                .iter()
                .rev()
                .find(|change| change.revision() == Some(current.revision))
                .ok_or_else(|| {
                    ClientError::Local(format!(
                        "revision {} of '{model}' is not in the audit log: nothing to go back from",
                        current.revision
                    ))
                })?;
            let Some(before) = &last.before_opt else {
                return Err(ClientError::Local(format!(
                    "revision {} created the deployment of '{model}': there is nothing before it to restore",
                    current.revision
                )));
            };
            // A rollout marker is the controller's: restoring one would
            // name a rollout that is no longer running.
            let spec = TrafficSpec {
                rollout: None,
                ..before.spec.clone()
            };
            let changed = changes(Some(&current.spec), &spec);
            if dry_run {
                return Ok(format!(
                    "{model}: undoing revision {} would change (dry run, nothing sent)\n{}",
                    current.revision,
                    describe(&changed)
                ));
            }
            let body = SetDeployment {
                if_revision: Some(current.revision),
                reason: Some(reason.unwrap_or_else(|| format!("undo revision {}", current.revision))),
                ..SetDeployment::new(spec)
            };
            let deployment = client.set_deployment(&model, &body).await?;
            if output.is_machine() {
                return output.render(&deployment);
            }
            Ok(format!("{}{}", deployment_line(&deployment), describe(&changed)))
        }
        TrafficCommand::Show { model, watch } => {
            let show = || async {
                let deployment = client.get_deployment(&model).await?;
                let text = if output.is_machine() {
                    output.render(&deployment)?
                } else {
                    deployment_report(&deployment)
                };
                Ok::<_, ClientError>((text, None::<()>))
            };
            if watch {
                super::watch::watch(super::watch::WATCH_POLL, show).await?;
                return Ok(String::new());
            }
            Ok(show().await?.0)
        }
    }
}

/// `credit_risk at revision 7: 3=90 4=10, shadow 5:0.2, sticky header x-user-id`.
pub(super) fn deployment_line(deployment: &Deployment) -> String {
    let spec = &deployment.spec;
    let targets: Vec<String> = spec
        .targets
        .iter()
        .map(|target| format!("{}={}", target.version, target.weight))
        .collect();
    let mut line = format!(
        "{} at revision {}: {}",
        deployment.model,
        deployment.revision,
        targets.join(" ")
    );
    if let Some(shadow) = &spec.shadow {
        line.push_str(&format!(", shadow {}:{}", shadow.version, shadow.sample_rate));
    }
    if let Some(header) = &spec.sticky_header {
        line.push_str(&format!(", sticky header {header}"));
    }
    line.push('\n');
    line
}

pub(super) fn deployment_report(deployment: &Deployment) -> String {
    let spec = &deployment.spec;
    let mut text = format!(
        "{}  revision {}  updated by {} at {}\n",
        deployment.model, deployment.revision, deployment.updated_by, deployment.updated_at
    );
    let mut table = Table::new(&["VERSION", "WEIGHT", "SHA256"]);
    for target in &spec.targets {
        let hash = deployment
            .versions
            .iter()
            .find(|deployed| deployed.version == target.version)
            .map_or("-", |deployed| short_hash(&deployed.sha256, TABLE_HASH_DIGITS));
        table.push(vec![
            target.version.to_string(),
            format!("{}%", target.weight),
            hash.to_string(),
        ]);
    }
    text.push_str(&table.render());
    if let Some(shadow) = &spec.shadow {
        text.push_str(&format!(
            "shadow: version {} ({} sampled)\n",
            shadow.version,
            percent(shadow.sample_rate)
        ));
    }
    if let Some(header) = &spec.sticky_header {
        text.push_str(&format!("sticky header: {header}\n"));
    }
    if let Some(rollout) = &spec.rollout {
        text.push_str(&format!("rollout: {rollout}\n"));
    }
    match spec.log_sample_rate {
        Some(rate) => text.push_str(&format!(
            "prediction log: every prediction, {} with inputs\n",
            percent(rate)
        )),
        None => text.push_str("prediction log: off\n"),
    }
    if let Some(mode) = spec.contract {
        text.push_str(&format!("data contract: {mode}\n"));
    }
    if let Some(warmup) = &spec.warmup {
        text.push_str(&format!(
            "warm-up: {} request(s){}\n",
            warmup.requests.len(),
            if warmup.strict { ", strict" } else { "" }
        ));
    }
    if let Some(batching) = &spec.batching {
        text.push_str(&format!(
            "batching: up to {} rows, {} µs delay, queue {}, {} instance(s){}\n",
            batching.max_batch_size,
            batching.max_queue_delay_us,
            batching.max_queue_size,
            batching.instances,
            match batching.preferred_batch_sizes.as_slice() {
                [] => String::new(),
                sizes => format!(
                    ", preferred {}",
                    sizes.iter().map(usize::to_string).collect::<Vec<_>>().join(",")
                ),
            }
        ));
    }
    text
}

/// `current` with what `given` sets: its targets always, each other
/// setting where given; the settings in `clear` removed. A rollout marker is
/// the controller's: a change by hand ends the rollout, so it goes.
fn merged(current: &TrafficSpec, given: TrafficSpec, clear: &[Setting]) -> TrafficSpec {
    let cleared = |setting: Setting| clear.contains(&setting);
    TrafficSpec {
        targets: if given.targets.is_empty() {
            current.targets.clone()
        } else {
            given.targets
        },
        shadow: given
            .shadow
            .or(current.shadow)
            .filter(|_| !cleared(Setting::Shadow)),
        sticky_header: given
            .sticky_header
            .or_else(|| current.sticky_header.clone())
            .filter(|_| !cleared(Setting::StickyHeader)),
        rollout: None,
        log_sample_rate: given
            .log_sample_rate
            .or(current.log_sample_rate)
            .filter(|_| !cleared(Setting::LogSampleRate)),
        batching: given
            .batching
            .or_else(|| current.batching.clone())
            .filter(|_| !cleared(Setting::Batching)),
        contract: given
            .contract
            .or(current.contract)
            .filter(|_| !cleared(Setting::Contract)),
        warmup: given
            .warmup
            .or_else(|| current.warmup.clone())
            .filter(|_| !cleared(Setting::Warmup)),
    }
}

/// `--warmup FILE`: a deployment's warm-up (TOML or JSON), checked here so
/// that a mistake is named before anything is sent.
fn parse_warmup(path: &str) -> Result<Warmup, String> {
    let warmup: Warmup = sluice_common::documents::read(std::path::Path::new(path))?;
    warmup.validate().map_err(|err| format!("{path}: {err}"))?;
    Ok(warmup)
}
