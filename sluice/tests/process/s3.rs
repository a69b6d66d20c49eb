//! `--store s3://bucket/prefix` against a real S3-compatible server (moto's,
//! from PyPI): the registry keeps artifacts there and reads the prediction
//! and feedback logs the gateway writes there, nothing lands in the data
//! dir, and a restarted `sluice serve` with an empty cache loads every
//! model from the bucket through its registry.

use crate::common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sluice_registry_client::RegistryClient;
use sluice_registry_client::types::SetDeployment;

const BUCKET: &str = "sluice-test";

/// moto's S3 server on an ephemeral port, stopped when dropped.
struct S3Server {
    _server: common::Running,
    url: String,
}

impl S3Server {
    /// `None` (the test skips, saying so) when moto is not installed and
    /// `SLUICE_REQUIRE_S3=1` (CI) does not demand it.
    async fn start() -> Option<S3Server> {
        let installed = Command::new("python3")
            .args(["-c", "import moto.server"])
            .status()
            .is_ok_and(|status| status.success());
        if !installed {
            assert!(
                std::env::var("SLUICE_REQUIRE_S3").as_deref() != Ok("1"),
                "an S3-compatible server is required: pip install -r scripts/requirements-test.txt"
            );
            eprintln!("SKIPPED: no S3-compatible server (pip install -r scripts/requirements-test.txt)");
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = Command::new("python3")
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting moto's server");
        let url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if http.get(&url).send().await.is_ok() {
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("moto's server exited: {status}");
            }
            assert!(Instant::now() < deadline, "moto's server never answered");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let created = http.put(format!("{url}/{BUCKET}")).send().await.unwrap();
        assert!(
            created.status().is_success(),
            "creating the bucket: {}",
            created.status()
        );
        Some(S3Server {
            _server: common::Running(child),
            url,
        })
    }

    /// Every key in the bucket under `prefix`.
    async fn keys(&self, prefix: &str) -> Vec<String> {
        let listing = reqwest::Client::new()
            .get(format!("{}/{BUCKET}?list-type=2&prefix={prefix}", self.url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        listing
            .split("<Key>")
            .skip(1)
            .filter_map(|rest| rest.split_once("</Key>").map(|(key, _)| key.to_string()))
            .collect()
    }
}

/// A `sluice serve` process, killed when dropped (a failed assertion too).
struct Serve {
    process: common::Running,
    base: String,
    admin: String,
}

/// `sluice serve` (embedded registry) on the bucket.
fn serve(s3: &S3Server, data_dir: &Path, cache_dir: &Path, demo: bool) -> Serve {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sluice"));
    command
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .args(["--log-format", "json", "--store", &format!("s3://{BUCKET}/prod")])
        .args(["--segment-max-age-ms", "100", "--monitor-tick-ms", "100"])
        .args(["--feedback-grace-ms", "5000", "--data-dir"])
        .arg(data_dir)
        .arg("--cache-dir")
        .arg(cache_dir)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ENDPOINT_URL", &s3.url)
        .env("AWS_ALLOW_HTTP", "true")
        .env_remove("SLUICE_TOKEN")
        .stderr(Stdio::piped());
    if demo {
        command.arg("--demo");
    }
    let mut child = command.spawn().expect("starting sluice serve");
    let addresses =
        common::listening_addresses(&mut child, &["sluice is listening", "registry is listening"]);
    Serve {
        process: common::Running(child),
        base: format!("http://{}", addresses["sluice is listening"]),
        admin: format!("http://{}", addresses["registry is listening"]),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn artifacts_and_logs_live_in_the_bucket() {
    let Some(s3) = S3Server::start().await else {
        return;
    };
    let data_dir = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let mut process = serve(&s3, data_dir.path(), cache.path(), true);
    let (base, admin) = (process.base.clone(), process.admin.clone());
    common::wait_ready(&http, &base, Duration::from_secs(60)).await;

    // Log every prediction of credit_risk, and wait for the gateway to apply it.
    let token = std::fs::read_to_string(data_dir.path().join("admin.token")).unwrap();
    let registry = RegistryClient::new(&admin, Some(token.trim().to_string()));
    let deployment = registry.get_deployment("credit_risk").await.unwrap();
    let mut logged = SetDeployment::new(deployment.spec.clone());
    logged.log_sample_rate = Some(0.0);
    let revision = registry
        .set_deployment("credit_risk", &logged)
        .await
        .unwrap()
        .revision;
    let applied = format!("sluice_deployments_revision {revision}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
        .contains(&applied)
    {
        assert!(
            Instant::now() < deadline,
            "the gateway never applied revision {revision}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let example = std::fs::read(root.join("models/examples/credit_risk.json")).unwrap();
    let mut labels = Vec::new();
    for id in 0..20 {
        let response = http
            .post(format!("{base}/v2/models/credit_risk/infer"))
            .header("x-request-id", format!("s3-{id}"))
            .body(example.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let answer: Value = response.json().await.unwrap();
        let label = answer["outputs"][0]["data"][0].as_i64().unwrap();
        labels.push(json!({ "request_id": format!("s3-{id}"), "label": label }));
    }
    let response = http
        .post(format!("{base}/v2/models/credit_risk/feedback"))
        .json(&Value::Array(labels))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    // The registry read both logs back from the bucket and joined them.
    let deadline = Instant::now() + Duration::from_secs(30);
    let performance = loop {
        let performance: Value = http
            .get(format!(
                "{admin}/api/v1/models/credit_risk/performance?window_ms=600000"
            ))
            .bearer_auth(token.trim())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if performance["joined"] == 20 {
            break performance;
        }
        assert!(
            Instant::now() < deadline,
            "the labels never joined: {performance}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(performance["accuracy"], 1.0, "{performance}");

    let artifacts = s3.keys("prod/artifacts/").await;
    assert_eq!(artifacts.len(), 2, "the demo's two models: {artifacts:?}");
    assert!(
        artifacts
            .iter()
            .all(|key| key.starts_with("prod/artifacts/sha256/") && key.ends_with(".onnx"))
    );
    let predictions = s3.keys("prod/predictions/").await;
    assert!(
        predictions
            .iter()
            .any(|key| key.starts_with("prod/predictions/model=credit_risk/version=1/date=")),
        "{predictions:?}"
    );
    assert!(!s3.keys("prod/feedback/").await.is_empty());
    for local in ["artifacts", "predictions", "feedback"] {
        assert!(
            !data_dir.path().join(local).exists(),
            "{local} went to the data dir"
        );
    }

    // A new process with an empty cache: every model comes from the bucket.
    process.process.kill();
    let fresh_cache = tempfile::tempdir().unwrap();
    let process = serve(&s3, data_dir.path(), fresh_cache.path(), false);
    let base = process.base.clone();
    common::wait_ready(&http, &base, Duration::from_secs(60)).await;
    let response = http
        .post(format!("{base}/v2/models/credit_risk/infer"))
        .body(example)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    // The bucket unreachable: an upload is refused for now, never half-kept.
    drop(s3);
    let upload = http
        .post(format!("{}/api/v1/artifacts", process.admin))
        .bearer_auth(token.trim())
        // A model the bucket does not hold yet (the demo pushed the others).
        .body(std::fs::read(root.join("models/test/credit_risk_inverted/1/model.onnx")).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(upload.status(), 503);
    assert_eq!(upload.headers()["retry-after"], "1");
    let body: Value = upload.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("artifact store is unavailable"),
        "{body}"
    );
}
