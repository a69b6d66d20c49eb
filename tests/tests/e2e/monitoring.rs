//! The alerting rules and the Grafana dashboard in `deploy/monitoring/` use
//! only metrics Sluice exports. Each `sluice_*` name in them must be on the
//! `/metrics` page of a running Sluice (a registry and a gateway following
//! it, after real predictions), or, for series that exist only once their
//! event has happened (a drift report, a rollback, a hung run), be written
//! by name in the gateway's or the registry's code. A renamed metric fails
//! here, not on a dashboard in the middle of an incident. (`promtool` checks
//! the rules' syntax and behaviour: `scripts/check-monitoring.sh`.)

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::{Value, json};
use sluice_tests::{TestGateway, TestRegistry, credit_applicants, example_model, repo_root};

const MODEL: &str = "credit_risk";

/// Every `sluice_...` metric name in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("sluice_") {
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        rest = &rest[at + name.len()..];
        names.insert(name);
    }
    names
}

/// A histogram's series name without its `_bucket`, `_sum` or `_count`.
fn family(name: &str) -> &str {
    ["_bucket", "_sum", "_count"]
        .iter()
        .find_map(|suffix| name.strip_suffix(suffix))
        .unwrap_or(name)
}

/// The names on a `/metrics` page: each sample's, before its labels or value.
fn scraped_names(page: &str) -> BTreeSet<String> {
    page.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .filter_map(|line| line.split(['{', ' ']).next())
        .map(str::to_string)
        .collect()
}

/// The text of every Rust file under `dir`.
fn sources(dir: &Path) -> String {
    let mut text = String::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            text.push_str(&sources(&path));
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            text.push_str(&std::fs::read_to_string(&path).unwrap());
        }
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_rules_and_the_dashboard_use_is_one_sluice_exports() {
    let monitoring = repo_root().join("deploy/monitoring");
    let rules = std::fs::read_to_string(monitoring.join("sluice-rules.yml")).unwrap();
    let dashboard = std::fs::read_to_string(monitoring.join("sluice-dashboard.json")).unwrap();
    let parsed: Value = serde_json::from_str(&dashboard).unwrap();
    assert!(
        parsed["panels"]
            .as_array()
            .is_some_and(|panels| panels.len() > 10)
    );
    let used: BTreeSet<String> = metric_names(&rules)
        .union(&metric_names(&dashboard))
        .cloned()
        .collect();

    // A running Sluice with traffic: predictions logged, one bad request.
    let registry = TestRegistry::start().await;
    registry.release(MODEL, &example_model(MODEL)).await;
    registry.deploy_logged(MODEL, &[(1, 100)], 1.0).await;
    let cache = tempfile::tempdir().unwrap();
    let gateway = TestGateway::follow_logging(&registry, cache.path(), MODEL, &[1]).await;
    for (index, request) in credit_applicants(20, 0.0).iter().enumerate() {
        gateway
            .predict_as(MODEL, &format!("monitoring-{index}"), request)
            .await;
    }
    let (code, _) = gateway
        .post_json(&format!("/v2/models/{MODEL}/infer"), &json!({"inputs": []}))
        .await;
    assert_eq!(code, 400);
    // The prediction log's counter first shows when its writer thread has
    // appended a record, a moment after the answer: scraped until it does.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let scraped = loop {
        let scraped = scraped_names(&gateway.metrics().await);
        if scraped.contains("sluice_prediction_log_records_total") || std::time::Instant::now() > deadline {
            break scraped;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };

    let code = ["common/src", "gateway/src", "registry/src"]
        .iter()
        .map(|dir| sources(&repo_root().join(dir)))
        .collect::<String>();
    let unknown: Vec<&String> = used
        .iter()
        .filter(|name| {
            !scraped.contains(*name)
                && !scraped.contains(family(name))
                && !code.contains(&format!("\"{}\"", family(name)))
        })
        .collect();
    assert!(unknown.is_empty(), "not exported by Sluice: {unknown:?}");
    // The dashboard's first rows are live on any gateway with traffic.
    for name in [
        "sluice_requests_total",
        "sluice_request_duration_seconds_bucket",
        "sluice_queue_duration_seconds_bucket",
        "sluice_compute_duration_seconds_bucket",
        "sluice_requests_in_flight",
        "sluice_model_versions_live",
        "sluice_prediction_log_records_total",
    ] {
        assert!(used.contains(name), "{name} is no longer used: update this list");
        assert!(scraped.contains(name), "{name} is not on /metrics: {scraped:?}");
    }
}

#[test]
fn the_name_scanner_finds_names_in_promql() {
    let names = metric_names(
        r#"sum by (model) (rate(sluice_requests_total{code=~"5.."}[5m])) / histogram_quantile(0.99, sluice_batch_size_bucket)"#,
    );
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        vec!["sluice_batch_size_bucket", "sluice_requests_total"]
    );
    assert_eq!(family("sluice_batch_size_bucket"), "sluice_batch_size");
    assert_eq!(family("sluice_requests_total"), "sluice_requests_total");
}

/// A retired version's series leave `/metrics`: after five hot swaps the
/// model's series are those of one version, as many as after the first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retired_versions_leave_the_metrics_page() {
    const RETIRED: &str = "credit_retired";
    let registry = TestRegistry::start().await;
    registry.release(RETIRED, &example_model(MODEL)).await;
    let cache = tempfile::tempdir().unwrap();
    let gateway = TestGateway::follow(&registry, cache.path(), sluice_tests::Options::default()).await;
    let applicant = &credit_applicants(1, 0.0)[0];
    let served = async |version: u64| {
        gateway.wait_versions(RETIRED, &[version]).await;
        let (status, answer) = gateway
            .post_json(&format!("/v2/models/{RETIRED}/infer"), applicant)
            .await;
        assert_eq!(status, 200, "{answer}");
        let metrics = gateway.metrics().await;
        let series: Vec<String> = metrics
            .lines()
            .filter(|line| !line.starts_with('#') && line.contains(&format!("model=\"{RETIRED}\"")))
            .map(str::to_string)
            .collect();
        series
    };
    let after_one = served(1).await;
    assert!(!after_one.is_empty());
    for version in 2..=6 {
        let registered = registry.register(RETIRED, &example_model(MODEL), &[]).await;
        assert_eq!(registered.version, version);
        registry.approve_staging(RETIRED, version).await;
        registry.deploy(RETIRED, &[(version, 100)]).await;
        served(version).await;
    }
    let after_six = served(6).await;
    // The same series, of version 6 instead of 1 (values aside).
    let names = |series: &[String], version: &str| -> BTreeSet<String> {
        series
            .iter()
            .map(|line| {
                line.rsplit_once(' ')
                    .unwrap()
                    .0
                    .replace(&format!("version=\"{version}\""), "version=V")
            })
            .collect()
    };
    assert_eq!(names(&after_six, "6"), names(&after_one, "1"));
    assert!(
        after_six
            .iter()
            .all(|line| !line.contains("version=") || line.contains("version=\"6\"")),
        "{after_six:#?}"
    );
}
