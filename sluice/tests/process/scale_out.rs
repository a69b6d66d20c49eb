//! Several gateways, one registry: the registry on PostgreSQL and two
//! `sluice serve` processes following it, as a Kubernetes Deployment runs
//! them. Drift is measured on what both saw; a traffic change reaches both;
//! the rollout controller passes an interval that neither gateway's traffic
//! alone could pass; and a gateway killed outright comes back to the
//! registry's current state while the other answers every request.

use crate::common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use sluice_registry_client::profile::PROFILE_DOCUMENT;
use sluice_registry_client::rollout::{RolloutPolicy, RolloutStatus, StartRollout};
use sluice_tests::postgres::{self, TestPostgres};
use sluice_tests::{RegistryOptions, TestRegistry, credit_applicants, credit_profile, example_model};

const MODEL: &str = "credit_risk";

/// A `sluice serve --registry` process.
struct Gateway {
    process: common::Running,
    url: String,
    http: reqwest::Client,
}

impl Gateway {
    /// Starts `name` (its HOSTNAME, as a pod's) following `registry`.
    fn start(registry: &TestRegistry, name: &str, cache: &Path) -> Gateway {
        let logs = registry.logs();
        let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json"])
            .args(["--registry", &registry.url(), "--cache-dir"])
            .arg(cache)
            .arg("--predictions-dir")
            .arg(logs.predictions.to_string())
            .arg("--feedback-dir")
            .arg(logs.feedback.to_string())
            .args(["--stats-interval-ms", "50", "--segment-max-age-ms", "100"])
            .args(["--compute-threads", "1", "--shutdown-delay-ms", "0"])
            .env("SLUICE_SERVE_TOKEN", registry.token("gw"))
            // Version 2 (the scaled model) runs on ONNX Runtime only: name
            // the library, or fail saying where to get it, never time out.
            .env("ORT_DYLIB_PATH", sluice_tests::ort_library())
            .env("HOSTNAME", name)
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting sluice serve");
        let addr =
            common::listening_addresses(&mut child, &["sluice is listening"])["sluice is listening"].clone();
        Gateway {
            process: common::Running(child),
            url: format!("http://{addr}"),
            http: reqwest::Client::builder().no_proxy().build().unwrap(),
        }
    }

    /// Posts one request; its status and the version that answered it.
    async fn predict(&self, body: &Value) -> (u16, String) {
        let response = self
            .http
            .post(format!("{}/v2/models/{MODEL}/infer", self.url))
            .json(body)
            .send()
            .await
            .expect("the gateway answers");
        let version = response
            .headers()
            .get("x-model-version")
            .map(|value| value.to_str().unwrap().to_string())
            .unwrap_or_default();
        (response.status().as_u16(), version)
    }

    /// Sends requests until one is answered by `version`; the versions
    /// that answered 200 before and including it.
    async fn wait_version(&self, version: &str) -> Vec<String> {
        let body = &credit_applicants(1, 0.0)[0];
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut answered = Vec::new();
        loop {
            let (status, answered_by) = self.predict(body).await;
            if status == 200 {
                answered.push(answered_by.clone());
            }
            if status == 200 && answered_by == version {
                return answered;
            }
            assert!(
                Instant::now() < deadline,
                "{} never served version {version}",
                self.url
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends applicants until `count` answers came from `version`; the
    /// number of answers from each version, all of them 200.
    async fn send_until(&self, version: &str, count: usize) -> (usize, usize) {
        let bodies = credit_applicants(500, 0.0);
        let (mut from_version, mut others) = (0, 0);
        for body in bodies.iter().cycle() {
            let (status, answered_by) = self.predict(body).await;
            assert_eq!(status, 200);
            if answered_by == version {
                from_version += 1;
                if from_version == count {
                    break;
                }
            } else {
                others += 1;
            }
        }
        (from_version, others)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_one_registry_on_postgres() {
    if !postgres::available("two_gateways_one_registry_on_postgres") {
        return;
    }
    let database = TestPostgres::start();
    let registry = TestRegistry::start_with(RegistryOptions {
        metadata: Some(database.create_database()),
        rollout_tick: Some(Duration::from_millis(20)),
        ..RegistryOptions::default()
    })
    .await;
    let first = registry.register(MODEL, &example_model(MODEL), &[]).await;
    let dora = registry.client("dora");
    dora.put_document(MODEL, "1", PROFILE_DOCUMENT, &credit_profile())
        .await
        .unwrap();
    registry.approve_staging(MODEL, first.version).await;
    registry.deploy(MODEL, &[(1, 100)]).await;
    let second = registry
        .register(MODEL, &example_model("credit_risk_scaled"), &[])
        .await;
    registry.approve_staging(MODEL, second.version).await;
    let (cache_a, cache_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Gateway::start(&registry, "gateway-a", cache_a.path());
    let mut b = Gateway::start(&registry, "gateway-b", cache_b.path());
    // Each answer so far is a row for drift too.
    let warmup = a.wait_version("1").await.len() + b.wait_version("1").await.len();

    // The fleet, as `sluice gateways` shows it: both, by their host names.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let output = common::sluice_cli()
            .args(["gateways", "-o", "json", "--registry-url", &registry.url()])
            .env("SLUICE_TOKEN", registry.token("vic"))
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let fleet: Value = serde_json::from_slice(&output.stdout).unwrap();
        let names: Vec<&str> = fleet["gateways"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|gateway| gateway["serving"]["revision"] == fleet["revision"])
            .map(|gateway| gateway["gateway"].as_str().unwrap())
            .collect();
        if names.iter().any(|name| name.starts_with("gateway-a"))
            && names.iter().any(|name| name.starts_with("gateway-b"))
        {
            break;
        }
        assert!(Instant::now() < deadline, "{fleet}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Drift: 150 applicants 40 years older than in training through each.
    let vic = registry.client("vic");
    let expected = u64::try_from(warmup).unwrap() + 300;
    for body in credit_applicants(150, 40.0) {
        assert_eq!(a.predict(&body).await.0, 200);
        assert_eq!(b.predict(&body).await.0, 200);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let report = loop {
        let report = vic
            .drift(MODEL, Some("1"), Duration::from_secs(600))
            .await
            .unwrap();
        if report.rows >= expected {
            break report;
        }
        assert!(
            Instant::now() < deadline,
            "both gateways' counts never arrived: {report:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(report.rows, expected, "the rows of both gateways, once each");
    let age = report
        .features
        .iter()
        .find(|feature| feature.name == "age")
        .unwrap();
    assert_eq!(age.status, "drifted", "{age:?}");

    // A rollout whose interval needs 30 canary requests: each gateway
    // serves 21, so only both together pass it.
    // The interval is long enough for the traffic below on a slow machine:
    // it must not be judged before both gateways' requests are in.
    let policy: RolloutPolicy = serde_json::from_value(serde_json::json!({
        "step_weights": [50],
        "interval_ms": 10_000,
        "min_requests": 30,
        "max_error_rate": 0.05,
        "threshold": 1,
    }))
    .unwrap();
    dora.start_rollout(MODEL, &StartRollout { canary: 2, policy })
        .await
        .unwrap();
    // The traffic change reaches both (one canary answer each, at most)...
    a.wait_version("2").await;
    b.wait_version("2").await;
    // ...then 20 more canary answers each, in statistics windows that begin
    // after the interval did.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(a.send_until("2", 20).await.0, 20);
    assert_eq!(b.send_until("2", 20).await.0, 20);
    let deadline = Instant::now() + Duration::from_secs(20);
    let rollout = loop {
        let rollout = vic.get_rollout(MODEL).await.unwrap();
        if rollout.status != RolloutStatus::Progressing {
            break rollout;
        }
        assert!(
            Instant::now() < deadline,
            "the rollout never decided: {rollout:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Passed: it awaits production's approvals (a rollout moves no stage).
    assert_eq!(rollout.status, RolloutStatus::AwaitingPromotion, "{rollout:#?}");
    let judged = &rollout.intervals[0];
    assert_eq!(judged.verdict, "passed", "{judged:?}");
    assert!(
        (40..=42).contains(&judged.canary_requests),
        "the interval counted both gateways' canary requests: {judged:?}"
    );

    // Gateway B dies outright; A keeps answering while a release happens.
    b.process.kill();
    let stop = Arc::new(AtomicBool::new(false));
    let steady = {
        let (a, stop) = (Arc::new(a), stop.clone());
        let gateway = a.clone();
        let task = tokio::spawn(async move {
            let bodies = credit_applicants(500, 0.0);
            let mut statuses = Vec::new();
            for body in bodies.iter().cycle() {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                statuses.push(gateway.predict(body).await);
            }
            statuses
        });
        (a, task)
    };
    let third = registry.register(MODEL, &example_model(MODEL), &[]).await;
    registry.approve_staging(MODEL, third.version).await;
    registry.deploy(MODEL, &[(third.version, 100)]).await;
    steady.0.wait_version("3").await;
    let b = Gateway::start(&registry, "gateway-b", cache_b.path());
    let answered = b.wait_version("3").await;
    assert!(
        answered.iter().all(|version| version == "3"),
        "B came back on the current deployment, never an old one: {answered:?}"
    );
    stop.store(true, Ordering::Relaxed);
    let statuses = steady.1.await.unwrap();
    assert!(statuses.len() > 10, "A was busy throughout: {}", statuses.len());
    assert!(
        statuses.iter().all(|(status, _)| *status == 200),
        "A lost requests while B was down: {:?}",
        statuses
            .iter()
            .filter(|(status, _)| *status != 200)
            .collect::<Vec<_>>()
    );
}
