//! What a request does besides answering, driven by gRPC traffic alone: a
//! weighted split sticky by a metadata key, a shadow compared with the
//! primary, and every prediction logged under the caller's `x-request-id`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::Value;
use sluice_registry_client::types::{SetDeployment, Shadow, TrafficSpec};
use sluice_tests::{Options, TestGateway, TestRegistry, example_model};
use tonic::Request;

use super::{client, credit_request};

/// A name of its own: the test reads the process's metrics.
const MODEL: &str = "credit_grpc_sides";

fn files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        match path.is_dir() {
            true => found.extend(files(&path)),
            false => found.push(path),
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_a_shadow_and_the_log_work_on_grpc_traffic() {
    let registry = TestRegistry::start().await;
    registry.release(MODEL, &example_model("credit_risk")).await;
    for canary in ["credit_risk_scaled", "credit_risk_scaled"] {
        let version = registry.register(MODEL, &example_model(canary), &[]).await;
        registry.approve_staging(MODEL, version.version).await;
    }
    // 1 and 2 split half and half, sticky by x-user-id; 3 shadows all.
    let mut body = SetDeployment::new(TrafficSpec::weighted(&[(1, 50), (2, 50)]));
    body.sticky_header = Some("x-user-id".into());
    body.shadow = Some(Shadow {
        version: 3,
        sample_rate: 1.0,
    });
    body.log_sample_rate = Some(1.0);
    registry
        .client("dora")
        .set_deployment(MODEL, &body)
        .await
        .unwrap();
    let cache = tempfile::tempdir().unwrap();
    let options = Options {
        segment_max_age: Duration::from_millis(100),
        ..Options::default()
    };
    let gateway = TestGateway::follow(&registry, cache.path(), options).await;
    gateway.wait_versions(MODEL, &[1, 2]).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let route = gateway.server.routes.snapshot().routes[MODEL].clone();
        if route.shadow.is_some() && route.log_sample_rate.is_some() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the shadow and the log never went live"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut grpc = client(gateway.server.addr).await;
    let mut by_user: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut by_version: BTreeMap<String, u32> = BTreeMap::new();
    let mut sent = BTreeSet::new();
    for index in 0..60 {
        let user = format!("user-{}", index % 12);
        let id = format!("grpc-{index}");
        let mut request = Request::new(credit_request(MODEL, 1));
        request.metadata_mut().insert("x-user-id", user.parse().unwrap());
        request.metadata_mut().insert("x-request-id", id.parse().unwrap());
        let answer = grpc.model_infer(request).await.unwrap();
        let version = answer
            .metadata()
            .get("x-model-version")
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        assert_eq!(answer.metadata().get("x-request-id").unwrap(), id.as_str());
        assert_eq!(answer.get_ref().model_version, version);
        by_user.entry(user).or_default().insert(version.clone());
        *by_version.entry(version).or_default() += 1;
        sent.insert(id);
    }
    // A stream's requests are logged under their own ids, never under the
    // call's x-request-id, which would name them all.
    let streamed: Vec<_> = (0..3)
        .map(|index| {
            let mut message = credit_request(MODEL, 1);
            message.id = format!("streamed-{index}");
            message
        })
        .collect();
    let mut call = Request::new(futures_util::stream::iter(streamed));
    call.metadata_mut()
        .insert("x-request-id", "the-call".parse().unwrap());
    let mut answers = grpc.model_stream_infer(call).await.unwrap().into_inner();
    for index in 0..3 {
        let answer = answers.message().await.unwrap().unwrap();
        assert_eq!(answer.error_message, "");
        assert_eq!(answer.infer_response.unwrap().id, format!("streamed-{index}"));
        sent.insert(format!("streamed-{index}"));
    }
    assert!(
        by_user.values().all(|versions| versions.len() == 1),
        "a user changed version: {by_user:?}"
    );
    assert!(
        by_version.len() == 2 && !by_version.contains_key("3"),
        "{by_version:?}"
    );

    // The shadow ran every request and compared it with the primary.
    let deadline = Instant::now() + Duration::from_secs(20);
    let compared = |metrics: &str| -> f64 {
        let prefix = format!("sluice_shadow_requests_total{{model=\"{MODEL}\",version=\"3\"}} ");
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(prefix.as_str()))
            .map_or(0.0, |value| value.parse().unwrap())
    };
    while compared(&gateway.metrics().await) < 63.0 {
        assert!(Instant::now() < deadline, "{}", gateway.metrics().await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Every prediction is in the log under its id, by the version that answered.
    gateway.server.shutdown().await.unwrap();
    let root = registry.logs().predictions.dir().unwrap().to_path_buf();
    let mut logged: BTreeMap<String, String> = BTreeMap::new();
    for segment in files(&root) {
        let version = segment
            .components()
            .find_map(|part| {
                part.as_os_str()
                    .to_str()?
                    .strip_prefix("version=")
                    .map(str::to_string)
            })
            .unwrap();
        for line in std::fs::read_to_string(&segment).unwrap().lines() {
            let record: Value = serde_json::from_str(line).unwrap();
            logged.insert(
                record["request_id"].as_str().unwrap().to_string(),
                version.clone(),
            );
        }
    }
    assert_eq!(logged.keys().cloned().collect::<BTreeSet<_>>(), sent);
}
