//! Models: named endpoints with a description and tags.

use std::collections::BTreeMap;

use super::sql::{Connection, OptionalExtension, Row, Transaction, params};
use sluice_registry_client::types::{CreateModel, Model, UpdateModel};

use super::events::{self, Change};
use super::{from_json, now, to_json, to_u64};
use crate::error::{Error, Result};

const SELECT: &str = "SELECT m.name, m.description, m.tags, m.created_at, m.created_by, m.updated_at,
        (SELECT MAX(v.version) FROM versions v WHERE v.model = m.name)
    FROM models m";

/// Names that are safe in a URL path segment, a file name and a metric label.
pub fn check_name(kind: &str, name: &str) -> Result<()> {
    let valid = !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if valid {
        Ok(())
    } else {
        Err(Error::bad_request(format!(
            "invalid {kind} name '{name}': expected 1 to 128 letters, digits, '_', '-' or '.', not starting with '.'"
        )))
    }
}

pub fn create(transaction: &Transaction<'_>, actor: &str, body: &CreateModel) -> Result<Model> {
    check_name("model", &body.name)?;
    if find(transaction, &body.name)?.is_some() {
        return Err(Error::conflict(format!("model '{}' already exists", body.name)));
    }
    let at = now();
    transaction.execute(
        "INSERT INTO models (name, description, tags, created_at, created_by, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?4)",
        params![body.name, body.description, to_json(&body.tags)?, at, actor],
    )?;
    let model = get(transaction, &body.name)?;
    let change = Change {
        actor,
        action: "model.create",
        subject: body.name.clone(),
        reason: None,
        rule: None,
    };
    events::append(transaction, change, None::<&()>, Some(&model))?;
    Ok(model)
}

pub fn update(transaction: &Transaction<'_>, actor: &str, name: &str, body: &UpdateModel) -> Result<Model> {
    let before = get(transaction, name)?;
    let description = body.description.as_ref().unwrap_or(&before.description);
    let tags: &BTreeMap<String, String> = body.tags.as_ref().unwrap_or(&before.tags);
    transaction.execute(
        "UPDATE models SET description = ?2, tags = ?3, updated_at = ?4 WHERE name = ?1",
        params![name, description, to_json(tags)?, now()],
    )?;
    let after = get(transaction, name)?;
    let change = Change {
        actor,
        action: "model.update",
        subject: name.to_string(),
        reason: None,
        rule: None,
    };
    events::append(transaction, change, Some(&before), Some(&after))?;
    Ok(after)
}

pub fn list(connection: &Connection<'_>) -> Result<Vec<Model>> {
    let mut statement = connection.prepare(&format!("{SELECT} ORDER BY m.name"))?;
    let rows = statement.query_map(params![], read_row)?;
    rows.map(|row| row?).collect()
}

pub fn find(connection: &Connection<'_>, name: &str) -> Result<Option<Model>> {
    connection
        .query_row(&format!("{SELECT} WHERE m.name = ?1"), [name], read_row)
        .optional()?
        .transpose()
}

/// The model, or 404.
pub fn get(connection: &Connection<'_>, name: &str) -> Result<Model> {
    find(connection, name)?.ok_or_else(|| Error::not_found(format!("unknown model '{name}'")))
}

fn read_row(row: &Row) -> crate::store::sql::SqlResult<Result<Model>> {
    let tags: String = row.get(2)?;
    let latest: Option<i64> = row.get(6)?;
    let model = (|| {
        Ok(Model {
            name: row.get(0)?,
            description: row.get(1)?,
            tags: from_json(&tags)?,
            created_at: row.get(3)?,
            created_by: row.get(4)?,
            updated_at: row.get(5)?,
            latest_version: latest.map(to_u64),
        })
    })();
    Ok(model)
}
