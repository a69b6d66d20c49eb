//! Data contracts end to end: a contract stored with the credit model's
//! version, a deployment that observes or rejects, a gateway following it,
//! and a mix of valid and violating applicants sent at once. Which request
//! breaks what is computed here, independently of the gateway's checker.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sluice_registry_client::contract::{CONTRACT_DOCUMENT, ContractMode};
use sluice_registry_client::profile::PROFILE_DOCUMENT;
use sluice_tests::{
    CREDIT_FEATURES, Options, TestGateway, TestRegistry, TestRepository, credit_applicants, credit_profile,
    error_message, example_model, read_json, repo_root,
};

/// Each test its own model name: the metrics recorder is shared by the process.
const REJECTING: &str = "credit_reject";
const OBSERVING: &str = "credit_observe";
const RULE: &str = "loan_amount <= 50 * income";

fn contract() -> Value {
    json!({
        "features": { "age": { "min": 18, "max": 100 } },
        "rules": [RULE],
    })
}

/// Applicants from the training data; every third is 40 years younger
/// (below 18 for most), every fifth asks for a loan of 100 times its income.
fn applicants() -> Vec<Value> {
    credit_applicants(90, 0.0)
        .into_iter()
        .enumerate()
        .map(|(index, mut request)| {
            let feature = |name: &str| {
                CREDIT_FEATURES
                    .iter()
                    .position(|feature| *feature == name)
                    .unwrap()
            };
            if index % 3 == 0 {
                let age = &mut request["inputs"][feature("age")]["data"][0];
                *age = json!(age.as_f64().unwrap() - 40.0);
            }
            if index % 5 == 0 {
                let income = request["inputs"][feature("income")]["data"][0].as_f64().unwrap();
                request["inputs"][feature("loan_amount")]["data"][0] = json!(income * 100.0);
            }
            request
        })
        .collect()
}

fn value(request: &Value, name: &str) -> f64 {
    let index = CREDIT_FEATURES
        .iter()
        .position(|feature| *feature == name)
        .unwrap();
    request["inputs"][index]["data"][0].as_f64().unwrap()
}

/// `(age out of range, rule broken)`, judged in f32 as the gateway sees the values.
fn breaks(request: &Value) -> (bool, bool) {
    let as_f32 = |name: &str| f64::from(value(request, name) as f32);
    let age = as_f32("age");
    (
        !(18.0..=100.0).contains(&age),
        as_f32("loan_amount") > 50.0 * as_f32("income"),
    )
}

async fn setup(model: &str, mode: ContractMode) -> (TestRegistry, TestGateway, tempfile::TempDir) {
    let registry = TestRegistry::start().await;
    let version = registry.register(model, &example_model("credit_risk"), &[]).await;
    // The drift report, where contract violations are summed, needs the profile.
    registry
        .client("dora")
        .put_document(model, "1", PROFILE_DOCUMENT, &credit_profile())
        .await
        .unwrap();
    registry.approve_staging(model, version.version).await;
    registry.deploy_checked(model, &contract(), mode).await;
    let cache = tempfile::tempdir().unwrap();
    let gateway = TestGateway::follow(&registry, cache.path(), Options::default()).await;
    gateway.wait_versions(model, &[1]).await;
    gateway.wait_contract(model).await;
    (registry, gateway, cache)
}

/// Every request sent at once; the answers in order.
async fn fire(gateway: &TestGateway, model: &str, requests: &[Value]) -> Vec<(u16, Value)> {
    let sent: Vec<_> = requests
        .iter()
        .cloned()
        .map(|request| {
            let (client, url) = (
                gateway.client.clone(),
                gateway.url(&format!("/v2/models/{model}/infer")),
            );
            tokio::spawn(
                async move { read_json(client.post(url).json(&request).send().await.unwrap()).await },
            )
        })
        .collect();
    let mut answers = Vec::new();
    for answer in sent {
        answers.push(answer.await.unwrap());
    }
    answers
}

/// The same requests answered by a gateway that checks no contract.
async fn unchecked_answers(requests: &[Value]) -> Vec<(u16, Value)> {
    let repository = TestRepository::new().with_model("credit_risk", 1, &example_model("credit_risk"));
    let gateway = TestGateway::start(&repository).await;
    let answers = fire(&gateway, "credit_risk", requests).await;
    gateway.server.shutdown().await.unwrap();
    answers
}

fn counter(metrics: &str, name: &str, check_opt: Option<&str>) -> f64 {
    metrics
        .lines()
        .filter(|line| line.starts_with(name) && line.contains(&format!("model=\"{OBSERVING}\"")))
        .filter(|line| check_opt.is_none_or(|check| line.contains(&format!("check=\"{check}\""))))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reject_answers_422_naming_each_violation_and_leaves_valid_answers_unchanged() {
    let (_registry, gateway, _cache) = setup(REJECTING, ContractMode::Reject).await;
    let requests = applicants();
    let answers = fire(&gateway, REJECTING, &requests).await;
    let unchecked = unchecked_answers(&requests).await;
    let mut rejected = 0;
    for ((request, (status, body)), (_, reference)) in requests.iter().zip(&answers).zip(&unchecked) {
        let (age_out, rule_broken) = breaks(request);
        if age_out || rule_broken {
            rejected += 1;
            assert_eq!(*status, 422, "{body}");
            let message = error_message(body);
            assert!(
                message.starts_with("the request breaks the model's data contract"),
                "{message}"
            );
            assert_eq!(message.contains("age = "), age_out, "{message}");
            assert_eq!(
                message.contains(&format!("rule '{RULE}' fails")),
                rule_broken,
                "{message}"
            );
        } else {
            assert_eq!(*status, 200, "{body}");
            assert_eq!(
                body["outputs"], reference["outputs"],
                "a valid request is answered as without a contract"
            );
        }
    }
    assert!(
        rejected >= 30 && rejected < requests.len(),
        "{rejected} of {} rejected",
        requests.len()
    );
    gateway.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observe_answers_everything_and_counts_each_violation_under_its_check() {
    let (registry, gateway, _cache) = setup(OBSERVING, ContractMode::Observe).await;
    let requests = applicants();
    let answers = fire(&gateway, OBSERVING, &requests).await;
    assert!(answers.iter().all(|(status, _)| *status == 200));
    let young = requests.iter().filter(|request| breaks(request).0).count() as f64;
    let greedy = requests.iter().filter(|request| breaks(request).1).count() as f64;
    assert!(young > 0.0 && greedy > 0.0);

    let metrics = gateway.metrics().await;
    assert_eq!(
        counter(&metrics, "sluice_contract_violations_total", Some("age:min")),
        young
    );
    assert_eq!(
        counter(&metrics, "sluice_contract_violations_total", Some("age:max")),
        0.0
    );
    assert_eq!(
        counter(&metrics, "sluice_contract_violations_total", Some(RULE)),
        greedy
    );
    assert_eq!(
        counter(&metrics, "sluice_contract_rows_total", None),
        requests.len() as f64
    );

    // The same counts reach the registry's drift report with the version's statistics.
    let deadline = Instant::now() + Duration::from_secs(30);
    let summary = loop {
        let report = registry
            .client("vic")
            .drift(OBSERVING, Some("1"), Duration::from_secs(600))
            .await
            .unwrap();
        // Rows are counted before their violations: both are waited for.
        match report.contract {
            Some(summary)
                if summary.rows == requests.len() as u64
                    && summary.violations.get("age:min").copied() == Some(young as u64)
                    && summary.violations.get(RULE).copied() == Some(greedy as u64) =>
            {
                break summary;
            }
            _ => {
                assert!(Instant::now() < deadline, "no contract summary in {report:?}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    assert_eq!(summary.violations.get("age:min").copied(), Some(young as u64));
    assert_eq!(summary.violations.get(RULE).copied(), Some(greedy as u64));
    assert!((summary.rates[RULE] - greedy / requests.len() as f64).abs() < 1e-12);
    gateway.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_registry_refuses_a_contract_gateways_could_not_enforce() {
    let registry = TestRegistry::start().await;
    registry
        .register(REJECTING, &example_model("credit_risk"), &[])
        .await;
    let dora = registry.client("dora");
    for (body, why) in [
        (json!({ "rules": ["age * income > 3"] }), "rules are linear"),
        (
            json!({ "features": { "age": { "min": 9, "max": 1 } } }),
            "min 9 is above max 1",
        ),
        (
            json!({ "features": { "age": { "low": 9 } } }),
            "unknown field `low`",
        ),
        (
            json!({ "features": { "agee": { "min": 1 } } }),
            "'agee' is no column of the model's inputs",
        ),
        (
            json!({ "rules": ["loan <= 2 * income"] }),
            "names 'loan', no column",
        ),
    ] {
        let err = dora
            .put_document(REJECTING, "1", CONTRACT_DOCUMENT, &body)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains(why), "{err}");
    }
}

#[test]
fn the_example_contract_is_what_derive_writes_from_the_example_profile() {
    use sluice_registry_client::contract::DataContract;
    use sluice_registry_client::profile::ReferenceProfile;
    let read = |file: &str| {
        std::fs::read_to_string(repo_root().join("models/repository/credit_risk/1").join(file)).unwrap()
    };
    let profile: ReferenceProfile = serde_json::from_str(&read("profile.json")).unwrap();
    let committed: DataContract = serde_json::from_str(&read("contract.json")).unwrap();
    let mut derived = DataContract::derive(&profile, 0.1);
    derived.rules = committed.rules.clone();
    assert_eq!(
        derived.features.keys().collect::<Vec<_>>(),
        committed.features.keys().collect::<Vec<_>>()
    );
    for (name, feature) in &derived.features {
        let written = &committed.features[name];
        for (ours, theirs) in [(feature.min, written.min), (feature.max, written.max)] {
            let (ours, theirs) = (ours.unwrap(), theirs.unwrap());
            assert!(
                (ours - theirs).abs() <= 1e-9 * theirs.abs().max(1.0),
                "{name}: {ours} vs {theirs}"
            );
        }
    }
    assert!(committed.validate().is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contract_stored_after_the_version_went_live_applies_at_the_next_deployment_change() {
    let model = "credit_late";
    let registry = TestRegistry::start().await;
    let version = registry.register(model, &example_model("credit_risk"), &[]).await;
    registry.approve_staging(model, version.version).await;
    registry.deploy(model, &[(1, 100)]).await;
    let cache = tempfile::tempdir().unwrap();
    let gateway = TestGateway::follow(&registry, cache.path(), Options::default()).await;
    gateway.wait_versions(model, &[1]).await;
    assert!(gateway.serving(model).contract.get().is_none());

    registry
        .deploy_checked(model, &contract(), ContractMode::Reject)
        .await;
    gateway.wait_contract(model).await;
    let young = &applicants()[0];
    assert!(breaks(young).0);
    let (status, body) = gateway
        .post_json(&format!("/v2/models/{model}/infer"), young)
        .await;
    assert_eq!(status, 422, "{body}");
    gateway.server.shutdown().await.unwrap();
}
