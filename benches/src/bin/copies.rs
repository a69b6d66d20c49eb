//! The memory of many copies of one model: loads `COUNT` versions of the
//! model file through Sluice's engines, as a gateway serving that many
//! versions would, and prints the process's resident memory they added
//! against the size of the file (which is almost all weights).
//!
//! `copies FILE COUNT ENGINE` with ENGINE `ort` (ONNX Runtime from
//! `ORT_DYLIB_PATH`, one session per core, the gateway's default) or `tract`.
//! One engine per process: freed memory is not reliably given back to the
//! system, so a second engine measured after the first would be wrong.

#![allow(clippy::print_stdout, reason = "the line is this program's output")]

use std::path::PathBuf;

use sluice_gateway::backend::{BackendChoice, EngineOptions, Engines};
use sluice_gateway::model::LoadedModel;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: copies FILE COUNT ort|tract";
    let file = PathBuf::from(args.next().ok_or(usage)?);
    let count: u64 = args.next().ok_or(usage)?.parse()?;
    let (engine, choice) = match args.next().as_deref() {
        Some("ort") => ("ort", BackendChoice::Ort),
        Some("tract") => ("tract", BackendChoice::Tract),
        _ => return Err(usage.into()),
    };
    let options = EngineOptions {
        ort_library_opt: std::env::var_os("ORT_DYLIB_PATH").map(PathBuf::from),
        ..EngineOptions::default()
    };
    let engines = Engines::new(&options);
    let artifact = std::fs::read(&file)?;
    let before = sluice_benches::resident_bytes()?;
    let models = (1..=count)
        .map(|version| LoadedModel::load(&engines, "copy", version, &artifact, choice, None))
        .collect::<Result<Vec<_>, _>>()?;
    let added = sluice_benches::resident_bytes()? - before;
    let weights = artifact.len() as f64 * count as f64;
    println!(
        "{engine:<6} {count:>4} copies, {} sessions each: {:>6.0} MB resident for {:>6.0} MB of model files ({:.2}x)",
        if engine == "ort" { options.ort_sessions } else { 1 },
        added / 1e6,
        weights / 1e6,
        added / weights
    );
    drop(models);
    Ok(())
}
