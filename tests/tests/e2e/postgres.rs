//! The registry on PostgreSQL when PostgreSQL goes away: every request
//! answers 503 with `Retry-After` and says why, gateways go on serving what
//! they have, and once the database is back the same requests succeed with
//! nothing lost and nothing half-written. (The whole registry suite also
//! runs on PostgreSQL: `SLUICE_TEST_METADATA=postgres`, in `scripts/test.sh`.)

use std::time::{Duration, Instant};

use sluice_registry_client::types::CreateModel;
use sluice_tests::postgres::{self, TestPostgres};
use sluice_tests::{Options, RegistryOptions, TestGateway, TestRegistry, credit_applicants, example_model};

const MODEL: &str = "credit_risk";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarting_postgres_answers_503_then_recovers_with_nothing_lost() {
    if !postgres::available("a_restarting_postgres_answers_503_then_recovers_with_nothing_lost") {
        return;
    }
    let mut database = TestPostgres::start();
    let registry = TestRegistry::start_with(RegistryOptions {
        metadata: Some(database.create_database()),
        ..RegistryOptions::default()
    })
    .await;
    registry.release(MODEL, &example_model(MODEL)).await;
    let cache = tempfile::tempdir().unwrap();
    let gateway = TestGateway::follow(&registry, cache.path(), Options::default()).await;
    gateway.wait_versions(MODEL, &[1]).await;
    let events_before = registry.client("vic").events(0, 1000).await.unwrap();

    database.stop();

    let http = reqwest::Client::new();
    let create = || {
        http.post(format!("{}/api/v1/models", registry.url()))
            .bearer_auth(registry.token("dora"))
            .json(&serde_json::json!({ "name": "fraud" }))
            .send()
    };
    let refused = create().await.unwrap();
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.headers()["retry-after"], "1");
    let body: serde_json::Value = refused.json().await.unwrap();
    let message = body["error"].as_str().unwrap();
    assert!(message.contains("metadata database"), "{message}");
    let read = http
        .get(format!("{}/api/v1/models/{MODEL}", registry.url()))
        .bearer_auth(registry.token("vic"))
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 503, "reads need the database too");
    // The gateway serves from what it loaded, the registry or not.
    for body in credit_applicants(20, 0.0) {
        let (status, answer) = gateway
            .post_json(&format!("/v2/models/{MODEL}/infer"), &body)
            .await;
        assert_eq!(status, 200, "{answer}");
    }

    database.start_again();

    // The first request after the restart reconnects.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let response = create().await.unwrap();
        if response.status() == 201 {
            break;
        }
        assert_eq!(response.status(), 503, "only unavailable while reconnecting");
        assert!(Instant::now() < deadline, "the registry never reconnected");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let vic = registry.client("vic");
    let events_after = vic.events(0, 1000).await.unwrap();
    assert_eq!(
        events_after.len(),
        events_before.len() + 1,
        "one event for the one change that was made: {events_after:#?}"
    );
    assert_eq!(events_after.last().unwrap().action, "model.create");
    assert_eq!(vic.get_model("fraud").await.unwrap().name, "fraud");
    let deployment = vic.get_deployment(MODEL).await.unwrap();
    assert_eq!(deployment.spec.weights(), vec![(1, 100)]);

    // A restart between two requests: the registry's connection is stale,
    // and the next request replaces it before it sends anything.
    database.stop();
    database.start_again();
    let churn = CreateModel {
        name: "churn".into(),
        ..Default::default()
    };
    registry.client("dora").create_model(&churn).await.unwrap();
    assert_eq!(vic.get_model("churn").await.unwrap().name, "churn");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_registry_per_database_and_text_both_databases_accept() {
    if !postgres::available("one_registry_per_database_and_text_both_databases_accept") {
        return;
    }
    let database = TestPostgres::start();
    let url = database.create_database();
    let registry = TestRegistry::start_with(RegistryOptions {
        metadata: Some(url.clone()),
        ..RegistryOptions::default()
    })
    .await;
    // A second registry on the same database is refused at its start: two
    // would judge rollouts on split statistics and dispatch runs twice.
    let data = tempfile::tempdir().unwrap();
    let mut config = sluice_registry::RegistryConfig::new(data.path());
    config.metadata_opt = Some(url);
    config.metadata_lock_wait = std::time::Duration::from_secs(1);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let inspector = std::sync::Arc::new(sluice::embedded::EngineInspector::new(
        &sluice_gateway::backend::EngineOptions::default(),
    ));
    let refused = sluice_registry::Registry::start(config, listener, inspector)
        .await
        .err()
        .expect("a second registry on the same database");
    assert!(
        refused.to_string().contains("another registry holds"),
        "{refused}"
    );

    // NUL cannot be stored in PostgreSQL's text: a 400 that says so.
    let response = reqwest::Client::new()
        .post(format!("{}/api/v1/models", registry.url()))
        .bearer_auth(registry.token("dora"))
        .json(&serde_json::json!({ "name": "fraud", "description": "a\u{0}b" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("NUL"), "{body}");
}
