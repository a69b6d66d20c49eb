//! In-process inference per engine, batch 1 and 32, without HTTP.
//!
//! Guards the glue between Sluice's tensors and each engine (conversion,
//! ONNX Runtime's session pool) against regressions that the end-to-end
//! figure would hide behind HTTP and JSON.

use std::sync::Arc;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use sluice_gateway::backend::{BackendChoice, EngineOptions, Engines};
use sluice_gateway::model::LoadedModel;
use sluice_gateway::tensor::{Tensor, TensorData};
use sluice_tests::{example_model, ort_library};

/// Zeros shaped like the model's inputs, with `batch` rows.
fn batch_of_zeros(model: &LoadedModel, batch: usize) -> Vec<Tensor> {
    model
        .signature
        .inputs
        .iter()
        .map(|spec| {
            let shape: Vec<usize> = spec
                .shape
                .iter()
                .enumerate()
                .map(|(axis, &dim)| if axis == 0 { batch } else { dim.max(1) as usize })
                .collect();
            let len = shape.iter().product();
            Tensor {
                shape,
                data: TensorData::zeros(spec.datatype, len),
            }
        })
        .collect()
}

fn inference(c: &mut Criterion) {
    let engines = Engines::new(&EngineOptions {
        ort_library_opt: Some(ort_library()),
        ort_sessions: 1,
        ort_intra_threads: 1,
        ..EngineOptions::default()
    });
    let mut group = c.benchmark_group("inference");
    for name in ["credit_risk", "digits"] {
        let artifact = example_model(name);
        for (label, choice) in [("tract", BackendChoice::Tract), ("ort", BackendChoice::Ort)] {
            let model: Arc<LoadedModel> =
                LoadedModel::load(&engines, name, 1, &artifact, choice, None).expect("loading");
            for batch in [1, 32] {
                let inputs = batch_of_zeros(&model, batch);
                group.bench_function(format!("{name}/{label}/b{batch}"), |b| {
                    b.iter_batched(
                        || inputs.clone(),
                        |inputs| model.run(inputs).unwrap(),
                        BatchSize::SmallInput,
                    )
                });
            }
        }
    }
    group.finish();
}

criterion_group!(benches, inference);
criterion_main!(benches);
