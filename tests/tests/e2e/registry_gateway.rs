//! The gateway serving what the registry deploys: a release end to end with a
//! swap under load, the registry going away and coming back, a gateway
//! starting from its cache, and a corrupted cached artifact.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::Value;
use sluice_tests::registry::cached_artifact;
use sluice_tests::{Options, TestGateway, TestRegistry, example_model, fixture};

const MODEL: &str = "credit_risk";

fn request() -> Value {
    fixture(MODEL)["request"].clone()
}

/// Posts `request` in a loop until `stop`; returns (status, version) of each answer.
fn load(gateway: Arc<TestGateway>, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<Vec<(u16, String)>> {
    tokio::spawn(async move {
        let mut answers = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let (status, body) = gateway
                .post_json(&format!("/v2/models/{MODEL}/infer"), &request())
                .await;
            let version = body["model_version"].as_str().unwrap_or_default().to_string();
            answers.push((status, version));
        }
        answers
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_approve_deploy_predict_then_swap_without_a_failed_request() {
    let registry = TestRegistry::start().await;
    let first = registry.release(MODEL, &example_model(MODEL)).await;
    let cache = tempfile::tempdir().unwrap();
    let gateway = Arc::new(TestGateway::follow(&registry, cache.path(), Options::default()).await);
    gateway.wait_versions(MODEL, &[first.version]).await;

    let response = gateway
        .client
        .post(gateway.url(&format!("/v2/models/{MODEL}/infer")))
        .body(serde_json::to_vec(&request()).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-model-version"], "1");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["model_version"], "1");
    sluice_tests::assert_outputs_match(&body["outputs"], &fixture(MODEL)["outputs"], 1e-5);

    // A new version (the same pipeline exported with its scaler, another
    // artifact) is released while requests flow.
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..8).map(|_| load(gateway.clone(), stop.clone())).collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let second = registry
        .register(MODEL, &example_model("credit_risk_scaled"), &[])
        .await;
    registry.approve_staging(MODEL, second.version).await;
    registry.deploy(MODEL, &[(second.version, 100)]).await;
    gateway.wait_versions(MODEL, &[second.version]).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);

    let mut answers = Vec::new();
    for worker in workers {
        answers.extend(worker.await.unwrap());
    }
    let failed: Vec<_> = answers.iter().filter(|(status, _)| *status != 200).collect();
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {failed:?}",
        failed.len(),
        answers.len()
    );
    assert!(answers.iter().any(|(_, version)| version == "1"));
    // A request routed just before the swap may still answer "1" as the
    // workers stop; one sent after it must be the new version's.
    let response = gateway
        .client
        .post(gateway.url(&format!("/v2/models/{MODEL}/infer")))
        .body(serde_json::to_vec(&request()).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["x-model-version"],
        "2",
        "after the swap, the new version answers"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn predictions_go_on_while_the_registry_is_down_and_it_catches_up() {
    let mut registry = TestRegistry::start().await;
    registry.release(MODEL, &example_model(MODEL)).await;
    let cache = tempfile::tempdir().unwrap();
    let gateway = TestGateway::follow(&registry, cache.path(), Options::default()).await;
    gateway.wait_versions(MODEL, &[1]).await;

    registry.stop().await;
    for _ in 0..20 {
        let (status, body) = gateway
            .post_json(&format!("/v2/models/{MODEL}/infer"), &request())
            .await;
        assert_eq!(status, 200, "{body}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let (ready, _) = gateway.get("/v2/health/ready").await;
    assert_eq!(ready, 200, "a gateway stays ready while the registry is down");

    registry.restart().await;
    let second = registry.register(MODEL, &example_model(MODEL), &[]).await;
    registry.approve_staging(MODEL, second.version).await;
    registry.deploy(MODEL, &[(1, 50), (second.version, 50)]).await;
    gateway.wait_versions(MODEL, &[1, second.version]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_starts_from_its_cache_when_the_registry_is_down() {
    let mut registry = TestRegistry::start().await;
    registry.release(MODEL, &example_model(MODEL)).await;
    registry.release("digits", &example_model("digits")).await;
    let cache = tempfile::tempdir().unwrap();
    let first = TestGateway::follow(&registry, cache.path(), Options::default()).await;
    first.wait_versions("digits", &[1]).await;
    first.server.shutdown().await.unwrap();
    registry.stop().await;

    let second = TestGateway::launch_following(
        &registry.url(),
        &registry.token("gw"),
        cache.path(),
        Options::default(),
    )
    .await;
    second.wait_ready().await;
    second.wait_versions(MODEL, &[1]).await;
    second.wait_versions("digits", &[1]).await;
    let (status, body) = second
        .post_json("/v2/models/digits/infer", &fixture("digits")["request"])
        .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_cached_artifact_is_detected_and_fetched_again() {
    let registry = TestRegistry::start().await;
    let version = registry.release(MODEL, &example_model(MODEL)).await;
    let cache = tempfile::tempdir().unwrap();
    let first = TestGateway::follow(&registry, cache.path(), Options::default()).await;
    first.wait_versions(MODEL, &[1]).await;
    first.server.shutdown().await.unwrap();

    // Flip one byte of the cached file, as a bad disk would.
    let path = cached_artifact(cache.path(), &version.sha256);
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();

    let second = TestGateway::follow(&registry, cache.path(), Options::default()).await;
    second.wait_versions(MODEL, &[1]).await;
    let (status, body) = second
        .post_json(&format!("/v2/models/{MODEL}/infer"), &request())
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        example_model(MODEL),
        "the cache holds the good bytes again"
    );
    let metrics = second.metrics().await;
    assert!(
        metrics.contains("sluice_artifact_cache_corruptions_total"),
        "the corruption is counted"
    );
}

/// The fleet view: each following gateway reports the revision it serves
/// and what it loaded; one that stops reporting turns stale.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_lists_each_gateway_with_its_revision_and_versions() {
    let registry = TestRegistry::start().await;
    let release = registry.release(MODEL, &example_model(MODEL)).await;
    let (cache_a, cache_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = TestGateway::follow(&registry, cache_a.path(), Options::default()).await;
    let b = TestGateway::follow(&registry, cache_b.path(), Options::default()).await;
    a.wait_versions(MODEL, &[release.version]).await;
    b.wait_versions(MODEL, &[release.version]).await;
    let vic = registry.client("vic");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let fleet = loop {
        let fleet = vic.gateways().await.unwrap();
        let current = fleet
            .gateways
            .iter()
            .filter(|gateway| {
                gateway.serving.as_ref().is_some_and(|serving| {
                    serving.revision == fleet.revision
                        && serving.models.get(MODEL) == Some(&vec![release.version])
                })
            })
            .count();
        if current == 2 {
            break fleet;
        }
        assert!(std::time::Instant::now() < deadline, "{fleet:#?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(fleet.gateways.iter().all(|gateway| !gateway.stale), "{fleet:#?}");
    let names: Vec<&str> = fleet
        .gateways
        .iter()
        .map(|gateway| gateway.gateway.as_str())
        .collect();
    assert_ne!(names[0], names[1], "two gateways, two names");

    // One gone silent is stale after three of its intervals (50 ms here).
    drop(b);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let fleet = vic.gateways().await.unwrap();
        if fleet.gateways.iter().filter(|gateway| gateway.stale).count() == 1 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{fleet:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(a);
}
