//! What the fuzzers (`fuzz/`, `scripts/fuzz.sh`) found, kept as tests that
//! need no fuzzer: every input under `fuzz/regressions/{target}/` (the
//! crashes, once fixed) and `fuzz/corpus/{target}/` (the inputs the
//! fuzzers kept) goes through the same function as its fuzz target, and
//! must come back as a value or an error, never a panic.

use std::path::PathBuf;
use std::sync::LazyLock;

use sluice_gateway::backend::{BackendChoice, EngineOptions, Engines};
use sluice_gateway::model::LoadedModel;
use sluice_gateway::protocol::request::decode;
use sluice_gateway::repository::ModelConfig;
use sluice_registry::policy::Policy;
use sluice_tests::repo_root;

/// The inputs of one fuzz target: its regressions and its corpus.
fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let mut found = Vec::new();
    for kind in ["regressions", "corpus"] {
        let dir = repo_root().join("fuzz").join(kind).join(target);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let bytes = std::fs::read(&path).unwrap();
            found.push((path, bytes));
        }
    }
    assert!(!found.is_empty(), "no inputs for the fuzz target {target}");
    found
}

#[path = "../../../fuzz/common/v2_request.rs"]
mod v2_request;

#[test]
fn the_v2_request_decoder_survives_its_fuzz_inputs() {
    let signature = v2_request::signature();
    let mut decoded = 0;
    for (_path, data) in inputs("v2_request") {
        if let Some((header_length, body)) = v2_request::split(&data) {
            decoded += usize::from(decode(body, header_length, &signature).is_ok());
        }
    }
    // Some of the corpus are valid requests: the decoder still takes them.
    assert!(decoded >= 2, "only {decoded} fuzz inputs decode");
}

#[test]
fn the_grpc_request_decoder_survives_its_fuzz_inputs() {
    use prost::Message;
    let signature = v2_request::signature();
    let mut decoded = 0;
    for (_path, data) in inputs("grpc_request") {
        if let Ok(message) = sluice_proto::inference::ModelInferRequest::decode(data.as_slice()) {
            decoded += usize::from(sluice_gateway::protocol::grpc::decode(message, &signature).is_ok());
        }
    }
    // The seed tritonclient would send is a valid request.
    assert!(decoded >= 1, "only {decoded} fuzz inputs decode");
}

#[path = "../../../fuzz/common/registry_api.rs"]
mod registry_api;

#[test]
fn the_registry_api_bodies_and_labels_survive_their_fuzz_inputs() {
    let actions = registry_api::actions();
    let mut taken = 0;
    for (_path, data) in inputs("registry_api") {
        if let Some((&kind, body)) = data.split_first() {
            taken += usize::from(registry_api::check(kind, body, &actions));
        }
    }
    // Most of the corpus are bodies the registry takes; the inline command is not.
    assert!(taken >= 8, "only {taken} registry bodies are taken");
    let mut labelled = 0;
    for (_path, data) in inputs("feedback") {
        labelled += usize::from(sluice_gateway::feedback::parse(&data).is_ok());
    }
    assert_eq!(labelled, 2);
}

#[test]
fn the_config_parsers_survive_their_fuzz_inputs() {
    for (_path, data) in inputs("model_config") {
        let _ = ModelConfig::parse(&String::from_utf8_lossy(&data));
    }
    for (_path, data) in inputs("policy") {
        let _ = Policy::parse(&String::from_utf8_lossy(&data));
    }
    let deploy = std::fs::read_to_string(repo_root().join("deploy/policy.toml")).unwrap();
    Policy::parse(&deploy).expect("the example policy parses");
}

static ENGINES: LazyLock<Engines> = LazyLock::new(|| Engines::new(&EngineOptions::default()));

#[test]
fn tract_refuses_the_graphs_that_made_it_panic() {
    for (path, data) in inputs("onnx_tract") {
        let loaded = LoadedModel::load(&ENGINES, "fuzz", 1, &data, BackendChoice::Tract, None);
        if path.to_string_lossy().contains("regressions") {
            let err = loaded.err().unwrap_or_else(|| panic!("{} loads", path.display()));
            assert!(!err.to_string().is_empty());
        }
    }
}
