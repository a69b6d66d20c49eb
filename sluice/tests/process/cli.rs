//! The `sluice` command line driven as a process, the way a new user drives
//! it: tokens made with `sluice tokens add`, a standalone `sluice registry`, then
//! models, versions, stages, aliases, traffic and events, with the exit codes
//! and error messages scripts rely on.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::Duration;

use common::sluice_cli as sluice;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A standalone registry process and the tokens of its users.
struct Registry {
    child: Child,
    url: String,
    dir: tempfile::TempDir,
}

impl Registry {
    fn start() -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let tokens = dir.path().join("tokens.toml");
        for (actor, role) in [
            ("dora", "deployer"),
            ("tom", "approver"),
            ("vic", "viewer"),
            ("ada", "admin"),
        ] {
            let output = sluice()
                .args(["tokens", "add", "--actor", actor, "--role", role, "--tokens-file"])
                .arg(&tokens)
                .output()
                .unwrap();
            assert!(
                output.status.success(),
                "{}",
                String::from_utf8_lossy(&output.stderr)
            );
            let token = String::from_utf8(output.stdout).unwrap().trim().to_string();
            assert!(token.starts_with("sluice_"), "{token}");
            std::fs::write(dir.path().join(actor), token).unwrap();
        }
        // The one webhook host the triggers below may call.
        let actions = dir.path().join("actions.toml");
        std::fs::write(&actions, "webhook_hosts = [\"127.0.0.1:9\"]\n").unwrap();
        let mut child = sluice()
            .args([
                "registry",
                "--listen",
                "127.0.0.1:0",
                "--log-format",
                "json",
                "--data-dir",
            ])
            .arg(dir.path().join("data"))
            .arg("--tokens-file")
            .arg(&tokens)
            .arg("--actions-file")
            .arg(&actions)
            .env_remove("ORT_DYLIB_PATH")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let addr =
            common::listening_addresses(&mut child, &["registry is listening"])["registry is listening"]
                .clone();
        Registry {
            child,
            url: format!("http://{addr}"),
            dir,
        }
    }

    /// Runs `sluice ARGS` against this registry as `actor`.
    fn run(&self, actor: &str, args: &[&str]) -> Output {
        let token = std::fs::read_to_string(self.dir.path().join(actor)).unwrap();
        self.run_with_token(&token, args)
    }

    /// Requests staging for `version` as dora and approves it as tom.
    fn stage(&self, model: &str, version: &str) {
        let requested = self.run("dora", &["stage", "request", model, version, "staging", "--json"]);
        expect_code(&requested, 0);
        let transition: serde_json::Value = serde_json::from_slice(&requested.stdout).unwrap();
        let id = transition["id"].to_string();
        expect_code(
            &self.run("tom", &["stage", "approve", &id, "--as", "technical"]),
            0,
        );
    }

    fn run_with_token(&self, token: &str, args: &[&str]) -> Output {
        sluice()
            .args(args)
            .env("SLUICE_REGISTRY_URL", &self.url)
            .env("SLUICE_TOKEN", token)
            .current_dir(repo_root())
            .output()
            .unwrap()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Asserts the exit code, showing both streams when it is not the expected one.
fn expect_code(output: &Output, code: i32) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "stdout: {}\nstderr: {}",
        stdout(output),
        stderr(output)
    );
}

/// Asserts success, and that stdout says `fragment`.
fn expect_output(output: &Output, fragment: &str) {
    expect_code(output, 0);
    assert!(
        stdout(output).contains(fragment),
        "'{fragment}' not in:\n{}",
        stdout(output)
    );
}

/// Asserts the exit code of a failure, and that stderr says `fragment`.
fn expect_error(output: &Output, code: i32, fragment: &str) {
    expect_code(output, code);
    assert!(
        stderr(output).contains(fragment),
        "'{fragment}' not in:\n{}",
        stderr(output)
    );
}

#[test]
fn a_release_through_the_cli_with_its_exit_codes() {
    let registry = Registry::start();
    let model = "models/repository/credit_risk/1/model.onnx";
    let lineage = [
        "--metric",
        "auc=0.91",
        "--param",
        "C=1.0",
        "--dataset",
        "s3://data/credit.csv",
        "--commit",
        "4f2a9c1",
    ];

    expect_code(
        &registry.run(
            "dora",
            &["models", "create", "credit_risk", "--description", "loan risk"],
        ),
        0,
    );
    expect_error(
        &registry.run("dora", &["models", "create", "credit_risk"]),
        4,
        "already exists",
    );
    let mut push = vec!["versions", "push", "credit_risk", model];
    push.extend(lineage);
    expect_output(&registry.run("dora", &push), "credit_risk version 1");
    let not_onnx = ["versions", "push", "credit_risk", "README.md"];
    expect_error(
        &registry.run("dora", &not_onnx),
        1,
        "not a model Sluice can serve",
    );
    let profile = [
        "profile",
        "create",
        "credit_risk",
        "1",
        "--data",
        "models/data/credit_risk_train.csv",
        "--exclude",
        "default",
    ];
    expect_output(&registry.run("dora", &profile), "5000 rows, 8 features");
    // With the model's answers on that data: the share of each predicted
    // class is the one numpy and ONNX Runtime measured (models/cards.py).
    let mut with_outputs = profile.to_vec();
    with_outputs.extend(["--outputs", "--json"]);
    let stored = registry.run("dora", &with_outputs);
    expect_code(&stored, 0);
    let document: serde_json::Value = serde_json::from_slice(&stored.stdout).unwrap();
    let outputs = &document["body"]["outputs"];
    let committed: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("models/repository/credit_risk/1/profile.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        outputs["label"]["categories"],
        committed["outputs"]["label"]["categories"]
    );
    let share = |profile: &serde_json::Value| profile["label"]["shares"][1].as_f64().unwrap();
    assert!(
        (share(outputs) - share(&committed["outputs"])).abs() < 1e-3,
        "{outputs}"
    );
    assert_eq!(outputs["probabilities[1]"]["kind"], "numeric");
    let missing_data = ["profile", "create", "credit_risk", "1", "--data", "nope.csv"];
    expect_error(&registry.run("dora", &missing_data), 2, "cannot read nope.csv");
    // The contract derived from that profile is the committed example's
    // (models/cards.py derives it the same way).
    let derive = [
        "contract",
        "derive",
        "credit_risk",
        "1",
        "--rule",
        "loan_amount <= 2 * income",
        "--put",
    ];
    let derived = registry.run("dora", &derive);
    expect_code(&derived, 0);
    let derived: serde_json::Value = serde_json::from_slice(&derived.stdout).unwrap();
    let shown = registry.run("vic", &["contract", "show", "credit_risk", "1"]);
    expect_code(&shown, 0);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&shown.stdout).unwrap(),
        derived
    );
    assert_eq!(derived["rules"][0], "loan_amount <= 2 * income");
    let age_min = derived["features"]["age"]["min"].as_f64().unwrap();
    assert!((age_min - 15.7).abs() < 1e-6, "{derived}");
    let not_linear = [
        "contract",
        "derive",
        "credit_risk",
        "1",
        "--rule",
        "age * income > 3",
    ];
    expect_error(&registry.run("dora", &not_linear), 2, "rules are linear");
    let bad_metric = ["versions", "push", "credit_risk", model, "--metric", "auc"];
    expect_error(&registry.run("dora", &bad_metric), 2, "expected NAME=NUMBER");

    expect_output(
        &registry.run("vic", &["versions", "list", "credit_risk"]),
        "auc=0.91",
    );
    let listed = registry.run("vic", &["versions", "list", "credit_risk", "--json"]);
    let versions: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(versions[0]["lineage"]["code_commit"], "4f2a9c1");
    assert_eq!(versions[0]["stage"], "none");

    let early = ["traffic", "set", "credit_risk", "1=100"];
    expect_error(
        &registry.run("dora", &early),
        1,
        "only staging or production versions",
    );
    let requested = registry.run(
        "dora",
        &["stage", "request", "credit_risk", "1", "staging", "--json"],
    );
    expect_code(&requested, 0);
    let transition: serde_json::Value = serde_json::from_slice(&requested.stdout).unwrap();
    assert_eq!(transition["missing_approvals"][0], "technical");
    let id = transition["id"].to_string();
    expect_error(
        &registry.run("dora", &["stage", "approve", &id]),
        6,
        "approver or admin",
    );
    let approve = ["stage", "approve", &id, "--as", "technical", "--comment", "ok"];
    expect_output(&registry.run("tom", &approve), "applied");

    let short = ["traffic", "set", "credit_risk", "1=90"];
    expect_error(
        &registry.run("dora", &short),
        1,
        "weights add up to 90: expected 100",
    );
    let malformed = ["traffic", "set", "credit_risk", "one=100"];
    expect_error(&registry.run("dora", &malformed), 2, "VERSION=WEIGHT");
    let set = [
        "traffic",
        "set",
        "credit_risk",
        "1=100",
        "--sticky-header",
        "x-user-id",
        "--max-batch-size",
        "16",
        "--max-queue-delay-us",
        "300",
        "--preferred-batch-sizes",
        "8,16",
        "--contract",
        "reject",
        "--reason",
        "first",
    ];
    let delay_alone = [
        "traffic",
        "set",
        "credit_risk",
        "1=100",
        "--max-queue-delay-us",
        "5",
    ];
    expect_error(&registry.run("dora", &delay_alone), 2, "--max-batch-size");
    let no_mode = ["traffic", "set", "credit_risk", "1=100", "--contract", "enforce"];
    expect_error(&registry.run("dora", &no_mode), 2, "expected observe or reject");
    let no_rows = ["traffic", "set", "credit_risk", "1=100", "--max-batch-size", "0"];
    expect_error(&registry.run("dora", &no_rows), 1, "max_batch_size is 0");
    expect_code(&registry.run("dora", &set), 0);
    let stale = ["traffic", "set", "credit_risk", "1=100", "--if-revision", "0"];
    expect_error(&registry.run("dora", &stale), 4, "not 0");
    let shown = registry.run("vic", &["traffic", "show", "credit_risk"]);
    expect_output(&shown, "100%");
    expect_output(&shown, "x-user-id");
    expect_output(
        &shown,
        "batching: up to 16 rows, 300 µs delay, queue 1024, 2 instance(s), preferred 8,16",
    );
    expect_output(&shown, "data contract: reject");

    // A change keeps what it is not told again, and says what it changed.
    let logged = [
        "traffic",
        "set",
        "credit_risk",
        "1=100",
        "--log-sample-rate",
        "0.5",
        "--reason",
        "log half",
    ];
    expect_output(
        &registry.run("dora", &logged),
        "log sample rate: none (no prediction log) → 50% of predictions with inputs",
    );
    let shown = registry.run("vic", &["traffic", "show", "credit_risk"]);
    expect_output(&shown, "data contract: reject");
    expect_output(&shown, "x-user-id");
    expect_output(&shown, "prediction log: every prediction, 50% with inputs");
    let revision = |registry: &Registry| {
        let shown = registry.run("vic", &["traffic", "show", "credit_risk", "--json"]);
        serde_json::from_slice::<serde_json::Value>(&shown.stdout).unwrap()["revision"]
            .as_u64()
            .unwrap()
    };
    let logged_revision = revision(&registry);
    let dry = [
        "traffic",
        "set",
        "credit_risk",
        "1=100",
        "--clear",
        "contract",
        "--dry-run",
    ];
    expect_output(&registry.run("dora", &dry), "data contract: reject → none");
    assert_eq!(revision(&registry), logged_revision, "a dry run changes nothing");
    let clear = ["traffic", "set", "credit_risk", "1=100", "--clear", "contract"];
    expect_output(&registry.run("dora", &clear), "data contract: reject → none");
    let cleared_revision = revision(&registry);
    let diff = [
        "traffic",
        "diff",
        "credit_risk",
        &logged_revision.to_string(),
        &cleared_revision.to_string(),
    ];
    expect_output(&registry.run("vic", &diff), "data contract: reject → none");
    let history = registry.run("vic", &["traffic", "history", "credit_risk"]);
    expect_output(&history, &format!("revision {logged_revision}"));
    expect_output(&history, "by dora  log half");
    // Undo goes back one revision, through the same checks, and says so.
    expect_output(
        &registry.run("dora", &["traffic", "undo", "credit_risk"]),
        "data contract: none → reject",
    );
    let shown = registry.run("vic", &["traffic", "show", "credit_risk"]);
    expect_output(&shown, "data contract: reject");
    expect_output(
        &registry.run("vic", &["events"]),
        &format!("undo revision {cleared_revision}"),
    );
    expect_error(
        &registry.run("vic", &["traffic", "undo", "credit_risk"]),
        6,
        "which may only read",
    );
    let unknown = ["traffic", "diff", "credit_risk", "1", "999"];
    expect_error(&registry.run("vic", &unknown), 1, "has no revision 999");

    expect_code(
        &registry.run("dora", &["alias", "set", "credit_risk", "champion", "1"]),
        0,
    );
    let moved = [
        "alias",
        "set",
        "credit_risk",
        "champion",
        "1",
        "--if-version",
        "2",
    ];
    expect_error(&registry.run("dora", &moved), 4, "is version 1 now");
    expect_output(
        &registry.run("vic", &["versions", "show", "credit_risk", "champion"]),
        "4f2a9c1",
    );

    expect_error(
        &registry.run("vic", &["models", "show", "nope"]),
        3,
        "unknown model 'nope'",
    );
    let status = ["rollout", "status", "credit_risk"];
    expect_error(&registry.run("vic", &status), 3, "has no rollout");
    let no_canary = ["rollout", "start", "credit_risk", "2"];
    expect_error(&registry.run("dora", &no_canary), 3, "unknown version 2");
    expect_error(
        &registry.run("vic", &["models", "create", "other"]),
        6,
        "which may only read",
    );
    let events = registry.run("vic", &["events"]);
    for action in [
        "model.create",
        "version.create",
        "transition.approve",
        "deployment.set",
        "alias.set",
    ] {
        expect_output(&events, action);
    }
    // Newest first, filtered by model and action; a transition counts for
    // its version's model.
    let json_events = |args: &[&str]| {
        let mut all = vec!["events", "-o", "json"];
        all.extend(args);
        let output = registry.run("vic", &all);
        expect_code(&output, 0);
        serde_json::from_slice::<Vec<serde_json::Value>>(&output.stdout).unwrap()
    };
    let traffic = json_events(&["--model", "credit_risk", "--action", "deployment.*"]);
    assert!(traffic.len() >= 3, "{traffic:?}");
    assert!(traffic.iter().all(|event| event["subject"] == "credit_risk"
        && event["action"].as_str().unwrap().starts_with("deployment.")));
    let ids: Vec<u64> = traffic
        .iter()
        .map(|event| event["id"].as_u64().unwrap())
        .collect();
    assert!(
        ids.windows(2).all(|pair| pair[0] > pair[1]),
        "newest first: {ids:?}"
    );
    let transitions = json_events(&["--model", "credit_risk", "--action", "transition.*"]);
    assert!(!transitions.is_empty());
    assert!(json_events(&["--model", "credit_ris", "--action", "transition.*"]).is_empty());
    let by_tom = registry.run("vic", &["events", "--actor", "tom", "-o", "yaml"]);
    expect_output(&by_tom, "actor: tom");
    assert!(!stdout(&by_tom).contains("actor: dora"), "{}", stdout(&by_tom));
}

#[test]
fn errors_that_are_not_the_registrys_answer() {
    let unreachable = sluice()
        .args([
            "models",
            "list",
            "--registry-url",
            "http://127.0.0.1:9",
            "--token",
            "x",
        ])
        .output()
        .unwrap();
    expect_error(&unreachable, 5, "cannot reach the registry");

    let registry = Registry::start();
    let anonymous = sluice()
        .args(["models", "list", "--registry-url", &registry.url, "--data-dir"])
        .arg(registry.dir.path().join("nothing-here"))
        .output()
        .unwrap();
    expect_error(&anonymous, 6, "SLUICE_TOKEN");
}

#[test]
fn training_triggers_and_performance_through_the_cli() {
    let registry = Registry::start();
    let model = "models/repository/credit_risk/1/model.onnx";
    expect_code(&registry.run("dora", &["models", "create", "credit_risk"]), 0);
    expect_code(
        &registry.run("dora", &["versions", "push", "credit_risk", model]),
        0,
    );
    registry.stage("credit_risk", "1");
    expect_code(
        &registry.run("dora", &["traffic", "set", "credit_risk", "1=100"]),
        0,
    );

    // Nothing listens on port 9: each delivery fails, once.
    let policy = registry.dir.path().join("policy.json");
    std::fs::write(
        &policy,
        r#"{"rules": [{"kind": "schedule", "cron": "0 3 * * 1"}],
            "action": {"webhook": {"url": "http://127.0.0.1:9/hook", "max_attempts": 1}}}"#,
    )
    .unwrap();
    let set = ["triggers", "set", "credit_risk", policy.to_str().unwrap()];
    expect_output(&registry.run("dora", &set), "cron '0 3 * * 1'");
    expect_error(&registry.run("vic", &set), 6, "which may only read");
    let typo = registry.dir.path().join("typo.json");
    std::fs::write(&typo, r#"{"rules": [], "action": {"email": {}}}"#).unwrap();
    let set_typo = ["triggers", "set", "credit_risk", typo.to_str().unwrap()];
    expect_error(
        &registry.run("dora", &set_typo),
        2,
        "a trigger policy is expected",
    );
    expect_output(
        &registry.run("vic", &["triggers", "list"]),
        "webhook http://127.0.0.1:9/hook",
    );

    let fire = [
        "triggers",
        "fire",
        "credit_risk",
        "--note",
        "audit asked",
        "--idempotency-key",
        "q4",
    ];
    expect_output(&registry.run("dora", &fire), "trigger run 1 of 'credit_risk'");
    // The same key answers the same run.
    expect_output(&registry.run("dora", &fire), "trigger run 1 of 'credit_risk'");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let history = registry.run("vic", &["triggers", "history", "credit_risk"]);
        expect_code(&history, 0);
        if stdout(&history).contains("failed") {
            assert!(stdout(&history).contains("manual"), "{}", stdout(&history));
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the delivery never failed: {}",
            stdout(&history)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let show = registry.run("vic", &["triggers", "show", "1"]);
    expect_output(&show, "manual:credit_risk:q4");
    expect_output(&show, "audit asked");
    expect_error(
        &registry.run("vic", &["triggers", "show", "7"]),
        3,
        "no trigger run 7",
    );

    // No labels came back: nothing joined, nothing unmatched.
    expect_output(
        &registry.run("vic", &["performance", "show", "credit_risk"]),
        "0 rows joined",
    );
}

#[test]
fn quality_gates_through_the_cli() {
    let registry = Registry::start();
    expect_code(&registry.run("dora", &["models", "create", "credit_risk"]), 0);
    let sound = [
        "versions",
        "push",
        "credit_risk",
        "models/repository/credit_risk/1/model.onnx",
        "--slice-feature",
        "age",
        "--slice-edges",
        "30,45,60",
    ];
    expect_output(&registry.run("dora", &sound), "credit_risk version 1");
    expect_output(
        &registry.run("vic", &["versions", "show", "credit_risk", "1"]),
        "slice feature:  age (bands at 30, 45, 60)",
    );
    let shown = registry.run("vic", &["versions", "show", "credit_risk", "1", "--json"]);
    let version: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(
        version["lineage"]["slice"],
        serde_json::json!({"feature": "age", "edges": [30.0, 45.0, 60.0]})
    );
    let broken = [
        "versions",
        "push",
        "credit_risk",
        "models/test/credit_risk_inverted/1/model.onnx",
    ];
    expect_output(&registry.run("dora", &broken), "credit_risk version 2");

    expect_error(
        &registry.run("dora", &["versions", "test", "credit_risk", "1"]),
        3,
        "has no behavioural suite",
    );
    let put = [
        "suite",
        "put",
        "credit_risk",
        "models/repository/credit_risk/suite.json",
    ];
    expect_output(&registry.run("dora", &put), "stored revision 1");
    // TOML works too: one directional case, the default probability of a larger loan.
    let toml = registry.dir.path().join("loan.toml");
    std::fs::write(
        &toml,
        "score = \"probabilities[1]\"\n\
         base = { age = 40, income = 60000, debt_ratio = 0.3, credit_lines = 4, late_payments_90d = 0, utilization = 0.3, months_employed = 60, loan_amount = 20000 }\n\
         [[directional]]\nname = \"a larger loan\"\nchange = { loan_amount = \"+20000\" }\nexpect = \"higher\"\n",
    )
    .unwrap();
    let put_toml = ["suite", "put", "credit_risk", toml.to_str().unwrap()];
    expect_output(
        &registry.run("dora", &put_toml),
        "stored revision 2 of the suite of 'credit_risk': 1 case\n",
    );

    let passed = registry.run(
        "dora",
        &["versions", "test", "credit_risk", "1", "--revision", "1"],
    );
    expect_code(&passed, 0);
    expect_output(&passed, "PASSED");
    let failed = registry.run("dora", &["versions", "test", "credit_risk", "2"]);
    expect_code(&failed, 1);
    for fragment in [
        "FAILED",
        "FAIL directional 'a larger loan'",
        "changed: ",
        "loan_amount=",
    ] {
        assert!(
            stdout(&failed).contains(fragment),
            "{fragment}: {}",
            stdout(&failed)
        );
    }
    expect_code(&registry.run("vic", &["suite", "report", "credit_risk", "2"]), 1);
    expect_code(&registry.run("vic", &["suite", "report", "credit_risk", "1"]), 0);

    let quality = registry.run("vic", &["quality", "show", "credit_risk", "1"]);
    expect_code(&quality, 0);
    expect_output(&quality, "by slice of 'age'");
    expect_output(&quality, "no labelled rows yet");
    expect_output(&quality, "suite revision 1 on version 1 of 'credit_risk': PASSED");
}

#[test]
fn tokens_are_made_and_revoked_live_by_an_admin() {
    let registry = Registry::start();
    // The tokens file's tokens are in the list; a deployer may not read it.
    let listed = registry.run("ada", &["tokens", "list"]);
    expect_output(&listed, "file");
    assert!(stdout(&listed).contains("dora"), "{}", stdout(&listed));
    expect_error(
        &registry.run("dora", &["tokens", "list"]),
        6,
        "may not create, list or revoke tokens: needs admin",
    );

    // A new token works at once, without a restart; it is printed once, alone.
    let created = registry.run(
        "ada",
        &[
            "tokens",
            "create",
            "ci-bot",
            "--role",
            "deployer",
            "--expires",
            "90d",
        ],
    );
    expect_code(&created, 0);
    let token = stdout(&created).trim().to_string();
    assert!(token.starts_with("sluice_") && !token.contains(' '), "{token}");
    assert!(stderr(&created).contains("shown once"), "{}", stderr(&created));
    expect_code(
        &registry.run_with_token(
            &token,
            &["models", "create", "churn", "--description", "made by ci"],
        ),
        0,
    );
    let json = registry.run("ada", &["tokens", "list", "--json"]);
    expect_code(&json, 0);
    let tokens: serde_json::Value = serde_json::from_str(&stdout(&json)).unwrap();
    let bot = tokens
        .as_array()
        .unwrap()
        .iter()
        .find(|token| token["actor"] == "ci-bot")
        .unwrap()
        .clone();
    assert_eq!(bot["source"], "api");
    assert_eq!(bot["created_by"], "ada");
    assert!(bot["expires_at"].is_string(), "{bot}");
    assert!(!stdout(&json).contains(&token), "the list never holds a token");

    // Revoked: refused on its next request, and the audit log says who did it.
    let id = bot["id"].as_u64().unwrap().to_string();
    expect_output(
        &registry.run("ada", &["tokens", "revoke", &id]),
        "refused from now on",
    );
    expect_error(
        &registry.run_with_token(&token, &["models", "list"]),
        6,
        "was revoked at",
    );
    expect_error(
        &registry.run("ada", &["tokens", "revoke", &id]),
        4,
        "already revoked",
    );
    expect_error(
        &registry.run("ada", &["tokens", "revoke", "999"]),
        3,
        "no token 999",
    );
    let events = registry.run("ada", &["events", "--limit", "1000"]);
    expect_output(&events, "token.revoke");
    expect_error(
        &registry.run("ada", &["tokens", "create", "x", "--role", "king"]),
        2,
        "possible values",
    );
}

#[test]
fn contexts_completions_and_watches() {
    let registry = Registry::start();
    // A context names the registry and the token file: no flag, no variable.
    let config = registry.dir.path().join("config/sluice.toml");
    let in_context = |args: &[&str]| {
        sluice()
            .args(args)
            .env("SLUICE_CONFIG", &config)
            .current_dir(repo_root())
            .output()
            .unwrap()
    };
    let dora_file = registry.dir.path().join("dora");
    let set = in_context(&[
        "context",
        "set",
        "local",
        "--registry-url",
        &registry.url,
        "--token-file",
        dora_file.to_str().unwrap(),
    ]);
    expect_output(&set, "context 'local' created");
    expect_output(&set, "in use");
    expect_code(
        &in_context(&[
            "context",
            "set",
            "elsewhere",
            "--registry-url",
            "http://127.0.0.1:9",
        ]),
        0,
    );
    expect_output(&in_context(&["context", "list"]), "* ");
    expect_code(&in_context(&["models", "create", "credit_risk"]), 0);
    let whoami = in_context(&["models", "list", "-o", "yaml"]);
    expect_output(&whoami, "name: credit_risk");
    // Another context for one command; then the other one in use.
    expect_error(
        &in_context(&["models", "list", "--context", "elsewhere"]),
        5,
        "127.0.0.1:9",
    );
    expect_error(
        &in_context(&["models", "list", "--context", "nope"]),
        1,
        "no context 'nope'",
    );
    expect_output(
        &in_context(&["context", "use", "elsewhere"]),
        "now using context 'elsewhere'",
    );
    expect_code(&in_context(&["models", "list"]), 5);
    // A flag beats the context.
    let dora = std::fs::read_to_string(&dora_file).unwrap();
    expect_code(
        &in_context(&[
            "models",
            "list",
            "--registry-url",
            &registry.url,
            "--token",
            dora.trim(),
        ]),
        0,
    );
    expect_output(&in_context(&["context", "delete", "elsewhere"]), "deleted");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&config).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "it names where secrets are");
    }

    // Completions for the shells people use.
    for shell in ["bash", "zsh", "fish"] {
        let script = sluice().args(["completion", shell]).output().unwrap();
        expect_code(&script, 0);
        assert!(stdout(&script).contains("rollout"), "{shell}");
    }

    // A rollout watched until it settles: aborted, exit 1.
    for model in [
        "models/repository/credit_risk/1/model.onnx",
        "models/test/credit_risk_constant/1/model.onnx",
    ] {
        expect_code(
            &registry.run("dora", &["versions", "push", "credit_risk", model]),
            0,
        );
    }
    for version in ["1", "2"] {
        registry.stage("credit_risk", version);
    }
    expect_code(
        &registry.run("dora", &["traffic", "set", "credit_risk", "1=100"]),
        0,
    );
    expect_code(
        &registry.run("dora", &["rollout", "start", "credit_risk", "2"]),
        0,
    );
    expect_code(&registry.run("dora", &["rollout", "abort", "credit_risk"]), 0);
    let watched = registry.run("vic", &["rollout", "status", "credit_risk", "--watch"]);
    expect_error(&watched, 1, "the rollout of 'credit_risk' ended aborted");
    assert!(stdout(&watched).starts_with("--- "), "{}", stdout(&watched));

    // A traffic watch prints the deployment, then again when it changes.
    let token = std::fs::read_to_string(registry.dir.path().join("vic")).unwrap();
    let mut follower = sluice()
        .args(["traffic", "show", "credit_risk", "--watch"])
        .env("SLUICE_REGISTRY_URL", &registry.url)
        .env("SLUICE_TOKEN", token)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(follower.stdout.take().unwrap()));
    let mut next_revision = || loop {
        let line = lines.next().unwrap().unwrap();
        if let Some(rest) = line.strip_prefix("credit_risk  revision ") {
            return rest.split(' ').next().unwrap().to_string();
        }
    };
    let first = next_revision();
    expect_code(
        &registry.run(
            "dora",
            &["traffic", "set", "credit_risk", "--log-sample-rate", "0.5"],
        ),
        0,
    );
    let second = next_revision();
    assert_ne!(first, second);
    let _ = follower.kill();
    let _ = follower.wait();
}
