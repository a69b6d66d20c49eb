//! The engine alone: each benchmark model run by ONNX Runtime through `ort`
//! with nothing of Sluice around it, as a minimal Rust program would (one
//! session, one intra-op thread, default options, the input built once and
//! lent to each run). The baseline that Sluice's own run and its served
//! throughput are held against in `benches/peers.sh`.
//!
//! `engine_alone DIR` reads `DIR/repository/{model}/1/model.onnx` and the
//! first input of `DIR/requests/{model}.json`; ONNX Runtime comes from
//! `ORT_DYLIB_PATH`.

#![allow(clippy::print_stdout, reason = "the table is this program's output")]

use std::path::PathBuf;

use ort::session::Session;
use ort::value::TensorRef;

const MODELS: [&str; 3] = ["mlp", "logreg30", "cnn"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::args().nth(1).ok_or("usage: engine_alone DIR")?);
    let library = std::env::var_os("ORT_DYLIB_PATH").ok_or("set ORT_DYLIB_PATH")?;
    let environment = ort::init_from(PathBuf::from(library))?.build()?;
    println!("{:<10} {:>12} {:>12}", "model", "run µs", "runs/s");
    for name in MODELS {
        let mut session = Session::builder(&environment)?
            .with_intra_threads(1)?
            .with_inter_threads(1)?
            .commit_from_file(root.join("repository").join(name).join("1/model.onnx"))?;
        let request: serde_json::Value = serde_json::from_slice(&std::fs::read(
            root.join("requests").join(format!("{name}.json")),
        )?)?;
        let input = &request["inputs"][0];
        let shape: Vec<i64> = serde_json::from_value(input["shape"].clone())?;
        let data: Vec<f32> = serde_json::from_value(input["data"].clone())?;
        let input_name = session.inputs()[0].name().to_string();
        let samples = if name == "cnn" { 2_000 } else { 20_000 };
        let mut failed = None;
        let run = sluice_benches::median(samples, || {
            let outcome = TensorRef::from_array_view((shape.clone(), data.as_slice()))
                .and_then(|tensor| session.run(ort::inputs![input_name.as_str() => tensor]).map(drop));
            if let Err(err) = outcome {
                failed = Some(err);
            }
        });
        if let Some(err) = failed {
            return Err(format!("{name}: {err}").into());
        }
        println!(
            "{name:<10} {:>12.1} {:>12.0}",
            run.as_secs_f64() * 1e6,
            1.0 / run.as_secs_f64()
        );
    }
    Ok(())
}
