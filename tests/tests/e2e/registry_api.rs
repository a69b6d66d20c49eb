//! The registry's HTTP API over real sockets: auth and roles, bad uploads
//! that leave nothing half-written, 404s, racing writers, the watch, the
//! audit log, documents, URI imports, and a restart that loses nothing.

use std::time::{Duration, Instant};

use sluice_registry::policy::Policy;
use sluice_registry_client::RegistryClient;
use sluice_registry_client::types::*;
use sluice_tests::{ACTORS, RegistryOptions, TestRegistry, error_message, example_model, read_json};

fn raw_client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

#[tokio::test]
async fn every_call_needs_a_known_token_with_the_right_role() {
    let registry = TestRegistry::start().await;
    let http = raw_client();
    let anonymous = http
        .get(format!("{}/api/v1/models", registry.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    assert!(anonymous.headers().contains_key("www-authenticate"));
    let (_, body) = read_json(anonymous).await;
    assert!(error_message(&body).contains("missing bearer token"), "{body}");

    let forged = RegistryClient::new(&registry.url(), Some("sluice_forged".into()));
    assert_eq!(forged.list_models().await.unwrap_err().status(), Some(401));

    let viewer = registry.client("vic");
    assert!(viewer.list_models().await.is_ok());
    let refused = viewer
        .create_model(&CreateModel {
            name: "m".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.status(), Some(403));
    assert!(refused.to_string().contains("which may only read"), "{refused}");

    let whoami = registry.client("tom").whoami().await.unwrap();
    assert_eq!((whoami.actor.as_str(), whoami.role.as_str()), ("tom", "approver"));
    // Health answers without a token, for load balancers.
    assert!(RegistryClient::new(&registry.url(), None).health().await.is_ok());
}

#[tokio::test]
async fn bad_uploads_are_refused_and_leave_nothing_behind() {
    let registry = TestRegistry::start_with(RegistryOptions {
        max_artifact_bytes: Some(64 * 1024),
        ..Default::default()
    })
    .await;
    let dora = registry.client("dora");
    let events_before = dora.events(0, 1000).await.unwrap().len();

    let empty = dora.upload_artifact_bytes(Vec::new()).await.unwrap_err();
    assert_eq!(empty.status(), Some(400), "{empty}");
    let garbage = dora
        .upload_artifact_bytes(b"not an onnx model".to_vec())
        .await
        .unwrap_err();
    assert_eq!(garbage.status(), Some(400), "{garbage}");
    assert!(
        garbage.to_string().contains("not a model Sluice can serve"),
        "{garbage}"
    );
    let unsupported = dora
        .upload_artifact_bytes(example_model("unsupported_op"))
        .await
        .unwrap_err();
    assert_eq!(unsupported.status(), Some(400), "{unsupported}");
    let oversize = dora
        .upload_artifact_bytes(vec![7u8; 65 * 1024])
        .await
        .unwrap_err();
    assert_eq!(oversize.status(), Some(413), "{oversize}");

    // A version on an artifact that was never stored is refused too.
    dora.create_model(&CreateModel {
        name: "m".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let unknown = CreateVersion {
        artifact: ArtifactSource::Sha256("ab".repeat(32)),
        lineage: Lineage::default(),
    };
    assert_eq!(
        dora.create_version("m", &unknown).await.unwrap_err().status(),
        Some(404)
    );
    let malformed = raw_client()
        .post(format!("{}/api/v1/models/m/versions", registry.url()))
        .bearer_auth(registry.token("dora"))
        .body(r#"{"artifact": {"path": "/tmp/x"}}"#)
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    let (status, body) = read_json(malformed).await;
    assert_eq!(status, 400);
    assert!(error_message(&body).contains("invalid JSON body"), "{body}");
    // serde reads a struct from an array of its fields: each body that is
    // an object is refused as an array (schemathesis found the first).
    for (method, path, body, expected) in [
        ("PATCH", "/api/v1/models/m", "[null, null]", "expected an object"),
        (
            "PUT",
            "/api/v1/models/m/triggers/policy",
            r#"[[], {"command": {"name": "x"}}]"#,
            "expected an object",
        ),
    ] {
        let response = raw_client()
            .request(method.parse().unwrap(), format!("{}{path}", registry.url()))
            .bearer_auth(registry.token("dora"))
            .body(body)
            .send()
            .await
            .unwrap();
        let (status, answer) = read_json(response).await;
        assert_eq!(status, 400, "{method} {path} {body}: {answer}");
        assert!(error_message(&answer).contains(expected), "{answer}");
    }

    assert!(dora.list_versions("m").await.unwrap().is_empty());
    let events: Vec<String> = dora
        .events(0, 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|event| event.action)
        .collect();
    assert_eq!(
        events.len(),
        events_before + 1,
        "only the model was created: {events:?}"
    );
    let artifacts = std::fs::read_dir(registry.data_dir().join("artifacts/sha256"))
        .map(|entries| entries.count())
        .unwrap_or(0);
    assert_eq!(artifacts, 0, "no refused artifact was stored");
}

#[tokio::test]
async fn unknown_names_are_404_with_what_was_unknown() {
    let registry = TestRegistry::start().await;
    registry
        .register("credit_risk", &example_model("credit_risk"), &[])
        .await;
    let vic = registry.client("vic");
    let model = vic.get_model("nope").await.unwrap_err();
    assert_eq!(model.status(), Some(404));
    assert!(model.to_string().contains("unknown model 'nope'"), "{model}");
    let version = vic.get_version("credit_risk", "9").await.unwrap_err();
    assert!(version.to_string().contains("unknown version 9"), "{version}");
    let alias = vic.get_version("credit_risk", "champion").await.unwrap_err();
    assert_eq!(alias.status(), Some(404));
    assert!(
        alias.to_string().contains("no version or alias 'champion'"),
        "{alias}"
    );
    assert_eq!(
        vic.get_deployment("credit_risk").await.unwrap_err().status(),
        Some(404)
    );
    let (status, body) = read_json(
        raw_client()
            .get(format!("{}/api/v1/nowhere", registry.url()))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 404);
    assert!(error_message(&body).contains("no such endpoint"));
}

#[tokio::test]
async fn versions_carry_signature_lineage_and_documents() {
    let registry = TestRegistry::start().await;
    let version = registry
        .register("credit_risk", &example_model("credit_risk"), &[("auc", 0.91)])
        .await;
    assert_eq!(version.version, 1);
    assert_eq!(version.stage, Stage::None);
    assert_eq!(version.author, "dora");
    assert_eq!(version.signature.inputs.len(), 8);
    assert_eq!(version.signature.inputs[0].name, "age");
    assert_eq!(version.signature.inputs[0].datatype, "FP32");
    assert_eq!(version.lineage.metrics["auc"], 0.91);
    let second = registry
        .register("credit_risk", &example_model("credit_risk"), &[])
        .await;
    assert_eq!(second.version, 2, "versions are numbered, even on the same bytes");
    assert_eq!(second.sha256, version.sha256);

    let dora = registry.client("dora");
    let profile = serde_json::json!({"features": {"age": {"mean": 41.2}}});
    dora.put_document("credit_risk", "1", "reference_profile", &profile)
        .await
        .unwrap();
    let read = registry
        .client("vic")
        .get_document("credit_risk", "1", "reference_profile")
        .await
        .unwrap();
    assert_eq!(read.body, profile);
    assert_eq!(read.updated_by, "dora");
    let missing = dora.get_document("credit_risk", "1", "other").await.unwrap_err();
    assert_eq!(missing.status(), Some(404));
}

#[tokio::test]
async fn a_refused_transition_says_which_gate_or_approval_is_missing() {
    let policy: Policy = toml::from_str(
        "[stages.staging]\napprovals = [\"technical\"]\n[stages.production]\napprovals = [\"technical\", \"business\"]\ngates = [\"auc >= 0.85\"]",
    )
    .unwrap();
    let registry = TestRegistry::start_with(RegistryOptions {
        policy: Some(policy),
        ..Default::default()
    })
    .await;
    let weak = registry
        .register("credit_risk", &example_model("credit_risk"), &[("auc", 0.81)])
        .await;
    let dora = registry.client("dora");
    let to_production = RequestTransition {
        to_stage: Stage::Production,
        comment: "ship it".into(),
    };
    let refused = dora
        .request_transition("credit_risk", &weak.version.to_string(), &to_production)
        .await
        .unwrap_err();
    assert_eq!(refused.status(), Some(422));
    assert!(
        refused
            .to_string()
            .contains("gate 'auc >= 0.85' fails: auc is 0.81"),
        "{refused}"
    );

    let good = registry
        .register("credit_risk", &example_model("credit_risk"), &[("auc", 0.9)])
        .await;
    let pending = dora
        .request_transition("credit_risk", &good.version.to_string(), &to_production)
        .await
        .unwrap();
    assert_eq!(pending.missing_approvals, vec!["technical", "business"]);
    let approve = |approval: &str| ReviewTransition {
        approval: Some(approval.into()),
        comment: "fine".into(),
    };
    // A deployer may not approve.
    let not_approver = dora
        .review_transition(pending.id, Decision::Approve, &approve("technical"))
        .await
        .unwrap_err();
    assert_eq!(not_approver.status(), Some(403));
    let half = registry
        .client("tom")
        .review_transition(pending.id, Decision::Approve, &approve("technical"))
        .await
        .unwrap();
    assert_eq!(half.status, TransitionStatus::Pending);
    assert_eq!(half.missing_approvals, vec!["business"]);
    let done = registry
        .client("bea")
        .review_transition(pending.id, Decision::Approve, &approve("business"))
        .await
        .unwrap();
    assert_eq!(done.status, TransitionStatus::Applied);
    let version = dora.get_version("credit_risk", "2").await.unwrap();
    assert_eq!(version.stage, Stage::Production);

    // A rejection closes the request; the version keeps its stage.
    let to_staging = RequestTransition {
        to_stage: Stage::Staging,
        comment: String::new(),
    };
    let request = dora
        .request_transition("credit_risk", "1", &to_staging)
        .await
        .unwrap();
    let rejected = registry
        .client("tom")
        .review_transition(request.id, Decision::Reject, &ReviewTransition::default())
        .await
        .unwrap();
    assert_eq!(rejected.status, TransitionStatus::Rejected);
    assert_eq!(
        dora.get_version("credit_risk", "1").await.unwrap().stage,
        Stage::None
    );
}

#[tokio::test]
async fn racing_traffic_updates_one_wins_the_other_gets_409() {
    let registry = TestRegistry::start().await;
    let first = registry
        .release("credit_risk", &example_model("credit_risk"))
        .await;
    let second = registry
        .register("credit_risk", &example_model("credit_risk"), &[])
        .await;
    registry.approve_staging("credit_risk", second.version).await;
    let current = registry
        .client("vic")
        .get_deployment("credit_risk")
        .await
        .unwrap();

    let update = |targets: &[(u64, u32)]| {
        let client = registry.client("dora");
        let mut body = SetDeployment::new(TrafficSpec::weighted(targets));
        body.if_revision = Some(current.revision);
        async move { client.set_deployment("credit_risk", &body).await }
    };
    let canary = [(first.version, 90), (second.version, 10)];
    let full = [(second.version, 100)];
    let (a, b) = tokio::join!(update(&canary), update(&full));
    let outcomes = [a.is_ok(), b.is_ok()];
    assert_eq!(outcomes.iter().filter(|ok| **ok).count(), 1, "exactly one wins");
    let loser = a.err().or(b.err()).unwrap();
    assert_eq!(loser.status(), Some(409));
    assert!(loser.to_string().contains("read it again and retry"), "{loser}");
    let now = registry
        .client("vic")
        .get_deployment("credit_risk")
        .await
        .unwrap();
    assert_eq!(now.revision, current.revision + 1);
}

#[tokio::test]
async fn traffic_only_goes_to_deployable_versions_and_sums_to_100() {
    let registry = TestRegistry::start().await;
    let version = registry
        .register("credit_risk", &example_model("credit_risk"), &[])
        .await;
    let dora = registry.client("dora");
    let set = |targets: &[(u64, u32)]| {
        let dora = dora.clone();
        let body = SetDeployment::new(TrafficSpec::weighted(targets));
        async move { dora.set_deployment("credit_risk", &body).await.unwrap_err() }
    };
    let unapproved = set(&[(1, 100)]).await;
    assert_eq!(unapproved.status(), Some(422));
    assert!(
        unapproved
            .to_string()
            .contains("only staging or production versions may take traffic")
    );
    registry.approve_staging("credit_risk", version.version).await;
    let short = set(&[(1, 60)]).await;
    assert!(
        short.to_string().contains("weights add up to 60: expected 100"),
        "{short}"
    );
    let unknown = set(&[(1, 50), (4, 50)]).await;
    assert_eq!(unknown.status(), Some(404));
    let body = SetDeployment::new(TrafficSpec::weighted(&[(1, 100)]));
    let viewer = registry
        .client("vic")
        .set_deployment("credit_risk", &body)
        .await
        .unwrap_err();
    assert_eq!(viewer.status(), Some(403));
}

#[tokio::test]
async fn aliases_move_with_compare_and_swap() {
    let registry = TestRegistry::start().await;
    registry
        .register("credit_risk", &example_model("credit_risk"), &[])
        .await;
    registry
        .register("credit_risk", &example_model("credit_risk"), &[])
        .await;
    let dora = registry.client("dora");
    let set = |version, if_version| SetAlias { version, if_version };
    dora.set_alias("credit_risk", "champion", &set(1, Some(None)))
        .await
        .unwrap();
    let stale = dora
        .set_alias("credit_risk", "champion", &set(2, Some(Some(2))))
        .await
        .unwrap_err();
    assert_eq!(stale.status(), Some(409));
    assert!(
        stale.to_string().contains("is version 1 now, not version 2"),
        "{stale}"
    );
    dora.set_alias("credit_risk", "champion", &set(2, Some(Some(1))))
        .await
        .unwrap();
    let champion = dora.get_version("credit_risk", "champion").await.unwrap();
    assert_eq!(champion.version, 2);
    assert_eq!(champion.aliases, vec!["champion"]);
    let numeric = dora
        .set_alias("credit_risk", "7", &set(1, None))
        .await
        .unwrap_err();
    assert_eq!(numeric.status(), Some(400));
}

#[tokio::test]
async fn watch_returns_as_soon_as_the_revision_passes() {
    let registry = TestRegistry::start().await;
    let vic = registry.client("vic");
    let start = vic.list_deployments().await.unwrap();

    // Nothing changes: the watch answers at its timeout with the same revision.
    let idle = vic
        .watch_deployments(start.revision, Duration::from_millis(200))
        .await
        .unwrap();
    assert_eq!(idle.revision, start.revision);

    let watcher = tokio::spawn({
        let vic = vic.clone();
        async move {
            let began = Instant::now();
            let seen = vic
                .watch_deployments(start.revision, Duration::from_secs(60))
                .await
                .unwrap();
            (seen, began.elapsed())
        }
    });
    registry
        .release("credit_risk", &example_model("credit_risk"))
        .await;
    let (seen, waited) = watcher.await.unwrap();
    assert_eq!(seen.revision, start.revision + 1);
    assert_eq!(seen.deployments[0].model, "credit_risk");
    assert!(
        waited < Duration::from_secs(30),
        "answered on the change, not the timeout"
    );
}

#[tokio::test]
async fn the_audit_log_records_every_change_with_its_actor() {
    let registry = TestRegistry::start().await;
    registry
        .release("credit_risk", &example_model("credit_risk"))
        .await;
    let events = registry.client("vic").events(0, 100).await.unwrap();
    let trail: Vec<(&str, &str)> = events
        .iter()
        .map(|event| (event.action.as_str(), event.actor.as_str()))
        .collect();
    let imported = ACTORS.len();
    assert_eq!(trail[..imported], [("token.import", "tokens file"); ACTORS.len()]);
    assert_eq!(
        trail[imported..],
        [
            ("model.create", "dora"),
            ("artifact.store", "dora"),
            ("version.create", "dora"),
            ("transition.request", "dora"),
            ("transition.approve", "tom"),
            ("version.stage", "tom"),
            ("deployment.set", "dora"),
        ]
    );
    let stage = &events[imported + 5];
    assert_eq!(stage.before.as_ref().unwrap()["stage"], "none");
    assert_eq!(stage.after.as_ref().unwrap()["stage"], "staging");
    let later = registry
        .client("vic")
        .events(events[imported + 4].id, 100)
        .await
        .unwrap();
    assert_eq!(later.len(), 2);

    // Filtered by model (a transition counts for its version's model),
    // actor and action, newest first, a page at a time.
    let vic = registry.client("vic");
    let query = |model: Option<&str>, actor: Option<&str>, action: Option<&str>, before| EventQuery {
        limit: 100,
        before,
        model: model.map(String::from),
        actor: actor.map(String::from),
        action: action.map(String::from),
        newest_first: true,
        ..EventQuery::default()
    };
    let actions = |events: Vec<Event>| events.into_iter().map(|event| event.action).collect::<Vec<_>>();
    let of_model = vic
        .query_events(&query(Some("credit_risk"), None, None, None))
        .await
        .unwrap();
    assert_eq!(
        actions(of_model.clone()),
        [
            "deployment.set",
            "version.stage",
            "transition.approve",
            "transition.request",
            "version.create",
            "model.create"
        ]
    );
    let page = vic
        .query_events(&query(Some("credit_risk"), None, None, Some(of_model[2].id)))
        .await
        .unwrap();
    assert_eq!(actions(page).len(), 3);
    // `_` in a name is a letter, not a wildcard.
    assert!(
        vic.query_events(&query(Some("credit%risk"), None, None, None))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        vic.query_events(&query(Some("credit_ris"), None, None, None))
            .await
            .unwrap()
            .is_empty()
    );
    let by_tom = vic
        .query_events(&query(None, Some("tom"), Some("transition.*"), None))
        .await
        .unwrap();
    assert_eq!(actions(by_tom), ["transition.approve"]);
}

#[tokio::test]
async fn versions_register_from_a_uri_under_the_import_root_only() {
    let import = tempfile::tempdir().unwrap();
    let inside = import.path().join("credit_risk.onnx");
    std::fs::write(&inside, example_model("credit_risk")).unwrap();
    let outside_dir = tempfile::tempdir().unwrap();
    let outside = outside_dir.path().join("credit_risk.onnx");
    std::fs::write(&outside, example_model("credit_risk")).unwrap();
    let registry = TestRegistry::start_with(RegistryOptions {
        import_root: Some(import.path().to_path_buf()),
        ..Default::default()
    })
    .await;
    let dora = registry.client("dora");
    dora.create_model(&CreateModel {
        name: "credit_risk".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let from_uri = |path: &std::path::Path| CreateVersion {
        artifact: ArtifactSource::Uri(format!("file://{}", path.display())),
        lineage: Lineage::default(),
    };
    let version = dora
        .create_version("credit_risk", &from_uri(&inside))
        .await
        .unwrap();
    assert_eq!(
        version.source_uri.as_deref(),
        Some(format!("file://{}", inside.display()).as_str())
    );
    assert_eq!(version.signature.inputs.len(), 8);
    let refused = dora
        .create_version("credit_risk", &from_uri(&outside))
        .await
        .unwrap_err();
    assert_eq!(refused.status(), Some(422));
    assert!(
        refused.to_string().contains("outside the import root"),
        "{refused}"
    );

    // Probing the host through `..`, or through links that lead out of the
    // root, learns nothing: a file that exists and one that does not are
    // answered alike.
    let root = import.path().display().to_string();
    std::os::unix::fs::symlink("/etc/passwd", import.path().join("exists")).unwrap();
    std::os::unix::fs::symlink("/etc/no-such-file", import.path().join("missing")).unwrap();
    for (exists, missing) in [
        (
            format!("{root}/../../etc/passwd"),
            format!("{root}/../../etc/missing"),
        ),
        (format!("{root}/exists"), format!("{root}/missing")),
    ] {
        let exists = dora
            .create_version("credit_risk", &from_uri(exists.as_ref()))
            .await
            .unwrap_err();
        let missing = dora
            .create_version("credit_risk", &from_uri(missing.as_ref()))
            .await
            .unwrap_err();
        assert_eq!(exists.status(), missing.status());
        assert_eq!(
            exists.to_string().replace("passwd", "X").replace("exists", "X"),
            missing.to_string().replace("missing", "X"),
        );
    }
}

#[tokio::test]
async fn a_restarted_registry_has_everything() {
    let mut registry = TestRegistry::start().await;
    let version = registry
        .release("credit_risk", &example_model("credit_risk"))
        .await;
    let vic = registry.client("vic");
    let before = (
        vic.list_versions("credit_risk").await.unwrap(),
        vic.list_deployments().await.unwrap(),
        vic.events(0, 1000).await.unwrap(),
    );
    registry.restart().await;
    let after = (
        vic.list_versions("credit_risk").await.unwrap(),
        vic.list_deployments().await.unwrap(),
        vic.events(0, 1000).await.unwrap(),
    );
    assert_eq!(before, after);
    let artifact = vic.download_artifact(&version.sha256).await.unwrap();
    assert_eq!(artifact, example_model("credit_risk"));
}

/// The standalone registry's `/metrics` carries the monitor's gauges of
/// deployed versions only: a version no deployment holds, never deployed
/// or retired since, is left out, however long the process keeps it.
#[tokio::test]
async fn the_registrys_metrics_leave_out_versions_no_deployment_holds() {
    // Its own model: the recorder is the process's, shared by every test.
    const MODEL: &str = "metrics_retired";
    let registry = TestRegistry::start().await;
    let first = registry.release(MODEL, &example_model("credit_risk")).await;
    let staged = registry.register(MODEL, &example_model("credit_risk"), &[]).await;
    let series = |version: u64| {
        format!(r#"sluice_drift_psi{{model="{MODEL}",version="{version}",column="feature",feature="age"}}"#)
    };
    let scrape = || async {
        let response = reqwest::get(format!("{}/metrics", registry.url())).await.unwrap();
        assert_eq!(response.status(), 200);
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/plain")
        );
        response.text().await.unwrap()
    };
    for version in [first.version, staged.version] {
        metrics::gauge!("sluice_drift_psi", "model" => MODEL, "version" => version.to_string(), "column" => "feature", "feature" => "age")
            .set(0.3);
    }
    let text = scrape().await;
    assert!(text.contains(&series(first.version)), "{text}");
    assert!(!text.contains(&series(staged.version)), "never deployed: {text}");
    assert!(
        sluice_gateway::metrics::handle()
            .render()
            .contains(&series(staged.version))
    );
    // A new release takes all the traffic: the first version is retired.
    let third = registry.release(MODEL, &example_model("credit_risk")).await;
    metrics::gauge!("sluice_drift_psi", "model" => MODEL, "version" => third.version.to_string(), "column" => "feature", "feature" => "age")
        .set(0.1);
    let text = scrape().await;
    assert!(!text.contains(&series(first.version)), "retired: {text}");
    assert!(text.contains(&series(third.version)), "{text}");
}

/// A 422 whose message says `words`.
fn assert_refused(refused: &sluice_registry_client::error::ClientError, words: &str) {
    assert_eq!(refused.status(), Some(422), "{refused}");
    assert!(
        refused.to_string().contains(words),
        "{refused} should say {words}"
    );
}

/// The release engineer's story of issue 24: production needs two
/// approvals and `auc >= 0.99`, staging takes at most half the traffic. A
/// deployer's token cannot get past either by a rollout, a manual promote
/// or a traffic edit.
#[tokio::test]
async fn no_rollout_or_traffic_edit_walks_past_productions_approvals_gates_or_a_stages_share() {
    use sluice_registry_client::rollout::{RolloutStatus, StartRollout};
    let policy: Policy = toml::from_str(
        "[stages.staging]\napprovals = [\"technical\"]\nrequester_may_approve = true\nmax_weight = 50\n\
         [stages.production]\napprovals = [\"technical\", \"business\"]\ngates = [\"auc >= 0.99\"]",
    )
    .unwrap();
    let registry = TestRegistry::start_with(RegistryOptions {
        policy: Some(policy),
        ..Default::default()
    })
    .await;
    let model = "credit_risk";
    let stable = registry
        .register(model, &example_model("credit_risk"), &[("auc", 0.995)])
        .await;
    let canary = registry
        .register(model, &example_model("credit_risk"), &[("auc", 0.5)])
        .await;
    for version in [stable.version, canary.version] {
        registry.approve_staging(model, version).await;
    }
    let dora = registry.client("dora");
    // Staging may take half: all traffic to a staging version is refused.
    let refused = dora
        .set_deployment(
            model,
            &SetDeployment::new(TrafficSpec::weighted(&[(stable.version, 100)])),
        )
        .await
        .unwrap_err();
    assert_refused(&refused, "may take at most 50% of the traffic");
    registry.approve_production(model, stable.version).await;
    registry.deploy(model, &[(stable.version, 100)]).await;

    let steps = |weights: serde_json::Value| StartRollout {
        canary: canary.version,
        policy: serde_json::from_value(
            serde_json::json!({"step_weights": weights, "interval_ms": 3_600_000}),
        )
        .unwrap(),
    };
    let refused = dora
        .start_rollout(model, &steps(serde_json::json!([10, 80])))
        .await
        .unwrap_err();
    assert_refused(&refused, "step 80% is more than version 2 in staging may take");

    dora.start_rollout(model, &steps(serde_json::json!([10, 50])))
        .await
        .unwrap();
    let held = dora.rollout_action(model, "promote").await.unwrap();
    assert_eq!(held.status, RolloutStatus::AwaitingPromotion, "{held:#?}");
    let version = dora
        .get_version(model, &canary.version.to_string())
        .await
        .unwrap();
    assert_eq!(version.stage, Stage::Staging, "a rollout moves no stage");
    let deployment = dora.get_deployment(model).await.unwrap();
    assert_eq!(
        deployment.spec.weights(),
        vec![(stable.version, 90), (canary.version, 10)]
    );
    let events = dora.events(0, 1000).await.unwrap();
    let awaiting = events
        .iter()
        .find(|event| event.action == "rollout.awaiting_promotion")
        .expect("the audit log says why it waits");
    let reason = awaiting.reason.as_deref().unwrap();
    assert!(
        reason.contains(
            "its production transition was not opened (cannot enter production: gate 'auc >= 0.99' fails"
        ),
        "{reason}"
    );
    // Production's gate still refuses the version, however it is asked.
    let to_production = RequestTransition {
        to_stage: Stage::Production,
        comment: "its rollout passed".into(),
    };
    let refused = dora
        .request_transition(model, &canary.version.to_string(), &to_production)
        .await
        .unwrap_err();
    assert!(
        refused
            .to_string()
            .contains("gate 'auc >= 0.99' fails: auc is 0.5"),
        "{refused}"
    );
    let still = dora.get_rollout(model).await.unwrap();
    assert_eq!(
        (still.status, still.canary_weight),
        (RolloutStatus::AwaitingPromotion, 10)
    );
}

#[tokio::test]
async fn tokens_expire_and_are_revoked_live_and_survive_a_restart() {
    let hand = sluice_common::clock::ManualClock::default();
    let mut registry = TestRegistry::start_with(RegistryOptions {
        clock: Some(hand.clock()),
        ..Default::default()
    })
    .await;
    let admin = registry.client("admin");
    let body = |role: &str, expires_in_s| CreateToken {
        actor: "ci-bot".into(),
        role: role.into(),
        expires_in_s,
    };
    let refused = admin.create_token(&body("king", None)).await.unwrap_err();
    assert_eq!(refused.status(), Some(400));
    assert!(
        refused.to_string().contains("expected viewer, deployer"),
        "{refused}"
    );
    let dora = registry.client("dora");
    let refused = dora.create_token(&body("admin", None)).await.unwrap_err();
    assert_eq!(refused.status(), Some(403), "a deployer cannot mint an admin");

    let created = admin.create_token(&body("deployer", Some(60))).await.unwrap();
    let bot = RegistryClient::new(&registry.url(), Some(created.token.clone()));
    assert_eq!(bot.whoami().await.unwrap().actor, "ci-bot");
    hand.advance(Duration::from_secs(61));
    let expired = bot.whoami().await.unwrap_err();
    assert_eq!(expired.status(), Some(401));
    assert!(expired.to_string().contains("expired at"), "{expired}");

    // Revoked, it stays so across a restart; a live one keeps working.
    let forever = admin.create_token(&body("viewer", None)).await.unwrap();
    let revoked = admin.create_token(&body("viewer", None)).await.unwrap();
    admin.revoke_token(revoked.info.id).await.unwrap();
    registry.restart().await;
    let again = RegistryClient::new(&registry.url(), Some(forever.token.clone()));
    assert_eq!(again.whoami().await.unwrap().role, "viewer");
    let gone = RegistryClient::new(&registry.url(), Some(revoked.token.clone()));
    assert_eq!(gone.whoami().await.unwrap_err().status(), Some(401));
    let listed = registry.client("admin").list_tokens().await.unwrap();
    assert!(
        listed
            .iter()
            .any(|token| token.actor == "dora" && token.source == "file")
    );
    assert_eq!(
        listed
            .iter()
            .filter(|token| token.actor == "ci-bot" && token.revoked_at.is_none())
            .count(),
        2,
        "the expired one and the one never revoked: {listed:?}"
    );
}

/// The release engineer's story: version 2 enters production; version 1
/// leaves it (one production version per model) but stays deployable for
/// the rollback window, so going back works; a closed window refuses it.
/// Each change's audit event names the rule that allowed it.
#[tokio::test]
async fn a_new_production_version_retires_the_old_one_for_a_rollback_window() {
    const MODEL: &str = "credit_risk";
    let policy = |window_ms: u64| {
        Policy::parse(&format!(
            "rollback_window_ms = {window_ms}\n\
             [stages.staging]\napprovals = [\"technical\"]\nrequester_may_approve = true\nmax_weight = 50\n\
             [stages.production]\napprovals = [\"technical\", \"business\"]\ngates = [\"auc >= 0.8\"]\n"
        ))
        .unwrap()
    };
    let registry = TestRegistry::start_with(RegistryOptions {
        policy: Some(policy(3_600_000)),
        ..Default::default()
    })
    .await;
    let first = registry
        .register(MODEL, &example_model(MODEL), &[("auc", 0.85)])
        .await;
    registry.approve_staging(MODEL, first.version).await;
    registry.approve_production(MODEL, first.version).await;
    registry.deploy(MODEL, &[(1, 100)]).await;
    let second = registry
        .register(MODEL, &example_model("credit_risk_scaled"), &[("auc", 0.9)])
        .await;
    registry.approve_staging(MODEL, second.version).await;
    // Staging takes at most half.
    let dora = registry.client("dora");
    let refused = dora
        .set_deployment(
            MODEL,
            &SetDeployment::new(TrafficSpec::weighted(&[(1, 40), (2, 60)])),
        )
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("at most 50%"), "{refused}");
    registry.deploy(MODEL, &[(1, 50), (2, 50)]).await;
    registry.approve_production(MODEL, second.version).await;

    let vic = registry.client("vic");
    let old = vic.get_version(MODEL, "1").await.unwrap();
    assert_eq!(old.stage, Stage::Archived);
    let until = old.rollback_until.clone().expect("a rollback window");
    assert!(until > old.created_at, "{until}");
    // Still deployable: all traffic back to version 1 is allowed.
    let back = registry.deploy(MODEL, &[(1, 100)]).await;
    assert_eq!(back.spec.targets[0].version, 1);
    registry.deploy(MODEL, &[(2, 100)]).await;

    let events = vic
        .query_events(&EventQuery {
            limit: 100,
            model: Some(MODEL.into()),
            newest_first: true,
            ..EventQuery::default()
        })
        .await
        .unwrap();
    let retired = events
        .iter()
        .find(|event| event.action == "version.retire")
        .unwrap();
    assert_eq!(retired.subject, "credit_risk/1");
    assert_eq!(
        retired.rule.as_deref(),
        Some("stages.production.max_versions = 1; rollback_window_ms = 3600000")
    );
    let entered = events
        .iter()
        .find(|event| {
            event.action == "version.stage"
                && event.subject == "credit_risk/2"
                && event.after.as_ref().unwrap()["stage"] == "production"
        })
        .unwrap();
    let rule = entered.rule.as_deref().unwrap();
    assert!(
        rule.starts_with(
            "stages.production: approvals technical, business (not the requester); gates auc >= 0.8"
        ) && rule.contains("technical by tom")
            && rule.contains("business by bea"),
        "{rule}"
    );
    let deployed = events
        .iter()
        .find(|event| event.action == "deployment.set")
        .unwrap();
    assert!(
        deployed
            .rule
            .as_deref()
            .unwrap()
            .contains("2 production up to 100%"),
        "{deployed:?}"
    );
    let back_event = events
        .iter()
        .filter(|event| event.action == "deployment.set")
        .nth(1)
        .unwrap();
    assert!(
        back_event.rule.as_deref().unwrap().contains("1 archived until"),
        "{back_event:?}"
    );

    // A closed window: archived for good.
    let closed = TestRegistry::start_with(RegistryOptions {
        policy: Some(policy(1)),
        ..Default::default()
    })
    .await;
    for (number, name) in [(1, MODEL), (2, "credit_risk_scaled")] {
        closed
            .register(MODEL, &example_model(name), &[("auc", 0.9)])
            .await;
        closed.approve_staging(MODEL, number).await;
        closed.approve_production(MODEL, number).await;
    }
    tokio::time::sleep(Duration::from_millis(5)).await;
    let refused = closed
        .client("dora")
        .set_deployment(MODEL, &SetDeployment::new(TrafficSpec::weighted(&[(1, 100)])))
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("rollback window closed at"),
        "{refused}"
    );
}
