//! The floor of the side-by-side benchmark: each model run in-process on one
//! thread, with the server's own codec and engine, no HTTP. Prints, per
//! model, the median time of the run alone and of decode + run + encode of
//! the benchmark's request body, and what one core could answer at that pace;
//! then the run of 32 such rows at once, per row: the most dynamic batching
//! can save on the engine's side.
//!
//! `floor DIR` reads `DIR/repository/{model}/1/model.onnx` and
//! `DIR/requests/{model}.json` (written by `benches/peers/models.py`);
//! ONNX Runtime comes from `ORT_DYLIB_PATH`.

#![allow(clippy::print_stdout, reason = "the table is this program's output")]

use std::path::PathBuf;

use sluice_gateway::backend::{BackendChoice, EngineOptions, Engines};
use sluice_gateway::model::LoadedModel;
use sluice_gateway::protocol::{request, response};
use sluice_gateway::tensor::Tensor;

const MODELS: [&str; 3] = ["mlp", "logreg30", "cnn"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::args().nth(1).ok_or("usage: floor DIR")?);
    let options = EngineOptions {
        ort_library_opt: std::env::var_os("ORT_DYLIB_PATH").map(PathBuf::from),
        ort_sessions: 1,
        ort_intra_threads: 1,
        ..EngineOptions::default()
    };
    let engines = Engines::new(&options);
    // `FLOOR_ENGINE=tract` measures tract instead of ONNX Runtime.
    let choice = match std::env::var("FLOOR_ENGINE").as_deref() {
        Ok("tract") => BackendChoice::Tract,
        _ => BackendChoice::Ort,
    };
    println!(
        "{:<10} {:>12} {:>12} {:>14} {:>14} {:>16}",
        "model", "run µs", "decode µs", "codec+run µs", "req/s/core", "b32 run µs/row"
    );
    for name in MODELS {
        let artifact = std::fs::read(root.join("repository").join(name).join("1/model.onnx"))?;
        let body = std::fs::read(root.join("requests").join(format!("{name}.json")))?;
        let model = LoadedModel::load(&engines, name, 1, &artifact, choice, None)?;
        let decoded = request::decode(&body, None, &model.signature)?;
        let samples = if name == "cnn" { 2_000 } else { 20_000 };
        let inputs = decoded.inputs;
        let run = sluice_benches::median(samples, || {
            let _ = model.run(inputs.clone());
        });
        let decode = sluice_benches::median(samples, || {
            let _ = request::decode(&body, None, &model.signature);
        });
        let full = sluice_benches::median(samples, || {
            let Ok(decoded) = request::decode(&body, None, &model.signature) else {
                return;
            };
            if let Ok(outputs) = model.run(decoded.inputs) {
                let _ = response::encode(&model, None, &decoded.outputs, &outputs);
            }
        });
        let batch: Vec<Tensor> = inputs
            .iter()
            .map(|input| Tensor::concat_rows(&[input; 32]).expect("copies of one tensor fit together"))
            .collect();
        let batched = sluice_benches::median(samples / 10, || {
            let _ = model.run(batch.clone());
        });
        println!(
            "{name:<10} {:>12.1} {:>12.1} {:>14.1} {:>14.0} {:>16.1}",
            run.as_secs_f64() * 1e6,
            decode.as_secs_f64() * 1e6,
            full.as_secs_f64() * 1e6,
            1.0 / full.as_secs_f64(),
            batched.as_secs_f64() * 1e6 / 32.0
        );
    }
    Ok(())
}
