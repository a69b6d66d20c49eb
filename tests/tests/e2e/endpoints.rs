//! Every Open Inference Protocol endpoint over real HTTP.

use std::time::Duration;

use serde_json::json;
use sluice_tests::{Options, TestGateway, TestRepository, error_message, example_model, fixture};

fn two_models() -> TestRepository {
    TestRepository::new()
        .with_model("credit_risk", 1, &example_model("credit_risk"))
        .with_model("digits", 1, &example_model("digits"))
        .with_model("digits", 2, &example_model("digits"))
        .with_config("digits", "version_policy = \"all\"")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_endpoints_answer_json_bodies() {
    let gateway = TestGateway::start(&two_models()).await;
    assert_eq!(
        gateway.get("/v2/health/live").await,
        (200, json!({ "live": true }))
    );
    assert_eq!(
        gateway.get("/v2/health/ready").await,
        (200, json!({ "ready": true }))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_ready_until_every_model_has_loaded() {
    // A model whose only version cannot load keeps the server unready
    // (strict readiness, as Triton's default), while liveness holds.
    // Each test's broken model has a name of its own: load failures are
    // counted by model in the process's metrics, which every suite shares.
    let repository = two_models().with_model("broken_at_start", 1, b"not an onnx file");
    let options = Options {
        with_ort: false,
        poll_interval: Duration::from_millis(20),
        ..Options::default()
    };
    let gateway = TestGateway::launch(&repository, options).await;
    // Wait until the good models serve and the broken one has been tried,
    // then give the poller a few more passes to change its mind.
    gateway.wait_load_failures("broken_at_start", 1.0).await;
    gateway.wait_versions("credit_risk", &[1]).await;
    gateway.wait_versions("digits", &[1, 2]).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        gateway.get("/v2/health/ready").await,
        (503, json!({ "ready": false }))
    );
    assert_eq!(gateway.get("/v2/health/live").await.0, 200);
    gateway.server.shutdown().await.unwrap();
}

/// Once ready, a broken model added later is reported, but the replica
/// stays in its load balancer for the models it serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_survives_a_broken_model_added_later() {
    let repository = two_models();
    let gateway = TestGateway::start(&repository).await;
    repository.add_version("broken_later", 1, b"not an onnx file");
    gateway.wait_load_failures("broken_later", 1.0).await;
    assert_eq!(
        gateway.get("/v2/health/ready").await,
        (200, json!({ "ready": true }))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_metadata_names_the_binary_extension() {
    let gateway = TestGateway::start(&two_models()).await;
    let (status, body) = gateway.get("/v2").await;
    assert_eq!(status, 200);
    assert_eq!(body["name"], "sluice");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(body["extensions"], json!(["binary_tensor_data"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_metadata_lists_versions_and_signature() {
    let gateway = TestGateway::start(&two_models()).await;
    let (status, body) = gateway.get("/v2/models/digits").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({
            "name": "digits",
            "versions": ["1", "2"],
            "platform": "onnx",
            "inputs": [{ "name": "pixels", "datatype": "FP32", "shape": [-1, 64] }],
            "outputs": [
                { "name": "label", "datatype": "INT64", "shape": [-1] },
                { "name": "probabilities", "datatype": "FP32", "shape": [-1, 10] }
            ],
            "parameters": { "backend": "ort", "warm": true, "warmup": "zeros, batch 1, other dynamic dims 1" }
        })
    );
    let (status, pinned) = gateway.get("/v2/models/digits/versions/1").await;
    assert_eq!(status, 200);
    assert_eq!(pinned["inputs"], body["inputs"]);

    let (status, credit) = gateway.get("/v2/models/credit_risk").await;
    assert_eq!(status, 200);
    let names: Vec<&str> = credit["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "age",
            "income",
            "debt_ratio",
            "credit_lines",
            "late_payments_90d",
            "utilization",
            "months_employed",
            "loan_amount"
        ]
    );
    assert_eq!(credit["inputs"][0]["shape"], json!([-1, 1]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_readiness_by_name_and_version() {
    let gateway = TestGateway::start(&two_models()).await;
    let (status, body) = gateway.get("/v2/models/digits/ready").await;
    assert_eq!((status, body["ready"].clone()), (200, json!(true)));
    assert_eq!(body["version"], "2");
    let (status, body) = gateway.get("/v2/models/digits/versions/1/ready").await;
    assert_eq!((status, body["version"].clone()), (200, json!("1")));
    let (status, body) = gateway.get("/v2/models/digits/versions/9/ready").await;
    assert_eq!(status, 404);
    assert_eq!(error_message(&body), "unknown version 9 of model 'digits'");
    let (status, body) = gateway.get("/v2/models/nope/ready").await;
    assert_eq!(status, 404);
    assert_eq!(error_message(&body), "unknown model 'nope'");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn infer_echoes_id_names_the_version_and_pins_versions() {
    let gateway = TestGateway::start(&two_models()).await;
    let mut request = fixture("digits")["request"].clone();
    request["id"] = json!("req-7");
    let response = gateway
        .client
        .post(gateway.url("/v2/models/digits/infer"))
        .body(serde_json::to_vec(&request).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-model-version"], "2");
    assert_eq!(response.headers()["content-type"], "application/json");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["id"], "req-7");
    assert_eq!(body["model_name"], "digits");
    assert_eq!(body["model_version"], "2");

    let response = gateway
        .client
        .post(gateway.url("/v2/models/digits/versions/1/infer"))
        .body(serde_json::to_vec(&request).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-model-version"], "1");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["model_version"], "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outputs_select_what_comes_back() {
    let gateway = TestGateway::start(&two_models()).await;
    let mut request = fixture("digits")["request"].clone();
    request["outputs"] = json!([{ "name": "label" }]);
    let (status, body) = gateway.post_json("/v2/models/digits/infer", &request).await;
    assert_eq!(status, 200, "{body}");
    let outputs = body["outputs"].as_array().unwrap();
    assert_eq!(outputs.len(), 1);
    assert_eq!(outputs[0]["name"], "label");
    // Output shapes are exactly the model's: [N], never reshaped to [N, 1].
    assert_eq!(outputs[0]["shape"], json!([6]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_by_model_version_and_code() {
    let gateway = TestGateway::start(&two_models()).await;
    let request = fixture("credit_risk")["request"].clone();
    for _ in 0..3 {
        assert_eq!(
            gateway
                .post_json("/v2/models/credit_risk/infer", &request)
                .await
                .0,
            200
        );
    }
    let bad = json!({ "inputs": [] });
    assert_eq!(
        gateway.post_json("/v2/models/credit_risk/infer", &bad).await.0,
        400
    );
    let response = gateway.client.get(gateway.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = response.text().await.unwrap();
    let count = |needle: &str| -> f64 {
        text.lines()
            .find(|line| line.starts_with(needle))
            .and_then(|line| line.rsplit(' ').next())
            .and_then(|value| value.parse().ok())
            .unwrap_or_else(|| panic!("no line starting with {needle} in\n{text}"))
    };
    // Other tests in this binary share the process-wide recorder, hence >=.
    assert!(count(r#"sluice_requests_total{model="credit_risk",version="1",code="200"}"#) >= 3.0);
    assert!(count(r#"sluice_requests_total{model="credit_risk",version="1",code="400"}"#) >= 1.0);
    assert!(
        count(r#"sluice_request_duration_seconds_bucket{model="credit_risk",version="1",le="+Inf"}"#) >= 4.0
    );
    assert!(count(r#"sluice_compute_duration_seconds_count{model="credit_risk",version="1"}"#) >= 3.0);
    assert!(count(r#"sluice_queue_duration_seconds_count{model="credit_risk",version="1"}"#) >= 3.0);
    assert!(text.contains("sluice_requests_in_flight"));
    assert!(text.contains("sluice_model_load_duration_seconds_bucket"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_paths_and_methods_answer_json_errors() {
    let gateway = TestGateway::start(&two_models()).await;
    let (status, body) = gateway.get("/v2/nothing/here").await;
    assert_eq!(status, 404);
    assert!(error_message(&body).contains("/v2/nothing/here"));
    let response = gateway
        .client
        .get(gateway.url("/v2/models/digits/infer"))
        .send()
        .await
        .unwrap();
    let (status, body) = sluice_tests::read_json(response).await;
    assert_eq!(status, 405);
    assert!(error_message(&body).contains("GET"));
}
