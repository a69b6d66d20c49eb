//! ONNX Runtime's session options for a pool of sessions, side by side: the
//! resident memory of 100 copies of a model at two sessions each, and the
//! median batch-1 and batch-32 run, for each way of holding the weights
//! that `sluice_gateway::backend::ort` weighed (its choice is
//! `shared-unpacked` for pools, `one-session` for a pool of one).
//!
//! `ort_options FILE WIDTH MODE`: FILE takes one FP32 input `[N, WIDTH]`
//! (the benchmark's MLP: 784). MODE is `defaults` (a copy per session),
//! `shared-packed` (initializers shared, pre-packing on, one pre-packed
//! weights container per model), `shared-unpacked` (shared, pre-packing and
//! the memory arena off: Sluice's pools) or `one-session`. One mode per process: freed memory is not reliably
//! given back, so the next mode's figure would be wrong.

#![allow(clippy::print_stdout, reason = "the line is this program's output")]

use std::sync::Arc;

use ort::session::Session;
use ort::session::builder::PrepackedWeights;
use ort::value::{DynValue, Tensor};
use sluice_gateway::backend::onnx;

const COPIES: usize = 100;

/// Initializers by name, as every session of a model reads them.
type Shared = Vec<(String, Arc<DynValue>)>;

/// The model's FP32 initializers as tensors to share.
fn initializers(artifact: &[u8]) -> Result<Shared, Box<dyn std::error::Error>> {
    let proto = onnx::decode(artifact)?;
    let graph = proto.graph.ok_or("no graph")?;
    let mut shared = Vec::new();
    for tensor in graph
        .initializer
        .into_iter()
        .filter(|tensor| tensor.data_type == 1)
    {
        let values: Vec<f32> = if tensor.raw_data.is_empty() {
            tensor.float_data
        } else {
            tensor
                .raw_data
                .chunks_exact(4)
                .map(|chunk| f32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]))
                .collect()
        };
        let value = Tensor::from_array((tensor.dims, values))?.into_dyn();
        shared.push((tensor.name, Arc::new(value)));
    }
    Ok(shared)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: ort_options FILE WIDTH defaults|shared-packed|shared-unpacked|one-session";
    let artifact = std::fs::read(args.next().ok_or(usage)?)?;
    let width: usize = args.next().ok_or(usage)?.parse()?;
    let mode = args.next().ok_or(usage)?;
    let library = std::env::var_os("ORT_DYLIB_PATH").ok_or("set ORT_DYLIB_PATH")?;
    let environment = ort::init_from(std::path::PathBuf::from(library))?.build()?;
    let before = sluice_benches::resident_bytes()? / 1e6;
    let mut sessions = Vec::new();
    for _ in 0..COPIES {
        let (per_model, shared) = match mode.as_str() {
            "defaults" => (2, Vec::new()),
            "shared-packed" | "shared-unpacked" => (2, initializers(&artifact)?),
            "one-session" => (1, Vec::new()),
            _ => return Err(usage.into()),
        };
        let container = PrepackedWeights::new();
        for _ in 0..per_model {
            let mut builder = Session::builder(&environment)?
                .with_intra_threads(1)?
                .with_inter_threads(1)?;
            for (name, value) in &shared {
                builder = builder.with_initializer(name, value.clone())?;
            }
            if mode == "shared-packed" {
                builder = builder.with_prepacked_weights(&container)?;
            }
            if mode == "shared-unpacked" {
                builder =
                    builder
                        .with_prepacking(false)?
                        .with_execution_providers([ort::ep::CPU::default()
                            .with_arena_allocator(false)
                            .build()])?;
            }
            sessions.push(builder.commit_from_memory(&artifact)?);
        }
    }
    let resident = sluice_benches::resident_bytes()? / 1e6 - before;
    let session = &mut sessions[0];
    let input = session.inputs()[0].name().to_string();
    let row: Vec<f32> = (0..width).map(|i| (i as f32 * 0.37).sin()).collect();
    let mut runs = Vec::new();
    for batch in [1usize, 32] {
        let data: Vec<f32> = row.iter().cycle().take(width * batch).copied().collect();
        let mut failed = None;
        let run = sluice_benches::median(if batch == 1 { 20_000 } else { 2_000 }, || {
            let outcome = Tensor::from_array((vec![batch as i64, width as i64], data.clone()))
                .and_then(|tensor| session.run(ort::inputs![input.as_str() => tensor]).map(drop));
            if let Err(err) = outcome {
                failed = Some(err);
            }
        });
        if let Some(err) = failed {
            return Err(err.into());
        }
        runs.push(run.as_secs_f64() * 1e6);
    }
    println!(
        "{mode:<16} {resident:>8.0} MB for {COPIES} copies  b1 {:>7.1} µs  b32 {:>7.1} µs",
        runs[0], runs[1]
    );
    Ok(())
}
