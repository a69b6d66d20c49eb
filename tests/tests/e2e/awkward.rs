//! Models shaped as real exports are (models/awkward.py): each failed in
//! Sluice the way a public model did, and each now loads and answers what
//! ONNX Runtime answers. Warm-up that searches for sizes or steps aside,
//! configured and strict warm-ups, placeholder dims, scalars, a batch not on
//! axis 0, and readiness with a model that cannot load.

use serde_json::{Value, json};
use sluice_tests::{Options, TestGateway, TestRepository, error_message, example_model, flatten};

const TOLERANCE: f32 = 1e-5;

fn floats(value: &Value) -> Vec<f32> {
    flatten(value)
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect()
}

fn assert_close(actual: &[f32], expected: &[f32]) {
    assert_eq!(actual.len(), expected.len());
    for (index, (a, e)) in actual.iter().zip(expected).enumerate() {
        assert!(
            (a - e).abs() <= TOLERANCE * e.abs().max(1.0),
            "element {index}: {a} vs {e}"
        );
    }
}

/// Deterministic values in [0, 1): a real request, not zeros.
fn ramp(count: usize, seed: u32) -> Vec<f32> {
    (0..count)
        .map(|i| ((i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) % 1000) as f32 / 1000.0)
        .collect()
}

/// A repository serving `artifact` as `name` with `backend` and `config`.
fn served(name: &str, artifact: &str, backend: &str, config: &str) -> TestRepository {
    TestRepository::new()
        .with_model(name, 1, &example_model(artifact))
        .with_config(name, &format!("backend = \"{backend}\"\n{config}"))
}

async fn metadata(gateway: &TestGateway, model: &str) -> Value {
    let (status, body) = gateway.get(&format!("/v2/models/{model}")).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// The value of the series `name{labels}` in `/metrics`.
async fn series(gateway: &TestGateway, name: &str, labels: &str) -> Option<f64> {
    let prefix = format!("{name}{{{labels}}} ");
    gateway
        .metrics()
        .await
        .lines()
        .find_map(|line| line.strip_prefix(&prefix).map(|value| value.parse().unwrap()))
}

#[tokio::test]
async fn a_detector_that_cannot_run_a_one_pixel_image_warms_on_a_larger_one_and_serves_any_size() {
    // tract cannot unify `height / 2` with `2 * (height / 4)` symbolically,
    // and refuses the graph: `backend = "tract"` falls back to ONNX Runtime.
    for backend in ["ort", "tract"] {
        let name = format!("detector_{backend}");
        let gateway = TestGateway::start(&served(&name, "detector_like", backend, "")).await;
        let meta = metadata(&gateway, &name).await;
        assert_eq!(meta["parameters"]["backend"], "ort");
        assert_eq!(meta["parameters"]["warm"], true, "{meta}");
        assert!(
            meta["parameters"]["warmup"].as_str().unwrap().contains("8"),
            "1x1 and 2x2 fail its Concat; 8x8 runs: {meta}"
        );
        assert_eq!(meta["inputs"][0]["shape"], json!([-1, 3, -1, -1]));
        // A 48x64 image, not square: pooled by 2, its first 3 channels are
        // the 2x2 maxima.
        let (height, width) = (48, 64);
        let image = ramp(3 * height * width, 7);
        let request = json!({"inputs": [{"name": "images", "datatype": "FP32", "shape": [1, 3, height, width], "data": image}]});
        let (status, body) = gateway
            .post_json(&format!("/v2/models/{name}/infer"), &request)
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["outputs"][0]["shape"], json!([1, 6, height / 2, width / 2]));
        let features = floats(&body["outputs"][0]["data"]);
        let mut expected = Vec::new();
        for channel in 0..3 {
            for row in 0..height / 2 {
                for column in 0..width / 2 {
                    let at = |dy: usize, dx: usize| {
                        image[(channel * height + 2 * row + dy) * width + 2 * column + dx]
                    };
                    expected.push(at(0, 0).max(at(0, 1)).max(at(1, 0)).max(at(1, 1)));
                }
            }
        }
        assert_close(&features[..expected.len()], &expected);
    }
}

/// Reflect-padded by 2 on each side, as the model pads its audio.
fn reflect_mean(row: &[f32]) -> f32 {
    let n = row.len();
    let padded: f32 = row.iter().sum::<f32>() + row[1] + row[2] + row[n - 2] + row[n - 3];
    padded / (n + 4) as f32
}

#[tokio::test]
async fn an_audio_model_with_a_scalar_rate_and_its_batch_on_axis_one_loads_and_answers() {
    for backend in ["ort", "tract"] {
        audio_model_answers(backend).await;
    }
}

async fn audio_model_answers(backend: &str) {
    let name = &format!("vad_{backend}");
    let gateway = TestGateway::start(&served(name, "vad_like", backend, "")).await;
    let meta = metadata(&gateway, name).await;
    assert_eq!(meta["parameters"]["backend"], backend);
    assert_eq!(meta["parameters"]["warm"], true, "{meta}");
    assert_eq!(meta["inputs"][2]["shape"], json!([]), "sr is a scalar: {meta}");
    let (batch, samples) = (2, 16);
    let audio = ramp(batch * samples, 3);
    let state = ramp(2 * batch * 128, 11);
    let request = json!({"inputs": [
        {"name": "input", "datatype": "FP32", "shape": [batch, samples], "data": audio},
        {"name": "state", "datatype": "FP32", "shape": [2, batch, 128], "data": state},
        {"name": "sr", "datatype": "INT64", "shape": [], "data": [16000]},
    ]});
    let (status, body) = gateway
        .post_json(&format!("/v2/models/{name}/infer"), &request)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["outputs"][0]["shape"], json!([batch, 1]));
    assert_eq!(body["outputs"][1]["shape"], json!([2, batch, 128]));
    let expected: Vec<f32> = (0..batch)
        .map(|b| {
            let memory: f32 = (0..2)
                .flat_map(|layer| state[(layer * batch + b) * 128..(layer * batch + b + 1) * 128].iter())
                .sum::<f32>()
                / 256.0;
            reflect_mean(&audio[b * samples..(b + 1) * samples]) + memory + 16000.0 * 1e-6
        })
        .collect();
    assert_close(&floats(&body["outputs"][0]["data"]), &expected);
    // The scalar in the binary extension too: 8 bytes, no shape to split.
    let header = json!({"inputs": [
        {"name": "input", "datatype": "FP32", "shape": [batch, samples], "data": audio},
        {"name": "state", "datatype": "FP32", "shape": [2, batch, 128], "data": state},
        {"name": "sr", "datatype": "INT64", "shape": [], "parameters": {"binary_data_size": 8}},
    ]});
    let response = post_binary(
        &gateway,
        &format!("/v2/models/{name}/infer"),
        &header,
        &16000i64.to_le_bytes(),
    )
    .await;
    let (status, body) = sluice_tests::read_json(response).await;
    assert_eq!(status, 200, "{body}");
    assert_close(&floats(&body["outputs"][0]["data"]), &expected);
    // Its audio and state batches are its own dims, neither shared: a
    // mismatch is the engine's to refuse, as ONNX Runtime does, not ours.
    let scalar_as_vector = json!({"inputs": [
        {"name": "input", "datatype": "FP32", "shape": [1, 8], "data": ramp(8, 1)},
        {"name": "state", "datatype": "FP32", "shape": [2, 1, 128], "data": ramp(256, 1)},
        {"name": "sr", "datatype": "INT64", "shape": [1], "data": [16000]},
    ]});
    let (status, body) = gateway
        .post_json(&format!("/v2/models/{name}/infer"), &scalar_as_vector)
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(error_message(&body).contains("expected rank 0"), "{body}");
}

#[tokio::test]
async fn paddle_placeholder_dims_are_independent_so_a_wide_text_line_is_accepted() {
    for backend in ["ort", "tract"] {
        let name = format!("paddle_{backend}");
        let gateway = TestGateway::start(&served(&name, "paddle_like", backend, "")).await;
        let (height, width) = (48, 192);
        let image = ramp(3 * height * width, 5);
        let request = json!({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 3, height, width], "data": image}]});
        let (status, body) = gateway
            .post_json(&format!("/v2/models/{name}/infer"), &request)
            .await;
        assert_eq!(status, 200, "{backend}: {body}");
        let weights = [[1.0f32, -1.0], [0.5, 0.25], [-2.0, 1.5]];
        let means: Vec<f32> = (0..3)
            .map(|c| {
                image[c * height * width..(c + 1) * height * width]
                    .iter()
                    .sum::<f32>()
                    / (height * width) as f32
            })
            .collect();
        let logits: Vec<f32> = (0..2)
            .map(|k| (0..3).map(|c| means[c] * weights[c][k]).sum())
            .collect();
        let total: f32 = logits.iter().map(|l| l.exp()).sum();
        let expected: Vec<f32> = logits.iter().map(|l| l.exp() / total).collect();
        assert_close(&floats(&body["outputs"][0]["data"]), &expected);
    }
}

#[tokio::test]
async fn a_model_no_synthetic_input_runs_serves_cold_and_says_so() {
    let name = "cold_reshape";
    // Any timed run would qualify for inline here: a cold model has none.
    let options = Options {
        inline_below: std::time::Duration::from_secs(3600),
        ..Options::default()
    };
    let gateway = TestGateway::start_with(&served(name, "reshape_by_three", "ort", ""), options).await;
    let meta = metadata(&gateway, name).await;
    assert_eq!(meta["parameters"]["warm"], false, "{meta}");
    let why = meta["parameters"]["warmup"].as_str().unwrap();
    assert!(why.contains("no synthetic input ran"), "{why}");
    assert!(why.contains("reshape"), "the engine's own error: {why}");
    assert_eq!(
        series(
            &gateway,
            "sluice_model_warm",
            &format!("model=\"{name}\",version=\"1\"")
        )
        .await,
        Some(0.0)
    );
    assert!(
        !gateway.serving(name).runs_inline(),
        "a cold model has no timed run: the pool runs it"
    );
    let request =
        json!({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 6], "data": [1, 2, 3, 4, 5, 6]}]});
    let (status, body) = gateway
        .post_json(&format!("/v2/models/{name}/infer"), &request)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["outputs"][0]["shape"], json!([2, 3]));
}

#[tokio::test]
async fn configured_warmup_requests_run_and_one_that_fails_fails_the_load_with_the_engines_message() {
    let warm = r#"
[[warmup.requests]]
inputs = [{ name = "x", shape = [1, 6], fill = "random" }]
"#;
    let failing = r#"
[[warmup.requests]]
inputs = [{ name = "x", shape = [1, 4], data = [1, 2, 3, 4] }]
"#;
    let repository = served("warmed_reshape", "reshape_by_three", "ort", warm)
        .with_model("unwarmable_reshape", 1, &example_model("reshape_by_three"))
        .with_config("unwarmable_reshape", &format!("backend = \"ort\"\n{failing}"));
    let options = Options {
        strict_readiness: false,
        ..Options::default()
    };
    let gateway = TestGateway::start_with(&repository, options).await;
    let meta = metadata(&gateway, "warmed_reshape").await;
    assert_eq!(meta["parameters"]["warm"], true, "{meta}");
    assert_eq!(meta["parameters"]["warmup"], "1 configured request(s)");

    let (status, body) = gateway.get("/v2/models/unwarmable_reshape/ready").await;
    assert_eq!(status, 503, "{body}");
    let error = error_message(&body);
    assert!(error.contains("warm-up request 0 failed"), "{error}");
    assert!(
        error.contains("cannot be reshaped"),
        "ONNX Runtime's message: {error}"
    );
}

#[tokio::test]
async fn without_strict_readiness_the_server_is_ready_and_the_index_says_which_model_failed_and_why() {
    let strict = "[warmup]\nstrict = true\n";
    let repository = served("strict_reshape", "reshape_by_three", "ort", strict).with_model(
        "fine_paddle",
        1,
        &example_model("paddle_like"),
    );
    // Strict readiness, the default: never ready while a model cannot load.
    let strict_gateway = TestGateway::launch(&repository, Options::default()).await;
    strict_gateway.wait_load_failures("strict_reshape", 1.0).await;
    let (status, _) = strict_gateway.get("/v2/health/ready").await;
    assert_eq!(
        status, 503,
        "a model that cannot load keeps a strict server unready"
    );

    let gateway = TestGateway::start_with(
        &repository,
        Options {
            strict_readiness: false,
            ..Options::default()
        },
    )
    .await;
    let (status, body) = gateway.get("/v2/models/fine_paddle/ready").await;
    assert_eq!((status, &body["ready"]), (200, &json!(true)), "{body}");
    let (status, body) = gateway.get("/v2/models/strict_reshape").await;
    assert_eq!(status, 503, "{body}");
    assert!(error_message(&body).contains("strict warm-up failed"), "{body}");
    let infer = json!({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]}]});
    let (status, body) = gateway.post_json("/v2/models/strict_reshape/infer", &infer).await;
    assert_eq!(status, 503, "{body}");

    let (status, index) = gateway.post_json("/v2/repository/index", &json!({})).await;
    assert_eq!(status, 200, "{index}");
    let entries = index.as_array().unwrap();
    let entry = |name: &str| {
        entries
            .iter()
            .find(|entry| entry["name"] == name)
            .cloned()
            .unwrap()
    };
    assert_eq!(entry("fine_paddle")["state"], "READY");
    let failed = entry("strict_reshape");
    assert_eq!(failed["state"], "UNAVAILABLE");
    assert_eq!(failed["version"], "1");
    assert!(
        failed["reason"]
            .as_str()
            .unwrap()
            .contains("no synthetic input ran"),
        "{failed}"
    );
    let (_, ready_only) = gateway
        .post_json("/v2/repository/index", &json!({"ready": true}))
        .await;
    assert!(
        ready_only
            .as_array()
            .unwrap()
            .iter()
            .all(|entry| entry["state"] == "READY")
    );
    assert_eq!(
        series(&gateway, "sluice_model_ready", "model=\"strict_reshape\"").await,
        Some(0.0)
    );
    assert_eq!(
        series(&gateway, "sluice_model_ready", "model=\"fine_paddle\"").await,
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_names_its_warmup_and_the_registry_refuses_one_that_cannot_run() {
    use sluice_registry_client::types::{SetDeployment, TrafficSpec};
    use sluice_registry_client::warmup::{Fill, Warmup, WarmupInput, WarmupRequest};
    use sluice_tests::TestRegistry;

    let registry = TestRegistry::start().await;
    let version = registry.register("digits", &example_model("digits"), &[]).await;
    registry.approve_staging("digits", version.version).await;
    let pixels = |shape: Vec<u64>, data: Option<Vec<f64>>| Warmup {
        strict: false,
        requests: vec![WarmupRequest {
            inputs: vec![WarmupInput {
                name: "pixels".into(),
                fill: data.is_none().then_some(Fill::Random),
                shape,
                data,
            }],
        }],
    };
    let mut spec = TrafficSpec::weighted(&[(version.version, 100)]);
    spec.warmup = Some(pixels(vec![2, 64], None));
    let deployed = registry
        .client("dora")
        .set_deployment("digits", &SetDeployment::new(spec.clone()))
        .await
        .unwrap();
    assert_eq!(deployed.spec.warmup, spec.warmup, "stored as sent");
    let cache = tempfile::tempdir().unwrap();
    let gateway = TestGateway::follow(&registry, cache.path(), Options::default()).await;
    gateway.wait_versions("digits", &[version.version]).await;
    let meta = metadata(&gateway, "digits").await;
    assert_eq!(meta["parameters"]["warmup"], "1 configured request(s)", "{meta}");

    spec.warmup = Some(pixels(vec![1, 64], Some(vec![0.5; 63])));
    let err = registry
        .client("dora")
        .set_deployment("digits", &SetDeployment::new(spec))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("warmup request 0, input 'pixels'"), "{err}");
    assert!(err.contains("holds 64 values but data has 63"), "{err}");
    gateway.server.shutdown().await.unwrap();
}

/// Posts `header` as the JSON part and `tail` as the binary tensors after it.
async fn post_binary(gateway: &TestGateway, path: &str, header: &Value, tail: &[u8]) -> reqwest::Response {
    let mut raw = serde_json::to_vec(header).unwrap();
    let length = raw.len();
    raw.extend_from_slice(tail);
    gateway
        .post_raw(
            path,
            &[("inference-header-content-length", length.to_string())],
            raw,
        )
        .await
}

/// `strings` as the binary extension carries BYTES: a 4-byte little-endian
/// length before each.
fn bytes_wire(strings: &[&[u8]]) -> Vec<u8> {
    strings
        .iter()
        .flat_map(|s| {
            (s.len() as u32)
                .to_le_bytes()
                .into_iter()
                .chain(s.iter().copied())
        })
        .collect()
}

#[tokio::test]
async fn strings_go_in_and_come_out_as_bytes_in_json_and_in_the_binary_extension() {
    let name = "color_codes";
    let repository = served(name, "color_codes", "ort", "[batching]\nmax_batch_size = 8\n");
    let gateway = TestGateway::start(&repository).await;
    let meta = metadata(&gateway, name).await;
    assert_eq!(meta["inputs"][0]["datatype"], "BYTES", "{meta}");
    assert_eq!(meta["outputs"][1]["datatype"], "BYTES", "{meta}");
    assert!(
        gateway.serving(name).batcher_opt.is_some(),
        "string rows batch too"
    );
    let path = format!("/v2/models/{name}/infer");

    let request = json!({"inputs": [{"name": "color", "datatype": "BYTES", "shape": [3], "data": ["red", "teal", "crimson"]}]});
    let (status, body) = gateway.post_json(&path, &request).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["outputs"][0]["data"], json!([0, -1, 3]));
    assert_eq!(
        body["outputs"][1],
        json!({"name": "family", "datatype": "BYTES", "shape": [3], "data": ["warm", "other", "warm"]})
    );

    // As tritonclient sends them: binary in, and binary out.
    let strings: [&[u8]; 2] = [b"blue", "vermilion é".as_bytes()];
    let tail = bytes_wire(&strings);
    let header = json!({
        "inputs": [{"name": "color", "datatype": "BYTES", "shape": [2], "parameters": {"binary_data_size": tail.len()}}],
        "outputs": [{"name": "family", "parameters": {"binary_data": true}}],
    });
    let response = post_binary(&gateway, &path, &header, &tail).await;
    assert_eq!(response.status(), 200);
    let header_length: usize = response.headers()["inference-header-content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let body = response.bytes().await.unwrap();
    let answer: Value = serde_json::from_slice(&body[..header_length]).unwrap();
    let family = &answer["outputs"][0];
    assert_eq!(family["datatype"], "BYTES");
    assert_eq!(
        family["parameters"]["binary_data_size"],
        json!(body.len() - header_length)
    );
    assert_eq!(
        &body[header_length..],
        bytes_wire(&[b"cool", b"other"]).as_slice()
    );

    // Each mistake is the client's, and says what was expected.
    let cases = [
        (
            json!({"inputs": [{"name": "color", "datatype": "BYTES", "shape": [2], "data": ["red", 7]}]}),
            "expected a string for BYTES, got a number",
        ),
        (
            json!({"inputs": [{"name": "color", "datatype": "BYTES", "shape": [2], "data": ["red"]}]}),
            "shape needs 2 elements, data has 1",
        ),
        (
            json!({"inputs": [{"name": "color", "datatype": "FP32", "shape": [1], "data": [1.0]}]}),
            "model expects datatype BYTES, got FP32",
        ),
        (
            json!({"inputs": [{"name": "color", "datatype": "BYTES", "shape": [1], "data": ["re\u{0}d"]}]}),
            "NUL byte",
        ),
    ];
    for (request, expected) in cases {
        let (status, body) = gateway.post_json(&path, &request).await;
        assert_eq!(status, 400, "{body}");
        assert!(
            error_message(&body).contains(expected),
            "{body} should say {expected}"
        );
    }
    let binary_cases: [(Vec<u8>, usize, &str); 3] = [
        (
            bytes_wire(&[b"red"])[..5].to_vec(),
            1,
            "is 3 bytes long but only 1 remain",
        ),
        (vec![0xff, 0xfe], 1, "at least 4 bytes"),
        (bytes_wire(&[&[0xff, 0xfe]]), 1, "must be UTF-8"),
    ];
    for (tail, count, expected) in binary_cases {
        let header = json!({"inputs": [{"name": "color", "datatype": "BYTES", "shape": [count], "parameters": {"binary_data_size": tail.len()}}]});
        let response = post_binary(&gateway, &path, &header, &tail).await;
        let (status, body) = sluice_tests::read_json(response).await;
        assert_eq!(status, 400, "{body}");
        assert!(
            error_message(&body).contains(expected),
            "{body} should say {expected}"
        );
    }
}

#[tokio::test]
async fn a_zipmap_classifier_answers_scores_in_class_order_with_its_labels_and_top_classes() {
    let name = "iris_zipmap";
    // tract has no LinearClassifier: `auto` serves it on ONNX Runtime.
    let gateway = TestGateway::start(&served(name, "iris_zipmap", "auto", "")).await;
    let meta = metadata(&gateway, name).await;
    assert_eq!(
        meta["outputs"],
        json!([
            {"name": "output_label", "datatype": "BYTES", "shape": [-1]},
            {"name": "output_probability", "datatype": "FP32", "shape": [-1, 3]},
        ])
    );
    let path = format!("/v2/models/{name}/infer");
    let flowers = json!({"inputs": [{"name": "X", "datatype": "FP32", "shape": [2, 4], "data": [5.1, 3.5, 1.4, 0.2, 6.7, 3.0, 5.2, 2.3]}]});
    let (status, body) = gateway.post_json(&path, &flowers).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["outputs"][0]["data"], json!(["setosa", "virginica"]));
    let scores = &body["outputs"][1];
    assert_eq!(scores["shape"], json!([2, 3]));
    assert_eq!(
        scores["parameters"]["labels"],
        json!(["setosa", "versicolor", "virginica"])
    );
    // ONNX Runtime's ZipMap maps for these two flowers (models/awkward.py).
    let expected = [
        0.981_579_4,
        0.018_420_55,
        1.459_569_6e-8,
        5.639_357_6e-5,
        0.080_625_88,
        0.919_317_7,
    ];
    assert_close(&floats(&scores["data"]), &expected);

    // Triton's classification extension, as tritonclient asks for it.
    let mut top = flowers.clone();
    top["outputs"] = json!([{"name": "output_probability", "parameters": {"classification": 2}}]);
    let (status, body) = gateway.post_json(&path, &top).await;
    assert_eq!(status, 200, "{body}");
    let classes = &body["outputs"][0];
    assert_eq!(
        (&classes["datatype"], &classes["shape"]),
        (&json!("BYTES"), &json!([2, 2]))
    );
    let texts: Vec<&str> = classes["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        texts[0].starts_with("0.98") && texts[0].ends_with(":0:setosa"),
        "{texts:?}"
    );
    assert!(texts[1].ends_with(":1:versicolor"), "{texts:?}");
    assert!(
        texts[2].ends_with(":2:virginica") && texts[3].ends_with(":1:versicolor"),
        "{texts:?}"
    );

    let mut wrong = flowers.clone();
    wrong["outputs"] = json!([{"name": "output_label", "parameters": {"classification": 1}}]);
    let (status, body) = gateway.post_json(&path, &wrong).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        error_message(&body).contains("classification takes scores shaped [N, K] or [K]"),
        "{body}"
    );
    wrong["outputs"] = json!([{"name": "output_probability", "parameters": {"classification": "two"}}]);
    let (status, body) = gateway.post_json(&path, &wrong).await;
    assert_eq!(status, 400, "{body}");
    assert!(error_message(&body).contains("a count of classes"), "{body}");
}
