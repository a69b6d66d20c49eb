//! Drift end to end: a gateway counts each feature in its version's
//! reference profile bins, reports the counts, and the registry measures
//! drift over a window: shifted ages drift, the other features do not.

use std::time::{Duration, Instant};

use serde_json::Value;
use sluice_registry_client::profile::PROFILE_DOCUMENT;
use sluice_tests::{
    CREDIT_FEATURES, Options, TestGateway, TestRegistry, credit_applicants, credit_profile, example_model,
};

const MODEL: &str = "credit_risk";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shifted_ages_drift_and_the_other_features_do_not() {
    let registry = TestRegistry::start().await;
    let version = registry.register(MODEL, &example_model(MODEL), &[]).await;
    let profile: Value = credit_profile();
    let dora = registry.client("dora");
    dora.put_document(MODEL, "1", PROFILE_DOCUMENT, &profile)
        .await
        .unwrap();
    registry.approve_staging(MODEL, version.version).await;
    registry.deploy(MODEL, &[(1, 100)]).await;
    let cache = tempfile::tempdir().unwrap();
    let gateway = TestGateway::follow(&registry, cache.path(), Options::default()).await;
    gateway.wait_versions(MODEL, &[1]).await;

    // Too few rows yet: nothing is judged.
    let quiet = registry
        .client("vic")
        .drift(MODEL, None, Duration::from_secs(60))
        .await
        .unwrap();
    assert!(
        quiet
            .features
            .iter()
            .all(|feature| feature.status == "insufficient data")
    );
    assert!(!quiet.dataset_drift);

    // 400 applicants, each 40 years older than in training.
    for body in credit_applicants(400, 40.0) {
        let (status, answer) = gateway
            .post_json(&format!("/v2/models/{MODEL}/infer"), &body)
            .await;
        assert_eq!(status, 200, "{answer}");
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let report = loop {
        let report = registry
            .client("vic")
            .drift(MODEL, Some("1"), Duration::from_secs(60))
            .await
            .unwrap();
        // Outputs are counted after the run, inputs before it: wait for both.
        if report.rows >= 400 && report.outputs.iter().all(|output| output.rows >= 400) {
            break report;
        }
        assert!(
            Instant::now() < deadline,
            "the counts never reached the registry: {report:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let by_name = |name: &str| report.features.iter().find(|f| f.name == name).unwrap().clone();
    let age = by_name("age");
    assert_eq!(age.status, "drifted", "{age:?}");
    assert!(age.psi > 1.0 && age.ks.unwrap() > 0.5, "{age:?}");
    for name in CREDIT_FEATURES.iter().filter(|name| **name != "age") {
        let feature = by_name(name);
        assert_eq!(feature.status, "ok", "{feature:?}");
        assert!(feature.psi < 0.1, "{feature:?}");
    }
    assert!((report.drifted_share - 1.0 / 8.0).abs() < 1e-9);
    assert!(!report.dataset_drift, "one feature of eight is not the dataset");
    // Older applicants default less: the scores move (prediction drift), the
    // share of predicted defaults, a category, less so.
    let output = |name: &str| report.outputs.iter().find(|o| o.name == name).unwrap().clone();
    let score = output("probabilities[1]");
    assert_eq!((score.rows, score.status.as_str()), (400, "drifted"), "{score:?}");
    assert!(score.ks.unwrap() > 0.2, "{score:?}");
    let label = output("label");
    assert_eq!(label.rows, 400);
    assert!(label.ks.is_none() && label.chi_square.is_some(), "{label:?}");
    assert!(label.chi_square_p.unwrap() < 0.05, "{label:?}");
    assert!(report.prediction_drift);

    let unknown = registry
        .client("vic")
        .drift("nope", None, Duration::from_secs(60))
        .await
        .unwrap_err();
    assert_eq!(unknown.status(), Some(404));
    // A version without a profile says how to get one.
    let second = registry.register(MODEL, &example_model(MODEL), &[]).await;
    let bare = registry
        .client("vic")
        .drift(MODEL, Some(&second.version.to_string()), Duration::from_secs(60))
        .await
        .unwrap_err();
    assert_eq!(bare.status(), Some(404));
    assert!(bare.to_string().contains("sluice profile create"), "{bare}");
}
