//! What follows a succeeded run: the automatic canary of the version it
//! registered, or why it was refused.

use sluice_registry_client::rollout::StartRollout;
use sluice_registry_client::trigger::{RunStatus, TriggerRun};

use crate::error::{Error, Result};
use crate::policy::Policy;
use crate::store::sql::Transaction;
use crate::store::{triggers, versions};

use super::runs::record;

/// Runs that registered a version whose policy asks for a canary of it,
/// and that have not tried yet.
pub fn canary_candidates(connection: &crate::store::sql::Connection<'_>) -> Result<Vec<TriggerRun>> {
    let mut candidates = Vec::new();
    for run in triggers::with_status(connection, &[RunStatus::Succeeded])? {
        if run.result_version.is_none() || run.rollout.is_some() {
            continue;
        }
        if triggers::find_policy(connection, &run.model)?.is_some_and(|policy| policy.rollout.is_some()) {
            candidates.push(run);
        }
    }
    Ok(candidates)
}

/// Starts the canary of the version run `id` registered, once that version
/// has reached a stage that may take traffic (`None` until then).
pub fn start_canary(
    transaction: &Transaction<'_>,
    governance: &Policy,
    id: u64,
    at: crate::rollout::StartAt,
) -> Result<Option<crate::rollout::Decided>> {
    let before = triggers::get(transaction, id)?;
    let (Some(version), Some(policy)) = (
        before.result_version,
        triggers::find_policy(transaction, &before.model)?.and_then(|policy| policy.rollout),
    ) else {
        return Ok(None);
    };
    let candidate = versions::get(transaction, &before.model, version)?;
    if !governance.deployable_stages.contains(&candidate.stage) {
        return Ok(None);
    }
    let body = StartRollout {
        canary: version,
        policy,
    };
    let decided = crate::rollout::start(transaction, governance, "trigger", &before.model, &body, at)?;
    let mut run = before.clone();
    run.rollout = Some(format!(
        "canary of version {version} started at weight {}",
        decided.rollout.canary_weight
    ));
    triggers::update(transaction, &run)?;
    record(transaction, "trigger", "trigger.canary", &run, Some(&before))?;
    Ok(Some(decided))
}

/// Records why the canary could not start (another rollout is on...), so
/// that it is not tried again at every tick.
pub fn refuse_canary(transaction: &Transaction<'_>, id: u64, why: &Error) -> Result<()> {
    let before = triggers::get(transaction, id)?;
    let mut run = before.clone();
    run.rollout = Some(format!(
        "canary of version {} not started: {why}",
        run.result_version.unwrap_or_default()
    ));
    triggers::update(transaction, &run)?;
    record(transaction, "trigger", "trigger.canary", &run, Some(&before))
}
