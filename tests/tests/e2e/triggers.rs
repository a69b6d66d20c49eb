//! Training triggers end to end: shifted traffic fires exactly one run
//! within the configured windows and the cooldown holds; the webhook is
//! retried on 5xx and never on 4xx; manual fires are idempotent and capped;
//! a command registers a version that completes its run and is rolled out
//! as a canary by itself.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use sluice_registry_client::ClientError;
use sluice_registry_client::contract::ContractMode;
use sluice_registry_client::profile::{DriftThresholds, PROFILE_DOCUMENT};
use sluice_registry_client::rollout::RolloutPolicy;
use sluice_registry_client::trigger::{
    FireTrigger, RunStatus, TriggerAction, TriggerPolicy, TriggerRule, TriggerRun, TriggerState,
    WebhookFormat,
};
use sluice_tests::registry::RegistryOptions;
use sluice_tests::{
    Options, TestGateway, TestRegistry, credit_applicants, credit_profile, example_model, repo_root,
};

/// The credit model under a name of its own: the drift gauges these tests
/// read are the process's, and the drift suite serves `credit_risk`.
const MODEL: &str = "credit_triggers";

/// A webhook receiver on an ephemeral port: answers each call with the next
/// status of `script` (the last one repeats), keeping what it got.
struct Receiver {
    url: String,
    calls: Arc<Mutex<Vec<(HeaderMap, Value)>>>,
}

async fn receiver(script: Vec<u16>) -> Receiver {
    let calls: Arc<Mutex<Vec<(HeaderMap, Value)>>> = Arc::default();
    let kept = calls.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let kept = kept.clone();
            let script = script.clone();
            async move {
                let mut calls = kept.lock().unwrap();
                let status = script[calls.len().min(script.len() - 1)];
                calls.push((headers, serde_json::from_slice(&body).unwrap_or(Value::Null)));
                StatusCode::from_u16(status).unwrap()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Receiver { url, calls }
}

fn webhook(url: &str, format: WebhookFormat) -> TriggerAction {
    TriggerAction::Webhook {
        url: url.to_string(),
        format,
        // Read from the registry's environment, never stored.
        headers: [("x-package".to_string(), "${CARGO_PKG_NAME}".to_string())].into(),
        max_attempts: 4,
        backoff_ms: 50,
    }
}

fn policy(rules: Vec<TriggerRule>, action: TriggerAction) -> TriggerPolicy {
    TriggerPolicy {
        rules,
        action,
        cooldown_ms: 3600 * 1000,
        max_concurrent: 1,
        run_timeout_ms: 3600 * 1000,
        rollout: None,
    }
}

/// Sets the credit model's policy as dora: `rules`, delivered to `url`.
async fn set_rules(
    registry: &TestRegistry,
    rules: Vec<TriggerRule>,
    url: &str,
    format: WebhookFormat,
) -> Result<TriggerState, ClientError> {
    registry
        .client("dora")
        .set_trigger_policy(MODEL, &policy(rules, webhook(url, format)))
        .await
}

/// What these tests' registries allow: webhooks to this machine, whose
/// headers may name the package's name.
const ACTIONS: &str = r#"
webhook_hosts = ["127.0.0.1"]
webhook_env = ["CARGO_PKG_NAME"]
"#;

async fn monitored_registry() -> TestRegistry {
    monitored_registry_allowing(ACTIONS).await
}

async fn monitored_registry_allowing(actions: &str) -> TestRegistry {
    TestRegistry::start_with(RegistryOptions {
        monitor_tick: Some(Duration::from_millis(100)),
        actions: Some(actions.to_string()),
        ..Default::default()
    })
    .await
}

/// Version 1 of the credit model, with its reference profile, taking all traffic.
async fn release_with_profile(registry: &TestRegistry) {
    let version = registry.register(MODEL, &example_model("credit_risk"), &[]).await;
    let profile: Value = credit_profile();
    registry
        .client("dora")
        .put_document(MODEL, "1", PROFILE_DOCUMENT, &profile)
        .await
        .unwrap();
    registry.approve_staging(MODEL, version.version).await;
    registry.deploy(MODEL, &[(1, 100)]).await;
}

/// Sends applicants (ages shifted by `age_shift`) for `duration`.
async fn traffic(gateway: &TestGateway, age_shift: f64, duration: Duration) {
    let bodies = credit_applicants(1000, age_shift);
    let until = Instant::now() + duration;
    for body in bodies.iter().cycle() {
        if Instant::now() >= until {
            break;
        }
        let (status, answer) = gateway
            .post_json(&format!("/v2/models/{MODEL}/infer"), body)
            .await;
        assert_eq!(status, 200, "{answer}");
    }
}

async fn runs(registry: &TestRegistry) -> Vec<TriggerRun> {
    registry
        .client("vic")
        .trigger_runs(Some(MODEL), 100)
        .await
        .unwrap()
}

async fn wait_for_run(registry: &TestRegistry, done: impl Fn(&TriggerRun) -> bool) -> TriggerRun {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(run) = runs(registry).await.into_iter().find(|run| done(run)) {
            return run;
        }
        assert!(
            Instant::now() < deadline,
            "no run came to that: {:?}",
            runs(registry).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shifted_traffic_fires_one_run_and_the_cooldown_holds() {
    let registry = monitored_registry().await;
    release_with_profile(&registry).await;
    let cache = tempfile::tempdir().unwrap();
    let gateway = TestGateway::follow(&registry, cache.path(), Options::default()).await;
    gateway.wait_versions(MODEL, &[1]).await;
    // Two 503s, then delivered.
    let hook = receiver(vec![503, 503, 200]).await;
    let thresholds = DriftThresholds {
        min_rows: 100,
        // A second's traffic is a few hundred rows: JS distance has noise of
        // about 0.1 at that size, a 40-year shift is far beyond it.
        js_drift: 0.3,
        // Only ages move: one feature of eight is the dataset here.
        dataset_share: 0.1,
        ..Default::default()
    };
    let rule = TriggerRule::Drift {
        window_ms: 2000,
        windows: 2,
        thresholds: Some(thresholds),
    };
    set_rules(&registry, vec![rule], &hook.url, WebhookFormat::Sluice)
        .await
        .unwrap();

    // Traffic like the training data: two whole windows, nothing fires.
    traffic(&gateway, 0.0, Duration::from_millis(4500)).await;
    assert!(runs(&registry).await.is_empty(), "{:?}", runs(&registry).await);

    // Forty years older: two drifted windows in a row fire one run...
    let deadline = Instant::now() + Duration::from_secs(30);
    while runs(&registry).await.is_empty() {
        assert!(Instant::now() < deadline, "shifted traffic never fired a run");
        traffic(&gateway, 40.0, Duration::from_millis(500)).await;
    }
    let run = wait_for_run(&registry, |run| run.status == RunStatus::Running).await;
    assert_eq!(run.reason, "drift");
    assert_eq!(run.base_version, 1);
    assert_eq!(run.attempts, 3, "{run:?}");
    assert_eq!(run.window_end_ms - run.window_start_ms, 4000);
    let windows = run.evidence["windows"].as_array().unwrap();
    assert_eq!(windows.len(), 2, "{}", run.evidence);
    let age_psi = |window: &Value| {
        let drifted = window["drifted"].as_array().unwrap();
        let age = drifted
            .iter()
            .find(|feature| feature["feature"] == "age")
            .unwrap();
        age["psi"].as_f64().unwrap()
    };
    // The first window may straddle the shift; the last is all shifted.
    assert!(age_psi(&windows[0]) >= 0.2, "{}", windows[0]);
    assert!(age_psi(&windows[1]) > 1.0, "{}", windows[1]);
    // ...and more drifted windows within the cooldown fire nothing more:
    // traffic goes on until a drifted pair of windows was judged and
    // skipped (two windows past the fire, each judged on a monitor tick).
    traffic(&gateway, 40.0, Duration::from_millis(4500)).await;
    let skipped = format!(r#"sluice_trigger_skipped_total{{model="{MODEL}",why="cooldown"}}"#);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !gateway.metrics().await.contains(&skipped) {
        assert!(
            Instant::now() < deadline,
            "no drifted window was skipped for the cooldown"
        );
        traffic(&gateway, 40.0, Duration::from_millis(500)).await;
    }
    let all = runs(&registry).await;
    assert_eq!(all.len(), 1, "{all:?}");

    // The monitor's gauges say the same (over its 10-minute window). The
    // recorder is the process's: the other tests here, running alongside,
    // have monitors of their own that set the same series every tick, so
    // this one's value is looked for over a few scrapes.
    let drifted = &format!(
        r#"sluice_drift_feature_drifted{{model="{MODEL}",version="1",column="feature",feature="age"}} 1"#
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let metrics = loop {
        let metrics = gateway.metrics().await;
        if metrics.contains(drifted) {
            break metrics;
        }
        assert!(Instant::now() < deadline, "{metrics}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(metrics.contains(&format!(
        r#"sluice_drift_psi{{model="{MODEL}",version="1",column="feature",feature="income"}}"#
    )));

    // Three deliveries of one payload, the secret header read from the environment.
    let calls = hook.calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 3);
    for (headers, payload) in &calls {
        assert_eq!(payload["trigger_id"], run.id);
        assert_eq!(payload["idempotency_key"], run.idempotency_key);
        assert_eq!(payload["model"], MODEL);
        assert_eq!(payload["base_version"], 1);
        assert_eq!(headers["x-package"], "sluice-tests");
    }
    // One fire event, with its evidence.
    let events = registry.client("vic").events(0, 1000).await.unwrap();
    let fired: Vec<_> = events
        .iter()
        .filter(|event| event.action == "trigger.fire")
        .collect();
    assert_eq!(fired.len(), 1);
    assert_eq!(fired[0].after.as_ref().unwrap()["evidence"], run.evidence);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_labels_fire_a_performance_run() {
    let registry = TestRegistry::start_with(RegistryOptions {
        monitor_tick: Some(Duration::from_millis(100)),
        feedback_grace_ms: Some(1000),
        feedback_bucket_ms: Some(1000),
        actions: Some(ACTIONS.to_string()),
        ..Default::default()
    })
    .await;
    release_with_profile(&registry).await;
    registry.deploy_logged(MODEL, &[(1, 100)], 0.0).await;
    let cache = tempfile::tempdir().unwrap();
    let gateway = TestGateway::follow_logging(&registry, cache.path(), MODEL, &[1]).await;
    let hook = receiver(vec![200]).await;
    let rule = TriggerRule::Performance {
        metric: "accuracy".into(),
        threshold: 0.8,
        window_ms: 2000,
        windows: 1,
        min_labels: 20,
    };
    set_rules(&registry, vec![rule], &hook.url, WebhookFormat::Sluice)
        .await
        .unwrap();
    // Every label the opposite of the prediction, until a window is judged.
    let bodies = credit_applicants(400, 0.0);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut sent = 0;
    while runs(&registry).await.is_empty() {
        assert!(Instant::now() < deadline, "wrong labels never fired a run");
        let mut labels = Vec::new();
        for body in &bodies[sent % 400..sent % 400 + 40] {
            let id = format!("wrong-{sent}");
            sent += 1;
            let answer = gateway.predict_as(MODEL, &id, body).await;
            let label = answer["outputs"][0]["data"][0].as_i64().unwrap();
            labels.push(json!({"request_id": id, "label": 1 - label}));
        }
        let (status, reply) = gateway
            .post_json(&format!("/v2/models/{MODEL}/feedback"), &Value::Array(labels))
            .await;
        assert_eq!(status, 200, "{reply}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let run = runs(&registry).await.remove(0);
    assert_eq!(run.reason, "performance");
    let window = &run.evidence["windows"][0];
    assert_eq!(window["metric"], "accuracy");
    assert_eq!(window["realized"], 0.0);
    assert!(window["joined"].as_u64().unwrap() >= 20, "{window}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_fires_are_idempotent_capped_and_a_4xx_is_not_retried() {
    let registry = monitored_registry().await;
    release_with_profile(&registry).await;
    let dora = registry.client("dora");

    // Nothing to fire without a policy; bad policies say what is wrong.
    let none = dora
        .fire_trigger(MODEL, &FireTrigger::default())
        .await
        .unwrap_err();
    assert_eq!(none.status(), Some(409), "{none}");
    let bad_cron = policy(
        vec![TriggerRule::Schedule {
            cron: "0 3 * *".into(),
        }],
        webhook("http://127.0.0.1:9/hook", WebhookFormat::Sluice),
    );
    let refused = dora.set_trigger_policy(MODEL, &bad_cron).await.unwrap_err();
    assert_eq!(refused.status(), Some(400));
    assert!(refused.to_string().contains("five"), "{refused}");
    let viewer = registry
        .client("vic")
        .set_trigger_policy(MODEL, &bad_cron)
        .await
        .unwrap_err();
    assert_eq!(viewer.status(), Some(403));

    // A 400 from the pipeline is not retried: the run fails at once.
    let refusing = receiver(vec![400]).await;
    set_rules(&registry, vec![], &refusing.url, WebhookFormat::Sluice)
        .await
        .unwrap();
    let first = dora.fire_trigger(MODEL, &FireTrigger::default()).await.unwrap();
    assert_eq!(first.reason, "manual");
    let failed = wait_for_run(&registry, |run| {
        run.id == first.id && run.status == RunStatus::Failed
    })
    .await;
    assert_eq!(failed.attempts, 1);
    assert!(
        failed.detail.as_deref().unwrap().contains("HTTP 400"),
        "{failed:?}"
    );
    assert_eq!(refusing.calls.lock().unwrap().len(), 1);

    // Airflow: the payload goes as `conf`, under a DAG run id of its own.
    let airflow = receiver(vec![200]).await;
    set_rules(&registry, vec![], &airflow.url, WebhookFormat::Airflow)
        .await
        .unwrap();
    let keyed = FireTrigger {
        note: Some("new data landed".into()),
        idempotency_key: Some("2026-11-26".into()),
    };
    let second = dora.fire_trigger(MODEL, &keyed).await.unwrap();
    let again = dora.fire_trigger(MODEL, &keyed).await.unwrap();
    assert_eq!(again.id, second.id, "the same key fires once");
    let running = wait_for_run(&registry, |run| {
        run.id == second.id && run.status == RunStatus::Running
    })
    .await;
    let calls = airflow.calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].1["dag_run_id"], format!("sluice-{MODEL}-{}", second.id));
    assert_eq!(calls[0].1["conf"]["evidence"]["note"], "new data landed");

    // One run at a time: a third is refused while the second runs.
    let capped = dora
        .fire_trigger(MODEL, &FireTrigger::default())
        .await
        .unwrap_err();
    assert_eq!(capped.status(), Some(409));
    assert!(capped.to_string().contains("max_concurrent"), "{capped}");
    let done = dora
        .complete_trigger_run(
            running.id,
            &sluice_registry_client::trigger::CompleteRun {
                succeeded: false,
                detail: Some("the DAG failed".into()),
            },
        )
        .await
        .unwrap();
    assert_eq!(done.status, RunStatus::Failed);
    let third = dora.fire_trigger(MODEL, &FireTrigger::default()).await.unwrap();
    assert!(third.id > second.id);
    wait_for_run(&registry, |run| {
        run.id == third.id && run.status == RunStatus::Running
    })
    .await;
    // Deleting the policy fails what it would have expired.
    dora.delete_trigger_policy(MODEL).await.unwrap();
    let orphan = registry.client("vic").trigger_run(third.id).await.unwrap();
    assert_eq!(orphan.status, RunStatus::Failed);
    assert_eq!(orphan.detail.as_deref(), Some("the trigger policy was deleted"));

    // Mistakes a policy can hold are refused when it is set.
    let mut bad_header = policy(vec![], webhook(&airflow.url, WebhookFormat::Airflow));
    if let TriggerAction::Webhook { headers, .. } = &mut bad_header.action {
        headers.insert("bad header".into(), "x".into());
    }
    let refused = dora.set_trigger_policy(MODEL, &bad_header).await.unwrap_err();
    assert_eq!(refused.status(), Some(400));
    assert!(
        refused.to_string().contains("not an HTTP header name"),
        "{refused}"
    );
    let odd_window = TriggerRule::Performance {
        metric: "auc".into(),
        threshold: 0.8,
        window_ms: 90_000,
        windows: 2,
        min_labels: 100,
    };
    let refused = set_rules(&registry, vec![odd_window], &airflow.url, WebhookFormat::Sluice)
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("multiple of 60000"), "{refused}");
    let long_drift = TriggerRule::Drift {
        window_ms: 3600 * 1000,
        windows: 1,
        thresholds: None,
    };
    let refused = set_rules(&registry, vec![long_drift], &airflow.url, WebhookFormat::Sluice)
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("use more windows"), "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_registers_a_version_that_completes_its_run_and_goes_canary() {
    // The operator declares the retrain, with the token it registers with
    // in a file only the command reads; the policy only switches --approve.
    let secrets = tempfile::tempdir().unwrap();
    let token_file = secrets.path().join("retrain.token");
    let script = repo_root().join("models/retrain.py");
    let artifact = repo_root().join("models/repository/credit_risk/1/model.onnx");
    let profile = repo_root().join("models/repository/credit_risk/1/profile.json");
    let actions = format!(
        r#"{ACTIONS}
[commands.retrain]
program = "python3"
args = [{script:?}, "--artifact", {artifact:?}, "--profile", {profile:?}]
env = {{ SLUICE_TOKEN_FILE = {token_file:?} }}
timeout_ms = 60000
[commands.retrain.params]
approve = {{ flag = "--approve", type = "switch" }}
"#
    );
    let registry = monitored_registry_allowing(&actions).await;
    std::fs::write(&token_file, registry.token("admin")).unwrap();
    release_with_profile(&registry).await;
    let dora = registry.client("dora");
    let action = TriggerAction::Command {
        name: "retrain".into(),
        params: [("approve".to_string(), json!(true))].into(),
    };
    let mut with_canary = policy(vec![], action);
    with_canary.rollout = Some(RolloutPolicy {
        step_weights: vec![10, 50],
        step_weight: None,
        max_weight: None,
        interval_ms: 60_000,
        min_requests: 10,
        max_error_rate: Some(0.01),
        max_p99_ms: None,
        max_p99_ratio: None,
        max_shadow_disagreement: None,
        max_contract_violation_rate: None,
        threshold: 1,
        webhook: None,
    });
    dora.set_trigger_policy(MODEL, &with_canary).await.unwrap();
    let fired = dora.fire_trigger(MODEL, &FireTrigger::default()).await.unwrap();
    let run = wait_for_run(&registry, |run| run.id == fired.id && run.rollout.is_some()).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{run:?}");
    assert_eq!(run.result_version, Some(2));
    assert!(
        run.rollout.as_deref().unwrap().contains("started at weight 10"),
        "{run:?}"
    );
    let version = registry.client("vic").get_version(MODEL, "2").await.unwrap();
    assert_eq!(version.lineage.parent_version, Some(1));
    assert_eq!(version.lineage.trigger_id, Some(fired.id));
    let rollout = registry.client("vic").get_rollout(MODEL).await.unwrap();
    assert_eq!(
        (rollout.stable, rollout.canary, rollout.canary_weight),
        (1, 2, 10)
    );
    assert_eq!(rollout.started_by, "trigger");
    // The command's output is kept beside the registry's data, for its owner alone.
    let log_path = registry.data_dir().join(format!("triggers/{}.log", fired.id));
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(log.contains("registered version 2"), "{log}");
    use std::os::unix::fs::PermissionsExt;
    let mode = |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&log_path), 0o600);
    assert_eq!(mode(log_path.parent().unwrap()), 0o700);
    // A version naming a run that does not exist is refused.
    let mut lineage = version.lineage.clone();
    lineage.trigger_id = Some(999);
    let refused = dora
        .create_version(
            MODEL,
            &sluice_registry_client::types::CreateVersion {
                artifact: sluice_registry_client::types::ArtifactSource::Sha256(version.sha256.clone()),
                lineage,
            },
        )
        .await
        .unwrap_err();
    assert_eq!(refused.status(), Some(400));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_contract_broken_too_often_fires_a_contract_run() {
    let registry = monitored_registry().await;
    release_with_profile(&registry).await;
    let contract = json!({ "features": { "age": { "min": 18, "max": 100 } } });
    registry
        .deploy_checked(MODEL, &contract, ContractMode::Observe)
        .await;
    let hook = receiver(vec![200]).await;
    let cache = tempfile::tempdir().unwrap();
    let gateway = TestGateway::follow(&registry, cache.path(), Options::default()).await;
    gateway.wait_versions(MODEL, &[1]).await;
    gateway.wait_contract(MODEL).await;
    let impossible = TriggerRule::Contract {
        max_rate: 2.0,
        window_ms: 1000,
        windows: 1,
        min_rows: 10,
    };
    let refused = set_rules(&registry, vec![impossible], &hook.url, WebhookFormat::Sluice)
        .await
        .unwrap_err();
    assert!(
        refused
            .to_string()
            .contains("max_rate is 2: expected a share from 0 to 1"),
        "{refused}"
    );
    let rule = TriggerRule::Contract {
        max_rate: 0.5,
        window_ms: 1000,
        windows: 2,
        min_rows: 10,
    };
    set_rules(&registry, vec![rule], &hook.url, WebhookFormat::Sluice)
        .await
        .unwrap();

    // Applicants as trained on keep the contract: nothing fires.
    traffic(&gateway, 0.0, Duration::from_millis(2500)).await;
    assert!(runs(&registry).await.is_empty(), "{:?}", runs(&registry).await);

    // Sixty years younger, every age breaks its minimum: two windows fire one run.
    let deadline = Instant::now() + Duration::from_secs(30);
    while runs(&registry).await.is_empty() {
        assert!(Instant::now() < deadline, "broken contracts never fired a run");
        traffic(&gateway, -60.0, Duration::from_millis(500)).await;
    }
    let run = runs(&registry).await.remove(0);
    assert_eq!(run.reason, "contract");
    let windows = run.evidence["windows"].as_array().unwrap();
    assert_eq!(windows.len(), 2, "{}", run.evidence);
    for window in windows {
        assert_eq!(window["check"], "age:min", "{window}");
        assert!(window["rate"].as_f64().unwrap() > 0.5, "{window}");
    }
    gateway.server.shutdown().await.unwrap();
}
