//! The latest rollout of each model, stored whole as JSON.

use super::sql::{Connection, OptionalExtension, Transaction, params};
use sluice_registry_client::rollout::Rollout;

use super::{from_json, to_json};
use crate::error::Result;

pub fn find(connection: &Connection<'_>, model: &str) -> Result<Option<Rollout>> {
    connection
        .query_row("SELECT state FROM rollouts WHERE model = ?1", [model], |row| {
            row.get::<_, String>(0)
        })
        .optional()?
        .map(|state| from_json(&state))
        .transpose()
}

pub fn put(transaction: &Transaction<'_>, rollout: &Rollout) -> Result<()> {
    transaction.execute(
        "INSERT INTO rollouts (model, state) VALUES (?1, ?2)
         ON CONFLICT (model) DO UPDATE SET state = excluded.state",
        params![rollout.model, to_json(rollout)?],
    )?;
    Ok(())
}

/// Models whose rollout is progressing or paused.
pub fn active(connection: &Connection<'_>) -> Result<Vec<Rollout>> {
    let mut statement = connection.prepare("SELECT state FROM rollouts ORDER BY model")?;
    let states = statement
        .query_map(params![], |row| row.get::<_, String>(0))?
        .collect::<crate::store::sql::SqlResult<Vec<_>>>()?;
    let mut rollouts = Vec::new();
    for state in states {
        let rollout: Rollout = from_json(&state)?;
        if rollout.status.is_active() {
            rollouts.push(rollout);
        }
    }
    Ok(rollouts)
}
