//! Faults in the parts around the registry, each with its promise: a
//! locked metadata store answers 503 and changes nothing; a stored artifact
//! that rotted is never served as a model, and the version serving goes
//! on; an upload that breaks off or stalls leaves nothing behind, before
//! or after a restart.

use std::time::{Duration, Instant};

use serde_json::json;
use sluice_registry_client::types::CreateModel;
use sluice_tests::{Options, RegistryOptions, TestGateway, TestRegistry, example_model, read_json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const MODEL: &str = "credit_risk";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_metadata_store_answers_503_and_changes_nothing() {
    let registry = TestRegistry::start().await;
    let dora = registry.client("dora");
    // Another writer holds the database (a backup tool, a stuck process).
    let database = rusqlite::Connection::open(registry.data_dir().join("registry.db")).unwrap();
    database.execute_batch("BEGIN EXCLUSIVE").unwrap();

    let started = Instant::now();
    let response = reqwest::Client::new()
        .post(format!("{}/api/v1/models", registry.url()))
        .bearer_auth(registry.token("dora"))
        .json(&json!({"name": "locked_out"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["retry-after"], "1");
    let (code, body) = read_json(response).await;
    assert_eq!(code, 503, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("nothing was changed, retry"),
        "{body}"
    );
    // The busy timeout (5 s per statement; the monitor's and the rollout
    // controller's writes wait their turn too) bounds the wait: a lock
    // never hangs a request.
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );

    database.execute_batch("ROLLBACK").unwrap();
    let create = CreateModel {
        name: "locked_out".into(),
        ..Default::default()
    };
    dora.create_model(&create).await.expect("the same write, retried");
    let models = dora.list_models().await.unwrap();
    assert_eq!(
        models.iter().filter(|model| model.name == "locked_out").count(),
        1
    );
    let events = registry.client("admin").events(0, 1000).await.unwrap();
    let created = events
        .iter()
        .filter(|event| event.action == "model.create" && event.subject == "locked_out")
        .count();
    assert_eq!(created, 1, "the refused write left no audit event");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotten_stored_artifact_is_never_served_and_the_old_version_goes_on() {
    let registry = TestRegistry::start().await;
    registry.release(MODEL, &example_model(MODEL)).await;
    let cache = tempfile::tempdir().unwrap();
    let gateway = TestGateway::follow(&registry, cache.path(), Options::default()).await;
    gateway.wait_versions(MODEL, &[1]).await;

    // Version 2's bytes rot in the registry's store after it was registered.
    let second = registry
        .register(MODEL, &example_model("credit_risk_scaled"), &[])
        .await;
    registry.approve_staging(MODEL, second.version).await;
    let stored = registry
        .data_dir()
        .join("artifacts/sha256")
        .join(format!("{}.onnx", second.sha256));
    let mut bytes = std::fs::read(&stored).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&stored, &bytes).unwrap();

    let download = registry.client("gw").download_artifact(&second.sha256).await;
    assert!(
        matches!(
            &download,
            Err(sluice_registry_client::ClientError::Api { status: 500, .. })
        ),
        "{download:?}"
    );
    registry.deploy(MODEL, &[(second.version, 100)]).await;
    // The gateway tried to fetch version 2 and was refused it (the test's
    // own download above is the first count; the recorder is per process).
    let corrupt = |metrics: &str| {
        metrics
            .lines()
            .find_map(|line| line.strip_prefix("sluice_registry_corrupt_artifacts_total "))
            .map_or(0.0, |value| value.parse::<f64>().unwrap())
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while corrupt(&gateway.metrics().await) < 2.0 {
        assert!(Instant::now() < deadline, "the gateway never asked for version 2");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let request = sluice_tests::credit_applicants(1, 0.0).remove(0);
    for _ in 0..20 {
        let response = gateway
            .client
            .post(gateway.url(&format!("/v2/models/{MODEL}/infer")))
            .json(&request)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["x-model-version"], "1");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Sends the head of an upload of `declared` bytes and `sent` of them.
async fn start_upload(registry: &TestRegistry, declared: usize, sent: usize) -> TcpStream {
    let mut stream = TcpStream::connect(registry.addr).await.unwrap();
    let head = format!(
        "POST /api/v1/artifacts HTTP/1.1\r\nhost: registry\r\nauthorization: Bearer {}\r\n\
         content-type: application/octet-stream\r\ncontent-length: {declared}\r\n\r\n",
        registry.token("dora")
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&example_model(MODEL)[..sent]).await.unwrap();
    stream
}

fn stored_artifacts(registry: &TestRegistry) -> usize {
    std::fs::read_dir(registry.data_dir().join("artifacts/sha256")).map_or(0, |entries| entries.count())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_that_breaks_off_or_stalls_leaves_nothing_behind() {
    let idle = Duration::from_millis(300);
    let mut registry = TestRegistry::start_with(RegistryOptions {
        upload_idle_timeout: Some(idle),
        ..RegistryOptions::default()
    })
    .await;
    let model = example_model(MODEL);

    // A client that dies mid-upload.
    drop(start_upload(&registry, model.len(), model.len() / 2).await);
    // A client that stalls mid-upload: 408 once it has sent nothing for the idle timeout.
    let started = Instant::now();
    let mut stalled = start_upload(&registry, model.len(), model.len() / 3).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stalled.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("the upload stalled"), "{answer}");
    assert!(started.elapsed() < idle + Duration::from_secs(2));
    assert_eq!(stored_artifacts(&registry), 0);

    // The registry restarts mid-upload (its drain cuts the upload).
    let _cut = start_upload(&registry, model.len(), model.len() / 2).await;
    registry.restart().await;
    assert_eq!(
        stored_artifacts(&registry),
        0,
        "no partial artifact after the restart"
    );
    let dora = registry.client("dora");
    assert!(dora.list_models().await.unwrap().is_empty());
    // And the whole upload, once, works.
    let uploaded = dora.upload_artifact_bytes(model.clone()).await.unwrap();
    assert_eq!(uploaded.size, model.len() as u64);
    assert_eq!(stored_artifacts(&registry), 1);
}
