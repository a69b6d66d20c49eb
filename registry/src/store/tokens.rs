//! Bearer tokens of the registry API, by the sha256 of the token (never the
//! token): made and revoked live by an admin (`/api/v1/tokens`), or read
//! from the tokens file at each start. A token works from the moment its
//! row is committed until it expires or is revoked; revoking keeps the row,
//! so the list and the audit log still say who held it.

use super::sql::{Connection, OptionalExtension, Row, SqlResult, Transaction, params};
use sluice_registry_client::types::TokenInfo;

use super::events::{self, Change};
use super::{now, to_i64, to_u64};
use crate::auth::{FileToken, Role};
use crate::error::{Error, Result};

const COLUMNS: &str = "id, actor, role, source, created_at, created_by, expires_at, revoked_at, revoked_by";

/// Where a token came from, as `TokenInfo::source` says it.
pub const FROM_API: &str = "api";
pub const FROM_FILE: &str = "file";

/// Stores a new token under its hash; `expires_at` is an RFC 3339 time.
pub fn create(
    transaction: &Transaction<'_>,
    admin: &str,
    actor: &str,
    role: Role,
    sha256: &str,
    expires_at: Option<String>,
) -> Result<TokenInfo> {
    super::models::check_name("actor", actor)?;
    let id: i64 = transaction.query_row(
        "INSERT INTO tokens (sha256, actor, role, source, created_at, created_by, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) RETURNING id",
        params![sha256, actor, role.as_str(), FROM_API, now(), admin, expires_at],
        |row| row.get(0),
    )?;
    let token = get(transaction, to_u64(id))?;
    let change = Change {
        actor: admin,
        action: "token.create",
        subject: format!("token/{id}"),
        reason: None,
        rule: None,
    };
    events::append(transaction, change, None::<&TokenInfo>, Some(&token))?;
    Ok(token)
}

/// Every token, live or not, oldest first.
pub fn list(connection: &Connection<'_>) -> Result<Vec<TokenInfo>> {
    let mut statement = connection.prepare(&format!("SELECT {COLUMNS} FROM tokens ORDER BY id"))?;
    let rows = statement.query_map(params![], read)?;
    Ok(rows.collect::<SqlResult<Vec<_>>>()?)
}

/// The token with this hash, whatever its state.
pub fn find(connection: &Connection<'_>, sha256: &str) -> Result<Option<TokenInfo>> {
    Ok(connection
        .query_row(
            &format!("SELECT {COLUMNS} FROM tokens WHERE sha256 = ?1"),
            [sha256],
            read,
        )
        .optional()?)
}

pub fn get(connection: &Connection<'_>, id: u64) -> Result<TokenInfo> {
    connection
        .query_row(
            &format!("SELECT {COLUMNS} FROM tokens WHERE id = ?1"),
            params![to_i64(id)?],
            read,
        )
        .optional()?
        .ok_or_else(|| Error::not_found(format!("no token {id}: `sluice tokens list` shows them")))
}

/// Revokes token `id` at once. Refused when it is already revoked, or when
/// it is the last live admin token: nobody could then manage tokens
/// without a restart. `live_now` says whether a token is live at this moment.
pub fn revoke(
    transaction: &Transaction<'_>,
    admin: &str,
    id: u64,
    reason_opt: Option<&str>,
    live_now: impl Fn(&TokenInfo) -> bool,
) -> Result<TokenInfo> {
    let before = get(transaction, id)?;
    if let Some(at) = &before.revoked_at {
        return Err(Error::conflict(format!(
            "token {id} of {} was already revoked at {at} by {}",
            before.actor,
            before.revoked_by.as_deref().unwrap_or("?")
        )));
    }
    if before.role == Role::Admin.as_str() {
        let other_admins = list(transaction)?
            .into_iter()
            .filter(|token| token.id != id && token.role == Role::Admin.as_str() && live_now(token))
            .count();
        if other_admins == 0 {
            return Err(Error::conflict(format!(
                "token {id} is the last live admin token: create another admin token before revoking it"
            )));
        }
    }
    mark_revoked(transaction, admin, before, reason_opt)
}

fn mark_revoked(
    transaction: &Transaction<'_>,
    actor: &str,
    before: TokenInfo,
    reason_opt: Option<&str>,
) -> Result<TokenInfo> {
    transaction.execute(
        "UPDATE tokens SET revoked_at = ?1, revoked_by = ?2 WHERE id = ?3",
        params![now(), actor, to_i64(before.id)?],
    )?;
    let after = get(transaction, before.id)?;
    let change = Change {
        actor,
        action: "token.revoke",
        subject: format!("token/{}", before.id),
        reason: reason_opt,
        rule: None,
    };
    events::append(transaction, change, Some(&before), Some(&after))?;
    Ok(after)
}

/// Brings the file's tokens into the store at start: a new one is added, a
/// known one takes the file's actor and role, and one the file no longer
/// holds is revoked, as restarting without it always meant. A token revoked
/// through the API stays revoked though the file still holds it; its
/// description is returned, for a warning.
pub fn import(transaction: &Transaction<'_>, file: &[FileToken]) -> Result<Vec<String>> {
    let mut still_revoked = Vec::new();
    for entry in file {
        match find(transaction, &entry.sha256)? {
            None => {
                let id: i64 = transaction.query_row(
                    "INSERT INTO tokens (sha256, actor, role, source, created_at, created_by)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6) RETURNING id",
                    params![
                        entry.sha256,
                        entry.actor,
                        entry.role.as_str(),
                        FROM_FILE,
                        now(),
                        "tokens file"
                    ],
                    |row| row.get(0),
                )?;
                let token = get(transaction, to_u64(id))?;
                let change = Change {
                    actor: "tokens file",
                    action: "token.import",
                    subject: format!("token/{id}"),
                    reason: None,
                    rule: None,
                };
                events::append(transaction, change, None::<&TokenInfo>, Some(&token))?;
            }
            Some(known) if known.revoked_at.is_some() => {
                still_revoked.push(format!(
                    "token {} of {} in the tokens file",
                    known.id, known.actor
                ));
            }
            Some(known) if known.actor != entry.actor || known.role != entry.role.as_str() => {
                transaction.execute(
                    "UPDATE tokens SET actor = ?1, role = ?2 WHERE id = ?3",
                    params![entry.actor, entry.role.as_str(), to_i64(known.id)?],
                )?;
                let after = get(transaction, known.id)?;
                let change = Change {
                    actor: "tokens file",
                    action: "token.import",
                    subject: format!("token/{}", known.id),
                    reason: Some("the tokens file changed its actor or role"),
                    rule: None,
                };
                events::append(transaction, change, Some(&known), Some(&after))?;
            }
            Some(_) => {}
        }
    }
    let listed: std::collections::HashSet<&str> = file.iter().map(|entry| entry.sha256.as_str()).collect();
    let mut statement = transaction
        .prepare("SELECT id, sha256 FROM tokens WHERE source = ?1 AND revoked_at IS NULL ORDER BY id")?;
    let dropped: Vec<(i64, String)> = statement
        .query_map(params![FROM_FILE], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<SqlResult<Vec<_>>>()?;
    for (id, sha256) in dropped {
        // The file is the operator's word: no last-admin check here.
        if !listed.contains(sha256.as_str()) {
            let before = get(transaction, to_u64(id))?;
            mark_revoked(
                transaction,
                "tokens file",
                before,
                Some("no longer in the tokens file"),
            )?;
        }
    }
    Ok(still_revoked)
}

fn read(row: &Row) -> SqlResult<TokenInfo> {
    Ok(TokenInfo {
        id: to_u64(row.get(0)?),
        actor: row.get(1)?,
        role: row.get(2)?,
        source: row.get(3)?,
        created_at: row.get(4)?,
        created_by: row.get(5)?,
        expires_at: row.get(6)?,
        revoked_at: row.get(7)?,
        revoked_by: row.get(8)?,
    })
}
