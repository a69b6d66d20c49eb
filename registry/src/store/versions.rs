//! Artifacts (content-addressed ONNX files and the signature read from them),
//! versions (immutable, auto-numbered, with their lineage card) and the JSON
//! documents attached to a version.

use super::sql::{Connection, Dialect, OptionalExtension, Row, Transaction, params};
use sluice_common::secrets::is_sha256;
use sluice_registry_client::types::{Artifact, Document, Lineage, Stage, Version};

use super::events::{self, Change};
use super::{from_json, models, now, to_i64, to_json, to_u64};
use crate::error::{Error, Result};
use crate::policy::Policy;

/// The artifact stored under `sha256`, if the registry has it.
pub fn find_artifact(connection: &Connection<'_>, sha256: &str) -> Result<Option<Artifact>> {
    connection
        .query_row(
            "SELECT sha256, size, signature FROM artifacts WHERE sha256 = ?1",
            [sha256],
            |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, i64>(1)?,
                    row.get::<_, String>(2)?,
                ))
            },
        )
        .optional()?
        .map(|(sha256, size, signature)| {
            Ok(Artifact {
                sha256,
                size: to_u64(size),
                signature: from_json(&signature)?,
            })
        })
        .transpose()
}

/// Records an artifact whose bytes are already in the object store.
pub fn record_artifact(transaction: &Transaction<'_>, actor: &str, artifact: &Artifact) -> Result<()> {
    if find_artifact(transaction, &artifact.sha256)?.is_some() {
        return Ok(());
    }
    transaction.execute(
        "INSERT INTO artifacts (sha256, size, signature, created_at, created_by) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            artifact.sha256,
            to_i64(artifact.size)?,
            to_json(&artifact.signature)?,
            now(),
            actor
        ],
    )?;
    let change = Change {
        actor,
        action: "artifact.store",
        subject: format!("artifact/{}", artifact.sha256),
        reason: None,
        rule: None,
    };
    events::append(transaction, change, None::<&()>, Some(artifact))?;
    Ok(())
}

/// Registers the next version of `model` on an artifact already recorded.
pub fn create(
    transaction: &Transaction<'_>,
    actor: &str,
    model: &str,
    sha256: &str,
    lineage: &Lineage,
    source_uri_opt: Option<&str>,
) -> Result<Version> {
    models::get(transaction, model)?;
    check_lineage(lineage)?;
    let Some(artifact) = find_artifact(transaction, sha256)? else {
        return Err(Error::not_found(format!(
            "no artifact with sha256 {sha256}: upload it first with POST /api/v1/artifacts"
        )));
    };
    if let Some(slice) = &lineage.slice {
        // Gateways read the slice from the inputs: a feature they lack would
        // leave every slice gate without data, with nothing said.
        let inputs: Vec<(&str, &[i64])> = artifact
            .signature
            .inputs
            .iter()
            .map(|spec| (spec.name.as_str(), spec.shape.as_slice()))
            .collect();
        if sluice_registry_client::contract::column_of(&slice.feature, &inputs).is_none() {
            let names: Vec<&str> = inputs.iter().map(|(name, _)| *name).collect();
            return Err(Error::bad_request(format!(
                "lineage.slice: feature '{}' is no input column of the model: it takes {} (an input of one column per row, or 'x[k]')",
                slice.feature,
                names.join(", ")
            )));
        }
    }
    let next: i64 = transaction.query_row(
        "SELECT COALESCE(MAX(version), 0) + 1 FROM versions WHERE model = ?1",
        [model],
        |row| row.get(0),
    )?;
    transaction.execute(
        "INSERT INTO versions (model, version, sha256, stage, lineage, source_uri, author, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            model,
            next,
            sha256,
            Stage::None.as_str(),
            to_json(lineage)?,
            source_uri_opt,
            actor,
            now()
        ],
    )?;
    let version = get(transaction, model, to_u64(next))?;
    if let Some(id) = lineage.trigger_id {
        super::triggers::complete_with_version(transaction, model, id, version.version)?;
    }
    let change = Change {
        actor,
        action: "version.create",
        subject: format!("{model}/{next}"),
        reason: None,
        rule: None,
    };
    events::append(transaction, change, None::<&()>, Some(&version))?;
    Ok(version)
}

pub fn check_lineage(lineage: &Lineage) -> Result<()> {
    if let Some(slice) = &lineage.slice {
        slice
            .validate()
            .map_err(|err| Error::bad_request(format!("lineage.{err}")))?;
    }
    if lineage.parent_version == Some(0) {
        return Err(Error::bad_request(
            "lineage.parent_version: versions are numbered from 1",
        ));
    }
    if let Some((name, value)) = lineage.metrics.iter().find(|(_, value)| !value.is_finite()) {
        return Err(Error::bad_request(format!(
            "metric '{name}' is {value}: expected a finite number"
        )));
    }
    if let Some(dataset) = &lineage.dataset
        && let Some(sha256) = &dataset.sha256
        && !is_sha256(sha256)
    {
        return Err(Error::bad_request(format!(
            "dataset sha256 '{sha256}' is not 64 lowercase hex digits"
        )));
    }
    Ok(())
}

/// A version with its aliases, comma-separated in name order.
fn select(connection: &Connection<'_>) -> &'static str {
    match connection.dialect() {
        Dialect::Sqlite => {
            "SELECT v.model, v.version, v.stage, v.sha256, a.size, a.signature, v.lineage,
                v.source_uri, v.author, v.created_at,
                (SELECT group_concat(alias, ',') FROM (SELECT alias FROM aliases al
                    WHERE al.model = v.model AND al.version = v.version ORDER BY alias)),
                v.rollback_until
            FROM versions v JOIN artifacts a ON a.sha256 = v.sha256"
        }
        Dialect::Postgres => {
            "SELECT v.model, v.version, v.stage, v.sha256, a.size, a.signature, v.lineage,
                v.source_uri, v.author, v.created_at,
                (SELECT string_agg(alias, ',' ORDER BY alias) FROM aliases al
                    WHERE al.model = v.model AND al.version = v.version),
                v.rollback_until
            FROM versions v JOIN artifacts a ON a.sha256 = v.sha256"
        }
    }
}

pub fn list(connection: &Connection<'_>, model: &str) -> Result<Vec<Version>> {
    models::get(connection, model)?;
    let mut statement = connection.prepare(&format!(
        "{} WHERE v.model = ?1 ORDER BY v.version",
        select(connection)
    ))?;
    let rows = statement.query_map([model], read_row)?;
    rows.map(|row| row?).collect()
}

/// The version, or 404 naming what is unknown.
pub fn get(connection: &Connection<'_>, model: &str, version: u64) -> Result<Version> {
    connection
        .query_row(
            &format!("{} WHERE v.model = ?1 AND v.version = ?2", select(connection)),
            params![model, to_i64(version)?],
            read_row,
        )
        .optional()?
        .transpose()?
        .ok_or_else(|| match models::find(connection, model) {
            Ok(Some(_)) => Error::not_found(format!("unknown version {version} of model '{model}'")),
            Ok(None) => Error::not_found(format!("unknown model '{model}'")),
            Err(err) => err,
        })
}

/// A version named by number or by alias (`champion`).
pub fn resolve(connection: &Connection<'_>, model: &str, reference: &str) -> Result<Version> {
    if let Ok(number) = reference.parse::<u64>() {
        return get(connection, model, number);
    }
    models::get(connection, model)?;
    let pointed: Option<i64> = connection
        .query_row(
            "SELECT version FROM aliases WHERE model = ?1 AND alias = ?2",
            [model, reference],
            |row| row.get(0),
        )
        .optional()?;
    match pointed {
        Some(number) => get(connection, model, to_u64(number)),
        None => Err(Error::not_found(format!(
            "model '{model}' has no version or alias '{reference}'"
        ))),
    }
}

fn read_row(row: &Row) -> crate::store::sql::SqlResult<Result<Version>> {
    let stage: String = row.get(2)?;
    let signature: String = row.get(5)?;
    let lineage: String = row.get(6)?;
    let aliases: Option<String> = row.get(10)?;
    let version = (|| {
        Ok(Version {
            model: row.get(0)?,
            version: to_u64(row.get(1)?),
            stage: stage
                .parse()
                .map_err(|err: String| Error::Internal(format!("stored stage: {err}")))?,
            sha256: row.get(3)?,
            size: to_u64(row.get(4)?),
            signature: from_json(&signature)?,
            lineage: from_json(&lineage)?,
            source_uri: row.get(7)?,
            author: row.get(8)?,
            created_at: row.get(9)?,
            aliases: aliases
                .map(|list| list.split(',').map(str::to_string).collect())
                .unwrap_or_default(),
            rollback_until: row.get(11)?,
        })
    })();
    Ok(version)
}

/// Sets a version's stage (governance decides whether it may).
/// Sets a version's stage (governance decides whether it may); a rollback
/// window it had ends.
pub fn set_stage(transaction: &Transaction<'_>, model: &str, version: u64, stage: Stage) -> Result<()> {
    transaction.execute(
        "UPDATE versions SET stage = ?3, rollback_until = NULL WHERE model = ?1 AND version = ?2",
        params![model, to_i64(version)?, stage.as_str()],
    )?;
    Ok(())
}

/// Archives a version moved out of its stage by the policy's
/// `max_versions`, deployable until `until` (the rollback window).
pub fn retire(
    transaction: &Transaction<'_>,
    actor: &str,
    version: &Version,
    until: &str,
    reason: &str,
    rule: String,
) -> Result<Version> {
    transaction.execute(
        "UPDATE versions SET stage = ?3, rollback_until = ?4 WHERE model = ?1 AND version = ?2",
        params![
            version.model,
            to_i64(version.version)?,
            Stage::Archived.as_str(),
            until
        ],
    )?;
    let after = get(transaction, &version.model, version.version)?;
    let change = Change {
        actor,
        action: "version.retire",
        subject: format!("{}/{}", version.model, version.version),
        reason: Some(reason),
        rule: Some(rule),
    };
    events::append(transaction, change, Some(version), Some(&after))?;
    Ok(after)
}

/// Whether a version may take traffic at `now` (RFC 3339, as the store
/// writes times): its stage is deployable, or its rollback window is open.
pub fn may_take_traffic(policy: &Policy, version: &Version, now: &str) -> bool {
    policy.is_deployable(version.stage) || version.rollback_until.as_deref().is_some_and(|until| until > now)
}

/// Attaches (or replaces) a named JSON document on a version.
pub fn put_document(
    transaction: &Transaction<'_>,
    actor: &str,
    version: &Version,
    name: &str,
    body: &serde_json::Value,
) -> Result<Document> {
    models::check_name("document", name)?;
    let before = find_document(transaction, &version.model, version.version, name)?;
    transaction.execute(
        "INSERT INTO documents (model, version, name, body, updated_at, updated_by)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (model, version, name) DO UPDATE SET
            body = excluded.body, updated_at = excluded.updated_at, updated_by = excluded.updated_by",
        params![
            version.model,
            to_i64(version.version)?,
            name,
            to_json(body)?,
            now(),
            actor
        ],
    )?;
    let after = find_document(transaction, &version.model, version.version, name)?
        .ok_or_else(|| Error::Internal("a document vanished inside its transaction".into()))?;
    let change = Change {
        actor,
        action: "document.put",
        subject: format!("{}/{}/{name}", version.model, version.version),
        reason: None,
        rule: None,
    };
    events::append(transaction, change, before.as_ref(), Some(&after))?;
    Ok(after)
}

pub fn find_document(
    connection: &Connection<'_>,
    model: &str,
    version: u64,
    name: &str,
) -> Result<Option<Document>> {
    let mut documents = query_documents(connection, model, version, Some(name))?;
    Ok(documents.pop())
}

pub fn list_documents(connection: &Connection<'_>, model: &str, version: u64) -> Result<Vec<Document>> {
    query_documents(connection, model, version, None)
}

fn query_documents(
    connection: &Connection<'_>,
    model: &str,
    version: u64,
    name_opt: Option<&str>,
) -> Result<Vec<Document>> {
    let mut statement = connection.prepare(
        "SELECT name, body, updated_at, updated_by FROM documents
         WHERE model = ?1 AND version = ?2 AND (CAST(?3 AS TEXT) IS NULL OR name = ?3) ORDER BY name",
    )?;
    let rows = statement.query_map(params![model, to_i64(version)?, name_opt], |row| {
        Ok((
            row.get::<_, String>(0)?,
            row.get::<_, String>(1)?,
            row.get::<_, String>(2)?,
            row.get::<_, String>(3)?,
        ))
    })?;
    let mut documents = Vec::new();
    for row in rows {
        let (name, body, updated_at, updated_by) = row?;
        documents.push(Document {
            model: model.to_string(),
            version,
            name,
            body: from_json(&body)?,
            updated_at,
            updated_by,
        });
    }
    Ok(documents)
}
