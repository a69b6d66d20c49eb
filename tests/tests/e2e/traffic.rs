//! Traffic through a real registry and gateway: a weighted split, sticky
//! keys, pinning, and a shadow that changes no primary response while its
//! comparison figures come out right.

use std::collections::BTreeMap;

use sluice_registry_client::types::{SetDeployment, Shadow, TrafficSpec};
use sluice_tests::{Options, TestGateway, TestRegistry, example_model, fixture};

const MODEL: &str = "credit_risk";

/// Version 1 (tract's credit_risk) and version 2 (the same pipeline with its
/// scaler, on ONNX Runtime), both in staging, under `name`: a test that
/// reads the process's metrics registers a name of its own, so that the
/// other suites of this binary add nothing to its series.
async fn two_versions(registry: &TestRegistry, name: &str) {
    registry.release(name, &example_model(MODEL)).await;
    let second = registry
        .register(name, &example_model("credit_risk_scaled"), &[])
        .await;
    registry.approve_staging(name, second.version).await;
}

async fn post(gateway: &TestGateway, path: &str, user_opt: Option<&str>) -> (u16, Vec<u8>, String) {
    let body = serde_json::to_vec(&fixture(MODEL)["request"]).unwrap();
    let mut request = gateway.client.post(gateway.url(path)).body(body);
    if let Some(user) = user_opt {
        request = request.header("x-user-id", user);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let version = response.headers()["x-model-version"]
        .to_str()
        .unwrap()
        .to_string();
    (status, response.bytes().await.unwrap().to_vec(), version)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_splits_by_weight_sticks_by_key_and_pins_by_path() {
    let registry = TestRegistry::start().await;
    two_versions(&registry, MODEL).await;
    let mut body = SetDeployment::new(TrafficSpec::weighted(&[(1, 70), (2, 30)]));
    body.sticky_header = Some("x-user-id".into());
    registry
        .client("dora")
        .set_deployment(MODEL, &body)
        .await
        .unwrap();
    let cache = tempfile::tempdir().unwrap();
    let gateway = TestGateway::follow(&registry, cache.path(), Options::default()).await;
    gateway.wait_versions(MODEL, &[1, 2]).await;

    let infer = format!("/v2/models/{MODEL}/infer");
    let mut counts: BTreeMap<String, u32> = BTreeMap::new();
    for _ in 0..2000 {
        let (status, _, version) = post(&gateway, &infer, None).await;
        assert_eq!(status, 200);
        *counts.entry(version).or_default() += 1;
    }
    // 2000 draws: the share's standard deviation is 1 point; 5 is far outside chance.
    let canary_share = f64::from(counts["2"]) / 2000.0;
    assert!(
        (canary_share - 0.3).abs() < 0.05,
        "canary share {canary_share}: {counts:?}"
    );

    for user in ["alice", "bob", "carol", "dave", "erin"] {
        let (_, _, first) = post(&gateway, &infer, Some(user)).await;
        for _ in 0..10 {
            assert_eq!(
                post(&gateway, &infer, Some(user)).await.2,
                first,
                "{user} changed version"
            );
        }
    }
    for version in ["1", "2"] {
        let pinned = format!("/v2/models/{MODEL}/versions/{version}/infer");
        for _ in 0..20 {
            assert_eq!(post(&gateway, &pinned, None).await.2, version);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_changes_no_response_and_its_comparison_is_right() {
    const SHADOWED: &str = "credit_risk_shadowed";
    let registry = TestRegistry::start().await;
    two_versions(&registry, SHADOWED).await;
    let cache = tempfile::tempdir().unwrap();
    let gateway = TestGateway::follow(&registry, cache.path(), Options::default()).await;
    gateway.wait_versions(SHADOWED, &[1]).await;
    let infer = format!("/v2/models/{SHADOWED}/infer");
    let (_, without_shadow, _) = post(&gateway, &infer, None).await;

    let mut body = SetDeployment::new(TrafficSpec::weighted(&[(1, 100)]));
    body.shadow = Some(Shadow {
        version: 2,
        sample_rate: 1.0,
    });
    registry
        .client("dora")
        .set_deployment(SHADOWED, &body)
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while gateway.server.routes.snapshot().routes[SHADOWED].shadow.is_none() {
        assert!(std::time::Instant::now() < deadline, "the shadow never went live");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    // A shadow-only version serves no one, not even by path.
    gateway.wait_versions(SHADOWED, &[1]).await;
    let (status, _) = gateway
        .post_json(
            &format!("/v2/models/{SHADOWED}/versions/2/infer"),
            &fixture(MODEL)["request"],
        )
        .await;
    assert_eq!(status, 404);
    const MIRRORED: u64 = 50;
    for _ in 0..MIRRORED {
        let (status, with_shadow, version) = post(&gateway, &infer, None).await;
        assert_eq!((status, version.as_str()), (200, "1"));
        assert_eq!(
            with_shadow, without_shadow,
            "the shadow changed a primary response"
        );
    }

    // The shadow is the same pipeline with its scaler kept: it agrees on
    // every row and differs only by float rounding.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let series = |name: &str, metrics: &str| -> f64 {
        let prefix = format!("{name}{{model=\"{SHADOWED}\",version=\"2\"}} ");
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(&prefix))
            .map_or(0.0, |value| value.parse().unwrap())
    };
    let batch = fixture(MODEL)["request"]["inputs"][0]["shape"][0]
        .as_f64()
        .unwrap();
    let max_diff_over_1e5 = |metrics: &str| {
        metrics
            .lines()
            .find(|line| {
                line.starts_with("sluice_shadow_max_abs_diff_bucket")
                    && line.contains(&format!("model=\"{SHADOWED}\""))
                    && line.contains("version=\"2\"")
                    && line.contains("le=\"0.00001\"")
            })
            .and_then(|line| line.rsplit(' ').next())
            .map(|count| count.parse::<f64>().unwrap())
    };
    let metrics = loop {
        let metrics = gateway.metrics().await;
        // The shadow thread counts a request, its rows, its agreements and
        // its differences one after the other, and a scrape reads them in
        // its own order: every one is waited for.
        let rows = MIRRORED as f64 * batch;
        if series("sluice_shadow_requests_total", &metrics) >= MIRRORED as f64
            && series("sluice_shadow_compared_rows_total", &metrics) >= rows
            && series("sluice_shadow_agreements_total", &metrics) >= rows
            && max_diff_over_1e5(&metrics) >= Some(MIRRORED as f64)
        {
            break metrics;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "shadow runs never counted:\n{metrics}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let rows = series("sluice_shadow_compared_rows_total", &metrics);
    assert_eq!(rows, MIRRORED as f64 * batch, "every row of every request");
    assert_eq!(series("sluice_shadow_agreements_total", &metrics), rows);
    assert_eq!(series("sluice_shadow_errors_total", &metrics), 0.0);
    assert_eq!(
        max_diff_over_1e5(&metrics),
        Some(MIRRORED as f64),
        "every difference is below 1e-5:\n{metrics}"
    );

    // Pinned requests are not mirrored.
    let before = series("sluice_shadow_requests_total", &gateway.metrics().await);
    post(&gateway, &format!("/v2/models/{SHADOWED}/versions/1/infer"), None).await;
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(
        series("sluice_shadow_requests_total", &gateway.metrics().await),
        before
    );
}
