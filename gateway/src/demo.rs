//! The built-in example models of `sluice serve --demo`, compiled into the
//! binary so the demo needs nothing else installed. They are written out as
//! an ordinary model repository and served through the same path as any other.

use std::path::Path;

const DEMO_MODELS: &[(&str, &[u8])] = &[
    (
        "credit_risk",
        include_bytes!("../../models/repository/credit_risk/1/model.onnx"),
    ),
    (
        "digits",
        include_bytes!("../../models/repository/digits/1/model.onnx"),
    ),
];

/// Writes the demo repository under `dir` (created if missing).
pub fn write_repository(dir: &Path) -> std::io::Result<()> {
    for (name, artifact) in DEMO_MODELS {
        let version_dir = dir.join(name).join("1");
        std::fs::create_dir_all(&version_dir)?;
        let target = version_dir.join(crate::repository::MODEL_FILE);
        // Write aside and rename, so the poller never reads half a file.
        let partial = version_dir.join("model.onnx.partial");
        std::fs::write(&partial, artifact)?;
        std::fs::rename(&partial, &target)?;
    }
    Ok(())
}
