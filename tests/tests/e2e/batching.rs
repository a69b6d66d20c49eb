//! Dynamic batching over real HTTP with the example models: batched answers
//! equal unbatched ones, the batcher's refusals are the right statuses, and
//! a deployment's batching reaches the gateways that follow it.

use std::time::Duration;

use serde_json::{Value, json};
use sluice_registry_client::types::{Batching, SetDeployment, TrafficSpec};
use sluice_tests::registry::TestRegistry;
use sluice_tests::{
    Options, TestGateway, TestRepository, assert_outputs_match, error_message, example_model, fixture,
    read_json, request_row,
};

/// Batched and unbatched runs of one engine agree to float rounding.
const TOLERANCE: f64 = 1e-6;

const BATCHING: &str = "[batching]\nmax_batch_size = 16\nmax_queue_delay_us = 2000\ninstances = 1\n";

/// `model` twice: as `{model}` unbatched and `{model}_batched`.
fn repository(model: &str) -> TestRepository {
    let artifact = example_model(model);
    let batched = format!("{model}_batched");
    TestRepository::new()
        .with_model(model, 1, &artifact)
        .with_model(&batched, 1, &artifact)
        .with_config(&batched, BATCHING)
}

/// Rows `[0, rows)` of the reference, each sent `copies` times at once to
/// `model`; the answers in the order sent.
async fn fire(
    gateway: &TestGateway,
    model: &str,
    reference: &Value,
    rows: usize,
    copies: usize,
) -> Vec<Value> {
    let path = format!("/v2/models/{model}/infer");
    let requests: Vec<Value> = (0..copies)
        .flat_map(|_| (0..rows).map(|row| request_row(reference, row)))
        .collect();
    let sent: Vec<_> = requests
        .into_iter()
        .map(|request| {
            let (client, url) = (gateway.client.clone(), gateway.url(&path));
            tokio::spawn(
                async move { read_json(client.post(url).json(&request).send().await.unwrap()).await },
            )
        })
        .collect();
    let mut answers = Vec::new();
    for answer in sent {
        let (status, body) = answer.await.unwrap();
        assert_eq!(status, 200, "{body}");
        answers.push(body);
    }
    answers
}

/// `(count of runs, runs of one row)` from `sluice_batch_size` for `model`.
async fn batch_runs(gateway: &TestGateway, model: &str) -> (f64, f64) {
    let metrics = gateway.metrics().await;
    let value = |prefix: &str| {
        metrics
            .lines()
            .find(|line| line.starts_with(prefix) && line.contains(&format!("model=\"{model}\"")))
            .and_then(|line| line.rsplit(' ').next())
            .map_or(0.0, |number| number.parse::<f64>().unwrap())
    };
    let ones = metrics
        .lines()
        .find(|line| {
            line.starts_with("sluice_batch_size_bucket")
                && line.contains(&format!("model=\"{model}\""))
                && line.contains("le=\"1\"")
        })
        .and_then(|line| line.rsplit(' ').next())
        .map_or(0.0, |number| number.parse::<f64>().unwrap());
    (value("sluice_batch_size_count"), ones)
}

async fn batched_equals_unbatched(model: &str) {
    let gateway = TestGateway::start(&repository(model)).await;
    let batched = format!("{model}_batched");
    assert!(gateway.serving(&batched).batcher_opt.is_some());
    assert!(gateway.serving(model).batcher_opt.is_none());
    let reference = fixture(model);
    let rows = reference["request"]["inputs"][0]["shape"][0].as_u64().unwrap() as usize;
    let copies = 8;

    let alone = fire(&gateway, model, &reference["request"], rows, copies).await;
    let together = fire(&gateway, &batched, &reference["request"], rows, copies).await;
    for (index, (want, got)) in alone.iter().zip(&together).enumerate() {
        assert_eq!(got["model_name"], batched, "request {index}");
        assert_outputs_match(&got["outputs"], &want["outputs"], TOLERANCE);
    }
    // A request of several rows is one part of a batch too.
    let (status, body) = gateway
        .post_json(&format!("/v2/models/{batched}/infer"), &reference["request"])
        .await;
    assert_eq!(status, 200, "{body}");
    assert_outputs_match(&body["outputs"], &reference["outputs"], 1e-5);

    let (runs, single_rows) = batch_runs(&gateway, &batched).await;
    let requests = (rows * copies + 1) as f64;
    assert!(
        runs >= 1.0 && runs < requests,
        "{runs} runs for {requests} requests: nothing was batched"
    );
    assert!(single_rows < runs, "every run had one row");
    gateway.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_digits_answers_equal_unbatched_ones() {
    batched_equals_unbatched("digits").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_credit_risk_answers_equal_unbatched_ones_across_its_eight_inputs() {
    batched_equals_unbatched("credit_risk").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_larger_than_a_batch_or_past_its_timeout_is_refused_and_not_run() {
    let gateway = TestGateway::start(&repository("digits")).await;
    let path = "/v2/models/digits_batched/infer";
    let pixels = |rows: usize| json!({ "inputs": [{ "name": "pixels", "datatype": "FP32", "shape": [rows, 64], "data": vec![0.5; rows * 64] }] });

    let (status, body) = gateway.post_json(path, &pixels(17)).await;
    assert_eq!(status, 400, "{body}");
    assert!(error_message(&body).contains("batches at most 16"), "{body}");

    // One microsecond has passed before the body is even decoded.
    for model in ["digits", "digits_batched"] {
        let mut late = pixels(1);
        late["parameters"] = json!({ "timeout": 1 });
        let (status, body) = gateway
            .post_json(&format!("/v2/models/{model}/infer"), &late)
            .await;
        assert_eq!(status, 504, "{model}: {body}");
        assert!(error_message(&body).contains("it was not run"), "{body}");
    }
    let metrics = gateway.metrics().await;
    assert!(metrics.contains("sluice_deadline_exceeded_total"), "{metrics}");

    // A generous timeout changes nothing.
    let mut patient = pixels(2);
    patient["parameters"] = json!({ "timeout": 10_000_000 });
    let (status, body) = gateway.post_json(path, &patient).await;
    assert_eq!(status, 200, "{body}");
    let mut wrong = pixels(1);
    wrong["parameters"] = json!({ "timeout": "soon" });
    let (status, body) = gateway.post_json(path, &wrong).await;
    assert_eq!(status, 400, "{body}");
    assert!(error_message(&body).contains("microseconds"), "{body}");
    gateway.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_batches_its_versions_on_every_following_gateway() {
    let registry = TestRegistry::start().await;
    let version = registry.register("digits", &example_model("digits"), &[]).await;
    registry.approve_staging("digits", version.version).await;
    let cache = tempfile::tempdir().unwrap();
    registry.deploy("digits", &[(version.version, 100)]).await;
    let gateway = TestGateway::follow(&registry, cache.path(), Options::default()).await;
    gateway.wait_versions("digits", &[version.version]).await;
    assert!(gateway.serving("digits").batcher_opt.is_none());

    let mut spec = TrafficSpec::weighted(&[(version.version, 100)]);
    spec.batching = Some(Batching {
        max_queue_delay_us: 500,
        ..Batching::with_max_batch_size(8)
    });
    registry
        .client("dora")
        .set_deployment("digits", &SetDeployment::new(spec.clone()))
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while gateway.serving("digits").batcher_opt.is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "batching never reached the gateway"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let batching = gateway
        .serving("digits")
        .batcher_opt
        .as_ref()
        .unwrap()
        .config()
        .clone();
    assert_eq!(batching.max_batch_size, 8);
    let reference = fixture("digits");
    let (status, body) = gateway
        .post_json("/v2/models/digits/infer", &reference["request"])
        .await;
    assert_eq!(status, 200, "{body}");
    assert_outputs_match(&body["outputs"], &reference["outputs"], 1e-5);

    // Settings that cannot run are refused by the registry, not discovered by gateways.
    spec.batching = Some(Batching {
        preferred_batch_sizes: vec![64],
        ..Batching::with_max_batch_size(8)
    });
    let err = registry
        .client("dora")
        .set_deployment("digits", &SetDeployment::new(spec))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("preferred_batch_sizes"), "{err}");
    gateway.server.shutdown().await.unwrap();
}
