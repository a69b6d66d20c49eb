//! Ground truth end to end: labels posted to a gateway are joined by the
//! registry with the logged predictions they answer, into realized accuracy
//! and AUC; unknown, duplicate and malformed labels are counted, not refused;
//! labels for a deployment that logs nothing are kept, with a warning.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sluice_registry_client::feedback::Performance;
use sluice_tests::registry::RegistryOptions;
use sluice_tests::{Options, TestGateway, TestRegistry, credit_applicants, example_model};

const MODEL: &str = "credit_risk";

/// Exact AUC: the share of (positive, negative) pairs the positive wins, ties half.
fn exact_auc(scored: &[(f64, bool)]) -> f64 {
    let positives: Vec<f64> = scored.iter().filter(|(_, p)| *p).map(|(s, _)| *s).collect();
    let negatives: Vec<f64> = scored.iter().filter(|(_, p)| !*p).map(|(s, _)| *s).collect();
    let mut wins = 0.0;
    for p in &positives {
        for n in &negatives {
            wins += if p > n {
                1.0
            } else if p == n {
                0.5
            } else {
                0.0
            };
        }
    }
    wins / (positives.len() * negatives.len()) as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labels_join_their_predictions_into_realized_metrics() {
    let mut registry = TestRegistry::start_with(RegistryOptions {
        monitor_tick: Some(Duration::from_millis(100)),
        feedback_grace_ms: Some(1500),
        ..Default::default()
    })
    .await;
    let version = registry
        .register(
            MODEL,
            &example_model(MODEL),
            &[("auc", 0.9), ("train_accuracy", 0.85)],
        )
        .await;
    registry.approve_staging(MODEL, version.version).await;
    // Inputs are not sampled at all: the ids and outputs are still logged.
    registry.deploy_logged(MODEL, &[(1, 100)], 0.0).await;
    let cache = tempfile::tempdir().unwrap();
    let gateway = TestGateway::follow_logging(&registry, cache.path(), MODEL, &[1]).await;

    // 60 predictions under our own request ids, and what each answered.
    let mut answered = Vec::new();
    for (index, request) in credit_applicants(60, 0.0).into_iter().enumerate() {
        let id = format!("loan-{index}");
        let answer = gateway.predict_as(MODEL, &id, &request).await;
        let output = |name: &str| {
            answer["outputs"]
                .as_array()
                .unwrap()
                .iter()
                .find(|output| output["name"] == name)
                .unwrap()["data"]
                .clone()
        };
        let label = output("label")[0].as_i64().unwrap();
        let score = output("probabilities")[1].as_f64().unwrap();
        answered.push((id, label, score));
    }

    // The truth: the first 45 as predicted, the last 15 the other class.
    let truth: Vec<(String, i64)> = answered
        .iter()
        .enumerate()
        .map(|(index, (id, label, _))| (id.clone(), if index < 45 { *label } else { 1 - label }))
        .collect();
    // One at a time, as booleans, then the rest in one batch.
    let (status, reply) = gateway
        .post_json(
            &format!("/v2/models/{MODEL}/feedback"),
            &json!({"request_id": truth[0].0, "label": truth[0].1 == 1}),
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["accepted"], 1);
    assert_eq!(reply["logged"], true, "{reply}");
    assert!(reply.get("warning").is_none(), "{reply}");
    let mut batch: Vec<Value> = truth[1..]
        .iter()
        .map(|(id, label)| json!({"request_id": id, "label": label}))
        .collect();
    batch.push(json!({"request_id": "never-predicted", "label": 1}));
    batch.push(json!({"request_id": "loan-3", "label": 0}));
    let (status, reply) = gateway
        .post_json(&format!("/v2/models/{MODEL}/feedback"), &Value::Array(batch))
        .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["accepted"], 61);

    let viewer = registry.client("vic");
    let deadline = Instant::now() + Duration::from_secs(20);
    let performance: Performance = loop {
        let performance = viewer
            .performance(MODEL, None, Duration::from_secs(600))
            .await
            .unwrap();
        if performance.joined == 60 && performance.unmatched.unknown == 1 {
            break performance;
        }
        assert!(
            Instant::now() < deadline,
            "the labels never joined: {performance:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let correct = answered
        .iter()
        .zip(&truth)
        .filter(|((_, predicted, _), (_, label))| predicted == label)
        .count();
    assert_eq!(correct, 45);
    assert_eq!(performance.accuracy, Some(45.0 / 60.0));
    let scored: Vec<(f64, bool)> = answered
        .iter()
        .zip(&truth)
        .map(|((_, _, score), (_, label))| (*score, *label == 1))
        .collect();
    let exact = exact_auc(&scored);
    let auc = performance
        .auc
        .expect("a binary classifier with probabilities has an AUC");
    // Scores are binned in hundredths: only pairs within one bin can differ.
    assert!((auc - exact).abs() < 0.01, "auc {auc}, exact {exact}");
    assert_eq!(performance.unmatched.duplicate, 1, "{performance:?}");
    assert_eq!(performance.unmatched.mismatched, 0);
    let auc_comparison = performance.compared.iter().find(|c| c.metric == "auc").unwrap();
    assert_eq!(auc_comparison.recorded_as, "auc");
    assert!((auc_comparison.delta - (auc - 0.9)).abs() < 1e-12);
    let accuracy = performance
        .compared
        .iter()
        .find(|c| c.metric == "accuracy")
        .unwrap();
    assert_eq!(accuracy.recorded_as, "train_accuracy");

    // A label with more rows than its one-row prediction is counted as mismatched.
    gateway
        .predict_as(MODEL, "loan-fresh", &credit_applicants(1, 0.0)[0])
        .await;
    let mismatched = json!({"request_id": "loan-fresh", "label": [1, 0]});
    let (status, _) = gateway
        .post_json(&format!("/v2/models/{MODEL}/feedback"), &mismatched)
        .await;
    assert_eq!(status, 200);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let performance = viewer
            .performance(MODEL, None, Duration::from_secs(600))
            .await
            .unwrap();
        if performance.unmatched.mismatched == 1 {
            assert_eq!(performance.joined, 60);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the mismatch was never counted: {performance:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The store is the only copy: a restarted registry joins it all again.
    let before = viewer
        .performance(MODEL, None, Duration::from_secs(600))
        .await
        .unwrap();
    registry.restart().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let after = viewer
            .performance(MODEL, None, Duration::from_secs(600))
            .await
            .unwrap();
        // Segments are joined one at a time: wait for all of them, not
        // for the first sign of the rejoin.
        if after == before {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the restarted registry never joined it all again: {after:?}, before {before:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_feedback_is_a_4xx_that_says_what_was_expected() {
    let registry = TestRegistry::start().await;
    registry.release(MODEL, &example_model(MODEL)).await;
    let cache = tempfile::tempdir().unwrap();
    let gateway = TestGateway::follow(&registry, cache.path(), Options::default()).await;
    gateway.wait_versions(MODEL, &[1]).await;
    let post = |body: Value, model: &'static str| {
        let gateway = &gateway;
        async move {
            gateway
                .post_json(&format!("/v2/models/{model}/feedback"), &body)
                .await
        }
    };
    let (status, reply) = post(json!({"request_id": "a", "label": 1}), "nope").await;
    assert_eq!(status, 404, "{reply}");
    assert!(reply["error"].as_str().unwrap().contains("nope"));
    let (status, reply) = post(json!({"label": 1}), MODEL).await;
    assert_eq!(status, 400);
    assert!(reply["error"].as_str().unwrap().contains("request_id"), "{reply}");
    let (status, reply) = post(json!([]), MODEL).await;
    assert_eq!(status, 400);
    assert!(reply["error"].as_str().unwrap().contains("empty"), "{reply}");
    let (status, reply) = post(json!({"request_id": "a", "label": {"class": 1}}), MODEL).await;
    assert_eq!(status, 400);
    assert!(reply["error"].as_str().unwrap().contains("label"), "{reply}");
    let response = gateway
        .client
        .post(gateway.url(&format!("/v2/models/{MODEL}/feedback")))
        .body("not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    // Nothing was stored for any of them.
    assert!(
        std::fs::read_dir(registry.logs().feedback.dir().unwrap())
            .map(|mut entries| entries.next().is_none())
            .unwrap_or(true)
    );
    // This deployment logs no predictions: a label is kept, and the answer
    // says it has nothing here to join with.
    let (status, reply) = post(json!({"request_id": "a", "label": 1}), MODEL).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(
        (reply["accepted"].as_u64(), reply["logged"].as_bool()),
        (Some(1), Some(false))
    );
    let warning = reply["warning"].as_str().unwrap();
    assert!(
        warning.contains("logs no predictions") && warning.contains("--log-sample-rate"),
        "{warning}"
    );
}
