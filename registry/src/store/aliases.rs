//! Aliases: mutable, named pointers to a version (`champion`, `challenger`),
//! moved with compare-and-swap so two release tools cannot both win.

use super::sql::{Connection, Transaction, params};
use sluice_registry_client::types::{Alias, SetAlias};

use super::events::{self, Change};
use super::{models, now, to_i64, to_u64, versions};
use crate::error::{Error, Result};

/// Alias names: like model names, but never a number, so a path segment is
/// unambiguously a version or an alias.
fn check_alias(alias: &str) -> Result<()> {
    models::check_name("alias", alias)?;
    if alias.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::bad_request(format!(
            "invalid alias name '{alias}': a number would read as a version"
        )));
    }
    Ok(())
}

pub fn set(
    transaction: &Transaction<'_>,
    actor: &str,
    model: &str,
    alias: &str,
    body: &SetAlias,
) -> Result<Alias> {
    check_alias(alias)?;
    versions::get(transaction, model, body.version)?;
    let before = find(transaction, model, alias)?;
    if let Some(expected) = body.if_version {
        let current = before.as_ref().map(|alias| alias.version);
        if current != expected {
            let describe =
                |version: Option<u64>| version.map_or("absent".to_string(), |v| format!("version {v}"));
            return Err(Error::conflict(format!(
                "alias '{alias}' of '{model}' is {} now, not {}",
                describe(current),
                describe(expected)
            )));
        }
    }
    transaction.execute(
        "INSERT INTO aliases (model, alias, version, updated_at, updated_by) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (model, alias) DO UPDATE SET
            version = excluded.version, updated_at = excluded.updated_at, updated_by = excluded.updated_by",
        params![model, alias, to_i64(body.version)?, now(), actor],
    )?;
    let after = find(transaction, model, alias)?
        .ok_or_else(|| Error::Internal("an alias vanished inside its transaction".into()))?;
    let change = Change {
        actor,
        action: "alias.set",
        subject: format!("{model}/{alias}"),
        reason: None,
        rule: None,
    };
    events::append(transaction, change, before.as_ref(), Some(&after))?;
    Ok(after)
}

pub fn list(connection: &Connection<'_>, model: &str) -> Result<Vec<Alias>> {
    models::get(connection, model)?;
    query(connection, model, None)
}

pub fn find(connection: &Connection<'_>, model: &str, alias: &str) -> Result<Option<Alias>> {
    Ok(query(connection, model, Some(alias))?.pop())
}

fn query(connection: &Connection<'_>, model: &str, alias_opt: Option<&str>) -> Result<Vec<Alias>> {
    let mut statement = connection.prepare(
        "SELECT alias, version, updated_at, updated_by FROM aliases
         WHERE model = ?1 AND (CAST(?2 AS TEXT) IS NULL OR alias = ?2) ORDER BY alias",
    )?;
    let rows = statement.query_map(params![model, alias_opt], |row| {
        Ok(Alias {
            model: model.to_string(),
            alias: row.get(0)?,
            version: to_u64(row.get(1)?),
            updated_at: row.get(2)?,
            updated_by: row.get(3)?,
        })
    })?;
    Ok(rows.collect::<crate::store::sql::SqlResult<Vec<_>>>()?)
}
