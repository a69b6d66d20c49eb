//! Behavioural suites, one revision per `PUT` and never edited in place (a
//! report names the revision it ran), and the report of each version's
//! latest run of each revision.

use super::sql::{Connection, OptionalExtension, Transaction, params};
use sluice_registry_client::suite::{StoredSuite, Suite, SuiteReport};

use super::events::{self, Change};
use super::{from_json, models, now, to_i64, to_json, to_u64};
use crate::error::{Error, Result};

/// Stores `suite` as the model's next revision.
pub fn put(transaction: &Transaction<'_>, actor: &str, model: &str, suite: &Suite) -> Result<StoredSuite> {
    models::get(transaction, model)?;
    suite.validate().map_err(Error::bad_request)?;
    let revision: i64 = transaction.query_row(
        "SELECT COALESCE(MAX(revision), 0) + 1 FROM suites WHERE model = ?1",
        [model],
        |row| row.get(0),
    )?;
    let stored = StoredSuite {
        model: model.to_string(),
        revision: to_u64(revision),
        suite: suite.clone(),
        created_at: now(),
        created_by: actor.to_string(),
    };
    transaction.execute(
        "INSERT INTO suites (model, revision, suite, created_at, created_by) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![model, revision, to_json(suite)?, stored.created_at, actor],
    )?;
    let change = Change {
        actor,
        action: "suite.put",
        subject: format!("{model}/suite/{revision}"),
        reason: None,
        rule: None,
    };
    events::append(transaction, change, None::<&()>, Some(&stored))?;
    Ok(stored)
}

/// Revision `revision_opt` of the model's suite, or its latest; `None` when
/// the model has no suite.
pub fn find(
    connection: &Connection<'_>,
    model: &str,
    revision_opt: Option<u64>,
) -> Result<Option<StoredSuite>> {
    let row = match revision_opt {
        Some(revision) => connection
            .query_row(
                "SELECT revision, suite, created_at, created_by FROM suites WHERE model = ?1 AND revision = ?2",
                params![model, to_i64(revision)?],
                read_row,
            )
            .optional()?,
        None => connection
            .query_row(
                "SELECT revision, suite, created_at, created_by FROM suites WHERE model = ?1
                 ORDER BY revision DESC LIMIT 1",
                [model],
                read_row,
            )
            .optional()?,
    };
    row.map(|(revision, suite, created_at, created_by)| {
        Ok(StoredSuite {
            model: model.to_string(),
            revision: to_u64(revision),
            suite: from_json(&suite)?,
            created_at,
            created_by,
        })
    })
    .transpose()
}

/// [`find`], or a 404 that says how to add one.
pub fn get(connection: &Connection<'_>, model: &str, revision_opt: Option<u64>) -> Result<StoredSuite> {
    models::get(connection, model)?;
    find(connection, model, revision_opt)?.ok_or_else(|| match revision_opt {
        Some(revision) => Error::not_found(format!("model '{model}' has no suite revision {revision}")),
        None => Error::not_found(format!(
            "model '{model}' has no behavioural suite: add one with `sluice suite put {model} FILE`"
        )),
    })
}

type SuiteRow = (i64, String, String, String);

fn read_row(row: &crate::store::sql::Row) -> crate::store::sql::SqlResult<SuiteRow> {
    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
}

/// Keeps `report` as the version's report for its suite revision,
/// replacing an earlier run of the same revision.
pub fn record_report(transaction: &Transaction<'_>, report: &SuiteReport) -> Result<()> {
    transaction.execute(
        "INSERT INTO suite_reports (model, version, suite_revision, passed, report, ran_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (model, version, suite_revision) DO UPDATE SET
            passed = excluded.passed, report = excluded.report, ran_at = excluded.ran_at",
        params![
            report.model,
            to_i64(report.version)?,
            to_i64(report.suite_revision)?,
            report.passed,
            to_json(report)?,
            report.ran_at
        ],
    )?;
    let change = Change {
        actor: &report.ran_by,
        action: if report.passed {
            "suite.passed"
        } else {
            "suite.failed"
        },
        subject: format!(
            "{}/{}/suite/{}",
            report.model, report.version, report.suite_revision
        ),
        reason: None,
        rule: None,
    };
    events::append(transaction, change, None::<&()>, Some(&report.headline()))?;
    Ok(())
}

/// The version's latest report (of any suite revision).
pub fn latest_report(connection: &Connection<'_>, model: &str, version: u64) -> Result<Option<SuiteReport>> {
    connection
        .query_row(
            "SELECT report FROM suite_reports WHERE model = ?1 AND version = ?2
             ORDER BY ran_at DESC, suite_revision DESC LIMIT 1",
            params![model, to_i64(version)?],
            |row| row.get::<_, String>(0),
        )
        .optional()?
        .map(|report| from_json(&report))
        .transpose()
}
