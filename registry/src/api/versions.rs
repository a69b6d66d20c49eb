//! Models, artifacts, versions and their documents.
//!
//! A version is registered in two steps, as container registries do with
//! blobs and manifests: the artifact is uploaded (hashed, loaded by an engine,
//! stored under its sha256), then a version is created on it with its
//! lineage. So there is never a version without its artifact, and an
//! artifact alone is never a version.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use sluice_registry_client::contract::{CONTRACT_DOCUMENT, DataContract};
use sluice_registry_client::types::{
    Artifact, ArtifactSource, CreateModel, CreateVersion, Document, Model, UpdateModel, Version,
};

use super::{AppState, Body, PathParams};
use crate::auth::{Caller, Permission};
use crate::error::{Error, Result};
use crate::store::{models, versions};
use sluice_common::secrets::sha256_hex;

#[utoipa::path(
    get,
    path = "/api/v1/models",
    tag = "models",
    responses((status = 200, body = Vec<Model>))
)]
pub async fn list_models(State(state): State<Arc<AppState>>, caller: Caller) -> Result<Json<Vec<Model>>> {
    caller.require(Permission::Read)?;
    state
        .blocking(|store, _| store.read(models::list))
        .await
        .map(Json)
}

#[utoipa::path(
    post,
    path = "/api/v1/models",
    tag = "models",
    request_body = CreateModel,
    responses((status = 201, body = Model))
)]
pub async fn create_model(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Body(body): Body<CreateModel>,
) -> Result<(StatusCode, Json<Model>)> {
    caller.require(Permission::Register)?;
    let model = state
        .blocking(move |store, _| store.write(|tx| models::create(tx, &caller.actor, &body)))
        .await?;
    Ok((StatusCode::CREATED, Json(model)))
}

#[utoipa::path(
    get,
    path = "/api/v1/models/{model}",
    tag = "models",
    params(("model" = String, Path, description = "A model name")),
    responses((status = 200, body = Model))
)]
pub async fn get_model(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathParams(model): PathParams<String>,
) -> Result<Json<Model>> {
    caller.require(Permission::Read)?;
    state
        .blocking(move |store, _| store.read(|connection| models::get(connection, &model)))
        .await
        .map(Json)
}

#[utoipa::path(
    patch,
    path = "/api/v1/models/{model}",
    tag = "models",
    params(("model" = String, Path, description = "A model name")),
    request_body = UpdateModel,
    responses((status = 200, body = Model))
)]
pub async fn update_model(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathParams(model): PathParams<String>,
    Body(body): Body<UpdateModel>,
) -> Result<Json<Model>> {
    caller.require(Permission::Register)?;
    state
        .blocking(move |store, _| store.write(|tx| models::update(tx, &caller.actor, &model, &body)))
        .await
        .map(Json)
}

#[utoipa::path(
    post,
    path = "/api/v1/artifacts",
    tag = "artifacts",
    request_body(content = sluice_common::openapi::Bytes, content_type = "application/octet-stream", description = "The ONNX file"),
    responses((status = 201, description = "A new artifact", body = Artifact), (status = 200, description = "An artifact already stored", body = Artifact))
)]
/// `POST /api/v1/artifacts`: the body is the ONNX file, read as it streams
/// and refused as soon as it passes the size limit.
pub async fn upload_artifact(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<(StatusCode, Json<Artifact>)> {
    caller.require(Permission::Register)?;
    let limit = state.max_artifact_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(Error::PayloadTooLarge { limit });
    }
    let bytes = collect_upload(body, limit, state.upload_idle_timeout).await?;
    let (artifact, created) = ingest(&state, &caller.actor, bytes).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(artifact)))
}

/// Reads an upload whole, up to `limit` bytes, giving up on a client that
/// sends nothing for `idle`. Nothing is stored until every byte is in: a
/// client that breaks off leaves nothing behind.
async fn collect_upload(body: axum::body::Body, limit: usize, idle: std::time::Duration) -> Result<Bytes> {
    let mut body = Limited::new(body, limit);
    let mut bytes = bytes::BytesMut::new();
    loop {
        let frame = match tokio::time::timeout(idle, body.frame()).await {
            Err(_) => return Err(Error::UploadStalled(idle.as_millis() as u64)),
            Ok(None) => return Ok(bytes.freeze()),
            Ok(Some(Err(err))) if err.is::<http_body_util::LengthLimitError>() => {
                return Err(Error::PayloadTooLarge { limit });
            }
            Ok(Some(Err(err))) => return Err(Error::bad_request(format!("the upload broke off: {err}"))),
            Ok(Some(Ok(frame))) => frame,
        };
        if let Ok(data) = frame.into_data() {
            bytes.extend_from_slice(&data);
        }
    }
}

/// Hashes, loads (to read the signature and prove an engine can run it) and
/// stores an artifact; `true` when it was new.
async fn ingest(state: &AppState, actor: &str, bytes: Bytes) -> Result<(Artifact, bool)> {
    if bytes.is_empty() {
        return Err(Error::bad_request(
            "the artifact is empty: expected an ONNX model",
        ));
    }
    let inspector = state.inspector.clone();
    let for_inspection = bytes.clone();
    let store = state.store.clone();
    // Hashing and loading a large model take a while: off the reactor.
    let (sha256, known) = tokio::task::spawn_blocking(move || {
        let sha256 = sha256_hex(&for_inspection);
        let known = store.read(|connection| versions::find_artifact(connection, &sha256))?;
        Ok::<_, Error>((sha256, known))
    })
    .await
    .map_err(|err| Error::Internal(format!("hashing task failed: {err}")))??;
    if let Some(artifact) = known {
        // The bytes may have been lost from the store: putting them again is harmless.
        state.artifacts.put(&sha256, bytes).await?;
        return Ok((artifact, false));
    }
    let signature = tokio::task::spawn_blocking(move || {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| inspector.inspect(&bytes)))
            .unwrap_or_else(|_| Err("the engine panicked while loading it".into()))
            .map(|signature| (signature, bytes))
    })
    .await
    .map_err(|err| Error::Internal(format!("inspection task failed: {err}")))?
    .map_err(|reason| Error::bad_request(format!("not a model Sluice can serve: {reason}")))?;
    let (signature, bytes) = signature;
    let artifact = Artifact {
        sha256: sha256.clone(),
        size: bytes.len() as u64,
        signature,
    };
    // Bytes first, then the record: a crash between leaves an unreferenced
    // file, never a record without its bytes.
    state.artifacts.put(&sha256, bytes).await?;
    let actor = actor.to_string();
    let recorded = artifact.clone();
    state
        .blocking(move |store, _| store.write(|tx| versions::record_artifact(tx, &actor, &recorded)))
        .await?;
    Ok((artifact, true))
}

#[utoipa::path(
    get,
    path = "/api/v1/artifacts/{sha256}",
    tag = "artifacts",
    params(("sha256" = String, Path, description = "64 lowercase hex digits")),
    responses((status = 200, description = "The ONNX file", content_type = "application/octet-stream", body = sluice_common::openapi::Bytes))
)]
pub async fn download_artifact(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathParams(sha256): PathParams<String>,
) -> Result<Response> {
    caller.require(Permission::Read)?;
    if !sluice_common::secrets::is_sha256(&sha256) {
        return Err(Error::bad_request(format!(
            "'{sha256}' is not a sha256: expected 64 lowercase hex digits"
        )));
    }
    let bytes = state.artifacts.get(&sha256).await?;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response())
}

#[utoipa::path(
    post,
    path = "/api/v1/models/{model}/versions",
    tag = "versions",
    params(("model" = String, Path, description = "A model name")),
    request_body = CreateVersion,
    responses((status = 201, body = Version))
)]
pub async fn create_version(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathParams(model): PathParams<String>,
    Body(body): Body<CreateVersion>,
) -> Result<(StatusCode, Json<Version>)> {
    caller.require(Permission::Register)?;
    let check_model = model.clone();
    state
        .blocking(move |store, _| store.read(|connection| models::get(connection, &check_model)))
        .await?;
    // Before any artifact is stored: a refused version leaves nothing behind.
    versions::check_lineage(&body.lineage)?;
    let (sha256, source_uri_opt) = match body.artifact {
        ArtifactSource::Sha256(sha256) => {
            if !sluice_common::secrets::is_sha256(&sha256) {
                return Err(Error::bad_request(format!(
                    "artifact sha256 '{sha256}' is not 64 lowercase hex digits"
                )));
            }
            (sha256, None)
        }
        ArtifactSource::Uri(uri) => {
            let bytes = state.artifacts.read_uri(&uri, state.max_artifact_bytes).await?;
            let (artifact, _) = ingest(&state, &caller.actor, bytes).await?;
            (artifact.sha256, Some(uri))
        }
    };
    let lineage = body.lineage;
    let version = state
        .blocking(move |store, _| {
            store.write(|tx| {
                versions::create(
                    tx,
                    &caller.actor,
                    &model,
                    &sha256,
                    &lineage,
                    source_uri_opt.as_deref(),
                )
            })
        })
        .await?;
    Ok((StatusCode::CREATED, Json(version)))
}

#[utoipa::path(
    get,
    path = "/api/v1/models/{model}/versions",
    tag = "versions",
    params(("model" = String, Path, description = "A model name")),
    responses((status = 200, body = Vec<Version>))
)]
pub async fn list_versions(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathParams(model): PathParams<String>,
) -> Result<Json<Vec<Version>>> {
    caller.require(Permission::Read)?;
    state
        .blocking(move |store, _| store.read(|connection| versions::list(connection, &model)))
        .await
        .map(Json)
}

#[utoipa::path(
    get,
    path = "/api/v1/models/{model}/versions/{version}",
    tag = "versions",
    params(("model" = String, Path, description = "A model name"), ("version" = String, Path, description = "A version number, or an alias")),
    responses((status = 200, body = Version))
)]
pub async fn get_version(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathParams((model, version)): PathParams<(String, String)>,
) -> Result<Json<Version>> {
    caller.require(Permission::Read)?;
    state
        .blocking(move |store, _| store.read(|connection| versions::resolve(connection, &model, &version)))
        .await
        .map(Json)
}

#[utoipa::path(
    get,
    path = "/api/v1/models/{model}/versions/{version}/documents",
    tag = "versions",
    params(("model" = String, Path, description = "A model name"), ("version" = String, Path, description = "A version number, or an alias")),
    responses((status = 200, body = Vec<Document>))
)]
pub async fn list_documents(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathParams((model, version)): PathParams<(String, String)>,
) -> Result<Json<Vec<Document>>> {
    caller.require(Permission::Read)?;
    state
        .blocking(move |store, _| {
            store.read(|connection| {
                let version = versions::resolve(connection, &model, &version)?;
                versions::list_documents(connection, &model, version.version)
            })
        })
        .await
        .map(Json)
}

#[utoipa::path(
    get,
    path = "/api/v1/models/{model}/versions/{version}/documents/{name}",
    tag = "versions",
    params(("model" = String, Path, description = "A model name"), ("version" = String, Path, description = "A version number, or an alias"), ("name" = String, Path, description = "A document name")),
    responses((status = 200, body = Document))
)]
pub async fn get_document(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathParams((model, version, name)): PathParams<(String, String, String)>,
) -> Result<Json<Document>> {
    caller.require(Permission::Read)?;
    state
        .blocking(move |store, _| {
            store.read(|connection| {
                let version = versions::resolve(connection, &model, &version)?;
                versions::find_document(connection, &model, version.version, &name)?.ok_or_else(|| {
                    Error::not_found(format!(
                        "version {} of '{model}' has no document '{name}'",
                        version.version
                    ))
                })
            })
        })
        .await
        .map(Json)
}

#[utoipa::path(
    put,
    path = "/api/v1/models/{model}/versions/{version}/documents/{name}",
    tag = "versions",
    params(("model" = String, Path, description = "A model name"), ("version" = String, Path, description = "A version number, or an alias"), ("name" = String, Path, description = "A document name")),
    request_body = serde_json::Value,
    responses((status = 200, body = Document))
)]
pub async fn put_document(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathParams((model, version, name)): PathParams<(String, String, String)>,
    Body(body): Body<serde_json::Value>,
) -> Result<Json<Document>> {
    caller.require(Permission::Register)?;
    state
        .blocking(move |store, _| {
            store.write(|tx| {
                let version = versions::resolve(tx, &model, &version)?;
                // A contract gateways could not enforce is refused here, not discovered there.
                if name == CONTRACT_DOCUMENT {
                    check_contract(&body, &version)?;
                }
                versions::put_document(tx, &caller.actor, &version, &name, &body)
            })
        })
        .await
        .map(Json)
}

/// A `contract` document parses, can be enforced, and names only columns of
/// the version's inputs.
fn check_contract(body: &serde_json::Value, version: &Version) -> Result<()> {
    // serde reads a struct from an array too: a contract is an object.
    if !body.is_object() {
        return Err(Error::bad_request(
            "document 'contract' is not a data contract: expected an object",
        ));
    }
    let contract: DataContract = serde_json::from_value(body.clone())
        .map_err(|err| Error::bad_request(format!("document 'contract' is not a data contract: {err}")))?;
    contract.validate().map_err(Error::bad_request)?;
    let inputs: Vec<(&str, &[i64])> = version
        .signature
        .inputs
        .iter()
        .map(|spec| (spec.name.as_str(), spec.shape.as_slice()))
        .collect();
    contract.check_names(&inputs).map_err(Error::bad_request)
}
