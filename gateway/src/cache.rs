//! The gateway's local artifact cache: what lets it start, and keep loading
//! versions it already has, while the registry is down.
//!
//! `DIR/artifacts/{sha256}.onnx` holds each artifact under its hash, and
//! `DIR/deployments.json` the last set of deployments that was served in
//! full. Every read is checked against the sha256 in its name: a file that
//! was corrupted on disk is removed and fetched again, never loaded.

use std::io::Write;
use std::path::{Path, PathBuf};

use sluice_common::secrets::is_sha256;
pub use sluice_common::secrets::sha256_hex;
use sluice_registry_client::types::Deployments;

const DEPLOYMENTS_FILE: &str = "deployments.json";

pub struct ArtifactCache {
    dir: PathBuf,
}

/// What reading a cached artifact found.
#[derive(Debug)]
pub enum Cached {
    Intact(Vec<u8>),
    Missing,
    /// The bytes did not hash to their name; the file was removed.
    Corrupt,
}

impl ArtifactCache {
    pub fn open(dir: &Path) -> std::io::Result<ArtifactCache> {
        std::fs::create_dir_all(dir.join("artifacts"))?;
        Ok(ArtifactCache {
            dir: dir.to_path_buf(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn artifact_path(&self, sha256: &str) -> PathBuf {
        self.dir.join("artifacts").join(format!("{sha256}.onnx"))
    }

    pub fn read(&self, sha256: &str) -> Cached {
        // The name comes from the registry (or the cached deployments): never
        // let it be a path.
        if !is_sha256(sha256) {
            return Cached::Missing;
        }
        let path = self.artifact_path(sha256);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(_) => return Cached::Missing,
        };
        if sha256_hex(&bytes) == sha256 {
            return Cached::Intact(bytes);
        }
        metrics::counter!(crate::metrics::CACHE_CORRUPTIONS).increment(1);
        tracing::error!(file = %path.display(), "cached artifact does not match its sha256: removing it and fetching it again");
        let _ = std::fs::remove_file(&path);
        Cached::Corrupt
    }

    /// Stores verified bytes: written aside, synced, renamed into place.
    pub fn write(&self, sha256: &str, bytes: &[u8]) -> std::io::Result<()> {
        if !is_sha256(sha256) {
            return Err(std::io::Error::other(format!("'{sha256}' is not a sha256")));
        }
        write_atomically(&self.artifact_path(sha256), bytes)
    }

    /// The deployments last served in full, if any were saved.
    pub fn load_deployments(&self) -> Option<Deployments> {
        let path = self.dir.join(DEPLOYMENTS_FILE);
        let text = std::fs::read(&path).ok()?;
        match serde_json::from_slice(&text) {
            Ok(deployments) => Some(deployments),
            Err(err) => {
                tracing::error!(file = %path.display(), error = %err, "cannot read the cached deployments");
                None
            }
        }
    }

    pub fn save_deployments(&self, deployments: &Deployments) -> std::io::Result<()> {
        let text = serde_json::to_vec_pretty(deployments).map_err(std::io::Error::other)?;
        write_atomically(&self.dir.join(DEPLOYMENTS_FILE), &text)
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let partial = path.with_extension("partial");
    let mut file = std::fs::File::create(&partial)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&partial, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_corrupted_artifact_is_detected_and_removed() {
        let dir = std::env::temp_dir().join(format!("sluice-cache-{}", std::process::id()));
        let cache = ArtifactCache::open(&dir).unwrap();
        let bytes = b"model bytes".to_vec();
        let sha256 = sha256_hex(&bytes);
        assert!(matches!(cache.read(&sha256), Cached::Missing));
        cache.write(&sha256, &bytes).unwrap();
        assert!(matches!(cache.read(&sha256), Cached::Intact(read) if read == bytes));
        std::fs::write(cache.artifact_path(&sha256), b"model bytez").unwrap();
        assert!(matches!(cache.read(&sha256), Cached::Corrupt));
        assert!(matches!(cache.read(&sha256), Cached::Missing));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
