//! What monitoring costs a request: counting its features into the
//! reference profile's bins (drift accounting, on every unpinned request of
//! a profiled version), for one applicant and for a batch of 64, and its
//! answers into theirs (prediction drift).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sluice_gateway::backend::{BackendChoice, EngineOptions, Engines};
use sluice_gateway::drift::DriftCounter;
use sluice_gateway::model::LoadedModel;
use sluice_gateway::tensor::{Tensor, TensorData};
use sluice_registry_client::profile::ReferenceProfile;
use sluice_tests::{example_model, repo_root};

fn drift_accounting(c: &mut Criterion) {
    let engines = Engines::new(&EngineOptions::default());
    let model = LoadedModel::load(
        &engines,
        "credit_risk",
        1,
        &example_model("credit_risk"),
        BackendChoice::Tract,
        None,
    )
    .unwrap();
    let profile: ReferenceProfile = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("models/repository/credit_risk/1/profile.json")).unwrap(),
    )
    .unwrap();
    let counter = DriftCounter::new(&profile, &model.signature).expect("the profile covers the inputs");
    let mut group = c.benchmark_group("drift_accounting");
    for rows in [1usize, 64] {
        // Eight [rows, 1] features, values spread over the bins.
        let inputs: Vec<Tensor> = (0..8)
            .map(|feature| Tensor {
                shape: vec![rows, 1],
                data: TensorData::F32(
                    (0..rows)
                        .map(|row| (row * 37 + feature * 11) as f32 % 90.0)
                        .collect(),
                ),
            })
            .collect();
        group.throughput(Throughput::Elements(rows as u64));
        group.bench_function(format!("{rows}_rows"), |b| {
            b.iter(|| counter.count(std::hint::black_box(&inputs)))
        });
    }
    // And the answers: a class and two scores per row (prediction drift).
    let outputs = [
        Tensor {
            shape: vec![1],
            data: TensorData::I64(vec![0]),
        },
        Tensor {
            shape: vec![1, 2],
            data: TensorData::F32(vec![0.8, 0.2]),
        },
    ];
    group.throughput(Throughput::Elements(1));
    group.bench_function("outputs_1_row", |b| {
        b.iter(|| counter.count_outputs(std::hint::black_box(&outputs)))
    });
    group.finish();
    // Keep the counts from growing into the next run's numbers.
    counter.take();
}

criterion_group!(benches, drift_accounting);
criterion_main!(benches);
