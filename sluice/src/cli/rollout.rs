//! `sluice rollout start|pause|resume|promote|abort|status`: progressive
//! rollouts, which the registry runs.

use std::path::PathBuf;

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

        /// Rollout policy (TOML): step_weights or step_weight + max_weight, interval_ms,
        /// min_requests, max_error_rate, max_nan_rate, max_p99_ms, max_p99_ratio,
        /// max_shadow_disagreement, max_contract_violation_rate, threshold, max_inconclusive,
        /// rollback_when_inconclusive, webhook.
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

fn default_policy() -> RolloutPolicy {
    RolloutPolicy {
        step_weights: vec![10, 25, 50],
        step_weight: None,
        max_weight: None,
        interval_ms: 60_000,
        min_requests: 100,
        max_error_rate: Some(0.01),
        max_p99_ms: None,
        max_p99_ratio: Some(1.5),
        p99_floor_ms: 1.0,
        max_shadow_disagreement: None,
        max_nan_rate: None,
        max_contract_violation_rate: None,
        threshold: 3,
        webhook: None,
        max_inconclusive: 10,
        rollback_when_inconclusive: false,
    }
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
                None => default_policy(),
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

fn read_policy(path: &PathBuf) -> Result<RolloutPolicy, ClientError> {
    let text = std::fs::read_to_string(path)
        .map_err(|err| ClientError::Io(format!("cannot read {}: {err}", path.display())))?;
    let policy: RolloutPolicy =
        toml::from_str(&text).map_err(|err| ClientError::Io(format!("{}: {err}", path.display())))?;
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
