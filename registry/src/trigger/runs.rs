//! A run's stored life: fired (once per idempotency key, within the
//! cooldown and the concurrency cap), settled, expired; each step a
//! stored change with its event.

use serde_json::Value;
use sluice_registry_client::trigger::{RunStatus, TriggerRun};

use crate::error::{Error, Result};
use crate::store::events::{self, Change};
use crate::store::sql::Transaction;
use crate::store::{now, triggers};

use super::{FIRED, SKIPPED};

/// What asking for a run came to.
#[derive(Debug)]
pub enum Fired {
    New(TriggerRun),
    /// A run with this idempotency key exists: it is the answer.
    Existing(TriggerRun),
    /// Not fired, and why (cooldown, concurrency cap).
    Skipped(String),
}

/// A run to fire.
pub struct Firing<'a> {
    pub actor: &'a str,
    pub model: &'a str,
    pub reason: &'a str,
    pub evidence: Value,
    pub window: (u64, u64),
    pub idempotency_key: String,
    /// When it fires (Unix milliseconds): what the cooldown counts from.
    pub now_ms: u64,
}

/// Fires a run, in one transaction with its event: once per key, and
/// (for automatic reasons) not within the cooldown.
pub fn fire(transaction: &Transaction<'_>, firing: Firing<'_>) -> Result<Fired> {
    let Firing {
        actor,
        model,
        reason,
        evidence,
        window,
        idempotency_key,
        now_ms: now_at,
    } = firing;
    if let Some(existing) = triggers::find_by_key(transaction, &idempotency_key)? {
        return Ok(Fired::Existing(existing));
    }
    let policy = triggers::find_policy(transaction, model)?.ok_or_else(|| {
        Error::conflict(format!(
            "'{model}' has no trigger policy: set one with `sluice triggers set {model} FILE`"
        ))
    })?;
    if reason != "manual"
        && let Some(last) = triggers::last_automatic(transaction, model)?
        && now_at.saturating_sub(last.created_ms) < policy.cooldown_ms
    {
        metrics::counter!(SKIPPED, "model" => model.to_string(), "why" => "cooldown").increment(1);
        return Ok(Fired::Skipped(format!(
            "run {} fired {} s ago, within the cooldown of {} s",
            last.id,
            now_at.saturating_sub(last.created_ms) / 1000,
            policy.cooldown_ms / 1000
        )));
    }
    let active = triggers::active_count(transaction, model)?;
    if active >= policy.max_concurrent {
        metrics::counter!(SKIPPED, "model" => model.to_string(), "why" => "concurrency").increment(1);
        return Ok(Fired::Skipped(format!(
            "{active} run(s) of '{model}' are in progress, the policy's max_concurrent is {}",
            policy.max_concurrent
        )));
    }
    let base_version = serving_version(transaction, model)?
        .ok_or_else(|| Error::conflict(format!("'{model}' has no deployment: nothing to retrain from")))?;
    let run = TriggerRun {
        id: 0,
        model: model.to_string(),
        base_version,
        reason: reason.to_string(),
        evidence,
        window_start_ms: window.0,
        window_end_ms: window.1,
        idempotency_key,
        status: RunStatus::Dispatching,
        attempts: 0,
        detail: None,
        result_version: None,
        rollout: None,
        fired_by: actor.to_string(),
        created_at: now(),
        created_ms: now_at,
        finished_at: None,
    };
    let run = triggers::insert(transaction, &run)?;
    record(transaction, actor, "trigger.fire", &run, None)?;
    metrics::counter!(FIRED, "model" => model.to_string(), "reason" => reason.to_string()).increment(1);
    Ok(Fired::New(run))
}

/// The version taking most of `model`'s traffic (the newer on a tie).
pub fn serving_version(connection: &crate::store::sql::Connection<'_>, model: &str) -> Result<Option<u64>> {
    Ok(
        crate::store::deployments::find(connection, model)?.and_then(|deployment| {
            deployment
                .spec
                .targets
                .iter()
                .max_by_key(|target| (target.weight, target.version))
                .map(|target| target.version)
        }),
    )
}

pub(super) fn record(
    transaction: &Transaction<'_>,
    actor: &str,
    action: &str,
    run: &TriggerRun,
    before: Option<&TriggerRun>,
) -> Result<()> {
    let change = Change {
        actor,
        action,
        subject: format!("{}/trigger/{}", run.model, run.id),
        reason: Some(&run.reason),
        rule: None,
    };
    events::append(transaction, change, before, Some(run))?;
    Ok(())
}

/// Moves a run to `status` (a finished one keeps its end), with its event.
pub fn settle(
    transaction: &Transaction<'_>,
    actor: &str,
    id: u64,
    status: RunStatus,
    detail: Option<String>,
) -> Result<TriggerRun> {
    let before = triggers::get(transaction, id)?;
    if !before.status.is_active() {
        return Err(Error::conflict(format!(
            "trigger run {id} is {} already",
            before.status.as_str()
        )));
    }
    let mut run = before.clone();
    run.status = status;
    run.detail = detail.or(run.detail);
    if !status.is_active() {
        run.finished_at = Some(now());
    }
    triggers::update(transaction, &run)?;
    record(
        transaction,
        actor,
        &format!("trigger.{}", status.as_str()),
        &run,
        Some(&before),
    )?;
    Ok(run)
}

/// Runs that outlived their policy's `run_timeout_ms` by `now` (Unix
/// milliseconds) stop counting.
pub fn expire(transaction: &Transaction<'_>, now: u64) -> Result<Vec<TriggerRun>> {
    let mut expired = Vec::new();
    for run in triggers::with_status(transaction, &[RunStatus::Running, RunStatus::Dispatching])? {
        let Some(policy) = triggers::find_policy(transaction, &run.model)? else {
            continue;
        };
        if now.saturating_sub(run.created_ms) > policy.run_timeout_ms {
            let detail = format!("no version registered within {} s", policy.run_timeout_ms / 1000);
            expired.push(settle(
                transaction,
                "trigger",
                run.id,
                RunStatus::Expired,
                Some(detail),
            )?);
        }
    }
    Ok(expired)
}
