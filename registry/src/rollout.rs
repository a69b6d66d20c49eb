//! Progressive rollouts, with Flagger's semantics: the canary's weight climbs
//! one step per interval while its checks pass; an interval with too few
//! canary requests is inconclusive (it neither advances nor counts); enough
//! failed intervals roll the canary back, and the last step passed promotes
//! it (100% weight, stage production, the old version kept at weight 0 for a
//! fast way back).
//!
//! Every decision is one transaction: the rollout's state, the deployment's
//! new weights (bumping the revision gateways watch) and the audit event.
//! The controller loop (`run`) only finds rollouts whose interval is over.

use std::sync::Arc;
use std::time::Duration;

use crate::store::sql::Transaction;
use serde_json::json;
use sluice_registry_client::rollout::{
    GuardReport, IntervalResult, Rollout, RolloutStatus, StartRollout, VersionWindow,
};
use sluice_registry_client::types::{Deployment, SetDeployment, Stage, TrafficSpec, TrafficTarget};

use crate::error::{Error, Result};
use crate::policy::Policy;
use crate::state::AppState;
use crate::stats::Stats;
use crate::store::events::{self, Change};
use crate::store::{deployments, now, rollouts, versions};

/// Rollout events by model and kind (start, interval.passed, interval.failed,
/// promote, rollback, abort, pause, resume), counted as they are recorded:
/// what alerts on a rollback and annotates the dashboard.
pub const ROLLOUT_EVENTS: &str = "sluice_rollout_events_total";
/// The canary's weight while a rollout runs, 0 once it ends: its steps.
pub const ROLLOUT_CANARY_WEIGHT: &str = "sluice_rollout_canary_weight";

/// Describes the rollout metrics (once, where a recorder is installed).
pub fn describe() {
    metrics::describe_counter!(
        ROLLOUT_EVENTS,
        "Rollout events by model and event (start, interval.passed, interval.failed, promote, rollback, abort, ...)"
    );
    metrics::describe_gauge!(
        ROLLOUT_CANARY_WEIGHT,
        "Percent of a model's traffic on its rollout's canary; 0 when no rollout runs"
    );
}

/// The actor of the controller's own changes in the audit log.
pub const ACTOR: &str = "rollout";

/// Intervals a rollout keeps in its record.
const MAX_INTERVALS_KEPT: usize = 100;

/// What a decision changed, for the caller to announce after the commit.
pub struct Decided {
    pub rollout: Rollout,
    /// The deployments revision, when the weights moved.
    pub revision_opt: Option<u64>,
    /// The rollout just ended (promoted, rolled back, aborted): call its webhook.
    pub finished: bool,
    /// It just stalled (`max_inconclusive` in a row) and holds: call its
    /// webhook too.
    pub stalled: bool,
}

impl Decided {
    /// After a rollout decision committed: tells watchers, logs it, and calls
    /// the rollout's webhook when it just ended (best effort, off the caller).
    pub fn announce(&self, state: &AppState) {
        if let Some(revision) = self.revision_opt {
            state.revision.publish(revision);
        }
        let rollout = &self.rollout;
        tracing::info!(model = %rollout.model, canary = rollout.canary, status = ?rollout.status, weight = rollout.canary_weight, "rollout decision");
        let Some(url) = rollout
            .policy
            .webhook
            .clone()
            .filter(|_| self.finished || self.stalled)
        else {
            return;
        };
        // Checked when the rollout started, and again now: the operator
        // may have taken the host off the list since.
        if let Err(refused) = state.actions.check_url(&url) {
            tracing::warn!(model = %rollout.model, %refused, "rollout webhook not called");
            return;
        }
        let request = state.webhooks.post(&url).json(rollout);
        tokio::spawn(async move {
            match request.send().await {
                Ok(response) if response.status().is_success() => {}
                Ok(response) => tracing::warn!(%url, status = %response.status(), "rollout webhook refused"),
                Err(err) => tracing::warn!(%url, error = %err, "rollout webhook failed"),
            }
        });
    }
}

/// What a rollout's start reads beside the store.
#[derive(Debug, Clone, Copy)]
pub struct StartAt {
    /// When its first interval begins (Unix milliseconds).
    pub now_ms: u64,
    /// The longest statistics interval of the gateways reporting now
    /// (`Stats::longest_report_interval`).
    pub gateway_interval_ms: Option<u64>,
}

impl StartAt {
    pub fn of(state: &AppState) -> StartAt {
        StartAt {
            now_ms: state.clock.now_ms(),
            gateway_interval_ms: state.stats.longest_report_interval(),
        }
    }
}

/// What refuses a rollout before its canary is looked at: a malformed
/// policy, an interval the gateways' statistics cannot fill, or a rollout
/// of the model still on.
pub fn check_start(
    connection: &crate::store::sql::Connection<'_>,
    model: &str,
    body: &StartRollout,
    at: StartAt,
) -> Result<()> {
    body.policy.steps().map_err(Error::bad_request)?;
    // An interval shorter than two of the gateways' windows may hold no
    // whole one, and be inconclusive however much traffic the canary takes.
    if let Some(window_ms) = at.gateway_interval_ms
        && body.policy.interval_ms < 2 * window_ms
    {
        return Err(Error::bad_request(format!(
            "interval_ms {} is shorter than two of the gateways' statistics windows ({window_ms} ms, their --stats-interval-ms): its intervals could hold no whole window and never be judged; use interval_ms {} or more, or report more often",
            body.policy.interval_ms,
            2 * window_ms
        )));
    }
    if let Some(current) = rollouts::find(connection, model)?
        && current.status.is_active()
    {
        return Err(Error::conflict(format!(
            "a rollout of version {} of '{model}' is {}: abort or finish it first",
            current.canary,
            current.status.describe()
        )));
    }
    Ok(())
}

/// Starts a rollout of `body.canary` against the version that takes all of
/// the model's traffic now; its first interval begins at `at.now_ms`.
pub fn start(
    transaction: &Transaction<'_>,
    policy: &Policy,
    actor: &str,
    model: &str,
    body: &StartRollout,
    at: StartAt,
) -> Result<Decided> {
    check_start(transaction, model, body, at)?;
    let steps = body.policy.steps().map_err(Error::bad_request)?;
    let deployment = deployments::find(transaction, model)?.ok_or_else(|| {
        Error::conflict(format!(
            "model '{model}' has no deployment: a rollout starts from one"
        ))
    })?;
    let serving: Vec<&TrafficTarget> = deployment.spec.targets.iter().filter(|t| t.weight > 0).collect();
    let [stable] = serving[..] else {
        return Err(Error::conflict(format!(
            "'{model}' splits its traffic {}: a rollout starts from one version taking all of it",
            describe_targets(&deployment.spec.targets)
        )));
    };
    let stable = stable.version;
    if stable == body.canary {
        return Err(Error::conflict(format!(
            "version {stable} already takes all traffic of '{model}'"
        )));
    }
    versions::get(transaction, model, body.canary)?;
    let stamp = now();
    let mut rollout = Rollout {
        model: model.to_string(),
        canary: body.canary,
        stable,
        policy: body.policy.clone(),
        status: RolloutStatus::Progressing,
        step: 0,
        canary_weight: steps[0],
        failed_intervals: 0,
        intervals: Vec::new(),
        started_by: actor.to_string(),
        started_at: stamp.clone(),
        updated_at: stamp,
        interval_started_ms: at.now_ms,
        started_revision: 0,
        deployment_revision: 0,
        inconclusive_in_a_row: 0,
    };
    let revision = set_weights(
        transaction,
        policy,
        actor,
        &deployment,
        &mut rollout,
        "rollout started",
    )?;
    rollout.started_revision = revision;
    rollout.updated_at = now();
    rollouts::put(transaction, &rollout)?;
    record(transaction, actor, "rollout.start", &rollout, None)?;
    Ok(Decided {
        rollout,
        revision_opt: Some(revision),
        finished: false,
        stalled: false,
    })
}

/// Judges the interval that ended by `now_ms`, and acts on the verdict.
pub fn evaluate(
    transaction: &Transaction<'_>,
    policy: &Policy,
    stats: &Stats,
    model: &str,
    now_ms: u64,
) -> Result<Option<Decided>> {
    let Some(mut rollout) = rollouts::find(transaction, model)? else {
        return Ok(None);
    };
    if rollout.status != RolloutStatus::Progressing {
        return Ok(None);
    }
    // The due list was read in another transaction: check again.
    if now_ms.saturating_sub(rollout.interval_started_ms) < rollout.policy.interval_ms {
        return Ok(None);
    }
    let deployment_opt = deployments::find(transaction, model)?;
    let Some(deployment) = deployment_opt.filter(|d| d.revision == rollout.deployment_revision) else {
        // Someone changed the traffic (or removed the deployment) since this
        // rollout's last step: theirs is the last word.
        rollout.status = RolloutStatus::Aborted;
        rollout.updated_at = now();
        rollouts::put(transaction, &rollout)?;
        let reasons = ["the deployment's traffic was changed by hand".to_string()];
        record(transaction, ACTOR, "rollout.abort", &rollout, Some(&reasons))?;
        return Ok(Some(Decided {
            rollout,
            revision_opt: None,
            finished: true,
            stalled: false,
        }));
    };
    // The windows that ended in this interval; one ending as it ends (a
    // gateway's take at the same millisecond) is the next interval's.
    let since = rollout.interval_started_ms;
    let canary = stats.between(model, rollout.canary, since, now_ms);
    let stable = stats.between(model, rollout.stable, since, now_ms);
    let result = judge(&rollout, &canary, &stable);
    rollout.interval_started_ms = now_ms;
    let verdict = result.verdict.clone();
    let reasons = result.reasons.clone();
    rollout.intervals.push(result);
    // The latest intervals tell the story; a rollout left inconclusive for
    // days must not grow without bound.
    if rollout.intervals.len() > MAX_INTERVALS_KEPT {
        let excess = rollout.intervals.len() - MAX_INTERVALS_KEPT;
        rollout.intervals.drain(..excess);
    }
    let steps = rollout.policy.steps().map_err(Error::Internal)?;
    let mut revision_opt = None;
    let mut finished = false;
    let mut stalled = false;
    rollout.inconclusive_in_a_row = match verdict.as_str() {
        "inconclusive" => rollout.inconclusive_in_a_row.saturating_add(1),
        _ => 0,
    };
    match verdict.as_str() {
        "passed" if rollout.step + 1 >= steps.len() => {
            revision_opt = Some(promote(transaction, policy, ACTOR, &deployment, &mut rollout)?);
            finished = true;
        }
        "passed" => {
            rollout.step += 1;
            rollout.canary_weight = steps[rollout.step];
            let reason = format!(
                "rollout step {}: canary at {}%",
                rollout.step + 1,
                rollout.canary_weight
            );
            revision_opt = Some(set_weights(
                transaction,
                policy,
                ACTOR,
                &deployment,
                &mut rollout,
                &reason,
            )?);
        }
        "failed" => {
            rollout.failed_intervals += 1;
            if rollout.failed_intervals >= rollout.policy.threshold {
                revision_opt = Some(roll_back(
                    transaction,
                    policy,
                    ACTOR,
                    &deployment,
                    &mut rollout,
                    &reasons,
                )?);
                finished = true;
            }
        }
        // Said once, when the count is reached: a rollout nobody can judge
        // must not sit at its canary weight unnoticed.
        "inconclusive" if rollout.inconclusive_in_a_row == rollout.policy.max_inconclusive => {
            let why = vec![format!(
                "{} intervals in a row inconclusive (max_inconclusive), the last: {}",
                rollout.inconclusive_in_a_row,
                reasons.join("; ")
            )];
            if rollout.policy.rollback_when_inconclusive {
                revision_opt = Some(roll_back(
                    transaction,
                    policy,
                    ACTOR,
                    &deployment,
                    &mut rollout,
                    &why,
                )?);
                finished = true;
            } else {
                stalled = true;
                record(transaction, ACTOR, "rollout.inconclusive", &rollout, Some(&why))?;
            }
        }
        _ => {}
    }
    rollout.updated_at = now();
    rollouts::put(transaction, &rollout)?;
    // Inconclusive intervals change nothing: the rollout's record has them,
    // the audit log need not repeat them every interval.
    if !finished && verdict != "inconclusive" {
        let action = format!("rollout.interval.{verdict}");
        record(transaction, ACTOR, &action, &rollout, Some(&reasons))?;
    }
    Ok(Some(Decided {
        rollout,
        revision_opt,
        finished,
        stalled,
    }))
}

/// The checks of one interval, Flagger's way.
fn judge(rollout: &Rollout, canary: &VersionWindow, stable: &VersionWindow) -> IntervalResult {
    let policy = &rollout.policy;
    let mut result = IntervalResult {
        ended_at: now(),
        canary_weight: rollout.canary_weight,
        canary_requests: canary.requests,
        error_rate: canary.error_rate(),
        stable_error_rate: stable.error_rate(),
        engine_refused_rate: canary.engine_refused_rate(),
        stable_engine_refused_rate: stable.engine_refused_rate(),
        nonfinite_rate: canary.nonfinite_rate(),
        stable_nonfinite_rate: stable.nonfinite_rate(),
        p99_ms: canary.latency_quantile_ms(0.99),
        stable_p99_ms: stable.latency_quantile_ms(0.99),
        shadow_disagreement: canary.shadow_disagreement(),
        verdict: "passed".into(),
        reasons: Vec::new(),
    };
    // Too few requests to judge, unless the canary's failures alone already
    // break the limit at min_requests: had every missing request
    // succeeded, it would still fail. A canary that fails what little it
    // gets is failed, not left inconclusive.
    if canary.requests < policy.min_requests
        && let Some(limit) = policy.max_error_rate
    {
        let classes = [
            ("failed", canary.server_errors, stable.error_rate()),
            (
                "refused by its engine",
                canary.engine_refused,
                stable.engine_refused_rate(),
            ),
            ("timed out", canary.timeouts, stable.timeout_rate()),
        ];
        for (class, count, stable_rate) in classes {
            let allowed = (stable_rate.unwrap_or(0.0) + limit) * policy.min_requests as f64;
            if count > 0 && count as f64 > allowed {
                result.verdict = "failed".into();
                result.reasons.push(format!(
                    "{count} of {} canary requests {class}: above max_error_rate even had the rest of min_requests {} succeeded",
                    canary.requests, policy.min_requests
                ));
                return result;
            }
        }
    }
    if canary.requests < policy.min_requests {
        result.verdict = "inconclusive".into();
        result.reasons.push(format!(
            "{} canary requests, fewer than min_requests {}",
            canary.requests, policy.min_requests
        ));
        return result;
    }
    // A configured check without data fails, as in Flagger: a canary whose
    // comparisons were all dropped has not shown it agrees.
    let mut fail = |reason: String| result.reasons.push(reason);
    let exceeds = |value: f64, limit: f64| value.is_nan() || value > limit;
    // Each class of failure on its excess over the stable version's in the
    // same interval: inputs both refuse are the callers', not the canary's.
    if let Some(limit) = policy.max_error_rate {
        let classes = [
            ("error rate", canary.error_rate(), stable.error_rate()),
            (
                "engine refusal rate",
                canary.engine_refused_rate(),
                stable.engine_refused_rate(),
            ),
            ("timeout rate", canary.timeout_rate(), stable.timeout_rate()),
        ];
        for (class, canary_rate, stable_rate) in classes {
            let Some(rate) = canary_rate else { continue };
            let stable_rate = stable_rate.unwrap_or(0.0);
            if exceeds(rate - stable_rate, limit) {
                fail(format!(
                    "{class} {:.2}% is {:.2} points above the stable version's {:.2}%, more than max_error_rate {:.2}%",
                    rate * 100.0,
                    (rate - stable_rate) * 100.0,
                    stable_rate * 100.0,
                    limit * 100.0
                ));
            }
        }
    }
    if let Some(limit) = policy.max_nan_rate {
        match canary.nonfinite_rate() {
            Some(rate) => {
                let stable_rate = stable.nonfinite_rate().unwrap_or(0.0);
                if exceeds(rate - stable_rate, limit) {
                    fail(format!(
                        "{:.2}% of the canary's rows hold a NaN or an infinity, {:.2} points above the stable version's {:.2}%, more than max_nan_rate {:.2}%",
                        rate * 100.0,
                        (rate - stable_rate) * 100.0,
                        stable_rate * 100.0,
                        limit * 100.0
                    ));
                }
            }
            None => fail("no answered row of the canary to look for NaN or infinity in".into()),
        }
    }
    let p99_opt = canary.latency_quantile_ms(0.99);
    if let (Some(limit), Some(p99)) = (policy.max_p99_ms, p99_opt)
        && exceeds(p99, limit)
    {
        fail(format!("p99 {p99:.3} ms above max_p99_ms {limit}"));
    }
    if let Some(limit) = policy.max_p99_ratio {
        let floor = policy.p99_floor_ms;
        match (p99_opt, stable.latency_quantile_ms(0.99)) {
            (Some(p99), Some(stable_p99))
                if exceeds(p99 / stable_p99, limit) && exceeds(p99 - stable_p99, floor) =>
            {
                fail(format!(
                    "p99 {p99:.3} ms is {:.2}x the stable version's {stable_p99:.3} ms, above max_p99_ratio {limit}, and {:.3} ms slower, more than p99_floor_ms {floor}",
                    p99 / stable_p99,
                    p99 - stable_p99
                ))
            }
            (Some(_), Some(_)) => {}
            _ => fail("no stable-version latency to compare the canary's p99 with".into()),
        }
    }
    if let Some(limit) = policy.max_shadow_disagreement {
        match canary.shadow_disagreement() {
            Some(disagreement) if exceeds(disagreement, limit) => fail(format!(
                "shadow disagreement {:.2}% above max_shadow_disagreement {:.2}%",
                disagreement * 100.0,
                limit * 100.0
            )),
            Some(_) => {}
            None => fail("no comparison of the canary's answers with the stable version's".into()),
        }
    }
    if let Some(limit) = policy.max_contract_violation_rate {
        match canary.worst_contract_check() {
            Some((check, rate)) if exceeds(rate, limit) => fail(format!(
                "{:.2}% of the canary's rows break its data contract's '{check}', above max_contract_violation_rate {:.2}%",
                rate * 100.0,
                limit * 100.0
            )),
            Some(_) => {}
            None => fail(
                "no row of the canary was checked against a data contract (does the version carry one, and does the deployment check it?)"
                    .into(),
            ),
        }
    }
    if !result.reasons.is_empty() {
        result.verdict = "failed".into();
    }
    result
}

/// Pause, resume, promote or abort, by hand; a resumed rollout's interval
/// begins at `now_ms`.
pub fn act(
    transaction: &Transaction<'_>,
    policy: &Policy,
    actor: &str,
    model: &str,
    action: &str,
    now_ms: u64,
) -> Result<Decided> {
    let mut rollout = rollouts::find(transaction, model)?
        .ok_or_else(|| Error::not_found(format!("model '{model}' has no rollout")))?;
    if !rollout.status.is_active() {
        return Err(Error::conflict(format!(
            "the rollout of version {} of '{model}' is {}: nothing to {action}",
            rollout.canary,
            rollout.status.describe()
        )));
    }
    let deployment = deployments::find(transaction, model)?
        .ok_or_else(|| Error::conflict(format!("model '{model}' has no deployment any more")))?;
    let mut revision_opt = None;
    let mut finished = false;
    match action {
        "pause" => rollout.status = RolloutStatus::Paused,
        "resume" => {
            rollout.status = RolloutStatus::Progressing;
            rollout.interval_started_ms = now_ms;
        }
        "promote" => {
            revision_opt = Some(promote(transaction, policy, actor, &deployment, &mut rollout)?);
            finished = true;
        }
        "abort" => {
            rollout.status = RolloutStatus::Aborted;
            rollout.canary_weight = 0;
            revision_opt = Some(set_weights(
                transaction,
                policy,
                actor,
                &deployment,
                &mut rollout,
                "rollout aborted",
            )?);
            finished = true;
        }
        other => {
            return Err(Error::not_found(format!(
                "no rollout action '{other}': expected pause, resume, promote or abort"
            )));
        }
    }
    rollout.updated_at = now();
    rollouts::put(transaction, &rollout)?;
    if !matches!(action, "promote") {
        record(transaction, actor, &format!("rollout.{action}"), &rollout, None)?;
    }
    Ok(Decided {
        rollout,
        revision_opt,
        finished,
        stalled: false,
    })
}

/// A gateway's local guard stopped a version: roll it back everywhere.
pub fn guard(
    transaction: &Transaction<'_>,
    policy: &Policy,
    actor: &str,
    model: &str,
    report: &GuardReport,
) -> Result<Option<Decided>> {
    let reasons = [format!(
        "the local guard of gateway {} saw {} failures (server errors, or engine refusals beyond the stable version's) in the last {} requests",
        report.gateway, report.errors, report.window
    )];
    let Some(deployment) = deployments::find(transaction, model)? else {
        return Ok(None);
    };
    if let Some(mut rollout) = rollouts::find(transaction, model)?
        && rollout.status.is_active()
    {
        // Only the canary is guarded, and only a report from this rollout's
        // time: one retried for hours after an outage is about an older one.
        if rollout.canary != report.version || report.revision < rollout.started_revision {
            return Ok(None);
        }
        let revision = roll_back(transaction, policy, actor, &deployment, &mut rollout, &reasons)?;
        rollout.updated_at = now();
        rollouts::put(transaction, &rollout)?;
        return Ok(Some(Decided {
            rollout,
            revision_opt: Some(revision),
            finished: true,
            stalled: false,
        }));
    }
    // No rollout: take the version's weight and give it to the heaviest other target.
    let Some(guarded) = deployment
        .spec
        .targets
        .iter()
        .find(|t| t.version == report.version && t.weight > 0)
    else {
        return Ok(None);
    };
    let Some(heaviest) = deployment
        .spec
        .targets
        .iter()
        .filter(|target| target.version != report.version)
        .max_by_key(|target| (target.weight, target.version))
    else {
        return Ok(None);
    };
    // The stable version is not a canary: never move its traffic onto a
    // lighter one (a report from a gateway that saw it differently).
    if heaviest.weight < guarded.weight || report.revision < deployment.revision {
        return Ok(None);
    }
    let targets: Vec<TrafficTarget> = deployment
        .spec
        .targets
        .iter()
        .map(|target| TrafficTarget {
            version: target.version,
            weight: match target.version {
                version if version == report.version => 0,
                version if version == heaviest.version => target.weight + guarded.weight,
                _ => target.weight,
            },
        })
        .collect();
    let mut body = SetDeployment::new(TrafficSpec {
        targets,
        ..deployment.spec.clone()
    });
    body.reason = Some(reasons[0].clone());
    deployments::set(transaction, policy, actor, model, &body)?;
    Ok(None)
}

fn promote(
    transaction: &Transaction<'_>,
    policy: &Policy,
    actor: &str,
    deployment: &Deployment,
    rollout: &mut Rollout,
) -> Result<u64> {
    rollout.status = RolloutStatus::Promoted;
    rollout.canary_weight = 100;
    let revision = set_weights(
        transaction,
        policy,
        actor,
        deployment,
        rollout,
        "rollout promoted the canary",
    )?;
    let before = versions::get(transaction, &rollout.model, rollout.canary)?;
    if before.stage != Stage::Production {
        versions::set_stage(transaction, &rollout.model, rollout.canary, Stage::Production)?;
        let after = versions::get(transaction, &rollout.model, rollout.canary)?;
        let change = Change {
            actor,
            action: "version.stage",
            subject: format!("{}/{}", rollout.model, rollout.canary),
            reason: Some("promoted by its rollout"),
        };
        events::append(transaction, change, Some(&before), Some(&after))?;
    }
    record(transaction, actor, "rollout.promote", rollout, None)?;
    Ok(revision)
}

fn roll_back(
    transaction: &Transaction<'_>,
    policy: &Policy,
    actor: &str,
    deployment: &Deployment,
    rollout: &mut Rollout,
    reasons: &[String],
) -> Result<u64> {
    rollout.status = RolloutStatus::RolledBack;
    rollout.canary_weight = 0;
    let revision = set_weights(
        transaction,
        policy,
        actor,
        deployment,
        rollout,
        "rollout rolled the canary back",
    )?;
    // The version says it was rolled back, and why, where anyone reading it looks.
    let version = versions::get(transaction, &rollout.model, rollout.canary)?;
    let note = json!({ "rolled_back_at": now(), "reasons": reasons, "stable": rollout.stable });
    versions::put_document(transaction, actor, &version, "rollback", &note)?;
    record(transaction, actor, "rollout.rollback", rollout, Some(reasons))?;
    Ok(revision)
}

/// Writes the rollout's weights into the deployment: the canary at its
/// weight, the stable version at the rest, other targets untouched.
fn set_weights(
    transaction: &Transaction<'_>,
    policy: &Policy,
    actor: &str,
    deployment: &Deployment,
    rollout: &mut Rollout,
    reason: &str,
) -> Result<u64> {
    // A rollout is between two versions: every other target keeps weight 0
    // (loaded, pinnable), so the weights always add up to 100.
    let mut targets: Vec<TrafficTarget> = deployment
        .spec
        .targets
        .iter()
        .filter(|target| target.version != rollout.canary && target.version != rollout.stable)
        .map(|target| TrafficTarget {
            version: target.version,
            weight: 0,
        })
        .collect();
    targets.push(TrafficTarget {
        version: rollout.stable,
        weight: 100 - rollout.canary_weight,
    });
    targets.push(TrafficTarget {
        version: rollout.canary,
        weight: rollout.canary_weight,
    });
    targets.sort_by_key(|target| target.version);
    // A version shadowed before its rollout is now a target, not a shadow.
    let shadow = deployment
        .spec
        .shadow
        .filter(|shadow| shadow.version != rollout.canary);
    // Gateways read the rollout here (which version is the canary); it goes
    // when the rollout ends, so later hand-made splits are plain splits.
    let rollout_spec = rollout
        .status
        .is_active()
        .then(|| json!({ "canary": rollout.canary, "stable": rollout.stable, "policy": rollout.policy }));
    let mut body = SetDeployment::new(TrafficSpec {
        targets,
        shadow,
        rollout: rollout_spec,
        ..deployment.spec.clone()
    });
    body.reason = Some(reason.to_string());
    let written = deployments::set(transaction, policy, actor, &rollout.model, &body)?;
    rollout.deployment_revision = written.revision;
    let weight = if rollout.status.is_active() {
        rollout.canary_weight
    } else {
        0
    };
    metrics::gauge!(ROLLOUT_CANARY_WEIGHT, "model" => rollout.model.clone()).set(f64::from(weight));
    Ok(written.revision)
}

fn record(
    transaction: &Transaction<'_>,
    actor: &str,
    action: &str,
    rollout: &Rollout,
    reasons_opt: Option<&[String]>,
) -> Result<()> {
    let reason = reasons_opt
        .map(|reasons| reasons.join("; "))
        .filter(|text| !text.is_empty());
    let change = Change {
        actor,
        action,
        subject: format!("{}/{}", rollout.model, rollout.canary),
        reason: reason.as_deref(),
    };
    events::append(transaction, change, None::<&()>, Some(rollout))?;
    // Counted with its audit event; a transaction that then fails to commit
    // (rare: the database failing) leaves one event too many here.
    let event = action.strip_prefix("rollout.").unwrap_or(action).to_string();
    metrics::counter!(ROLLOUT_EVENTS, "model" => rollout.model.clone(), "event" => event).increment(1);
    // Every way a rollout ends is recorded here, some without new weights
    // (an abort because the traffic was changed by hand).
    if !rollout.status.is_active() {
        metrics::gauge!(ROLLOUT_CANARY_WEIGHT, "model" => rollout.model.clone()).set(0.0);
    }
    Ok(())
}

fn describe_targets(targets: &[TrafficTarget]) -> String {
    let parts: Vec<String> = targets
        .iter()
        .map(|target| format!("{}={}", target.version, target.weight))
        .collect();
    parts.join(" ")
}

/// The controller: every `tick`, judges each progressing rollout whose
/// interval is over. Runs until the registry stops.
pub async fn run(state: Arc<AppState>, tick: Duration, mut stopping: tokio::sync::watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = stopping.wait_for(|stopped| *stopped) => return,
        }
        let now = state.clock.now_ms();
        let due = state
            .blocking(move |store, _| {
                let active = store.read(rollouts::active)?;
                Ok(active
                    .into_iter()
                    .filter(|rollout| {
                        rollout.status == RolloutStatus::Progressing
                            && now.saturating_sub(rollout.interval_started_ms) >= rollout.policy.interval_ms
                    })
                    .map(|rollout| rollout.model)
                    .collect::<Vec<_>>())
            })
            .await;
        let due = match due {
            Ok(due) => due,
            Err(err) => {
                tracing::error!(error = %err, "rollout controller cannot read the rollouts");
                continue;
            }
        };
        for model in due {
            let stats = state.stats.clone();
            let outcome = state
                .blocking(move |store, policy| store.write(|tx| evaluate(tx, policy, &stats, &model, now)))
                .await;
            match outcome {
                Ok(Some(decided)) => decided.announce(&state),
                Ok(None) => {}
                Err(err) => tracing::error!(error = %err, "rollout controller failed to judge an interval"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use sluice_registry_client::rollout::{LATENCY_BUCKETS_MS, RolloutPolicy, RolloutStatus};

    use super::*;

    fn rollout(max_contract_violation_rate: Option<f64>) -> Rollout {
        Rollout {
            model: "credit".into(),
            canary: 2,
            stable: 1,
            policy: RolloutPolicy {
                step_weights: vec![50],
                step_weight: None,
                max_weight: None,
                interval_ms: 1000,
                min_requests: 10,
                max_error_rate: None,
                max_p99_ms: None,
                max_p99_ratio: None,
                p99_floor_ms: 1.0,
                max_shadow_disagreement: None,
                max_nan_rate: None,
                max_contract_violation_rate,
                threshold: 1,
                webhook: None,
                max_inconclusive: 10,
                rollback_when_inconclusive: false,
            },
            status: RolloutStatus::Progressing,
            step: 0,
            canary_weight: 50,
            failed_intervals: 0,
            intervals: Vec::new(),
            started_by: "dora".into(),
            started_at: String::new(),
            updated_at: String::new(),
            interval_started_ms: 0,
            started_revision: 1,
            deployment_revision: 1,
            inconclusive_in_a_row: 0,
        }
    }

    fn window(contract_rows: u64, violations: &[(&str, u64)]) -> VersionWindow {
        VersionWindow {
            requests: 100,
            latency_buckets: vec![0; LATENCY_BUCKETS_MS.len() + 1],
            contract_rows,
            contract_violations: violations
                .iter()
                .map(|(check, count)| (check.to_string(), *count))
                .collect(),
            ..VersionWindow::default()
        }
    }

    #[test]
    fn a_canary_breaking_its_contract_too_often_fails_the_interval() {
        let checked = rollout(Some(0.05));
        let fine = judge(
            &checked,
            &window(100, &[("age:min", 5), ("income:max", 2)]),
            &window(0, &[]),
        );
        assert_eq!(fine.verdict, "passed", "{:?}", fine.reasons);
        let failed = judge(
            &checked,
            &window(100, &[("age:min", 6), ("income:max", 2)]),
            &window(0, &[]),
        );
        assert_eq!(failed.verdict, "failed");
        assert!(
            failed.reasons[0].contains("6.00% of the canary's rows break its data contract's 'age:min'"),
            "{:?}",
            failed.reasons
        );
        // Configured, but nothing was checked: the check fails, as other checks without data do.
        let unchecked = judge(&checked, &window(0, &[]), &window(0, &[]));
        assert_eq!(unchecked.verdict, "failed");
        assert!(unchecked.reasons[0].contains("no row of the canary was checked"));
        // Not configured: violations do not matter.
        let ignored = judge(&rollout(None), &window(100, &[("age:min", 90)]), &window(0, &[]));
        assert_eq!(ignored.verdict, "passed");
    }

    /// A rollout judged on `max_error_rate` 5%, at `min_requests`.
    fn rated(min_requests: u64) -> Rollout {
        let mut rated = rollout(None);
        rated.policy.min_requests = min_requests;
        rated.policy.max_error_rate = Some(0.05);
        rated
    }

    fn answers(requests: u64, server_errors: u64, engine_refused: u64) -> VersionWindow {
        VersionWindow {
            requests,
            server_errors,
            engine_refused,
            latency_buckets: vec![0; LATENCY_BUCKETS_MS.len() + 1],
            ..VersionWindow::default()
        }
    }

    /// Each class of failure is weighed on the canary's excess over the
    /// stable version's rate.
    #[test]
    fn failures_count_in_excess_of_the_stable_versions() {
        let judged = rated(100);
        let both_refuse = judge(&judged, &answers(200, 0, 60), &answers(800, 0, 240));
        assert_eq!(both_refuse.verdict, "passed", "{:?}", both_refuse.reasons);
        let canary_refuses = judge(&judged, &answers(200, 0, 60), &answers(800, 0, 0));
        assert_eq!(canary_refuses.verdict, "failed");
        assert!(
            canary_refuses.reasons[0].starts_with("engine refusal rate 30.00% is 30.00 points above"),
            "{:?}",
            canary_refuses.reasons
        );
        let canary_fails = judge(&judged, &answers(200, 20, 0), &answers(800, 8, 0));
        assert_eq!(canary_fails.verdict, "failed");
        assert!(canary_fails.reasons[0].starts_with("error rate 10.00% is 9.00 points above"));
        // A slow canary: the callers' timeouts expire on it, not on the stable version.
        let timing_out = |requests: u64, timeouts: u64| VersionWindow {
            timeouts,
            ..answers(requests, 0, 0)
        };
        let slow = judge(&judged, &timing_out(200, 30), &timing_out(800, 8));
        assert_eq!(slow.verdict, "failed");
        assert!(
            slow.reasons[0].starts_with("timeout rate 15.00% is 14.00 points above"),
            "{:?}",
            slow.reasons
        );
        let tight = judge(&judged, &timing_out(200, 30), &timing_out(800, 120));
        assert_eq!(tight.verdict, "passed", "a deadline both miss is the caller's");
    }

    /// A latency regression must be large in absolute terms too.
    #[test]
    fn a_p99_ratio_needs_the_floor_too() {
        let mut judged = rated(100);
        judged.policy.max_p99_ratio = Some(1.5);
        let answered_in = |bucket: usize| {
            let mut answered = answers(200, 0, 0);
            answered.latency_buckets[bucket] = 200;
            answered
        };
        // 0.2 ms against 0.1 ms: twice as slow, a tenth of a millisecond.
        let noise = judge(&judged, &answered_in(2), &answered_in(1));
        assert_eq!(noise.verdict, "passed", "{:?}", noise.reasons);
        // 5 ms against 2 ms: 2.5 times, 3 ms slower.
        let slower = judge(&judged, &answered_in(10), &answered_in(8));
        assert_eq!(slower.verdict, "failed");
        assert!(
            slower.reasons[0].contains("more than p99_floor_ms 1"),
            "{:?}",
            slower.reasons
        );
    }

    /// NaN or infinite rows are weighed against the stable version's share.
    #[test]
    fn nonfinite_rows_fail_the_canary_beyond_the_stable_versions() {
        let mut judged = rated(100);
        judged.policy.max_nan_rate = Some(0.01);
        let rows = |total: u64, nonfinite: u64| VersionWindow {
            output_rows: total,
            nonfinite_rows: nonfinite,
            ..answers(total, 0, 0)
        };
        let fine = judge(&judged, &rows(200, 2), &rows(800, 8));
        assert_eq!(fine.verdict, "passed", "{:?}", fine.reasons);
        let nan = judge(&judged, &rows(200, 56), &rows(800, 0));
        assert_eq!(nan.verdict, "failed");
        assert!(nan.reasons[0].starts_with("28.00% of the canary's rows hold a NaN or an infinity"));
        let unanswered = judge(&judged, &answers(200, 0, 0), &rows(800, 0));
        assert_eq!(
            unanswered.verdict, "failed",
            "a configured check without data fails"
        );
    }

    /// Under min_requests an interval is inconclusive, unless the canary's
    /// failures alone already break the limit at min_requests.
    #[test]
    fn a_canary_failing_what_little_it_gets_fails() {
        let judged = rated(100);
        let quiet = judge(&judged, &answers(20, 5, 0), &answers(80, 0, 0));
        assert_eq!(
            quiet.verdict, "inconclusive",
            "5 failures of 100 would still pass"
        );
        let failing = judge(&judged, &answers(20, 6, 0), &answers(80, 0, 0));
        assert_eq!(failing.verdict, "failed");
        assert!(
            failing.reasons[0].starts_with("6 of 20 canary requests failed"),
            "{:?}",
            failing.reasons
        );
        let refusing = judge(&judged, &answers(20, 0, 20), &answers(80, 0, 0));
        assert_eq!(refusing.verdict, "failed");
        assert!(refusing.reasons[0].contains("refused by its engine"));
    }
}
