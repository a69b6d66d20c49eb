//! Training triggers end to end: shifted traffic fires exactly one run
//! within the configured windows and the cooldown holds; the webhook is
//! retried on 5xx and never on 4xx; manual fires are idempotent and capped;
//! a command registers a version that completes its run and is rolled out
//! as a canary by itself.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use sluice_common::clock::ManualClock;
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

/// A monitored registry and a gateway following it, on one manual clock:
/// each window's traffic is sent and counted, then the clock moves past
/// the window, so what the monitor judges is exactly that traffic.
struct Windowed {
    registry: TestRegistry,
    gateway: TestGateway,
    hand: ManualClock,
    window: Duration,
    _cache: tempfile::TempDir,
}

impl Windowed {
    /// `prepare` runs on the registry before the gateway starts.
    async fn start(window: Duration, prepare: impl AsyncFnOnce(&TestRegistry)) -> Windowed {
        let hand = ManualClock::default();
        let registry = TestRegistry::start_with(RegistryOptions {
            monitor_tick: Some(Duration::from_millis(20)),
            actions: Some(ACTIONS.to_string()),
            clock: Some(hand.clock()),
            ..Default::default()
        })
        .await;
        prepare(&registry).await;
        let cache = tempfile::tempdir().unwrap();
        let options = Options {
            clock: hand.clock(),
            ..Options::default()
        };
        let gateway = TestGateway::follow(&registry, cache.path(), options).await;
        gateway.wait_versions(MODEL, &[1]).await;
        Windowed {
            registry,
            gateway,
            hand,
            window,
            _cache: cache,
        }
    }

    /// The end of the last window the monitor judged of the policy's first
    /// rule, once it has judged one.
    async fn judged_until(&self, after: u64) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let state = self.registry.client("vic").trigger_policy(MODEL).await.unwrap();
            if let Some(progress) = state.progress.iter().find(|progress| progress.rule == 0)
                && progress.last_window_end_ms > after
            {
                return progress.last_window_end_ms;
            }
            assert!(
                Instant::now() < deadline,
                "the monitor never judged a window: {state:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Bad windows in a row of the policy's first rule.
    async fn streak(&self) -> u32 {
        let state = self.registry.client("vic").trigger_policy(MODEL).await.unwrap();
        state.progress[0].bad_in_a_row
    }

    /// One window of applicants with ages shifted by `age_shift`: sent
    /// until the registry counts `rows` of them in the window now open,
    /// then judged. Returns the judged window's end.
    async fn window(&self, age_shift: f64, rows: u64, judged: u64) -> u64 {
        let bodies = credit_applicants(1000, age_shift);
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut sent = 0;
        loop {
            for body in bodies.iter().skip(sent % bodies.len()).take(25) {
                let (status, answer) = self
                    .gateway
                    .post_json(&format!("/v2/models/{MODEL}/infer"), body)
                    .await;
                assert_eq!(status, 200, "{answer}");
                sent += 1;
            }
            // What the gateway reported so far (every 50 ms): a round or
            // two more than needed is sent, never less.
            if self.registry.requests_from_now(MODEL).await >= rows {
                break;
            }
            assert!(Instant::now() < deadline, "the window never filled");
        }
        // Everything sent is counted before the window ends: a request
        // counted after would land in the next one.
        loop {
            if self.registry.requests_from_now(MODEL).await >= sent as u64 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the gateway never reported all {sent} requests"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.hand.advance(self.window);
        self.judged_until(judged).await
    }
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
    let window = Duration::from_secs(60);
    let rig = Windowed::start(window, async |registry| release_with_profile(registry).await).await;
    let (registry, gateway) = (&rig.registry, &rig.gateway);
    // Two 503s, then delivered.
    let hook = receiver(vec![503, 503, 200]).await;
    let thresholds = DriftThresholds {
        min_rows: 100,
        // A window here is a few hundred rows: JS distance has noise of
        // about 0.1 at that size, a 40-year shift is far beyond it.
        js_drift: 0.3,
        // Only ages move: one feature of eight is the dataset here.
        dataset_share: 0.1,
        ..Default::default()
    };
    let rule = TriggerRule::Drift {
        window_ms: window.as_millis() as u64,
        windows: 2,
        thresholds: Some(thresholds),
    };
    set_rules(registry, vec![rule], &hook.url, WebhookFormat::Sluice)
        .await
        .unwrap();
    // The monitor's first look judges the window that ended before the
    // policy was set (nothing in it): from there each window is the test's.
    let mut judged = rig.judged_until(0).await;

    // Traffic like the training data: two whole windows, nothing fires.
    for _ in 0..2 {
        judged = rig.window(0.0, 300, judged).await;
    }
    assert!(runs(registry).await.is_empty(), "{:?}", runs(registry).await);

    // Forty years older: the first drifted window fires nothing, the second
    // in a row fires one run.
    judged = rig.window(40.0, 300, judged).await;
    assert!(runs(registry).await.is_empty(), "{:?}", runs(registry).await);
    judged = rig.window(40.0, 300, judged).await;
    let run = wait_for_run(registry, |run| run.status == RunStatus::Running).await;
    assert_eq!(run.reason, "drift");
    assert_eq!(run.base_version, 1);
    assert_eq!(run.attempts, 3, "{run:?}");
    assert_eq!(
        (run.window_start_ms, run.window_end_ms),
        (judged - 120_000, judged)
    );
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
    // Both windows are all shifted traffic.
    assert!(age_psi(&windows[0]) > 1.0, "{}", windows[0]);
    assert!(age_psi(&windows[1]) > 1.0, "{}", windows[1]);
    // ...and the next drifted pair, within the cooldown, fires nothing
    // more: its streak makes two, is let go, and no run comes of it.
    for bad in [1, 0] {
        judged = rig.window(40.0, 300, judged).await;
        assert_eq!(rig.streak().await, bad);
    }
    let skipped = format!(r#"sluice_trigger_skipped_total{{model="{MODEL}",why="cooldown"}}"#);
    let metrics = gateway.metrics().await;
    assert!(
        metrics.contains(&skipped),
        "no drifted pair was skipped for the cooldown:\n{metrics}"
    );
    let all = runs(registry).await;
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
    let hand = ManualClock::default();
    let registry = TestRegistry::start_with(RegistryOptions {
        monitor_tick: Some(Duration::from_millis(20)),
        feedback_grace_ms: Some(1000),
        feedback_bucket_ms: Some(1000),
        actions: Some(ACTIONS.to_string()),
        clock: Some(hand.clock()),
        ..Default::default()
    })
    .await;
    release_with_profile(&registry).await;
    registry.deploy_logged(MODEL, &[(1, 100)], 0.0).await;
    let cache = tempfile::tempdir().unwrap();
    let options = Options {
        segment_max_age: Duration::from_millis(100),
        clock: hand.clock(),
        ..Options::default()
    };
    let gateway = TestGateway::follow(&registry, cache.path(), options).await;
    gateway.wait_versions(MODEL, &[1]).await;
    let hook = receiver(vec![200]).await;
    let window = Duration::from_secs(60);
    let rule = TriggerRule::Performance {
        metric: "accuracy".into(),
        threshold: 0.8,
        window_ms: window.as_millis() as u64,
        windows: 1,
        min_labels: 20,
    };
    set_rules(&registry, vec![rule], &hook.url, WebhookFormat::Sluice)
        .await
        .unwrap();
    // Every label the opposite of the prediction.
    let mut labels = Vec::new();
    for (sent, body) in credit_applicants(40, 0.0).iter().enumerate() {
        let id = format!("wrong-{sent}");
        let answer = gateway.predict_as(MODEL, &id, body).await;
        let label = answer["outputs"][0]["data"][0].as_i64().unwrap();
        labels.push(json!({"request_id": id, "label": 1 - label}));
    }
    let (status, reply) = gateway
        .post_json(&format!("/v2/models/{MODEL}/feedback"), &Value::Array(labels))
        .await;
    assert_eq!(status, 200, "{reply}");
    // Joined once the gateway's segment is written and the monitor scans it.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let performance = registry
            .client("vic")
            .performance(MODEL, None, window)
            .await
            .unwrap();
        if performance.joined >= 40 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the labels never joined: {performance:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(runs(&registry).await.is_empty(), "judged before its window ended");
    // The window ends, and its late labels' grace with it: judged.
    hand.advance(window + Duration::from_secs(1));
    wait_for_run(&registry, |_| true).await;
    let run = runs(&registry).await.remove(0);
    assert_eq!(run.reason, "performance");
    let window = &run.evidence["windows"][0];
    assert_eq!(window["metric"], "accuracy");
    assert_eq!(window["realized"], 0.0);
    assert_eq!(window["joined"], 40, "{window}");
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
        p99_floor_ms: 1.0,
        max_shadow_disagreement: None,
        max_nan_rate: None,
        max_contract_violation_rate: None,
        threshold: 1,
        webhook: None,
        max_inconclusive: 10,
        rollback_when_inconclusive: false,
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
    let contract = json!({ "features": { "age": { "min": 18, "max": 100 } } });
    let window = Duration::from_secs(60);
    let rig = Windowed::start(window, async |registry| {
        release_with_profile(registry).await;
        registry
            .deploy_checked(MODEL, &contract, ContractMode::Observe)
            .await;
    })
    .await;
    let (registry, gateway) = (&rig.registry, &rig.gateway);
    gateway.wait_contract(MODEL).await;
    let hook = receiver(vec![200]).await;
    let impossible = TriggerRule::Contract {
        max_rate: 2.0,
        window_ms: 1000,
        windows: 1,
        min_rows: 10,
    };
    let refused = set_rules(registry, vec![impossible], &hook.url, WebhookFormat::Sluice)
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
        window_ms: window.as_millis() as u64,
        windows: 2,
        min_rows: 10,
    };
    set_rules(registry, vec![rule], &hook.url, WebhookFormat::Sluice)
        .await
        .unwrap();
    let mut judged = rig.judged_until(0).await;

    // Applicants as trained on keep the contract: nothing fires.
    for _ in 0..2 {
        judged = rig.window(0.0, 50, judged).await;
    }
    assert!(runs(registry).await.is_empty(), "{:?}", runs(registry).await);

    // Sixty years younger, every age breaks its minimum: two windows fire one run.
    judged = rig.window(-60.0, 50, judged).await;
    assert_eq!(rig.streak().await, 1);
    assert!(runs(registry).await.is_empty(), "{:?}", runs(registry).await);
    judged = rig.window(-60.0, 50, judged).await;
    let run = runs(registry).await.remove(0);
    assert_eq!(run.reason, "contract");
    assert_eq!(run.window_end_ms, judged);
    let windows = run.evidence["windows"].as_array().unwrap();
    assert_eq!(windows.len(), 2, "{}", run.evidence);
    for window in windows {
        assert_eq!(window["check"], "age:min", "{window}");
        assert_eq!(window["rate"].as_f64().unwrap(), 1.0, "{window}");
    }
    rig.gateway.server.shutdown().await.unwrap();
}
