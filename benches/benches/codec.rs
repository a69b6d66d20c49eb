//! Decoding one 784-float input (an MNIST-sized image) from a JSON body and
//! from a binary-extension body.
//!
//! Guards the request decoder: FIELD-NOTES measured float parsing, not the
//! model, as the largest CPU cost of a JSON request.

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;
use sluice_gateway::protocol::request;
use sluice_gateway::signature::{Signature, TensorSpec};
use sluice_gateway::tensor::DataType;

const FLOATS: usize = 784;

fn signature() -> Signature {
    Signature {
        inputs: vec![TensorSpec {
            name: "image".into(),
            datatype: DataType::F32,
            shape: vec![-1, FLOATS as i64],
            dim_symbols: vec![Some("N".into()), None],
            labels: Vec::new(),
        }],
        outputs: vec![],
    }
}

/// Pixel-like values with a realistic number of digits.
fn pixels() -> Vec<f32> {
    (0..FLOATS).map(|i| ((i * 7919) % 1000) as f32 / 997.0).collect()
}

fn codec(c: &mut Criterion) {
    let signature = signature();
    let values = pixels();
    let json_body = serde_json::to_vec(&json!({
        "inputs": [{ "name": "image", "shape": [1, FLOATS], "datatype": "FP32", "data": values }]
    }))
    .unwrap();
    let header = serde_json::to_vec(&json!({
        "inputs": [{ "name": "image", "shape": [1, FLOATS], "datatype": "FP32",
                     "parameters": { "binary_data_size": FLOATS * 4 } }]
    }))
    .unwrap();
    let mut binary_body = header.clone();
    values
        .iter()
        .for_each(|v| binary_body.extend_from_slice(&v.to_le_bytes()));

    let mut group = c.benchmark_group("decode_784_fp32");
    group.bench_function("json", |b| {
        b.iter(|| request::decode(&json_body, None, &signature).unwrap())
    });
    group.bench_function("binary", |b| {
        b.iter(|| request::decode(&binary_body, Some(header.len()), &signature).unwrap())
    });
    group.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
