//! The web console (`registry/console/`, served at `/console/`) in a real
//! browser. A registry is seeded with what an approver and a release
//! engineer meet on a Monday: a model with three versions and their cards,
//! a production transition half approved and another to turn down, a
//! canary deployment, half an hour of gateway statistics whose ages drift,
//! a trigger run; then `tests/console/walk.mjs` drives Debian's headless
//! Chromium through the approver's and the release engineer's stories
//! (playwright-core), checks every view with axe-core, and saves a
//! screenshot of each step in `target/console-screenshots`.
//!
//! Node, `/usr/bin/chromium` and the Node modules (`tests/console/install.sh`,
//! which `scripts/test.sh` runs) must be there; without them the walk says
//! it is skipped, and CI, which sets `SLUICE_REQUIRE_CONSOLE=1`, fails
//! instead. The checks of the assets themselves need no browser.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sluice_common::clock::ManualClock;
use sluice_registry_client::RegistryClient;
use sluice_registry_client::contract::{CONTRACT_DOCUMENT, ContractMode};
use sluice_registry_client::profile::PROFILE_DOCUMENT;
use sluice_registry_client::rollout::{GatewayServing, LATENCY_BUCKETS_MS, StatsReport, VersionWindow};
use sluice_registry_client::types::*;
use sluice_tests::{RegistryOptions, TestRegistry, credit_profile, example_model, repo_root};

const MODEL: &str = "credit_risk";
/// What a careless or hostile deployer may write in a description, a card,
/// a document or a comment: the console must show it as text.
const XSS_IMG: &str = r#"<img src=x onerror="window.__pwned=1">"#;
const XSS_SCRIPT: &str = "<script>window.__pwned=1</script>";
/// The gateways of the seed report this often: rollout intervals of 2 s pass.
const REPORT_INTERVAL_MS: u64 = 1000;

/// Node, Debian's Chromium and the console test's Node modules, or `None`
/// (the walk is skipped) where one is missing and the run does not require them.
struct Browser {
    node: PathBuf,
    chromium: PathBuf,
    modules: PathBuf,
}

fn browser() -> Option<Browser> {
    let home = PathBuf::from(std::env::var_os("HOME").unwrap_or_default());
    let modules = std::env::var_os("SLUICE_CONSOLE_NODE_MODULES")
        .map(PathBuf::from)
        .unwrap_or_else(|| home.join(".cache/sluice/console-node/node_modules"));
    let chromium = std::env::var_os("SLUICE_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    let node = PathBuf::from("node");
    let mut missing = Vec::new();
    if !Command::new(&node)
        .arg("--version")
        .output()
        .is_ok_and(|output| output.status.success())
    {
        missing.push("node (apt-get install nodejs npm)".to_string());
    }
    if !chromium.exists() {
        missing.push(format!("{} (apt-get install chromium)", chromium.display()));
    }
    for module in ["playwright-core", "axe-core"] {
        if !modules.join(module).exists() {
            missing.push(format!(
                "{} (bash tests/console/install.sh)",
                modules.join(module).display()
            ));
        }
    }
    if missing.is_empty() {
        return Some(Browser {
            node,
            chromium,
            modules,
        });
    }
    assert!(
        std::env::var("SLUICE_REQUIRE_CONSOLE").as_deref() != Ok("1"),
        "the console's browser test needs {}",
        missing.join(", ")
    );
    eprintln!("SKIPPED: the console's browser test: no {}", missing.join(", "));
    None
}

/// Where the walk's screenshots go, kept by CI as artifacts.
fn screenshots_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"))
        .join("console-screenshots")
}

/// The example model's committed card, as a version's lineage.
fn card() -> Lineage {
    let path = repo_root().join("models/repository/credit_risk/1/card.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).expect("the committed card is a lineage")
}

fn committed(name: &str) -> Value {
    let path = repo_root().join("models/repository/credit_risk").join(name);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).expect("committed JSON")
}

async fn create_version(dora: &RegistryClient, sha256: &str, lineage: Lineage) -> u64 {
    let body = CreateVersion {
        artifact: ArtifactSource::Sha256(sha256.to_string()),
        lineage,
    };
    dora.create_version(MODEL, &body)
        .await
        .expect("creating a version")
        .version
}

async fn request(dora: &RegistryClient, version: u64, comment: &str) -> Transition {
    let body = RequestTransition {
        to_stage: Stage::Production,
        comment: comment.to_string(),
    };
    dora.request_transition(MODEL, &version.to_string(), &body)
        .await
        .expect("requesting production")
}

/// Models, versions, cards, documents, suites, transitions, a deployment
/// and a trigger run: what the stories walk through.
async fn seed_registry(registry: &TestRegistry) {
    let dora = registry.client("dora");
    let model = CreateModel {
        name: MODEL.to_string(),
        description: format!("Default risk of a loan applicant. {XSS_IMG} {XSS_SCRIPT}"),
        tags: BTreeMap::from([("team".to_string(), "risk".to_string())]),
    };
    dora.create_model(&model).await.expect("creating the model");
    let artifact = dora
        .upload_artifact_bytes(example_model(MODEL))
        .await
        .expect("uploading the artifact");

    // Version 1: the card as committed; version 2 retrained from it, better
    // on paper; version 3 whose card a deployer filled with markup.
    let mut first = card();
    first.metrics.insert("auc".into(), 0.88);
    let v1 = create_version(&dora, &artifact.sha256, first).await;
    let mut second = card();
    second.metrics = BTreeMap::from([("auc".into(), 0.91), ("accuracy".into(), 0.84)]);
    second.code_commit = Some("4e1d9a2".into());
    second.training_run_id = Some("retrain-2026-11-30".into());
    second.parent_version = Some(v1);
    let v2 = create_version(&dora, &artifact.sha256, second).await;
    let third = Lineage {
        intended_use: Some(XSS_IMG.into()),
        limitations: Some(XSS_SCRIPT.into()),
        metrics: BTreeMap::from([("auc".into(), 0.86)]),
        ..Default::default()
    };
    let v3 = create_version(&dora, &artifact.sha256, third).await;

    dora.put_document(MODEL, &v1.to_string(), PROFILE_DOCUMENT, &credit_profile())
        .await
        .expect("storing the reference profile");
    dora.put_document(
        MODEL,
        &v1.to_string(),
        CONTRACT_DOCUMENT,
        &committed("1/contract.json"),
    )
    .await
    .expect("storing the contract");
    let evaluation = json!({"summary": format!("{XSS_IMG} {XSS_SCRIPT}"), "auc": 0.86});
    dora.put_document(MODEL, &v3.to_string(), "evaluation", &evaluation)
        .await
        .expect("storing a document");
    let suite = serde_json::from_value(committed("suite.json")).expect("the committed suite");
    dora.put_suite(MODEL, &suite).await.expect("storing the suite");
    for version in [v1, v2] {
        let report = dora
            .run_suite(MODEL, &version.to_string(), None)
            .await
            .expect("running the suite");
        assert!(report.passed, "{report:?}");
    }
    for version in [v1, v2, v3] {
        registry.approve_staging(MODEL, version).await;
    }

    // Version 2 to production: bea has given the business approval, tom's
    // technical one is missing. Version 3's request is for bea to turn down.
    let transition = request(&dora, v2, "beats version 1 on auc").await;
    let review = ReviewTransition {
        approval: Some("business".into()),
        comment: "the business case is signed".into(),
    };
    registry
        .client("bea")
        .review_transition(transition.id, Decision::Approve, &review)
        .await
        .expect("bea's business approval");
    request(&dora, v3, XSS_IMG).await;

    let mut deployment = SetDeployment::new(TrafficSpec::weighted(&[(v1, 90), (v2, 10)]));
    deployment.shadow = Some(Shadow {
        version: v3,
        sample_rate: 0.05,
    });
    deployment.sticky_header = Some("x-user-id".into());
    deployment.log_sample_rate = Some(0.1);
    deployment.contract = Some(ContractMode::Observe);
    deployment.if_revision = Some(0);
    deployment.reason = Some("canary of version 2 at 10%".into());
    dora.set_deployment(MODEL, &deployment).await.expect("deploying");

    // A training trigger whose webhook nobody answers: a failed run to list.
    let policy = serde_json::from_value(json!({
        "rules": [{"kind": "drift", "window_ms": 600000, "windows": 3}],
        "action": {"webhook": {"url": "http://127.0.0.1:9/retrain", "max_attempts": 1, "backoff_ms": 100}},
    }))
    .expect("a trigger policy");
    dora.set_trigger_policy(MODEL, &policy)
        .await
        .expect("setting the trigger policy");
    let fire =
        serde_json::from_value(json!({"note": "retrain on the November data", "idempotency_key": "console"}))
            .expect("a manual fire");
    dora.fire_trigger(MODEL, &fire).await.expect("firing the trigger");
}

/// One gateway window of `rows` applicants like the training data's, but
/// with `shift` of them older than any in it (age's overflow bin).
fn window(now_ms: u64, rows: u64, shift: f64) -> VersionWindow {
    let profile = credit_profile();
    let columns = |kind: &str, drifting: &str| -> BTreeMap<String, Vec<u64>> {
        let mut columns = BTreeMap::new();
        for (name, column) in profile[kind].as_object().unwrap() {
            let shares: Vec<f64> = column["shares"]
                .as_array()
                .unwrap()
                .iter()
                .map(|share| share.as_f64().unwrap())
                .collect();
            let moved = if name == drifting { shift } else { 0.0 };
            let mut counts: Vec<u64> = shares
                .iter()
                .map(|share| (share * (1.0 - moved) * rows as f64).round() as u64)
                .collect();
            if column["kind"] == "categorical" {
                counts.extend([0, 0]); // other, missing
            } else {
                counts.extend([0, (moved * rows as f64).round() as u64, 0]); // under, over, missing
            }
            columns.insert(name.clone(), counts);
        }
        columns
    };
    let mut latency_buckets = vec![0; LATENCY_BUCKETS_MS.len() + 1];
    latency_buckets[8] = rows; // about 2 ms each
    VersionWindow {
        model: MODEL.to_string(),
        version: 1,
        started_ms: now_ms.saturating_sub(REPORT_INTERVAL_MS),
        ended_ms: now_ms,
        requests: rows,
        output_rows: rows,
        latency_buckets,
        features: columns("features", "age"),
        outputs: columns("outputs", "probabilities[1]"),
        contract_rows: rows,
        contract_violations: BTreeMap::from([("age:max".to_string(), (shift * rows as f64).round() as u64)]),
        ..Default::default()
    }
}

fn report(gateway: &str, revision: u64, versions: Vec<VersionWindow>) -> StatsReport {
    StatsReport {
        gateway: gateway.to_string(),
        interval_ms: REPORT_INTERVAL_MS,
        versions,
        serving: Some(GatewayServing {
            revision,
            models: BTreeMap::from([(MODEL.to_string(), vec![1, 2, 3])]),
            started_at: "2026-12-07T08:00:00Z".into(),
            build: "0.1.0".into(),
        }),
    }
}

/// Half an hour of statistics on the registry's clock: a report every
/// three minutes, ages drifting from the fifth on; a second gateway heard
/// once, long ago, on an old revision. The clock then runs on in real time.
async fn seed_statistics(registry: &TestRegistry, hand: &ManualClock) {
    let gw = registry.client("gw");
    let revision = gw.list_deployments().await.unwrap().revision;
    gw.report_stats(&report("gateway-b", revision.saturating_sub(1), vec![]))
        .await
        .expect("an old gateway's report");
    for step in 0..10u32 {
        let shift = f64::from(step.saturating_sub(4)) * 0.12;
        let windows = vec![window(hand.now_ms(), 200, shift)];
        gw.report_stats(&report("gateway-a", revision, windows))
            .await
            .expect("reporting statistics");
        hand.advance(if step < 9 {
            Duration::from_secs(180)
        } else {
            Duration::from_secs(30)
        });
    }
}

/// Healthy traffic to each version the deployment names, by weight, in one
/// report interval: no errors, every answer in about 2 ms. No feature
/// counts, so drift is the seeded reports' alone.
fn traffic(now_ms: u64, deployment: &Deployment) -> Vec<VersionWindow> {
    const REQUESTS: u64 = 1000;
    deployment
        .spec
        .targets
        .iter()
        .filter(|target| target.weight > 0)
        .map(|target| {
            let requests = REQUESTS * u64::from(target.weight) / 100;
            let mut latency_buckets = vec![0; LATENCY_BUCKETS_MS.len() + 1];
            latency_buckets[8] = requests;
            VersionWindow {
                model: MODEL.to_string(),
                version: target.version,
                started_ms: now_ms.saturating_sub(REPORT_INTERVAL_MS),
                ended_ms: now_ms,
                requests,
                output_rows: requests,
                latency_buckets,
                ..Default::default()
            }
        })
        .collect()
}

/// Moves the registry's clock with real time and keeps `gateway-a`
/// reporting the deployment's traffic (a rollout's intervals judge it)
/// until aborted.
fn keep_time(registry: &TestRegistry, hand: ManualClock) -> tokio::task::JoinHandle<()> {
    let gw = registry.client("gw");
    tokio::spawn(async move {
        let mut last = Instant::now();
        let mut reported = Instant::now();
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let now = Instant::now();
            hand.advance(now - last);
            last = now;
            if now - reported >= Duration::from_millis(REPORT_INTERVAL_MS) {
                reported = now;
                if let Ok(deployments) = gw.list_deployments().await {
                    let windows = deployments
                        .deployments
                        .iter()
                        .filter(|deployment| deployment.model == MODEL)
                        .flat_map(|deployment| traffic(hand.now_ms(), deployment))
                        .collect();
                    let _ = gw
                        .report_stats(&report("gateway-a", deployments.revision, windows))
                        .await;
                }
            }
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvers_and_release_engineers_walk_the_console_in_chromium() {
    let Some(browser) = browser() else {
        return;
    };
    let hand = ManualClock::default();
    // The default policy, with a metric gate on production for the
    // approvals page to show.
    let policy = sluice_registry::policy::Policy::parse(
        "[stages.staging]\napprovals = [\"technical\"]\nrequester_may_approve = true\n\
         [stages.production]\napprovals = [\"technical\", \"business\"]\ngates = [\"auc >= 0.85\"]",
    )
    .expect("the console's policy");
    let registry = TestRegistry::start_with(RegistryOptions {
        policy: Some(policy),
        clock: Some(hand.clock()),
        rollout_tick: Some(Duration::from_millis(200)),
        actions: Some(r#"webhook_hosts = ["127.0.0.1"]"#.to_string()),
        ..Default::default()
    })
    .await;
    seed_registry(&registry).await;
    seed_statistics(&registry, &hand).await;
    let clock = keep_time(&registry, hand);

    let scratch = tempfile::tempdir().unwrap();
    let tokens: BTreeMap<&str, String> = ["admin", "dora", "tom", "bea", "vic"]
        .into_iter()
        .map(|actor| (actor, registry.token(actor)))
        .collect();
    let tokens_file = scratch.path().join("tokens.json");
    std::fs::write(&tokens_file, serde_json::to_vec(&tokens).unwrap()).unwrap();
    let screenshots = screenshots_dir();
    let _ = std::fs::remove_dir_all(&screenshots);

    let mut command = Command::new(&browser.node);
    command
        .arg(repo_root().join("tests/console/walk.mjs"))
        .arg("--url")
        .arg(registry.url())
        .arg("--tokens")
        .arg(&tokens_file)
        .arg("--screenshots")
        .arg(&screenshots)
        .env("SLUICE_CONSOLE_NODE_MODULES", &browser.modules)
        .env("SLUICE_CHROMIUM", &browser.chromium);
    let output = tokio::task::spawn_blocking(move || command.output().expect("running node"))
        .await
        .unwrap();
    clock.abort();
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("{stderr}");
    assert!(
        output.status.success(),
        "the console walk failed (screenshots in {}):\n{stderr}",
        screenshots.display()
    );
}

/// The console's files, by name.
fn assets() -> Vec<(String, String)> {
    let dir = repo_root().join("registry/console");
    let mut files: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            (name, std::fs::read_to_string(&path).unwrap())
        })
        .collect();
    files.sort();
    files
}

#[test]
fn the_console_never_parses_text_as_html_nor_keeps_the_token() {
    // What would turn a deployer's text into markup or code, or keep the
    // token where a script or another page could read it.
    let forbidden = [
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "DOMParser",
        "createContextualFragment",
        "setHTML",
        "import(",
        "eval(",
        "new Function",
        "localStorage",
        "sessionStorage",
        "document.cookie",
        "setAttribute('style'",
        "srcdoc",
        "javascript:",
    ];
    let files = assets();
    assert!(
        files.len() >= 6,
        "{:?}",
        files.iter().map(|(name, _)| name).collect::<Vec<_>>()
    );
    for (name, text) in &files {
        // Code, not the comments that say why these are absent.
        for line in text.lines().filter(|line| {
            let line = line.trim_start();
            !(line.starts_with("//") || line.starts_with('*') || line.starts_with("/*"))
        }) {
            for pattern in forbidden {
                assert!(
                    !line.contains(pattern),
                    "registry/console/{name} uses {pattern}: {line}"
                );
            }
        }
    }
    let (_, index) = files.iter().find(|(name, _)| name == "index.html").unwrap();
    // No inline script, style or handler: the Content-Security-Policy would refuse them.
    for script in index.split("<script").skip(1) {
        let tag = &script[..script.find('>').unwrap()];
        assert!(tag.contains("src="), "an inline <script> in index.html");
    }
    assert!(
        !index.contains("<style") && !index.contains(" style="),
        "inline style in index.html"
    );
    for attribute in index.split(" on").skip(1) {
        let name: String = attribute.chars().take_while(char::is_ascii_alphabetic).collect();
        assert!(
            !attribute[name.len()..].starts_with('='),
            "an event handler attribute on{name} in index.html"
        );
    }
}

#[test]
fn the_console_modules_import_one_way() {
    // app.js → the views → ui.js → api.js, dom.js, plot.js. A view is a
    // module that imports ui.js; what two views share belongs in ui.js, so a
    // view imported by anything but app.js is a helper in the wrong file.
    let files = assets();
    let imports: BTreeMap<&str, Vec<&str>> = files
        .iter()
        .filter(|(name, _)| name.ends_with(".js"))
        .map(|(name, text)| {
            let imported = text
                .lines()
                .filter(|line| !line.trim_start().starts_with("//"))
                .filter_map(|line| {
                    line.split_once("from './")
                        .map(|(_, rest)| &rest[..rest.find('\'').unwrap()])
                })
                .collect();
            (name.as_str(), imported)
        })
        .collect();
    let is_view = |name: &str| name != "ui.js" && imports[name].contains(&"ui.js");
    assert!(
        imports.keys().filter(|name| is_view(name)).count() >= 5,
        "{imports:?}"
    );
    for (name, imported) in &imports {
        for target in imported {
            assert!(
                imports.contains_key(target),
                "registry/console/{name} imports {target}, which is not there"
            );
            assert!(*target != "app.js", "registry/console/{name} imports app.js");
            assert!(
                !is_view(target) || *name == "app.js",
                "registry/console/{name} imports the view {target}: share through ui.js"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_the_console_calls_is_in_the_openapi_document() {
    let registry = TestRegistry::start().await;
    let document: Value = reqwest::get(format!("{}/openapi.json", registry.url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut operations = Vec::new();
    for item in document["paths"].as_object().unwrap().values() {
        for operation in item.as_object().unwrap().values() {
            if let Some(id) = operation["operationId"].as_str() {
                operations.push(id.to_string());
            }
        }
    }
    let mut called = Vec::new();
    for (name, text) in assets() {
        // The first argument, up to its options: a name, or a choice
        // between names (`decision === 'approve' ? 'approve_transition' : ...`).
        for call in ["call(", "callOr404("] {
            for rest in text.split(call).skip(1) {
                let argument = &rest[..rest.find(['{', ')']).unwrap_or(rest.len())];
                let quoted = argument.split('\'').skip(1).step_by(2);
                for id in quoted.filter(|word| word.contains('_') && !word.contains(' ')) {
                    called.push((name.clone(), id.to_string()));
                }
            }
        }
    }
    assert!(called.len() > 20, "{called:?}");
    for (name, id) in called {
        assert!(
            operations.contains(&id),
            "registry/console/{name} calls {id}, which /openapi.json does not name: {operations:?}"
        );
    }
}
