//! Training trigger policies (one per model) and runs, each stored whole as
//! JSON beside the columns they are looked up by.

use super::sql::{Connection, Dialect, OptionalExtension, Transaction, params};
use sluice_registry_client::trigger::{RunStatus, TriggerPolicy, TriggerRun, TriggerState};

use super::{from_json, now, to_i64, to_json, to_u64};
use crate::error::{Error, Result};

pub fn put_policy(
    transaction: &Transaction<'_>,
    actor: &str,
    model: &str,
    policy: &TriggerPolicy,
) -> Result<()> {
    transaction.execute(
        "INSERT INTO trigger_policies (model, policy, updated_at, updated_by) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (model) DO UPDATE SET policy = excluded.policy,
             updated_at = excluded.updated_at, updated_by = excluded.updated_by",
        params![model, to_json(policy)?, now(), actor],
    )?;
    Ok(())
}

pub fn delete_policy(transaction: &Transaction<'_>, model: &str) -> Result<bool> {
    Ok(transaction.execute("DELETE FROM trigger_policies WHERE model = ?1", [model])? > 0)
}

pub fn find_policy(connection: &Connection<'_>, model: &str) -> Result<Option<TriggerPolicy>> {
    connection
        .query_row(
            "SELECT policy FROM trigger_policies WHERE model = ?1",
            [model],
            |row| row.get::<_, String>(0),
        )
        .optional()?
        .map(|policy| from_json(&policy))
        .transpose()
}

/// Every stored policy as its JSON text, by model: what a release that
/// changed the policy's shape reads before it can parse them.
pub fn policy_texts(connection: &Connection<'_>) -> Result<Vec<(String, String)>> {
    let mut statement = connection.prepare("SELECT model, policy FROM trigger_policies ORDER BY model")?;
    let rows = statement
        .query_map(params![], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
        })?
        .collect::<crate::store::sql::SqlResult<Vec<_>>>()?;
    Ok(rows)
}

/// Every model's policy with its latest run, by model name.
pub fn states(connection: &Connection<'_>) -> Result<Vec<TriggerState>> {
    let mut statement = connection
        .prepare("SELECT model, policy, updated_at, updated_by FROM trigger_policies ORDER BY model")?;
    let rows = statement
        .query_map(params![], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, String>(3)?,
            ))
        })?
        .collect::<crate::store::sql::SqlResult<Vec<_>>>()?;
    let mut states = Vec::with_capacity(rows.len());
    for (model, policy, updated_at, updated_by) in rows {
        states.push(TriggerState {
            active_runs: active_count(connection, &model)?,
            last_run: list(connection, Some(&model), 1)?.into_iter().next(),
            model,
            policy: from_json(&policy)?,
            updated_at,
            updated_by,
            progress: Vec::new(),
        });
    }
    Ok(states)
}

pub fn find_by_key(connection: &Connection<'_>, key: &str) -> Result<Option<TriggerRun>> {
    connection
        .query_row(
            "SELECT state FROM trigger_runs WHERE idempotency_key = ?1",
            [key],
            |row| row.get::<_, String>(0),
        )
        .optional()?
        .map(|state| from_json(&state))
        .transpose()
}

pub fn get(connection: &Connection<'_>, id: u64) -> Result<TriggerRun> {
    connection
        .query_row(
            "SELECT state FROM trigger_runs WHERE id = ?1",
            [to_i64(id)?],
            |row| row.get::<_, String>(0),
        )
        .optional()?
        .map(|state| from_json(&state))
        .transpose()?
        .ok_or_else(|| Error::not_found(format!("no trigger run {id}")))
}

/// Stores a new run (its `id` is assigned here) and returns it.
pub fn insert(transaction: &Transaction<'_>, run: &TriggerRun) -> Result<TriggerRun> {
    let id: i64 = transaction.query_row(
        "INSERT INTO trigger_runs (model, idempotency_key, status, state) VALUES (?1, ?2, ?3, '{}') RETURNING id",
        params![run.model, run.idempotency_key, run.status.as_str()],
        |row| row.get(0),
    )?;
    let mut stored = run.clone();
    stored.id = to_u64(id);
    update(transaction, &stored)?;
    Ok(stored)
}

pub fn update(transaction: &Transaction<'_>, run: &TriggerRun) -> Result<()> {
    transaction.execute(
        "UPDATE trigger_runs SET status = ?2, state = ?3 WHERE id = ?1",
        params![to_i64(run.id)?, run.status.as_str(), state_json(run)?],
    )?;
    Ok(())
}

/// Runs dispatching or running for `model`.
pub fn active_count(connection: &Connection<'_>, model: &str) -> Result<u32> {
    let count: i64 = connection.query_row(
        "SELECT COUNT(*) FROM trigger_runs WHERE model = ?1 AND status IN ('dispatching', 'running')",
        [model],
        |row| row.get(0),
    )?;
    Ok(u32::try_from(count).unwrap_or(u32::MAX))
}

/// Runs in one of `statuses`, oldest first.
pub fn with_status(connection: &Connection<'_>, statuses: &[RunStatus]) -> Result<Vec<TriggerRun>> {
    let mut runs = Vec::new();
    let mut statement = connection.prepare("SELECT state FROM trigger_runs WHERE status = ?1 ORDER BY id")?;
    for status in statuses {
        let states = statement
            .query_map([status.as_str()], |row| row.get::<_, String>(0))?
            .collect::<crate::store::sql::SqlResult<Vec<_>>>()?;
        for state in states {
            runs.push(from_json(&state)?);
        }
    }
    runs.sort_by_key(|run: &TriggerRun| run.id);
    Ok(runs)
}

/// The newest runs first, of one model or all.
pub fn list(connection: &Connection<'_>, model_opt: Option<&str>, limit: u32) -> Result<Vec<TriggerRun>> {
    let mut statement = connection
        .prepare("SELECT state FROM trigger_runs WHERE CAST(?1 AS TEXT) IS NULL OR model = ?1 ORDER BY id DESC LIMIT ?2")?;
    let states = statement
        .query_map(params![model_opt, limit], |row| row.get::<_, String>(0))?
        .collect::<crate::store::sql::SqlResult<Vec<_>>>()?;
    states.iter().map(|state| from_json(state)).collect()
}

/// The newest run of `model` that counts for its cooldown (not a manual one).
pub fn last_automatic(connection: &Connection<'_>, model: &str) -> Result<Option<TriggerRun>> {
    let reason = match connection.dialect() {
        Dialect::Sqlite => "json_extract(state, '$.reason')",
        // `json`, not `jsonb`: a run's detail may hold \u0000, which jsonb refuses.
        Dialect::Postgres => "(state::json ->> 'reason')",
    };
    connection
        .query_row(
            &format!(
                "SELECT state FROM trigger_runs
                 WHERE model = ?1 AND {reason} != 'manual'
                 ORDER BY id DESC LIMIT 1"
            ),
            [model],
            |row| row.get::<_, String>(0),
        )
        .optional()?
        .map(|state| from_json(&state))
        .transpose()
}

/// A version registered with `lineage.trigger_id`: the run it answers
/// succeeded, with that version as its result. In the version's transaction.
pub fn complete_with_version(
    transaction: &Transaction<'_>,
    model: &str,
    id: u64,
    version: u64,
) -> Result<()> {
    let mut run = get(transaction, id).map_err(|err| match err {
        Error::NotFound(_) => Error::bad_request(format!("lineage.trigger_id: there is no trigger run {id}")),
        other => other,
    })?;
    if run.model != model {
        return Err(Error::bad_request(format!(
            "lineage.trigger_id: trigger run {id} is for model '{}', not '{model}'",
            run.model
        )));
    }
    if let Some(existing) = run.result_version {
        return Err(Error::conflict(format!(
            "trigger run {id} already registered version {existing}"
        )));
    }
    let before = run.clone();
    run.result_version = Some(version);
    if run.status != RunStatus::Succeeded {
        run.status = RunStatus::Succeeded;
        run.finished_at = Some(now());
    }
    update(transaction, &run)?;
    let change = super::events::Change {
        actor: "trigger",
        action: "trigger.succeeded",
        subject: format!("{model}/trigger/{id}"),
        reason: Some("registered a version"),
        rule: None,
    };
    super::events::append(transaction, change, Some(&before), Some(&run))?;
    Ok(())
}

/// A run's state as stored, without NUL characters in its strings: a
/// command's output or a webhook's answer may carry them, and PostgreSQL's
/// `json` refuses a document with `\u0000` anywhere in it, which would fail
/// [`last_automatic`] for the model on every tick.
fn state_json(run: &TriggerRun) -> Result<String> {
    fn strip(value: &mut serde_json::Value) {
        match value {
            serde_json::Value::String(text) => text.retain(|ch| ch != '\0'),
            serde_json::Value::Array(items) => items.iter_mut().for_each(strip),
            serde_json::Value::Object(fields) => fields.values_mut().for_each(strip),
            _ => {}
        }
    }
    let mut value = serde_json::to_value(run)?;
    strip(&mut value);
    Ok(serde_json::to_string(&value)?)
}
