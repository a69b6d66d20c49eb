//! Progressive rollouts, with Flagger's semantics: the canary's weight climbs
//! one step per interval while its checks pass; an interval with too few
//! canary requests is inconclusive (it neither advances nor counts); enough
//! failed intervals roll the canary back, and the last step passed promotes
//! it: 100% weight, the old version kept at weight 0 for a fast way back.
//! A rollout never moves a stage. A canary not yet in production holds its
//! last share, awaiting production, until its stage request passes
//! production's approvals and gates; then it takes all traffic. No step
//! exceeds the share its stage may take (the policy's `max_weight`).
//!
//! Rates (errors, refusals, timeouts, NaN rows, slow requests,
//! disagreement) are judged by sequential tests (`evidence`) fed every
//! statistics window as it arrives: a canary they find bad is rolled back
//! at once, before its interval ends; `judge` holds the rest of the
//! judgement, free of the store.
//!
//! Every decision is one transaction: the rollout's state, the deployment's
//! new weights (bumping the revision gateways watch) and the audit event.
//! The controller loop (`run`) finds rollouts whose interval is over or to
//! which new statistics arrived.

pub mod evidence;
pub mod judge;

use std::sync::Arc;
use std::time::Duration;

use crate::store::sql::Transaction;
use serde_json::json;
use sluice_registry_client::rollout::{GuardReport, Rollout, RolloutStatus, StartRollout};
use sluice_registry_client::types::{
    Deployment, RequestTransition, SetDeployment, Stage, TrafficSpec, TrafficTarget, TransitionStatus,
};

use crate::error::{Error, Result};
use crate::policy::Policy;
use crate::state::AppState;
use crate::stats::Stats;
use crate::store::events::{self, Change};
use crate::store::{deployments, governance, now, rollouts, versions};

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
    let canary = versions::get(transaction, model, body.canary)?;
    // Every step but the last (all traffic, which waits for production)
    // must fit the share the canary's stage may take.
    let most = policy.max_weight(canary.stage);
    let steps = body.policy.steps().map_err(Error::bad_request)?;
    if let Some(step) = steps.iter().find(|&&step| step < 100 && step > most) {
        return Err(Error::refused(format!(
            "step {step}% is more than version {} in {} may take (its max_weight is {most}%): use steps up to {most}",
            body.canary, canary.stage
        )));
    }
    let mut rollout = judge::begin(model, body.canary, stable, body.policy.clone(), actor, at.now_ms)
        .map_err(Error::bad_request)?;
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

/// Feeds the statistics that arrived since the last look to the rollout's
/// sequential tests, judges its interval when it is over by `now_ms` (or
/// at once, when the evidence against the canary is conclusive), and acts
/// on the verdict.
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
    if rollout.status == RolloutStatus::AwaitingPromotion {
        return finish_awaited_promotion(transaction, policy, rollout);
    }
    if rollout.status != RolloutStatus::Progressing {
        return Ok(None);
    }
    // The due list was read in another transaction: check again.
    let due = now_ms.saturating_sub(rollout.interval_started_ms) >= rollout.policy.interval_ms;
    let seen = rollout.evidence.until_ms;
    let arrived_canary = stats.arrived_between(model, rollout.canary, seen, now_ms);
    let arrived_stable = stats.arrived_between(model, rollout.stable, seen, now_ms);
    if !due && arrived_canary.is_empty() && arrived_stable.is_empty() {
        return Ok(None);
    }
    let deployment_opt = deployments::find(transaction, model)?;
    let Some(deployment) = deployment_opt.filter(|d| d.revision == rollout.deployment_revision) else {
        return abort_changed_by_hand(transaction, rollout).map(Some);
    };
    let conclusive = judge::watch(&mut rollout, &arrived_canary, &arrived_stable, now_ms);
    if !due && conclusive.is_none() {
        rollouts::put(transaction, &rollout)?;
        return Ok(None);
    }
    // The windows that ended in this interval; one ending as it ends (a
    // gateway's take at the same millisecond) is the next interval's.
    let since = rollout.interval_started_ms;
    let canary = stats.between(model, rollout.canary, since, now_ms);
    let stable = stats.between(model, rollout.stable, since, now_ms);
    let result = judge::interval(&rollout, &canary, &stable, conclusive);
    let verdict = result.verdict.clone();
    let reasons = result.reasons.clone();
    let steps = rollout.policy.steps().map_err(Error::Internal)?;
    let mut revision_opt = None;
    let mut finished = false;
    let mut stalled = false;
    match judge::conclude(&mut rollout, &steps, result, now_ms) {
        judge::Next::Hold => {}
        judge::Next::Advance => {
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
        judge::Next::Promote => {
            revision_opt = promote(transaction, policy, ACTOR, &deployment, &mut rollout)?;
            finished = revision_opt.is_some();
        }
        judge::Next::RollBack(why) => {
            revision_opt = Some(roll_back(
                transaction,
                policy,
                ACTOR,
                &deployment,
                &mut rollout,
                &why,
            )?);
            finished = true;
        }
        judge::Next::Stall(why) => {
            stalled = true;
            record(transaction, ACTOR, "rollout.inconclusive", &rollout, Some(&why))?;
        }
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
            revision_opt = promote(transaction, policy, actor, &deployment, &mut rollout)?;
            finished = revision_opt.is_some();
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
        "the local guard of gateway {} saw {} failures (server errors, engine refusals beyond the stable version's, answers slower than twice its p99 and a millisecond more, or answers disagreeing with it) in the last {} requests",
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

/// Gives the canary all traffic if it is in production; otherwise holds it
/// at its share, awaiting production, and opens its production transition
/// for the approvers to act on. A rollout never moves a stage itself: a
/// version enters production only through production's approvals and
/// gates, whoever started the rollout. `None` while it waits.
fn promote(
    transaction: &Transaction<'_>,
    policy: &Policy,
    actor: &str,
    deployment: &Deployment,
    rollout: &mut Rollout,
) -> Result<Option<u64>> {
    let mut canary = versions::get(transaction, &rollout.model, rollout.canary)?;
    if canary.stage != Stage::Production && rollout.status != RolloutStatus::AwaitingPromotion {
        rollout.status = RolloutStatus::AwaitingPromotion;
        let opened = open_production_transition(transaction, policy, rollout, &canary)?;
        let reasons = [format!(
            "version {} is in {}: it holds {}% until it enters production through production's approvals and gates, then takes all traffic; {opened}",
            rollout.canary, canary.stage, rollout.canary_weight
        )];
        record(
            transaction,
            actor,
            "rollout.awaiting_promotion",
            rollout,
            Some(&reasons),
        )?;
        // A production that needs no approval was entered at once.
        canary = versions::get(transaction, &rollout.model, rollout.canary)?;
    }
    if canary.stage != Stage::Production {
        return Ok(None);
    }
    rollout.status = RolloutStatus::Promoted;
    rollout.canary_weight = 100;
    let revision = set_weights(
        transaction,
        policy,
        actor,
        deployment,
        rollout,
        "rollout promoted the canary, in production",
    )?;
    record(transaction, actor, "rollout.promote", rollout, None)?;
    Ok(Some(revision))
}

/// Requests production for the canary in the name of whoever started the
/// rollout, so that approvers find it pending; what happened, for the
/// audit log. A request the rules refuse (a gate, one pending already) is
/// said, not failed: the canary then waits for a person's request.
fn open_production_transition(
    transaction: &Transaction<'_>,
    policy: &Policy,
    rollout: &Rollout,
    canary: &sluice_registry_client::types::Version,
) -> Result<String> {
    let body = RequestTransition {
        to_stage: Stage::Production,
        comment: format!(
            "its rollout asks for production (the canary at {}% against version {})",
            rollout.canary_weight, rollout.stable
        ),
    };
    let refusal = match governance::check_request(transaction, canary, &body) {
        Ok(()) => policy.gate_failures(Stage::Production, &canary.lineage),
        Err(err) => Some(err.to_string()),
    };
    if let Some(refusal) = refusal {
        return Ok(format!(
            "its production transition was not opened ({refusal}): `sluice stage request {} {} production` once that is fixed",
            rollout.model, rollout.canary
        ));
    }
    let transition = governance::request(transaction, policy, &rollout.started_by, canary, &body)?;
    Ok(match transition.status {
        TransitionStatus::Applied => format!(
            "transition {} entered production at once (it needs no approval)",
            transition.id
        ),
        _ => format!(
            "transition {} awaits {} (`sluice stage approve {}`)",
            transition.id,
            transition.missing_approvals.join(" and "),
            transition.id
        ),
    })
}

/// Someone changed the traffic (or removed the deployment) since this
/// rollout's last step: theirs is the last word, and the rollout ends.
fn abort_changed_by_hand(transaction: &Transaction<'_>, mut rollout: Rollout) -> Result<Decided> {
    rollout.status = RolloutStatus::Aborted;
    rollout.updated_at = now();
    rollouts::put(transaction, &rollout)?;
    let reasons = ["the deployment's traffic was changed by hand".to_string()];
    record(transaction, ACTOR, "rollout.abort", &rollout, Some(&reasons))?;
    Ok(Decided {
        rollout,
        revision_opt: None,
        finished: true,
        stalled: false,
    })
}

/// `model`'s rollout, when it awaits production and its canary just
/// entered it: promoted now (called right after the approval).
pub fn promote_if_awaiting(
    transaction: &Transaction<'_>,
    policy: &Policy,
    model: &str,
) -> Result<Option<Decided>> {
    match rollouts::find(transaction, model)? {
        Some(rollout) if rollout.status == RolloutStatus::AwaitingPromotion => {
            finish_awaited_promotion(transaction, policy, rollout)
        }
        _ => Ok(None),
    }
}

/// A rollout awaiting production: promoted once its canary is there (its
/// stage request approved and applied), aborted if the traffic was changed
/// by hand meanwhile.
fn finish_awaited_promotion(
    transaction: &Transaction<'_>,
    policy: &Policy,
    mut rollout: Rollout,
) -> Result<Option<Decided>> {
    let canary = versions::get(transaction, &rollout.model, rollout.canary)?;
    if canary.stage != Stage::Production {
        return Ok(None);
    }
    let deployment_opt = deployments::find(transaction, &rollout.model)?;
    let Some(deployment) = deployment_opt.filter(|d| d.revision == rollout.deployment_revision) else {
        return abort_changed_by_hand(transaction, rollout).map(Some);
    };
    let revision_opt = promote(transaction, policy, ACTOR, &deployment, &mut rollout)?;
    rollout.updated_at = now();
    rollouts::put(transaction, &rollout)?;
    Ok(Some(Decided {
        rollout,
        revision_opt,
        finished: true,
        stalled: false,
    }))
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
        rule: None,
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

/// The controller: every `tick`, feeds each progressing rollout the
/// statistics that arrived, and judges those whose interval is over. Runs
/// until the registry stops.
pub async fn run(state: Arc<AppState>, tick: Duration, mut stopping: tokio::sync::watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = stopping.wait_for(|stopped| *stopped) => return,
        }
        let now = state.clock.now_ms();
        let stats = state.stats.clone();
        let due = state
            .blocking(move |store, _| {
                let active = store.read(rollouts::active)?;
                Ok(active
                    .into_iter()
                    .filter(|rollout| {
                        // One awaiting production is looked at every tick: its
                        // canary may have entered production since.
                        rollout.status == RolloutStatus::AwaitingPromotion
                            || rollout.status == RolloutStatus::Progressing
                                && (now.saturating_sub(rollout.interval_started_ms)
                                    >= rollout.policy.interval_ms
                                    || stats.arrived_after(&rollout.model, rollout.evidence.until_ms))
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
