//! The prediction log through a real gateway: every prediction recorded under
//! its request id, a sample with its inputs, hive-partitioned JSON Lines
//! written at shutdown; and a failing store that costs no prediction.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use sluice_registry_client::types::{SetDeployment, TrafficSpec};
use sluice_tests::{Options, TestGateway, TestRegistry, example_model, fixture};

const MODEL: &str = "credit_risk";

async fn logging_deployment(registry: &TestRegistry, rate: f64) {
    registry.release(MODEL, &example_model(MODEL)).await;
    let mut body = SetDeployment::new(TrafficSpec::weighted(&[(1, 100)]));
    body.log_sample_rate = Some(rate);
    registry
        .client("dora")
        .set_deployment(MODEL, &body)
        .await
        .unwrap();
}

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files(&path));
        } else {
            found.push(path);
        }
    }
    found
}

/// Posts the fixture, with an `x-request-id` header and a body `id` when given.
async fn predict(
    gateway: &TestGateway,
    request_id_opt: Option<&str>,
    body_id_opt: Option<&str>,
) -> (u16, String) {
    let mut request_body = fixture(MODEL)["request"].clone();
    if let Some(id) = body_id_opt {
        request_body["id"] = Value::from(id);
    }
    let body = serde_json::to_vec(&request_body).unwrap();
    let mut request = gateway
        .client
        .post(gateway.url(&format!("/v2/models/{MODEL}/infer")))
        .body(body);
    if let Some(id) = request_id_opt {
        request = request.header("x-request-id", id);
    }
    let response = request.send().await.unwrap();
    let id = response.headers()["x-request-id"].to_str().unwrap().to_string();
    (response.status().as_u16(), id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_prediction_is_logged_by_request_id_and_a_sample_with_inputs() {
    let registry = TestRegistry::start().await;
    logging_deployment(&registry, 0.5).await;
    let cache = tempfile::tempdir().unwrap();
    let gateway = TestGateway::follow(&registry, cache.path(), Options::default()).await;
    gateway.wait_versions(MODEL, &[1]).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while gateway.server.routes.snapshot().routes[MODEL]
        .log_sample_rate
        .is_none()
    {
        assert!(std::time::Instant::now() < deadline, "logging never went live");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    let mut sent = BTreeSet::new();
    for index in 0..40 {
        let id = format!("req-{index}");
        let (status, echoed) = predict(&gateway, Some(&id), None).await;
        assert_eq!((status, echoed.as_str()), (200, id.as_str()));
        sent.insert(id);
    }
    // The V2 body's id is used when no header gives one, and one is made
    // up (and returned) when neither does.
    let (_, body_id) = predict(&gateway, None, Some("application-7")).await;
    assert_eq!(body_id, "application-7");
    sent.insert(body_id);
    let (_, made_up) = predict(&gateway, None, None).await;
    assert!(
        made_up.len() == 32 && made_up.bytes().all(|b| b.is_ascii_hexdigit()),
        "{made_up}"
    );
    sent.insert(made_up);
    gateway.server.shutdown().await.unwrap();

    let root = registry.logs().predictions.dir().unwrap().to_path_buf();
    let segments = files(&root);
    assert!(!segments.is_empty(), "no segment written at shutdown");
    let mut records: Vec<Value> = Vec::new();
    for segment in &segments {
        let relative = segment
            .strip_prefix(&root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let parts: Vec<&str> = relative.split('/').collect();
        let [model, version, date, hour, file] = parts[..] else {
            panic!("not model=/version=/date=/hour=/file: {relative}");
        };
        assert_eq!((model, version), ("model=credit_risk", "version=1"));
        assert!(
            date.starts_with("date=20") && date.len() == "date=2026-11-26".len(),
            "{relative}"
        );
        assert!(
            hour.starts_with("hour=") && hour.len() == "hour=14".len(),
            "{relative}"
        );
        assert!(file.ends_with(".jsonl"), "{relative}");
        for line in std::fs::read_to_string(segment).unwrap().lines() {
            records.push(serde_json::from_str(line).unwrap());
        }
    }
    let logged: BTreeSet<String> = records
        .iter()
        .map(|record| record["request_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        logged, sent,
        "every prediction is logged once under its request id"
    );
    assert_eq!(records.len(), sent.len());
    let batch = fixture(MODEL)["request"]["inputs"][0]["shape"][0]
        .as_u64()
        .unwrap() as usize;
    for record in &records {
        assert_eq!(record["model"], MODEL);
        assert_eq!(record["version"], 1);
        assert_eq!(record["route"], "primary");
        assert!(record["latency_ms"].as_f64().unwrap() > 0.0);
        assert_eq!(record["outputs"]["label"].as_array().unwrap().len(), batch);
        assert_eq!(record["outputs"]["probabilities"][0].as_array().unwrap().len(), 2);
    }
    let with_inputs: Vec<&Value> = records
        .iter()
        .filter(|record| record.get("inputs").is_some())
        .collect();
    // Half of 42 sampled: far outside chance below 5 or above 37.
    assert!(
        (5..=37).contains(&with_inputs.len()),
        "{} of {} with inputs",
        with_inputs.len(),
        records.len()
    );
    let first = &with_inputs[0]["inputs"];
    assert_eq!(
        first["age"].as_array().unwrap().len(),
        batch,
        "a [N, 1] feature is a list of N values"
    );
    assert!(first["income"][0].is_number());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_store_costs_no_prediction_is_counted_and_recovers() {
    let registry = TestRegistry::start().await;
    logging_deployment(&registry, 1.0).await;
    let cache = tempfile::tempdir().unwrap();
    let options = Options {
        segment_max_age: Duration::from_millis(50),
        ..Options::default()
    };
    let gateway = TestGateway::follow(&registry, cache.path(), options).await;
    gateway.wait_versions(MODEL, &[1]).await;
    // The store breaks: where segments go is now a file, not a directory.
    let root = registry.logs().predictions.dir().unwrap().to_path_buf();
    std::fs::remove_dir_all(&root).unwrap();
    std::fs::write(&root, b"not a directory").unwrap();

    let failures = |metrics: &str| {
        metrics
            .lines()
            .find_map(|line| line.strip_prefix("sluice_prediction_log_write_failures_total "))
            .map_or(0.0, |value| value.parse::<f64>().unwrap())
    };
    // Records of a segment the store refused are dropped, never logged.
    let dropped = |metrics: &str| {
        metrics
            .lines()
            .find_map(|line| {
                line.strip_prefix(&format!(
                    "sluice_prediction_log_dropped_total{{model=\"{MODEL}\"}} "
                ))
            })
            .map_or(0.0, |value| value.parse::<f64>().unwrap())
    };
    let before = failures(&gateway.metrics().await);
    let dropped_before = dropped(&gateway.metrics().await);
    for _ in 0..30 {
        let (status, _) = predict(&gateway, None, None).await;
        assert_eq!(
            status, 200,
            "a prediction failed because its log could not be written"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while failures(&gateway.metrics().await) <= before || dropped(&gateway.metrics().await) <= dropped_before
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the store's failures, and the records they lost, were never counted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The store comes back: the log writes again, with no restart.
    std::fs::remove_file(&root).unwrap();
    std::fs::create_dir_all(&root).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while segment_files(&root) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no segment was written after the store came back"
        );
        let (status, _) = predict(&gateway, None, None).await;
        assert_eq!(status, 200);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Prediction log segments under `dir`, at any depth.
fn segment_files(dir: &std::path::Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| {
            let path = entry.path();
            if path.is_dir() {
                segment_files(&path)
            } else {
                usize::from(path.extension().is_some_and(|ext| ext == "jsonl"))
            }
        })
        .sum()
}
