//! Engine choice and its failures, through the same loader the repository uses.

use std::time::Duration;

use sluice_gateway::backend::{BackendChoice, EngineOptions, Engines};
use sluice_gateway::model::LoadedModel;
use sluice_gateway::protocol::{request, response};
use sluice_registry_client::types::Batching;
use sluice_tests::{assert_outputs_match, example_model, ort_library};

fn engines(with_ort: bool) -> Engines {
    Engines::new(&EngineOptions {
        ort_library_opt: with_ort.then(ort_library),
        ort_sessions: 2,
        ort_intra_threads: 1,
        ..EngineOptions::default()
    })
}

#[test]
fn a_model_runs_inline_only_when_its_warm_run_beats_the_threshold_and_it_is_not_batched() {
    let artifact = example_model("credit_risk");
    let with_threshold = |inline_below: Duration| {
        Engines::new(&EngineOptions {
            ort_library_opt: Some(ort_library()),
            inline_below,
            ..EngineOptions::default()
        })
    };
    // Whatever this machine's speed: no run takes an hour, every run takes more than nothing.
    let generous = with_threshold(Duration::from_secs(3600));
    let model = LoadedModel::load(&generous, "credit_risk", 1, &artifact, BackendChoice::Auto, None).unwrap();
    assert!(model.runs_inline());
    let batching = Batching::with_max_batch_size(8);
    let batched = LoadedModel::load(
        &generous,
        "credit_risk",
        1,
        &artifact,
        BackendChoice::Auto,
        Some(&batching),
    )
    .unwrap();
    assert!(!batched.runs_inline(), "a batched model queues");
    assert!(batched.batcher_opt.is_some());
    let never = LoadedModel::load(
        &with_threshold(Duration::ZERO),
        "credit_risk",
        1,
        &artifact,
        BackendChoice::Auto,
        None,
    )
    .unwrap();
    assert!(!never.runs_inline());
}

#[test]
fn a_model_neither_engine_loads_names_both_reasons() {
    let artifact = example_model("unsupported_op");
    let err = LoadedModel::load(
        &engines(true),
        "unsupported_op",
        1,
        &artifact,
        BackendChoice::Auto,
        None,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("ort: "), "{err}");
    assert!(err.contains("tract: "), "{err}");
    assert!(err.contains("Frobnicate"), "the reason names the operator: {err}");
}

#[test]
fn ort_only_model_without_onnx_runtime_says_why() {
    let artifact = example_model("credit_risk_scaled");
    let err = LoadedModel::load(
        &engines(false),
        "credit_risk_scaled",
        1,
        &artifact,
        BackendChoice::Auto,
        None,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("tract: "), "{err}");
    assert!(err.contains("Scaler"), "tract's refusal names the op: {err}");

    let err = LoadedModel::load(
        &engines(false),
        "credit_risk_scaled",
        1,
        &artifact,
        BackendChoice::Ort,
        None,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("no ONNX Runtime library configured"), "{err}");
}

#[test]
fn a_zipmap_style_output_is_refused_with_advice() {
    // A classifier exported with skl2onnx's default ZipMap gives a sequence of
    // maps, which the protocol cannot carry: say how to export it instead.
    let artifact = example_model("credit_risk");
    let mut proto = sluice_gateway::backend::onnx::decode(&artifact).unwrap();
    proto.graph.as_mut().unwrap().output[1].r#type = None;
    let err = sluice_gateway::backend::onnx::signature_of(&proto)
        .unwrap_err()
        .to_string();
    assert!(err.contains("zipmap=False"), "{err}");
}

/// A model's ONNX Runtime sessions read one copy of its large weights
/// (`backend::ort::weights`): every session of the pool answers as ONNX
/// Runtime does from the file, and each request still gets its own answer.
#[test]
fn sessions_that_share_weights_answer_as_onnx_runtime_does() {
    let engines = Engines::new(&EngineOptions {
        ort_library_opt: Some(ort_library()),
        ort_sessions: 3,
        ort_intra_threads: 1,
        ..EngineOptions::default()
    });
    let model = LoadedModel::load(
        &engines,
        "digits",
        1,
        &example_model("digits"),
        BackendChoice::Ort,
        None,
    )
    .unwrap();
    let reference = sluice_tests::fixture("digits");
    let body = serde_json::to_vec(&reference["request"]).unwrap();
    // Round robin over three sessions: six runs reach each twice, two of
    // them at once from two threads.
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                for _ in 0..3 {
                    let request = request::decode(&body, None, &model.signature).unwrap();
                    let outputs = model.run(request.inputs).unwrap();
                    let answer = response::encode(&model, None, &request.outputs, &outputs);
                    let answer: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
                    assert_outputs_match(&answer["outputs"], &reference["outputs"], 1e-6);
                }
            });
        }
    });
}
