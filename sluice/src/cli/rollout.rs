//! `sluice rollout start|pause|resume|promote|abort|status`: progressive
//! rollouts, which the registry runs.

use std::path::{Path, PathBuf};

use clap::Subcommand;
use sluice_registry_client::rollout::{Rollout, RolloutPolicy, RolloutStatus, StartRollout};
use sluice_registry_client::{ClientError, RegistryClient};

use super::args::Output;
use super::table::Table;

#[derive(Debug, Clone, Subcommand)]
pub enum RolloutCommand {
    /// Start moving a model's traffic to a canary version step by step, judged as statistics arrive
    /// and at each interval's end.
    ///
    /// Without --policy: steps of 10, 25 and 50%, one a minute, at least 100 canary requests per
    /// interval, at most 1% server errors and a p99 at most 1.5x the stable version's, rolled back
    /// after 3 failed intervals.
    Start {
        /// Name of the model.
        model: String,

        /// The canary: a staging or production version.
        version: u64,

        /// Rollout policy, TOML or JSON (step_weights or step_weight + max_weight, interval_ms,
        /// min_requests, max_error_rate, max_nan_rate, max_p99_ms, max_p99_ratio,
        /// max_shadow_disagreement, max_contract_violation_rate, threshold, max_inconclusive,
        /// rollback_when_inconclusive, webhook) [default: examples/policies/rollout.toml's].
        #[arg(long, value_name = "FILE")]
        policy: Option<PathBuf>,
    },
    /// Stop judging intervals; the weights stay where they are.
    Pause {
        /// Name of the model.
        model: String,
    },
    /// Judge intervals again, from now.
    Resume {
        /// Name of the model.
        model: String,
    },
    /// Give the canary all traffic now and move it to production.
    Promote {
        /// Name of the model.
        model: String,
    },
    /// Give the stable version all traffic back.
    Abort {
        /// Name of the model.
        model: String,
    },
    /// The rollout's step, weights and each interval's checks.
    Status {
        /// Name of the model.
        model: String,
        /// Print it again each time it changes, until the rollout is settled: promoted (exit 0),
        /// awaiting production's approvals (exit 0), rolled back or aborted (exit 1).
        #[arg(long, short = 'w')]
        watch: bool,
    },
}

/// The rollout policy without `--policy`: the shipped example's, so the
/// file people start from is the default itself.
pub(super) const DEFAULT_POLICY: &str = include_str!("../../../examples/policies/rollout.toml");

pub(super) fn default_policy() -> Result<RolloutPolicy, ClientError> {
    sluice_common::documents::parse(Path::new("examples/policies/rollout.toml"), DEFAULT_POLICY)
        .map_err(ClientError::Local)
}

pub async fn run_rollout(
    client: &RegistryClient,
    command: RolloutCommand,
    output: Output,
) -> Result<String, ClientError> {
    let rollout = match command {
        RolloutCommand::Start {
            model,
            version,
            policy,
        } => {
            let policy = match policy {
                Some(path) => read_policy(&path)?,
                None => default_policy()?,
            };
            let body = StartRollout {
                canary: version,
                policy,
            };
            client.start_rollout(&model, &body).await?
        }
        RolloutCommand::Pause { model } => client.rollout_action(&model, "pause").await?,
        RolloutCommand::Resume { model } => client.rollout_action(&model, "resume").await?,
        RolloutCommand::Promote { model } => client.rollout_action(&model, "promote").await?,
        RolloutCommand::Abort { model } => client.rollout_action(&model, "abort").await?,
        RolloutCommand::Status { model, watch: false } => client.get_rollout(&model).await?,
        RolloutCommand::Status { model, watch: true } => return watch_rollout(client, &model, output).await,
    };
    if output.is_machine() {
        return output.render(&rollout);
    }
    Ok(render(&rollout))
}

/// `rollout status --watch`: until the rollout needs nothing more from
/// time, the way `kubectl rollout status` waits.
async fn watch_rollout(client: &RegistryClient, model: &str, output: Output) -> Result<String, ClientError> {
    let poll = || async {
        let rollout = client.get_rollout(model).await?;
        let text = if output.is_machine() {
            output.render(&rollout)?
        } else {
            render(&rollout)
        };
        let settled = !rollout.status.is_active() || rollout.status == RolloutStatus::AwaitingPromotion;
        Ok::<_, ClientError>((text, settled.then_some(rollout.status)))
    };
    match super::watch::watch(super::watch::WATCH_POLL, poll).await? {
        Some(status @ (RolloutStatus::RolledBack | RolloutStatus::Aborted)) => Err(ClientError::Local(
            format!("the rollout of '{model}' ended {}", status.describe()),
        )),
        _ => Ok(String::new()),
    }
}

pub(super) fn read_policy(path: &Path) -> Result<RolloutPolicy, ClientError> {
    let policy: RolloutPolicy = sluice_common::documents::read(path).map_err(ClientError::Io)?;
    policy
        .steps()
        .map_err(|err| ClientError::Io(format!("{}: {err}", path.display())))?;
    Ok(policy)
}

fn render(rollout: &Rollout) -> String {
    let steps = rollout.policy.steps().unwrap_or_default();
    let mut text = format!(
        "{}: version {} against {}, {}, step {}/{}, canary at {}%, failed intervals {}/{}\n",
        rollout.model,
        rollout.canary,
        rollout.stable,
        rollout.status.describe(),
        (rollout.step + 1).min(steps.len().max(1)),
        steps.len(),
        rollout.canary_weight,
        rollout.failed_intervals,
        rollout.policy.threshold
    );
    // Each sequential test's share of the way to a rollback.
    if !rollout.evidence.classes.is_empty() {
        let scores: Vec<String> = rollout
            .evidence
            .classes
            .iter()
            .map(|class| format!("{} {:.0}%", class.class, class.score * 100.0))
            .collect();
        text.push_str(&format!("evidence against the canary: {}\n", scores.join(", ")));
    }
    if rollout.intervals.is_empty() {
        return text;
    }
    let mut table = Table::new(&[
        "ENDED",
        "WEIGHT",
        "REQUESTS",
        "ERRORS",
        "REFUSED",
        "P99",
        "STABLE P99",
        "VERDICT",
        "REASONS",
    ]);
    let percent = |value: Option<f64>| value.map_or("-".to_string(), |rate| format!("{:.2}%", rate * 100.0));
    let millis = |value: Option<f64>| value.map_or("-".to_string(), |ms| format!("{ms:.3} ms"));
    for interval in &rollout.intervals {
        table.push(vec![
            interval.ended_at.clone(),
            format!("{}%", interval.canary_weight),
            interval.canary_requests.to_string(),
            percent(interval.error_rate),
            percent(interval.engine_refused_rate),
            millis(interval.p99_ms),
            millis(interval.stable_p99_ms),
            interval.verdict.clone(),
            if interval.reasons.is_empty() {
                "-".to_string()
            } else {
                interval.reasons.join("; ")
            },
        ]);
    }
    text.push_str(&table.render());
    text
}
