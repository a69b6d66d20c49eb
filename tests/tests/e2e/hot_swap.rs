//! Hot swap under load: versions come and go while requests flow; no request
//! fails, and every answer comes from a version that was live at the time.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use sluice_tests::{TestGateway, TestRepository, example_model, fixture};

const MODEL: &str = "credit_risk";
const TOTAL_REQUESTS: usize = 20_000;
const CONCURRENCY: usize = 64;
const SWAP_CYCLES: u64 = 12;

struct Answer {
    sent: Instant,
    received: Instant,
    status: u16,
    version: Option<u64>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_swap_under_load_without_a_failed_request() {
    let artifact = example_model(MODEL);
    let repository = TestRepository::new().with_model(MODEL, 1, &artifact);
    let gateway = Arc::new(TestGateway::start(&repository).await);

    // Subscribe before the first change, so the swap log misses nothing.
    let mut swaps = gateway.server.routes.subscribe();
    let initial = (Instant::now(), live_versions(&gateway.server.routes.snapshot()));
    let swap_log = tokio::spawn(async move {
        let mut log = vec![initial];
        while let Ok(swap) = swaps.recv().await {
            log.push((swap.at, live_versions(&swap.table)));
        }
        log
    });

    let body = serde_json::to_vec(&fixture(MODEL)["request"]).unwrap();
    let started = Arc::new(AtomicUsize::new(0));
    let swapping = Arc::new(AtomicBool::new(true));
    let workers: Vec<_> = (0..CONCURRENCY)
        .map(|_| {
            let (gateway, body, started, swapping) =
                (gateway.clone(), body.clone(), started.clone(), swapping.clone());
            tokio::spawn(async move {
                let url = gateway.url(&format!("/v2/models/{MODEL}/infer"));
                let mut answers = Vec::new();
                while started.fetch_add(1, Ordering::Relaxed) < TOTAL_REQUESTS
                    || swapping.load(Ordering::Relaxed)
                {
                    let sent = Instant::now();
                    let response = gateway.client.post(&url).body(body.clone()).send().await.unwrap();
                    let status = response.status().as_u16();
                    let json: Value = response.json().await.unwrap();
                    answers.push(Answer {
                        sent,
                        received: Instant::now(),
                        status,
                        version: json["model_version"].as_str().and_then(|v| v.parse().ok()),
                    });
                }
                answers
            })
        })
        .collect();

    // Add a new version (it takes all traffic under `latest`), then remove it
    // (traffic falls back to version 1): 12 times, each a different version.
    for cycle in 0..SWAP_CYCLES {
        let version = cycle + 2;
        repository.add_version(MODEL, version, &artifact);
        gateway.wait_versions(MODEL, &[version]).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        repository.remove_version(MODEL, version);
        gateway.wait_versions(MODEL, &[1]).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    swapping.store(false, Ordering::Relaxed);

    let mut answers = Vec::new();
    for worker in workers {
        answers.extend(worker.await.unwrap());
    }
    let gateway = Arc::try_unwrap(gateway).unwrap_or_else(|_| panic!("workers still hold the gateway"));
    gateway.server.shutdown().await.unwrap();
    let log = swap_log.await.unwrap();

    assert!(answers.len() >= TOTAL_REQUESTS, "only {} requests", answers.len());
    let failed = answers.iter().filter(|a| a.status != 200).count();
    assert_eq!(failed, 0, "{failed} of {} requests failed", answers.len());
    // At least two swaps per cycle were seen (a swap may also bring the
    // version and drop the old one in one store).
    assert!(
        log.len() > 2 * SWAP_CYCLES as usize,
        "only {} swaps logged",
        log.len()
    );
    let served: BTreeSet<u64> = answers.iter().filter_map(|a| a.version).collect();
    assert!(
        served.len() as u64 > SWAP_CYCLES / 2,
        "traffic reached only versions {served:?}"
    );

    for answer in &answers {
        let version = answer.version.expect("every answer names its version");
        let live_during_request = log.iter().enumerate().any(|(index, (at, live))| {
            let until = log.get(index + 1).map(|(next, _)| *next);
            // `at` is taken just before the store: allow the nanoseconds
            // between the two for a request that loaded the old table.
            let until = until.map(|until| until + Duration::from_millis(5));
            live.contains(&version) && *at <= answer.received && until.is_none_or(|until| until > answer.sent)
        });
        assert!(
            live_during_request,
            "version {version} answered a request while it was not live"
        );
    }
}

fn live_versions(table: &sluice_gateway::routing::RoutingTable) -> BTreeSet<u64> {
    table
        .live_versions()
        .into_iter()
        .filter(|(name, _)| name == MODEL)
        .map(|(_, version)| version)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_that_fails_to_load_never_replaces_a_working_one() {
    let artifact = example_model(MODEL);
    let repository = TestRepository::new().with_model(MODEL, 1, &artifact);
    let gateway = TestGateway::start(&repository).await;
    let request = fixture(MODEL)["request"].clone();
    let serving = gateway.serving(MODEL);
    let infer = format!("/v2/models/{MODEL}/infer");

    // Load failures are counted by model in the process's metrics, which
    // every suite shares: this test counts from what it found.
    let failures_before = gateway.load_failures(MODEL).await;

    // The serving version's file is overwritten with garbage: the loaded
    // model keeps serving, untouched.
    repository.add_version(MODEL, 1, b"truncated");
    gateway.wait_load_failures(MODEL, failures_before + 1.0).await;
    let still = gateway.serving(MODEL);
    assert!(Arc::ptr_eq(&serving, &still), "the working version was replaced");
    let (status, body) = gateway.post_json(&infer, &request).await;
    assert_eq!((status, body["model_version"].as_str()), (200, Some("1")));

    // A broken new version does not take over from it either.
    repository.add_version(MODEL, 2, b"this is not an onnx model");
    gateway.wait_load_failures(MODEL, failures_before + 2.0).await;
    gateway.wait_versions(MODEL, &[1]).await;
    let (status, body) = gateway.post_json(&infer, &request).await;
    assert_eq!((status, body["model_version"].as_str()), (200, Some("1")));
    assert_eq!(gateway.get("/v2/health/ready").await.0, 200);

    // The fixed file is loaded and takes over.
    repository.add_version(MODEL, 2, &artifact);
    gateway.wait_versions(MODEL, &[2]).await;
    let (status, body) = gateway.post_json(&infer, &request).await;
    assert_eq!((status, body["model_version"].as_str()), (200, Some("2")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changing_the_backend_in_config_reloads_the_version() {
    let repository = TestRepository::new()
        .with_model(MODEL, 1, &example_model(MODEL))
        .with_config(MODEL, "backend = \"tract\"");
    let gateway = TestGateway::start(&repository).await;
    let engine = || gateway.serving(MODEL).backend.name();
    assert_eq!(engine(), "tract");
    std::fs::write(
        repository.path().join(MODEL).join("config.toml"),
        "backend = \"ort\"",
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while engine() != "ort" {
        assert!(Instant::now() < deadline, "the new backend was never loaded");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (status, _) = gateway
        .post_json(&format!("/v2/models/{MODEL}/infer"), &fixture(MODEL)["request"])
        .await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_policies_all_and_specific() {
    let artifact = example_model(MODEL);
    let repository = TestRepository::new()
        .with_model(MODEL, 1, &artifact)
        .with_model(MODEL, 2, &artifact)
        .with_model(MODEL, 3, &artifact)
        .with_config(MODEL, "version_policy = \"all\"");
    let gateway = TestGateway::start(&repository).await;
    gateway.wait_versions(MODEL, &[1, 2, 3]).await;
    let (_, body) = gateway
        .post_json(&format!("/v2/models/{MODEL}/infer"), &fixture(MODEL)["request"])
        .await;
    assert_eq!(
        body["model_version"], "3",
        "unpinned requests go to the highest version"
    );

    std::fs::write(
        repository.path().join(MODEL).join("config.toml"),
        "version_policy = { specific = [1, 3] }",
    )
    .unwrap();
    gateway.wait_versions(MODEL, &[1, 3]).await;
    let (status, _) = gateway
        .post_json(
            &format!("/v2/models/{MODEL}/versions/2/infer"),
            &fixture(MODEL)["request"],
        )
        .await;
    assert_eq!(status, 404);
}
