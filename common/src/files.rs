//! Files and directories Sluice creates are its owner's alone, whatever the
//! umask: the database, artifacts, logs, feedback, trigger runs and caches
//! hold models, predictions and secrets. `sluice` also sets its umask to
//! 077 at start, so what libraries create for it (SQLite's journal, the
//! object store's files) is owner-only too; these helpers hold the line for
//! an embedder that does not.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

/// Mode of the directories Sluice creates.
pub const PRIVATE_DIR_MODE: u32 = 0o700;

/// Mode of the files Sluice creates.
pub const PRIVATE_FILE_MODE: u32 = 0o600;

/// Creates `path` and its missing parents, each owner-only; what exists
/// already is left as it is (the operator's choice).
pub fn create_dir_all(path: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(PRIVATE_DIR_MODE)
        .create(path)
}

/// Creates (or truncates) an owner-only file for writing.
pub fn create(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(PRIVATE_FILE_MODE)
        .open(path)
}

/// Writes `bytes` to an owner-only file at `path`.
pub fn write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    create(path)?.write_all(bytes)
}

/// Creates `path` owner-only, refusing to replace a file that exists (a
/// bootstrap token written twice would lose the first), and syncs it.
pub fn create_new(path: &Path, contents: &str) -> Result<(), String> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(PRIVATE_FILE_MODE)
        .open(path)
        .map_err(|err| format!("cannot create {}: {err}", path.display()))?;
    file.write_all(contents.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|err| format!("cannot write {}: {err}", path.display()))
}

/// Replaces `path` with `contents`, readable by its owner only: written
/// aside and renamed, so the file is never seen half written.
pub fn replace(path: &Path, contents: &str) -> Result<(), String> {
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    let partial = std::path::PathBuf::from(partial);
    let _ = std::fs::remove_file(&partial);
    create_new(&partial, contents)?;
    std::fs::rename(&partial, path).map_err(|err| format!("cannot replace {}: {err}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn owner_only_whatever_the_umask() {
        let dir = tempfile_dir();
        let nested = dir.join("a/b");
        create_dir_all(&nested).unwrap();
        write(&nested.join("f"), b"x").unwrap();
        let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir.join("a")), 0o700);
        assert_eq!(mode(&nested), 0o700);
        assert_eq!(mode(&nested.join("f")), 0o600);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("sluice-files-{}-{}", std::process::id(), line!()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }
}
