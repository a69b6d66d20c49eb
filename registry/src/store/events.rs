//! The append-only audit log: who changed what, when, from what to what, and why.
//!
//! Events are appended inside the transaction of the change they record, so
//! the log never misses a change nor records one that was rolled back.

use super::sql::{Connection, OptionalExtension, Transaction, params};
use serde::Serialize;
use sluice_registry_client::types::Event;

use super::{now, to_i64, to_u64};
use crate::error::Result;

/// What a change is, in the terms of the log.
pub struct Change<'a> {
    pub actor: &'a str,
    /// `model.create`, `version.create`, `deployment.set`, ...
    pub action: &'a str,
    /// `credit_risk`, `credit_risk/3`, `transition/7`.
    pub subject: String,
    pub reason: Option<&'a str>,
    /// The policy rule that allowed it, where one did
    /// (`stages.production: approvals technical, business`).
    pub rule: Option<String>,
}

/// Appends one event; `before` is `None` for a creation.
pub fn append<B: Serialize, A: Serialize>(
    transaction: &Transaction<'_>,
    change: Change<'_>,
    before: Option<&B>,
    after: Option<&A>,
) -> Result<u64> {
    let before = before.map(serde_json::to_string).transpose()?;
    let after = after.map(serde_json::to_string).transpose()?;
    let id: i64 = transaction.query_row(
        "INSERT INTO events (at, actor, action, subject, before, after, reason, rule)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) RETURNING id",
        params![
            now(),
            change.actor,
            change.action,
            change.subject,
            before,
            after,
            change.reason,
            change.rule
        ],
        |row| row.get(0),
    )?;
    Ok(to_u64(id))
}

/// Events with an id above `since`, oldest first.
pub fn list(connection: &Connection<'_>, since: u64, limit: u32) -> Result<Vec<Event>> {
    let filter = EventFilter {
        since,
        ..EventFilter::default()
    };
    query(connection, &filter, limit)
}

/// Which events to read, and in what order.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// Only ids above this.
    pub since: u64,
    /// Only ids below this (0: no bound): a newest-first page's cursor.
    pub before: u64,
    /// Only events about this model: its own subject (`credit_risk`), one
    /// under it (`credit_risk/3`), or a transition of one of its versions.
    pub model: Option<String>,
    pub actor: Option<String>,
    /// An action (`traffic.set`), or a prefix ending in `*` (`rollout.*`).
    pub action: Option<String>,
    pub newest_first: bool,
}

/// `text` as a LIKE pattern that matches it literally.
fn literal(text: &str) -> String {
    text.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
}

/// The events `filter` selects, at most `limit`.
pub fn query(connection: &Connection<'_>, filter: &EventFilter, limit: u32) -> Result<Vec<Event>> {
    let model_under = filter
        .model
        .as_deref()
        .map(|model| format!("{}/%", literal(model)));
    let transition_of = filter.model.as_deref().map(|model| {
        format!(
            "%{}%",
            literal(&format!("\"model\":{}", serde_json::Value::from(model)))
        )
    });
    let action = filter
        .action
        .as_deref()
        .map(|action| match action.strip_suffix('*') {
            Some(prefix) => format!("{}%", literal(prefix)),
            None => literal(action),
        });
    let order = if filter.newest_first { "DESC" } else { "ASC" };
    let sql = format!(
        "SELECT id, at, actor, action, subject, before, after, reason, rule FROM events
         WHERE id > ?1 AND (?2 = 0 OR id < ?2)
           AND (CAST(?3 AS TEXT) IS NULL OR subject = ?3 OR subject LIKE ?4 ESCAPE '\\'
                OR (subject LIKE 'transition/%' AND after LIKE ?5 ESCAPE '\\'))
           AND (CAST(?6 AS TEXT) IS NULL OR actor = ?6)
           AND (CAST(?7 AS TEXT) IS NULL OR action LIKE ?7 ESCAPE '\\')
         ORDER BY id {order} LIMIT ?8"
    );
    let mut statement = connection.prepare(&sql)?;
    let rows = statement.query_map(
        params![
            to_i64(filter.since)?,
            to_i64(filter.before)?,
            filter.model,
            model_under,
            transition_of,
            filter.actor,
            action,
            limit
        ],
        |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, String>(3)?,
                row.get::<_, String>(4)?,
                row.get::<_, Option<String>>(5)?,
                row.get::<_, Option<String>>(6)?,
                row.get::<_, Option<String>>(7)?,
                row.get::<_, Option<String>>(8)?,
            ))
        },
    )?;
    let mut events = Vec::new();
    for row in rows {
        let (id, at, actor, action, subject, before, after, reason, rule) = row?;
        events.push(Event {
            id: to_u64(id),
            at,
            actor,
            action,
            subject,
            before: before.map(|text| serde_json::from_str(&text)).transpose()?,
            after: after.map(|text| serde_json::from_str(&text)).transpose()?,
            reason,
            rule,
        });
    }
    Ok(events)
}

/// The id of the newest event, 0 when the log is empty.
pub fn last_id(connection: &Connection<'_>) -> Result<u64> {
    let id: Option<i64> = connection
        .query_row("SELECT MAX(id) FROM events", params![], |row| row.get(0))
        .optional()?
        .flatten();
    Ok(id.map_or(0, to_u64))
}
