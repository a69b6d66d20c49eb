//! Artifact bytes in an object store, content-addressed by sha256
//! (`sha256/{hex}.onnx`): a local directory by default, an S3-compatible
//! bucket with `--store` ([`sluice_common::objects`]), through the same code.

use sluice_common::secrets::sha256_hex;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use object_store::local::LocalFileSystem;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::error::{Error, Result};
use sluice_common::objects::{Location, Traffic};
use sluice_registry_client::limits::quote;

#[derive(Clone)]
pub struct ArtifactStore {
    store: Arc<dyn ObjectStore>,
    /// The directory `file://` URIs may name (as configured, and its real
    /// path), and a store rooted there.
    import_opt: Option<(PathBuf, PathBuf, Arc<LocalFileSystem>)>,
}

impl ArtifactStore {
    /// Artifacts at `location`; `file://` imports allowed under `import_root_opt`.
    pub fn open(location: &Location, import_root_opt: Option<&Path>) -> Result<ArtifactStore> {
        let store = location
            .open(Traffic::Artifacts)
            .map_err(|err| Error::Internal(format!("cannot open the artifact store {location}: {err}")))?;
        let import_opt = import_root_opt
            .map(|configured| {
                let root = configured
                    .canonicalize()
                    .map_err(|err| Error::Internal(format!("import root {}: {err}", configured.display())))?;
                let store = LocalFileSystem::new_with_prefix(&root)?;
                Ok::<_, Error>((configured.to_path_buf(), root, Arc::new(store)))
            })
            .transpose()?;
        Ok(ArtifactStore { store, import_opt })
    }

    /// Lists the store once: a bucket that does not exist or a credential
    /// it refuses fails the registry's start, saying so, rather than every
    /// upload later. A store that cannot be reached right now is only
    /// logged: it may be back before anyone uploads.
    pub async fn check(&self, location: &Location) -> Result<()> {
        match self.store.list_with_delimiter(None).await {
            Ok(_) => Ok(()),
            Err(err) => match Error::from(err) {
                Error::Unavailable(message) => {
                    tracing::warn!(store = %location, error = %message, "the artifact store cannot be reached yet");
                    Ok(())
                }
                Error::Internal(message) => Err(Error::Internal(format!(
                    "the artifact store {location} refuses the registry: {message}"
                ))),
                other => Err(other),
            },
        }
    }

    fn location(sha256: &str) -> StorePath {
        StorePath::from(format!("sha256/{sha256}.onnx"))
    }

    /// Stores the bytes under their hash (the caller computed it).
    pub async fn put(&self, sha256: &str, bytes: Bytes) -> Result<()> {
        self.store
            .put(&Self::location(sha256), PutPayload::from_bytes(bytes))
            .await?;
        Ok(())
    }

    /// The artifact's bytes, checked against its sha256 before anyone
    /// (a gateway, a suite run) gets them: a store that rotted or was
    /// tampered with answers an error, never a different model.
    pub async fn get(&self, sha256: &str) -> Result<Bytes> {
        let bytes = match self.store.get(&Self::location(sha256)).await {
            Ok(found) => found.bytes().await?,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(Error::not_found(format!("no artifact with sha256 {sha256}")));
            }
            Err(err) => return Err(err.into()),
        };
        // Hashing a large model takes seconds: off the async threads.
        let (bytes, actual) = tokio::task::spawn_blocking(move || {
            let actual = sha256_hex(&bytes);
            (bytes, actual)
        })
        .await
        .map_err(|err| Error::Internal(format!("hashing task failed: {err}")))?;
        if actual != sha256 {
            metrics::counter!("sluice_registry_corrupt_artifacts_total").increment(1);
            tracing::error!(
                expected = sha256,
                actual,
                "a stored artifact does not match its sha256"
            );
            return Err(Error::Internal(format!(
                "the stored artifact {sha256} is corrupt (its bytes hash to {actual}): restore it from a backup or push the version again"
            )));
        }
        Ok(bytes)
    }

    /// Reads `file:///path` through the import store, refusing anything
    /// outside the import root and anything over `limit` bytes.
    pub async fn read_uri(&self, uri: &str, limit: usize) -> Result<Bytes> {
        let Some(path) = uri.strip_prefix("file://") else {
            return Err(Error::bad_request(format!(
                "cannot read '{uri}': expected a file:///absolute/path URI"
            )));
        };
        let Some((configured, root, store)) = &self.import_opt else {
            return Err(Error::refused(
                "this registry reads no URIs: start it with --import-root DIR, or upload the file",
            ));
        };
        let shown = quote(uri);
        let outside = || Error::refused(format!("'{shown}' is outside the import root {}", root.display()));
        let path = Path::new(path);
        if !path.is_absolute() {
            return Err(Error::bad_request(format!(
                "cannot read '{shown}': expected an absolute path (file:///...)"
            )));
        }
        // Whether a path is under the root is decided from its text alone,
        // before the file system is asked anything, and every failure after
        // that has one answer: the registry must not tell callers what
        // exists elsewhere (through `..`, or a link that leads out).
        let lexical = path
            .components()
            .all(|part| matches!(part, Component::RootDir | Component::Normal(_)));
        let under_root = path.starts_with(root) || path.starts_with(configured);
        if !lexical || !under_root {
            return Err(outside());
        }
        let unreadable = || {
            Error::bad_request(format!(
                "cannot read '{shown}': no readable file under the import root there"
            ))
        };
        let canonical = path.canonicalize().map_err(|_| unreadable())?;
        let relative = canonical.strip_prefix(root).map_err(|_| unreadable())?;
        let location = StorePath::from_iter(
            relative
                .components()
                .map(|part| part.as_os_str().to_string_lossy().into_owned()),
        );
        let meta = store.head(&location).await.map_err(|_| unreadable())?;
        if meta.size > limit as u64 {
            return Err(Error::PayloadTooLarge { limit });
        }
        let found = store.get(&location).await.map_err(|_| unreadable())?;
        found.bytes().await.map_err(|_| unreadable())
    }
}
