//! Least privilege, tried as a deployer would who wanted more: no role can
//! make the registry run a program its operator did not declare, call a
//! host its operator did not allow, put the registry's environment in a
//! header, or show a viewer what a command printed or a webhook answered.
//! (SECURITY.md, "Threat model", rows "deployer".)

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde_json::{Value, json};
use sluice_registry_client::trigger::{RunStatus, TriggerRun};
use sluice_tests::registry::RegistryOptions;
use sluice_tests::{TestRegistry, example_model};

const MODEL: &str = "credit_risk";

/// A variable of this test process (cargo sets it), standing for a secret
/// of the registry's environment: a database password, `AWS_*`.
const SECRET_VARIABLE: &str = "CARGO_MANIFEST_DIR";

fn secret() -> String {
    std::env::var(SECRET_VARIABLE).expect("cargo sets CARGO_MANIFEST_DIR")
}

async fn registry_allowing(actions: &str) -> TestRegistry {
    TestRegistry::start_with(RegistryOptions {
        monitor_tick: Some(Duration::from_millis(100)),
        actions: Some(actions.to_string()),
        ..Default::default()
    })
    .await
}

/// `PUT` of a raw policy as `actor`, as curl would send it.
async fn put_policy(registry: &TestRegistry, actor: &str, policy: &Value) -> (StatusCode, Value) {
    let response = reqwest::Client::new()
        .put(format!(
            "{}/api/v1/models/{MODEL}/triggers/policy",
            registry.url()
        ))
        .bearer_auth(registry.token(actor))
        .json(policy)
        .send()
        .await
        .unwrap();
    let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// What `actor` reads at `path`, as text.
async fn read_as(registry: &TestRegistry, actor: &str, path: &str) -> String {
    reqwest::Client::new()
        .get(format!("{}{path}", registry.url()))
        .bearer_auth(registry.token(actor))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Fires the model's policy by hand (as dora) and waits for the run to end.
async fn fire_and_wait(registry: &TestRegistry) -> TriggerRun {
    let dora = registry.client("dora");
    let fired = dora.fire_trigger(MODEL, &Default::default()).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let run = dora.trigger_run(fired.id).await.unwrap();
        if !run.status.is_active() {
            return run;
        }
        assert!(Instant::now() < deadline, "run never ended: {run:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployer_cannot_make_the_registry_run_a_program() {
    let marker = tempfile::tempdir().unwrap();
    let pwned = marker.path().join("pwned");
    let registry = registry_allowing(
        r#"
[commands.retrain]
program = "true"
[commands.retrain.params]
min_rows = { flag = "--min-rows", type = "integer", min = 1, max = 100000 }
"#,
    )
    .await;
    registry.release(MODEL, &example_model(MODEL)).await;
    let attempts = [
        // What an older release stored: a program and its arguments.
        json!({"action": {"command": {"program": "sh", "args": ["-c", format!("touch {}", pwned.display())]}}}),
        json!({"action": {"command": {"name": "retrain", "program": "sh"}}}),
        // A command the operator did not declare.
        json!({"action": {"command": {"name": "sh"}}}),
        // A parameter the declaration does not have, and one out of its type.
        json!({"action": {"command": {"name": "retrain", "params": {"args": ["-c", "id"]}}}}),
        json!({"action": {"command": {"name": "retrain", "params": {"min_rows": "1; touch x"}}}}),
        json!({"action": {"command": {"name": "retrain", "params": {"min_rows": "--data=/etc/shadow"}}}}),
    ];
    for attempt in &attempts {
        for actor in ["dora", "admin"] {
            let (status, body) = put_policy(&registry, actor, attempt).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{attempt} as {actor}: {body}");
            let message = body["error"].as_str().unwrap();
            assert!(message.starts_with("action.command"), "{message}");
        }
    }
    let (_, inline) = put_policy(&registry, "dora", &attempts[0]).await;
    assert!(
        inline["error"].as_str().unwrap().contains("--actions-file"),
        "{inline}"
    );
    let (_, undeclared) = put_policy(&registry, "dora", &attempts[2]).await;
    assert!(
        undeclared["error"]
            .as_str()
            .unwrap()
            .contains("no command 'sh' is declared: expected one of retrain"),
        "{undeclared}"
    );
    // Nothing was stored, so nothing can fire.
    let none = registry
        .client("dora")
        .fire_trigger(MODEL, &Default::default())
        .await
        .unwrap_err();
    assert_eq!(none.status(), Some(409), "{none}");
    assert!(!pwned.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declared_command_runs_with_nothing_of_the_registrys_own_and_its_output_stays_private() {
    // The operator's command prints what it can see of the registry, then fails.
    let registry = registry_allowing(&format!(
        r#"
[commands.probe]
program = "sh"
args = ["-c", "echo secret=${SECRET_VARIABLE}; echo path=$PATH; echo token=$SLUICE_TOKEN_FILE; exit 3"]
env = {{ SLUICE_TOKEN_FILE = "/declared/by/the/operator" }}
"#
    ))
    .await;
    registry.release(MODEL, &example_model(MODEL)).await;
    let (status, body) = put_policy(
        &registry,
        "dora",
        &json!({"action": {"command": {"name": "probe"}}}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let run = fire_and_wait(&registry).await;
    assert_eq!(run.status, RunStatus::Failed, "{run:?}");
    let detail = run.detail.clone().unwrap();
    assert!(detail.contains("exit status: 3"), "{detail}");

    // The command saw what was declared and inherited, and no secret.
    let log_path = registry.data_dir().join(format!("triggers/{}.log", run.id));
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(log.contains("secret=\n"), "{log}");
    assert!(!log.contains(&secret()), "{log}");
    assert!(log.contains("token=/declared/by/the/operator"), "{log}");
    assert!(
        log.lines()
            .any(|line| line.len() > "path=".len() && line.starts_with("path=")),
        "{log}"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&log_path), 0o600);
    assert_eq!(mode(&log_path.with_extension("json")), 0o600);
    assert_eq!(mode(log_path.parent().unwrap()), 0o700);

    // A viewer reads the run and the audit log: a status, never the output.
    for path in ["/api/v1/triggers/runs", "/api/v1/events?limit=1000"] {
        let seen = read_as(&registry, "vic", path).await;
        assert!(seen.contains("exit status: 3"), "{path}: {seen}");
        for printed in ["secret=", "path=", "token="] {
            assert!(!seen.contains(printed), "{path} shows the output: {seen}");
        }
    }
}

/// A host that answers: `/fail` with 500 and a body no viewer may read,
/// `/redirect` with a 302 to `elsewhere`, `/hook` with 200; it keeps the
/// paths it was called on.
struct Host {
    base: String,
    calls: Arc<Mutex<Vec<String>>>,
}

async fn host(elsewhere_opt: Option<String>) -> Host {
    let calls: Arc<Mutex<Vec<String>>> = Arc::default();
    let kept = calls.clone();
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
        let kept = kept.clone();
        let elsewhere = elsewhere_opt.clone().unwrap_or_default();
        async move {
            use axum::response::IntoResponse;
            kept.lock().unwrap().push(uri.path().to_string());
            match uri.path() {
                "/fail" => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "answer-the-viewer-must-not-read",
                )
                    .into_response(),
                "/redirect" => {
                    (StatusCode::FOUND, [("location", format!("{elsewhere}/hook"))]).into_response()
                }
                _ => StatusCode::OK.into_response(),
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Host { base, calls }
}

fn webhook_policy(url: &str, headers: Value) -> Value {
    json!({"action": {"webhook": {"url": url, "headers": headers, "max_attempts": 1, "backoff_ms": 10}}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_reach_only_allowed_hosts_and_carry_no_secret_back() {
    let forbidden = host(None).await;
    let allowed = host(Some(forbidden.base.clone())).await;
    let allowed_host = allowed.base.trim_start_matches("http://");
    let registry = registry_allowing(&format!(
        "webhook_hosts = [\"{allowed_host}\"]\nwebhook_env = [\"CARGO_PKG_NAME\"]\n"
    ))
    .await;
    registry.release(MODEL, &example_model(MODEL)).await;

    // A host the operator did not allow, the cloud's metadata service,
    // credentials in the URL, a variable not on the list: refused when set.
    let refusals = [
        webhook_policy(&format!("{}/hook", forbidden.base), json!({})),
        webhook_policy("http://169.254.169.254/latest/meta-data/iam", json!({})),
        webhook_policy(&format!("http://user:pw@{allowed_host}/hook"), json!({})),
        webhook_policy(
            &format!("{}/hook", allowed.base),
            json!({"authorization": format!("${{{SECRET_VARIABLE}}}")}),
        ),
        json!({"action": {"webhook": {"url": format!("{}/hook", allowed.base)}},
               "rollout": {"step_weights": [10], "webhook": format!("{}/hook", forbidden.base)}}),
    ];
    for policy in &refusals {
        let (status, body) = put_policy(&registry, "dora", policy).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{policy}: {body}");
    }
    let (_, body) = put_policy(&registry, "dora", &refusals[3]).await;
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("not a variable a header may name"),
        "{body}"
    );
    let rollout = reqwest::Client::new()
        .post(format!("{}/api/v1/rollouts/{MODEL}", registry.url()))
        .bearer_auth(registry.token("dora"))
        .json(&json!({"canary": 1, "policy": {"webhook": format!("{}/x", forbidden.base)}}))
        .send()
        .await
        .unwrap();
    assert_eq!(rollout.status(), 400);

    // The allowed host redirects elsewhere: not followed.
    let (status, body) = put_policy(
        &registry,
        "dora",
        &webhook_policy(
            &format!("{}/redirect", allowed.base),
            json!({"x-package": "${CARGO_PKG_NAME}"}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let run = fire_and_wait(&registry).await;
    assert_eq!(run.status, RunStatus::Failed);
    assert!(
        run.detail
            .as_deref()
            .unwrap()
            .contains("HTTP 302 (redirects are not followed)"),
        "{run:?}"
    );
    assert!(forbidden.calls.lock().unwrap().is_empty());

    // Its answer's body stays out of what a viewer reads.
    put_policy(
        &registry,
        "dora",
        &webhook_policy(&format!("{}/fail", allowed.base), json!({})),
    )
    .await;
    let run = fire_and_wait(&registry).await;
    assert!(
        run.detail.as_deref().unwrap().ends_with("failed: HTTP 500"),
        "{run:?}"
    );
    for path in ["/api/v1/triggers/runs", "/api/v1/events?limit=1000"] {
        let seen = read_as(&registry, "vic", path).await;
        assert!(
            !seen.contains("answer-the-viewer-must-not-read"),
            "{path}: {seen}"
        );
    }
    assert_eq!(*allowed.calls.lock().unwrap(), ["/redirect", "/fail"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_inline_command_keeps_the_registry_from_starting_until_declared() {
    let mut registry = TestRegistry::start_with(RegistryOptions {
        actions: Some("webhook_hosts = [\"127.0.0.1:9\"]".into()),
        pin_sqlite: true,
        ..Default::default()
    })
    .await;
    registry.register(MODEL, &example_model(MODEL), &[]).await;
    let (status, body) = put_policy(
        &registry,
        "dora",
        &webhook_policy("http://127.0.0.1:9/hook", json!({})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    registry.stop().await;
    // What a release before --actions-file stored.
    let inline = json!({"rules": [], "action": {"command": {"program": "sh", "args": ["-c", "echo retrain"],
        "env": {"MODE": "full"}, "timeout_ms": 1000}}, "cooldown_ms": 1000, "max_concurrent": 1, "run_timeout_ms": 1000});
    let database = rusqlite::Connection::open(registry.data_dir().join("registry.db")).unwrap();
    database
        .execute(
            "UPDATE trigger_policies SET policy = ?1 WHERE model = ?2",
            [inline.to_string(), MODEL.to_string()],
        )
        .unwrap();
    // And two runs as that release recorded their failures: with what the
    // command printed, and what a webhook answered.
    for (id, detail) in [
        (
            1,
            "python3 failed (exit status: 1): token=sluice_secret_from_the_output",
        ),
        (
            2,
            "webhook http://127.0.0.1:9/hook failed: HTTP 500: the hook's secret answer",
        ),
    ] {
        let run = json!({"id": id, "model": MODEL, "base_version": 1, "reason": "manual", "evidence": {},
            "window_start_ms": 0, "window_end_ms": 0, "idempotency_key": format!("old-{id}"), "status": "failed",
            "attempts": 1, "detail": detail, "fired_by": "dora", "created_at": "2026-11-01T00:00:00Z", "created_ms": 0});
        database
            .execute(
                "INSERT INTO trigger_runs (id, model, idempotency_key, status, state) VALUES (?1, ?2, ?3, 'failed', ?4)",
                rusqlite::params![id, MODEL, format!("old-{id}"), run.to_string()],
            )
            .unwrap();
    }
    drop(database);

    let refused = registry.try_restart_with(|_| {}).await.unwrap_err();
    assert!(
        refused.contains("model 'credit_risk' has a trigger policy that gives its program inline"),
        "{refused}"
    );
    assert!(refused.contains("[commands.credit_risk-retrain]"), "{refused}");
    assert!(refused.contains("program = \"sh\""), "{refused}");

    // Declared as it stands (under a name of the operator's), it is moved to name it.
    registry
        .try_restart_with(|options| {
            options.actions = Some(
                "[commands.legacy]\nprogram = \"sh\"\nargs = [\"-c\", \"echo retrain\"]\nenv = { MODE = \"full\" }\n"
                    .into(),
            )
        })
        .await
        .unwrap();
    let policy = read_as(
        &registry,
        "vic",
        &format!("/api/v1/models/{MODEL}/triggers/policy"),
    )
    .await;
    let policy: Value = serde_json::from_str(&policy).unwrap();
    assert_eq!(
        policy["policy"]["action"],
        json!({"command": {"name": "legacy"}}),
        "{policy}"
    );
    let events = read_as(&registry, "vic", "/api/v1/events?limit=1000").await;
    assert!(events.contains("trigger.policy.migrate"), "{events}");
    // The old runs' details are cut to their status.
    let runs = read_as(&registry, "vic", "/api/v1/triggers/runs").await;
    assert!(!runs.contains("secret"), "{runs}");
    assert!(
        runs.contains("python3 failed (exit status: 1) (its output is withheld)"),
        "{runs}"
    );
    assert!(
        runs.contains("failed: HTTP 500 (the answer is withheld)"),
        "{runs}"
    );
}

/// Each role, trying what its row of SECURITY.md's threat model says it
/// must never do, with a body that would be taken from the right role: the
/// refusal is the role's, not the body's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_role_is_refused_what_it_may_not_do() {
    let registry = TestRegistry::start().await;
    registry.release(MODEL, &example_model(MODEL)).await;
    let version = registry.register(MODEL, &example_model(MODEL), &[]).await;
    let transition = registry
        .client("dora")
        .request_transition(
            MODEL,
            &version.version.to_string(),
            &sluice_registry_client::types::RequestTransition {
                to_stage: sluice_registry_client::types::Stage::Staging,
                comment: String::new(),
            },
        )
        .await
        .unwrap();
    let register = ("POST", "/api/v1/models".to_string(), json!({"name": "other"}));
    let deploy = (
        "PUT",
        format!("/api/v1/deployments/{MODEL}"),
        json!({"targets": [{"version": 1, "weight": 100}]}),
    );
    let review = (
        "POST",
        format!("/api/v1/transitions/{}/approve", transition.id),
        json!({"approval": "technical"}),
    );
    let report = (
        "POST",
        "/api/v1/stats".to_string(),
        json!({"gateway": "g", "versions": []}),
    );
    let trigger = (
        "PUT",
        format!("/api/v1/models/{MODEL}/triggers/policy"),
        json!({"action": {"webhook": {"url": "http://127.0.0.1:9/hook"}}}),
    );
    let rows = [
        ("vic", vec![&register, &deploy, &review, &report, &trigger]),
        ("dora", vec![&review, &report]),
        ("tom", vec![&register, &deploy, &report, &trigger]),
        ("gw", vec![&register, &deploy, &review, &trigger]),
    ];
    let client = reqwest::Client::new();
    for (actor, forbidden) in rows {
        for (method, path, body) in forbidden {
            let response = client
                .request(method.parse().unwrap(), format!("{}{path}", registry.url()))
                .bearer_auth(registry.token(actor))
                .json(body)
                .send()
                .await
                .unwrap();
            let status = response.status();
            let answer: Value = response.json().await.unwrap();
            assert_eq!(
                status,
                StatusCode::FORBIDDEN,
                "{actor}: {method} {path}: {answer}"
            );
        }
    }
    // And nothing changed: the deployment is the release's, the transition pending.
    let deployment = registry.client("vic").get_deployment(MODEL).await.unwrap();
    assert_eq!(deployment.revision, 1, "{deployment:?}");
    let pending = registry
        .client("vic")
        .get_transition(transition.id)
        .await
        .unwrap();
    assert_eq!(
        pending.status,
        sluice_registry_client::types::TransitionStatus::Pending
    );
}
