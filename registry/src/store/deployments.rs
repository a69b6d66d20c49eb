//! Deployments: the desired traffic of each endpoint, under one
//! registry-wide revision that every change bumps (what gateways watch).
//!
//! Writes are compare-and-swap on the deployment's own revision
//! (`if_revision`), so of two racing release tools one wins and the other
//! gets 409 and re-reads.

use std::collections::BTreeSet;

use super::sql::{Connection, OptionalExtension, Transaction, params};
use sluice_registry_client::types::{
    DeployedVersion, Deployment, Deployments, SetDeployment, Stage, TrafficSpec,
};

use super::events::{self, Change};
use super::{from_json, models, now, to_i64, to_json, to_u64, versions};
use crate::error::{Error, Result};
use crate::policy::Policy;

/// The registry-wide revision: bumped by every deployment change.
pub fn revision(connection: &Connection<'_>) -> Result<u64> {
    let value: i64 = connection.query_row(
        "SELECT value FROM counters WHERE name = 'deployments_revision'",
        params![],
        |row| row.get(0),
    )?;
    Ok(to_u64(value))
}

fn bump_revision(transaction: &Transaction<'_>) -> Result<u64> {
    transaction.execute(
        "UPDATE counters SET value = value + 1 WHERE name = 'deployments_revision'",
        params![],
    )?;
    revision(transaction)
}

pub fn set(
    transaction: &Transaction<'_>,
    policy: &Policy,
    actor: &str,
    model: &str,
    body: &SetDeployment,
) -> Result<Deployment> {
    models::get(transaction, model)?;
    let before = find(transaction, model)?;
    check_revision(model, before.as_ref(), body.if_revision)?;
    let spec = body.spec();
    let rule = check_spec(transaction, policy, model, &spec)?;
    let revision = bump_revision(transaction)?;
    transaction.execute(
        "INSERT INTO deployments (model, revision, spec, updated_at, updated_by) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (model) DO UPDATE SET
            revision = excluded.revision, spec = excluded.spec,
            updated_at = excluded.updated_at, updated_by = excluded.updated_by",
        params![model, to_i64(revision)?, to_json(&spec)?, now(), actor],
    )?;
    let after = find(transaction, model)?
        .ok_or_else(|| Error::Internal("a deployment vanished inside its transaction".into()))?;
    let change = Change {
        actor,
        action: "deployment.set",
        subject: model.to_string(),
        reason: body.reason.as_deref(),
        rule: Some(rule),
    };
    events::append(transaction, change, before.as_ref(), Some(&after))?;
    Ok(after)
}

/// Removes the endpoint's deployment: gateways stop serving it.
pub fn delete(
    transaction: &Transaction<'_>,
    actor: &str,
    model: &str,
    if_revision_opt: Option<u64>,
    reason_opt: Option<&str>,
) -> Result<()> {
    let before = find(transaction, model)?
        .ok_or_else(|| Error::not_found(format!("model '{model}' has no deployment")))?;
    check_revision(model, Some(&before), if_revision_opt)?;
    bump_revision(transaction)?;
    transaction.execute("DELETE FROM deployments WHERE model = ?1", [model])?;
    let change = Change {
        actor,
        action: "deployment.delete",
        subject: model.to_string(),
        reason: reason_opt,
        rule: None,
    };
    events::append(transaction, change, Some(&before), None::<&()>)?;
    Ok(())
}

fn check_revision(model: &str, current: Option<&Deployment>, if_revision_opt: Option<u64>) -> Result<()> {
    let Some(expected) = if_revision_opt else {
        return Ok(());
    };
    let actual = current.map_or(0, |deployment| deployment.revision);
    if actual != expected {
        return Err(Error::conflict(format!(
            "the deployment of '{model}' is at revision {actual}, not {expected}: read it again and retry"
        )));
    }
    Ok(())
}

/// Checks a spec against the policy; the rules that allowed it, for the
/// audit log (`deployable_stages staging, production; 3 production up to 100%`).
fn check_spec(
    connection: &Connection<'_>,
    policy: &Policy,
    model: &str,
    spec: &TrafficSpec,
) -> Result<String> {
    if spec.targets.is_empty() {
        return Err(Error::bad_request(
            "targets is empty: expected at least one {version, weight}",
        ));
    }
    let now = now();
    let mut allowed = Vec::new();
    let mut seen = BTreeSet::new();
    let mut total: u64 = 0;
    for target in &spec.targets {
        if !seen.insert(target.version) {
            return Err(Error::bad_request(format!(
                "version {} appears twice in targets",
                target.version
            )));
        }
        total += u64::from(target.weight);
        let version = versions::get(connection, model, target.version)?;
        // Weight 0 too: a target is loaded and may be pinned by path.
        if !versions::may_take_traffic(policy, &version, &now) {
            let window = match &version.rollback_until {
                Some(until) => format!(" (its rollback window closed at {until})"),
                None => String::new(),
            };
            return Err(Error::refused(format!(
                "version {} of '{model}' is in stage {}{window}; only {} versions may take traffic",
                target.version,
                version.stage,
                policy.deployable_names()
            )));
        }
        allowed.push(match &version.rollback_until {
            Some(until) if !policy.is_deployable(version.stage) => {
                format!(
                    "{} {} until {until} (rollback window)",
                    target.version, version.stage
                )
            }
            _ => format!(
                "{} {} up to {}%",
                target.version,
                version.stage,
                policy.max_weight(version.stage)
            ),
        });
        let most = policy.max_weight(version.stage);
        if target.weight > most {
            return Err(Error::refused(format!(
                "version {} of '{model}' is in {}, whose versions may take at most {most}% of the traffic (the policy's max_weight); it asks for {}%",
                target.version, version.stage, target.weight
            )));
        }
    }
    if total != 100 {
        return Err(Error::bad_request(format!(
            "weights add up to {total}: expected 100"
        )));
    }
    if let Some(shadow) = &spec.shadow {
        // 0 is allowed: a shadow kept loaded but paused.
        if !(0.0..=1.0).contains(&shadow.sample_rate) {
            return Err(Error::bad_request(format!(
                "shadow sample_rate is {}: expected a fraction from 0 to 1",
                shadow.sample_rate
            )));
        }
        if seen.contains(&shadow.version) {
            return Err(Error::bad_request(format!(
                "shadow version {} is also a target: a shadow must be a version that takes no traffic",
                shadow.version
            )));
        }
        let version = versions::get(connection, model, shadow.version)?;
        if version.stage == Stage::Archived && !versions::may_take_traffic(policy, &version, &now) {
            return Err(Error::refused(format!(
                "shadow version {} of '{model}' is archived",
                shadow.version
            )));
        }
    }
    if let Some(batching) = &spec.batching {
        batching.validate().map_err(Error::bad_request)?;
    }
    if let Some(warmup) = &spec.warmup {
        warmup.validate().map_err(Error::bad_request)?;
    }
    if let Some(rate) = spec.log_sample_rate
        && !(0.0..=1.0).contains(&rate)
    {
        return Err(Error::bad_request(format!(
            "log_sample_rate is {rate}: expected a fraction from 0 (outputs only) to 1"
        )));
    }
    if let Some(header) = &spec.sticky_header {
        let valid = !header.is_empty()
            && header
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !valid {
            return Err(Error::bad_request(format!(
                "sticky_header '{header}' is not a header name: expected lowercase letters, digits, '-' or '_'"
            )));
        }
    }
    if let Some(rollout) = &spec.rollout
        && !rollout.is_object()
    {
        return Err(Error::bad_request("rollout must be a JSON object"));
    }
    Ok(format!(
        "deployable_stages {}; {}",
        policy.deployable_names(),
        allowed.join(", ")
    ))
}

pub fn find(connection: &Connection<'_>, model: &str) -> Result<Option<Deployment>> {
    let row = connection
        .query_row(
            "SELECT revision, spec, updated_at, updated_by FROM deployments WHERE model = ?1",
            [model],
            |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, String>(3)?,
                ))
            },
        )
        .optional()?;
    let Some((revision, spec, updated_at, updated_by)) = row else {
        return Ok(None);
    };
    let spec: TrafficSpec = from_json(&spec)?;
    let mut numbers: BTreeSet<u64> = spec.targets.iter().map(|target| target.version).collect();
    numbers.extend(spec.shadow.iter().map(|shadow| shadow.version));
    let versions = numbers
        .into_iter()
        .map(|number| {
            let version = versions::get(connection, model, number)?;
            Ok(DeployedVersion {
                version: number,
                sha256: version.sha256,
                size: version.size,
                slice: version.lineage.slice,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Some(Deployment {
        model: model.to_string(),
        revision: to_u64(revision),
        spec,
        versions,
        updated_at,
        updated_by,
    }))
}

/// Every deployment, at the revision they were read at (one snapshot).
pub fn list(connection: &Connection<'_>) -> Result<Deployments> {
    let revision = revision(connection)?;
    let mut statement = connection.prepare("SELECT model FROM deployments ORDER BY model")?;
    let names = statement
        .query_map(params![], |row| row.get::<_, String>(0))?
        .collect::<crate::store::sql::SqlResult<Vec<_>>>()?;
    let mut deployments = Vec::with_capacity(names.len());
    for name in names {
        deployments.extend(find(connection, &name)?);
    }
    Ok(Deployments {
        revision,
        deployments,
    })
}

/// Versions of `model` its deployment names: targets (any weight) and shadow.
pub fn deployed_versions(connection: &Connection<'_>, model: &str) -> Result<Vec<u64>> {
    Ok(find(connection, model)?
        .map(|deployment| {
            deployment
                .versions
                .iter()
                .map(|deployed| deployed.version)
                .collect()
        })
        .unwrap_or_default())
}
