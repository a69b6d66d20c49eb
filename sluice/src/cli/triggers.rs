//! `sluice triggers` (training trigger policies and runs) and `sluice
//! performance` (realized metrics from ground-truth feedback).

use std::path::PathBuf;
use std::time::Duration;

use clap::Subcommand;
use sluice_registry_client::trigger::{FireTrigger, RuleProgress, TriggerPolicy, TriggerRule, TriggerRun};
use sluice_registry_client::{ClientError, RegistryClient};

use super::args::Output;
use super::table::{Table, key_values, or_dash, truncate};

#[derive(Debug, Clone, Subcommand)]
pub enum TriggersCommand {
    /// Every model's trigger policy, its runs in progress and its last run.
    List,
    /// Set a model's policy from a JSON file (see registry/API.md).
    Set {
        /// Name of the model.
        model: String,
        /// The policy: TOML, or JSON by a .json extension (examples/policies/triggers.toml).
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Remove a model's policy (its runs stay in the history).
    Delete {
        /// Name of the model.
        model: String,
    },
    /// Fire a run by hand (no cooldown; the concurrency cap holds).
    Fire {
        /// Name of the model.
        model: String,
        /// Why, for the record.
        #[arg(long)]
        note: Option<String>,
        /// Firing again with the same key answers the first run.
        #[arg(long)]
        idempotency_key: Option<String>,
    },
    /// Runs, newest first, with their reason and evidence.
    History {
        /// Only this model's.
        model: Option<String>,
        /// Most runs to list.
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// One run, whole.
    Show {
        /// The run's id, as `sluice triggers history` shows it.
        id: u64,
    },
}

pub async fn run_triggers(
    client: &RegistryClient,
    command: TriggersCommand,
    output: Output,
) -> Result<String, ClientError> {
    match command {
        TriggersCommand::List => {
            let states = client.trigger_policies().await?;
            if output.is_machine() {
                return output.render(&states);
            }
            let mut table = Table::new(&["MODEL", "RULES", "ACTION", "COOLDOWN", "ACTIVE", "LAST RUN"]);
            for state in &states {
                table.push(vec![
                    state.model.clone(),
                    describe_rules(&state.policy, &state.progress),
                    describe_action(&state.policy),
                    format!("{} s", state.policy.cooldown_ms / 1000),
                    format!("{}/{}", state.active_runs, state.policy.max_concurrent),
                    state
                        .last_run
                        .as_ref()
                        .map_or_else(|| "-".to_string(), describe_run),
                ]);
            }
            Ok(table.render())
        }
        TriggersCommand::Set { model, file } => {
            let policy: TriggerPolicy = sluice_common::documents::read(&file).map_err(|err| {
                ClientError::Io(format!(
                    "{err}; a trigger policy is expected (examples/policies/triggers.toml)"
                ))
            })?;
            let state = client.set_trigger_policy(&model, &policy).await?;
            if output.is_machine() {
                return output.render(&state);
            }
            Ok(format!(
                "trigger policy of '{}' set: {}; action {}\n",
                state.model,
                describe_rules(&state.policy, &[]),
                describe_action(&state.policy)
            ))
        }
        TriggersCommand::Delete { model } => {
            client.delete_trigger_policy(&model).await?;
            Ok(if output.is_machine() {
                "{}\n".into()
            } else {
                format!("trigger policy of '{model}' deleted\n")
            })
        }
        TriggersCommand::Fire {
            model,
            note,
            idempotency_key,
        } => {
            let run = client
                .fire_trigger(
                    &model,
                    &FireTrigger {
                        note,
                        idempotency_key,
                    },
                )
                .await?;
            if output.is_machine() {
                return output.render(&run);
            }
            Ok(format!(
                "trigger run {} of '{}' is {}\n",
                run.id,
                run.model,
                run.status.as_str()
            ))
        }
        TriggersCommand::History { model, limit } => {
            let runs = client.trigger_runs(model.as_deref(), limit).await?;
            if output.is_machine() {
                return output.render(&runs);
            }
            let mut table = Table::new(&[
                "ID", "MODEL", "BASE", "REASON", "STATUS", "FIRED", "RESULT", "EVIDENCE",
            ]);
            for run in &runs {
                table.push(vec![
                    run.id.to_string(),
                    run.model.clone(),
                    run.base_version.to_string(),
                    run.reason.clone(),
                    run.status.as_str().to_string(),
                    run.created_at.clone(),
                    run.result_version
                        .map_or_else(|| "-".to_string(), |version| format!("v{version}")),
                    if output.is_wide() {
                        summarize(run)
                    } else {
                        truncate(&summarize(run), 60)
                    },
                ]);
            }
            Ok(table.render())
        }
        TriggersCommand::Show { id } => {
            let run = client.trigger_run(id).await?;
            if output.is_machine() {
                return output.render(&run);
            }
            let mut text = key_values(&[
                ("id", run.id.to_string()),
                ("model", run.model.clone()),
                ("base version", run.base_version.to_string()),
                ("reason", run.reason.clone()),
                ("status", run.status.as_str().to_string()),
                ("attempts", run.attempts.to_string()),
                ("fired", format!("{} by {}", run.created_at, run.fired_by)),
                (
                    "finished",
                    or_dash(run.finished_at.as_deref().unwrap_or_default()),
                ),
                ("detail", or_dash(run.detail.as_deref().unwrap_or_default())),
                (
                    "result",
                    run.result_version
                        .map_or_else(|| "-".into(), |v| format!("version {v}")),
                ),
                ("canary", or_dash(run.rollout.as_deref().unwrap_or_default())),
                ("key", run.idempotency_key.clone()),
            ]);
            text.push_str("evidence:\n");
            text.push_str(&serde_json::to_string_pretty(&run.evidence).unwrap_or_default());
            text.push('\n');
            Ok(text)
        }
    }
}

/// Each rule, with its streak when the monitor has judged a window of it
/// (`drift 2x60 s, 1 bad`).
fn describe_rules(policy: &TriggerPolicy, progress: &[RuleProgress]) -> String {
    if policy.rules.is_empty() {
        return "manual only".into();
    }
    let streak = |index: usize| {
        progress
            .iter()
            .find(|progress| progress.rule == index)
            .map_or_else(String::new, |progress| format!(", {} bad", progress.bad_in_a_row))
    };
    policy
        .rules
        .iter()
        .enumerate()
        .map(|(index, rule)| match rule {
            TriggerRule::Drift {
                window_ms, windows, ..
            } => format!("drift {windows}x{} s{}", window_ms / 1000, streak(index)),
            TriggerRule::Performance {
                metric,
                threshold,
                window_ms,
                windows,
                ..
            } => format!(
                "{metric} vs {threshold} {windows}x{} s{}",
                window_ms / 1000,
                streak(index)
            ),
            TriggerRule::Contract {
                max_rate,
                window_ms,
                windows,
                ..
            } => format!(
                "contract violations over {}% {windows}x{} s{}",
                max_rate * 100.0,
                window_ms / 1000,
                streak(index)
            ),
            TriggerRule::Schedule { cron } => format!("cron '{cron}'"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn describe_action(policy: &TriggerPolicy) -> String {
    let action = match &policy.action {
        sluice_registry_client::trigger::TriggerAction::Webhook { url, .. } => format!("webhook {url}"),
        sluice_registry_client::trigger::TriggerAction::Command { name, .. } => {
            format!("command {name}")
        }
    };
    match &policy.rollout {
        Some(_) => format!("{action}, then canary"),
        None => action,
    }
}

fn describe_run(run: &TriggerRun) -> String {
    format!(
        "#{} {} {} ({})",
        run.id,
        run.reason,
        run.status.as_str(),
        run.created_at
    )
}

/// The evidence in a line: drifted features with their PSI, or the metric.
fn summarize(run: &TriggerRun) -> String {
    let Some(last) = run.evidence["windows"]
        .as_array()
        .and_then(|windows| windows.last())
    else {
        return run.evidence["note"]
            .as_str()
            .map_or_else(|| run.evidence.to_string(), str::to_string);
    };
    if let Some(drifted) = last["drifted"].as_array() {
        return drifted
            .iter()
            .map(|feature| {
                format!(
                    "{} psi {:.2}",
                    feature["feature"].as_str().unwrap_or_default(),
                    feature["psi"].as_f64().unwrap_or_default()
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
    }
    format!(
        "{} {:.3} (threshold {})",
        last["metric"].as_str().unwrap_or_default(),
        last["realized"].as_f64().unwrap_or_default(),
        last["threshold"]
    )
}

#[derive(Debug, Clone, Subcommand)]
pub enum PerformanceCommand {
    /// Realized accuracy, AUC or MAE from the labels joined in a window, beside the recorded metrics.
    Show {
        /// Name of the model.
        model: String,
        /// A version number or alias [default: the version serving most traffic].
        version: Option<String>,
        /// How far back the joined labels count, in seconds.
        #[arg(long, default_value_t = 3600)]
        window_secs: u64,
    },
}

pub async fn run_performance(
    client: &RegistryClient,
    command: PerformanceCommand,
    output: Output,
) -> Result<String, ClientError> {
    let PerformanceCommand::Show {
        model,
        version,
        window_secs,
    } = command;
    let performance = client
        .performance(&model, version.as_deref(), Duration::from_secs(window_secs))
        .await?;
    if output.is_machine() {
        return output.render(&performance);
    }
    let unmatched = performance.unmatched;
    let mut text = format!(
        "{} version {}, labels of the last {} s: {} rows joined\nunmatched: {} unknown, {} late, {} duplicate, {} mismatched, {} pending, {} dropped\n",
        performance.model,
        performance.version,
        performance.window_ms / 1000,
        performance.joined,
        unmatched.unknown,
        unmatched.late,
        unmatched.duplicate,
        unmatched.mismatched,
        unmatched.pending,
        unmatched.dropped
    );
    let mut table = Table::new(&["METRIC", "REALIZED", "RECORDED", "DELTA"]);
    for (metric, value_opt) in [
        ("accuracy", performance.accuracy),
        ("auc", performance.auc),
        ("mae", performance.mae),
    ] {
        let Some(value) = value_opt else {
            continue;
        };
        let compared = performance
            .compared
            .iter()
            .find(|comparison| comparison.metric == metric);
        table.push(vec![
            metric.to_string(),
            format!("{value:.4}"),
            compared.map_or_else(
                || "-".into(),
                |c| format!("{:.4} ({})", c.recorded, c.recorded_as),
            ),
            compared.map_or_else(|| "-".into(), |c| format!("{:+.4}", c.delta)),
        ]);
    }
    text.push_str(&table.render());
    Ok(text)
}
