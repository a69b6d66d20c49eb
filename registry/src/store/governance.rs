//! Stage transitions: requested, reviewed by approvers, applied when the
//! policy's approvals are all given and its gates pass.
//!
//! One transition may be pending per version. Each actor reviews a request
//! once, and each kind of approval counts once, so "technical and business"
//! means two people. A rejection closes the request.

use super::sql::{Connection, OptionalExtension, Row, Transaction, params};
use sluice_registry_client::types::{
    Decision, RequestTransition, Review, ReviewTransition, Stage, Transition, TransitionStatus, Version,
};

use super::events::{self, Change};
use super::{deployments, now, to_i64, to_u64, versions};
use crate::error::{Error, Result};
use crate::policy::Policy;

pub fn request(
    transaction: &Transaction<'_>,
    policy: &Policy,
    actor: &str,
    version: &Version,
    body: &RequestTransition,
) -> Result<Transition> {
    check_request(transaction, version, body)?;
    if let Some(failure) = policy.gate_failures(body.to_stage, &version.lineage) {
        return Err(Error::refused(failure));
    }
    check_traffic(transaction, policy, version, body.to_stage)?;
    insert_request(transaction, policy, actor, version, body)
}

/// What refuses a request before any gate is looked at: the stage it is in
/// already, `none`, or a request still pending.
pub fn check_request(connection: &Connection<'_>, version: &Version, body: &RequestTransition) -> Result<()> {
    let (model, number) = (&version.model, version.version);
    if body.to_stage == version.stage {
        return Err(Error::conflict(format!(
            "version {number} of '{model}' is already in {}",
            version.stage
        )));
    }
    if body.to_stage == Stage::None {
        return Err(Error::bad_request(
            "to_stage 'none' is not a transition: expected staging, production or archived",
        ));
    }
    if let Some(pending) = pending_for(connection, model, number)? {
        return Err(Error::conflict(format!(
            "transition {} of version {number} of '{model}' to {} is still pending: approve or reject it first",
            pending.id, pending.to_stage
        )));
    }
    Ok(())
}

/// Records a transition request that passed every check.
fn insert_request(
    transaction: &Transaction<'_>,
    policy: &Policy,
    actor: &str,
    version: &Version,
    body: &RequestTransition,
) -> Result<Transition> {
    let (model, number) = (&version.model, version.version);
    let id: i64 = transaction.query_row(
        "INSERT INTO transitions (model, version, from_stage, to_stage, status, requested_by, requested_at, comment)
         VALUES (?1, ?2, ?3, ?4, 'pending', ?5, ?6, ?7) RETURNING id",
        params![
            model,
            to_i64(number)?,
            version.stage.as_str(),
            body.to_stage.as_str(),
            actor,
            now(),
            body.comment
        ],
        |row| row.get(0),
    )?;
    let id = to_u64(id);
    let mut transition = get(transaction, policy, id)?;
    let change = Change {
        actor,
        action: "transition.request",
        subject: format!("transition/{id}"),
        reason: Some(&body.comment),
        rule: None,
    };
    events::append(transaction, change, None::<&()>, Some(&transition))?;
    // A stage that needs no approval is entered at once.
    if transition.missing_approvals.is_empty() {
        transition = apply(transaction, policy, actor, transition)?;
    }
    Ok(transition)
}

pub fn review(
    transaction: &Transaction<'_>,
    policy: &Policy,
    actor: &str,
    id: u64,
    decision: Decision,
    body: &ReviewTransition,
) -> Result<Transition> {
    let before = get(transaction, policy, id)?;
    if before.status != TransitionStatus::Pending {
        return Err(Error::conflict(format!(
            "transition {id} is {}, not pending",
            before.status
        )));
    }
    if let Some(done) = before.reviews.iter().find(|review| review.actor == actor) {
        return Err(Error::conflict(format!(
            "{actor} already reviewed transition {id} ({}): each approval needs a different approver",
            done.approval.as_deref().unwrap_or("rejected")
        )));
    }
    let rule = policy.rule(before.to_stage);
    if decision == Decision::Approve && actor == before.requested_by && !rule.requester_may_approve {
        return Err(Error::Forbidden(format!(
            "{actor} requested transition {id}: someone else must approve it (the policy for {} says so)",
            before.to_stage
        )));
    }
    let approval_opt = match decision {
        Decision::Reject => None,
        Decision::Approve => Some(check_approval(policy, &before, body)?),
    };
    let decision_text = match decision {
        Decision::Approve => "approve",
        Decision::Reject => "reject",
    };
    transaction.execute(
        "INSERT INTO reviews (transition_id, actor, decision, approval, comment, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![to_i64(id)?, actor, decision_text, approval_opt, body.comment, now()],
    )?;
    if decision == Decision::Reject {
        set_status(transaction, id, TransitionStatus::Rejected)?;
    }
    let mut after = get(transaction, policy, id)?;
    let change = Change {
        actor,
        action: if decision == Decision::Reject {
            "transition.reject"
        } else {
            "transition.approve"
        },
        subject: format!("transition/{id}"),
        reason: Some(&body.comment),
        rule: None,
    };
    events::append(transaction, change, Some(&before), Some(&after))?;
    if after.status == TransitionStatus::Pending && after.missing_approvals.is_empty() {
        after = apply(transaction, policy, actor, after)?;
    }
    Ok(after)
}

/// The approval kind this review gives: named, or the only one still missing.
fn check_approval(policy: &Policy, transition: &Transition, body: &ReviewTransition) -> Result<String> {
    let needed = policy.rule(transition.to_stage).approvals;
    let approval = match (&body.approval, transition.missing_approvals.as_slice()) {
        (Some(approval), _) => approval.clone(),
        (None, [only]) => only.clone(),
        (None, _) => {
            return Err(Error::bad_request(format!(
                "say which approval this is: expected one of {}",
                transition.missing_approvals.join(", ")
            )));
        }
    };
    if !needed.contains(&approval) {
        return Err(Error::bad_request(format!(
            "{} needs no '{approval}' approval: expected one of {}",
            transition.to_stage,
            needed.join(", ")
        )));
    }
    if !transition.missing_approvals.contains(&approval) {
        return Err(Error::conflict(format!(
            "transition {} already has its '{approval}' approval",
            transition.id
        )));
    }
    Ok(approval)
}

/// Moves the version into the target stage. Gates and traffic are checked
/// again: a deployment may have changed since the request.
fn apply(
    transaction: &Transaction<'_>,
    policy: &Policy,
    actor: &str,
    transition: Transition,
) -> Result<Transition> {
    let version = versions::get(transaction, &transition.model, transition.version)?;
    if let Some(failure) = policy.gate_failures(transition.to_stage, &version.lineage) {
        return Err(Error::refused(failure));
    }
    check_traffic(transaction, policy, &version, transition.to_stage)?;
    versions::set_stage(transaction, &version.model, version.version, transition.to_stage)?;
    set_status(transaction, transition.id, TransitionStatus::Applied)?;
    let after = versions::get(transaction, &version.model, version.version)?;
    let approvers: Vec<String> = transition
        .reviews
        .iter()
        .filter_map(|review| {
            review
                .approval
                .as_ref()
                .map(|kind| format!("{kind} by {}", review.actor))
        })
        .collect();
    let given = if approvers.is_empty() {
        String::new()
    } else {
        format!(" (given: {})", approvers.join(", "))
    };
    let change = Change {
        actor,
        action: "version.stage",
        subject: format!("{}/{}", version.model, version.version),
        reason: Some(&transition.comment),
        rule: Some(format!("{}{given}", policy.describe_rule(transition.to_stage))),
    };
    events::append(transaction, change, Some(&version), Some(&after))?;
    retire_beyond_max(transaction, policy, actor, &after)?;
    get(transaction, policy, transition.id)
}

/// When `entered` makes its stage hold more versions than the policy's
/// `max_versions`, the oldest others leave it: archived, but deployable
/// for the rollback window, so that traffic can still go back to them.
fn retire_beyond_max(
    transaction: &Transaction<'_>,
    policy: &Policy,
    actor: &str,
    entered: &Version,
) -> Result<()> {
    let Some(most) = policy.max_versions(entered.stage) else {
        return Ok(());
    };
    let mut others: Vec<Version> = versions::list(transaction, &entered.model)?
        .into_iter()
        .filter(|version| version.stage == entered.stage && version.version != entered.version)
        .collect();
    // Newest first: the newest keep their place.
    others.sort_by_key(|version| std::cmp::Reverse(version.version));
    let keep = usize::try_from(most).unwrap_or(usize::MAX).saturating_sub(1);
    let window = std::time::Duration::from_millis(policy.rollback_window_ms);
    let until = humantime::format_rfc3339_millis(std::time::SystemTime::now() + window).to_string();
    for version in others.iter().skip(keep) {
        let reason = format!(
            "version {} entered {}; deployable for a rollback until {until}",
            entered.version, entered.stage
        );
        let rule = format!(
            "stages.{}.max_versions = {most}; rollback_window_ms = {}",
            entered.stage, policy.rollback_window_ms
        );
        versions::retire(transaction, actor, version, &until, &reason, rule)?;
    }
    Ok(())
}

/// A version its deployment names may not leave the deployable stages.
fn check_traffic(
    transaction: &Transaction<'_>,
    policy: &Policy,
    version: &Version,
    to_stage: Stage,
) -> Result<()> {
    if policy.is_deployable(to_stage) {
        return Ok(());
    }
    let deployed = deployments::deployed_versions(transaction, &version.model)?;
    if deployed.contains(&version.version) {
        return Err(Error::conflict(format!(
            "version {} of '{}' is in its deployment; take it out of the deployment before it enters {to_stage}",
            version.version, version.model
        )));
    }
    Ok(())
}

fn set_status(transaction: &Transaction<'_>, id: u64, status: TransitionStatus) -> Result<()> {
    transaction.execute(
        "UPDATE transitions SET status = ?2 WHERE id = ?1",
        params![to_i64(id)?, status.to_string()],
    )?;
    Ok(())
}

fn pending_for(connection: &Connection<'_>, model: &str, version: u64) -> Result<Option<Transition>> {
    let id: Option<i64> = connection
        .query_row(
            "SELECT id FROM transitions WHERE model = ?1 AND version = ?2 AND status = 'pending'",
            params![model, to_i64(version)?],
            |row| row.get(0),
        )
        .optional()?;
    id.map(|id| get(connection, &Policy::default(), to_u64(id)))
        .transpose()
}

const SELECT: &str =
    "SELECT id, model, version, from_stage, to_stage, status, requested_by, requested_at, comment
    FROM transitions";

pub fn get(connection: &Connection<'_>, policy: &Policy, id: u64) -> Result<Transition> {
    let transition = connection
        .query_row(&format!("{SELECT} WHERE id = ?1"), [to_i64(id)?], read_row)
        .optional()?
        .transpose()?
        .ok_or_else(|| Error::not_found(format!("unknown transition {id}")))?;
    with_reviews(connection, policy, transition)
}

/// Newest first, at most 500.
pub fn list(
    connection: &Connection<'_>,
    policy: &Policy,
    model_opt: Option<&str>,
    status_opt: Option<TransitionStatus>,
) -> Result<Vec<Transition>> {
    let status = status_opt.map(|status| status.to_string());
    let mut statement = connection.prepare(&format!(
        "{SELECT} WHERE (CAST(?1 AS TEXT) IS NULL OR model = ?1) AND (CAST(?2 AS TEXT) IS NULL OR status = ?2) ORDER BY id DESC LIMIT 500"
    ))?;
    let rows = statement.query_map(params![model_opt, status], read_row)?;
    let mut transitions = Vec::new();
    for row in rows {
        transitions.push(with_reviews(connection, policy, row??)?);
    }
    Ok(transitions)
}

fn read_row(row: &Row) -> crate::store::sql::SqlResult<Result<Transition>> {
    let parse_stage = |text: String| -> Result<Stage> {
        text.parse()
            .map_err(|err: String| Error::Internal(format!("stored stage: {err}")))
    };
    let status: String = row.get(5)?;
    let from_stage: String = row.get(3)?;
    let to_stage: String = row.get(4)?;
    let transition = (|| {
        Ok(Transition {
            id: to_u64(row.get(0)?),
            model: row.get(1)?,
            version: to_u64(row.get(2)?),
            from_stage: parse_stage(from_stage)?,
            to_stage: parse_stage(to_stage)?,
            status: serde_json::from_value(serde_json::Value::String(status))?,
            requested_by: row.get(6)?,
            requested_at: row.get(7)?,
            comment: row.get(8)?,
            reviews: Vec::new(),
            missing_approvals: Vec::new(),
        })
    })();
    Ok(transition)
}

fn with_reviews(
    connection: &Connection<'_>,
    policy: &Policy,
    mut transition: Transition,
) -> Result<Transition> {
    let mut statement = connection.prepare(
        "SELECT actor, decision, approval, comment, at FROM reviews WHERE transition_id = ?1 ORDER BY at, actor",
    )?;
    let rows = statement.query_map([to_i64(transition.id)?], |row| {
        Ok((
            row.get::<_, String>(0)?,
            row.get::<_, String>(1)?,
            row.get::<_, Option<String>>(2)?,
            row.get::<_, String>(3)?,
            row.get::<_, String>(4)?,
        ))
    })?;
    for row in rows {
        let (actor, decision, approval, comment, at) = row?;
        transition.reviews.push(Review {
            actor,
            decision: serde_json::from_value(serde_json::Value::String(decision))?,
            approval,
            comment,
            at,
        });
    }
    if transition.status == TransitionStatus::Pending {
        transition.missing_approvals = policy
            .rule(transition.to_stage)
            .approvals
            .into_iter()
            .filter(|kind| {
                !transition
                    .reviews
                    .iter()
                    .any(|review| review.approval.as_ref() == Some(kind))
            })
            .collect();
    }
    Ok(transition)
}
