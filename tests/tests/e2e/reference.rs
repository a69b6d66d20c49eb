//! Outputs equal ONNX Runtime's reference (computed by models/train.py and
//! committed as fixtures) within 1e-5, for each example model and each engine
//! that loads it, over real HTTP.

use serde_json::{Value, json};
use sluice_tests::{
    Options, TestGateway, TestRepository, assert_outputs_match, example_model, fixture, request_row,
};

const TOLERANCE: f64 = 1e-5;

/// A repository serving `model` with the engine named in its config.
fn repository(model: &str, backend: &str) -> TestRepository {
    TestRepository::new()
        .with_model(model, 1, &example_model(model))
        .with_config(model, &format!("backend = \"{backend}\""))
}

async fn check_against_reference(model: &str, backend: &str, expected_engine: &str) {
    let gateway = TestGateway::start(&repository(model, backend)).await;
    let reference = fixture(model);
    let loaded = gateway.serving(model);
    assert_eq!(
        loaded.backend.name(),
        expected_engine,
        "{model} with backend = {backend}"
    );

    let (status, body) = gateway
        .post_json(&format!("/v2/models/{model}/infer"), &reference["request"])
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["model_name"], model);
    assert_eq!(body["model_version"], "1");
    assert_outputs_match(&body["outputs"], &reference["outputs"], TOLERANCE);

    // Row by row too: every batch size the model allows, batch 1 included.
    let rows = reference["request"]["inputs"][0]["shape"][0].as_u64().unwrap() as usize;
    for row in [0, rows - 1] {
        let request = request_row(&reference["request"], row);
        let (status, body) = gateway
            .post_json(&format!("/v2/models/{model}/infer"), &request)
            .await;
        assert_eq!(status, 200, "{body}");
        let expected = slice_outputs(&reference["outputs"], row, rows);
        assert_outputs_match(&body["outputs"], &expected, TOLERANCE);
    }
    gateway.server.shutdown().await.unwrap();
}

fn slice_outputs(outputs: &Value, row: usize, rows: usize) -> Value {
    let sliced: Vec<Value> = outputs
        .as_array()
        .unwrap()
        .iter()
        .map(|output| {
            let mut shape: Vec<u64> = serde_json::from_value(output["shape"].clone()).unwrap();
            let data = output["data"].as_array().unwrap();
            let per_row = data.len() / rows;
            shape[0] = 1;
            json!({
                "name": output["name"],
                "datatype": output["datatype"],
                "shape": shape,
                "data": data[row * per_row..(row + 1) * per_row].to_vec(),
            })
        })
        .collect();
    Value::Array(sliced)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credit_risk_matches_reference_on_tract() {
    check_against_reference("credit_risk", "tract", "tract").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credit_risk_matches_reference_on_ort() {
    check_against_reference("credit_risk", "ort", "ort").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digits_matches_reference_on_tract() {
    check_against_reference("digits", "tract", "tract").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digits_matches_reference_on_ort() {
    check_against_reference("digits", "ort", "ort").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_prefers_onnx_runtime_when_its_library_loads() {
    check_against_reference("digits", "auto", "ort").await;
}

/// The ONNX-ML Scaler op is beyond tract: asked for tract, the model falls
/// back to ONNX Runtime and still matches the reference.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ml_ops_model_falls_back_from_tract_to_ort() {
    check_against_reference("credit_risk_scaled", "tract", "ort").await;
}

/// Without ONNX Runtime, auto means tract.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_without_onnx_runtime_runs_tract() {
    let options = Options {
        with_ort: false,
        ..Options::default()
    };
    let gateway = TestGateway::start_with(&repository("credit_risk", "auto"), options).await;
    let loaded = gateway.serving("credit_risk");
    assert_eq!(loaded.backend.name(), "tract");
    let reference = fixture("credit_risk");
    let (status, body) = gateway
        .post_json("/v2/models/credit_risk/infer", &reference["request"])
        .await;
    assert_eq!(status, 200, "{body}");
    assert_outputs_match(&body["outputs"], &reference["outputs"], TOLERANCE);
}

/// Every datatype round-trips through JSON on both engines, exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_datatype_round_trips_on_both_engines() {
    for backend in ["tract", "ort"] {
        let gateway = TestGateway::start(&repository("all_types", backend)).await;
        let reference = fixture("all_types");
        let (status, body) = gateway
            .post_json("/v2/models/all_types/infer", &reference["request"])
            .await;
        assert_eq!(status, 200, "{backend}: {body}");
        let outputs = body["outputs"].as_array().unwrap();
        for want in reference["outputs"].as_array().unwrap() {
            let got = outputs.iter().find(|o| o["name"] == want["name"]).unwrap();
            assert_eq!(got["datatype"], want["datatype"], "{backend}");
            assert_eq!(got["shape"], want["shape"], "{backend}");
            if want["datatype"].as_str().unwrap().starts_with("FP") {
                // The fixture holds each float widened to f64; Sluice writes the
                // shortest text of the f32 (or f16) itself: equal within its precision.
                assert_outputs_match(
                    &Value::Array(vec![got.clone()]),
                    &Value::Array(vec![want.clone()]),
                    1e-7,
                );
            } else {
                assert_eq!(got["data"], want["data"], "{backend}: {} differs", want["name"]);
            }
        }
        gateway.server.shutdown().await.unwrap();
    }
}
