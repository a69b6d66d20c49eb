//! The real `sluice` binary: `serve --demo` registers the example models in
//! its embedded registry, comes up ready, answers a prediction, shows the
//! release through the CLI, and exits cleanly on SIGTERM.

use crate::common;
#[path = "demo/limits.rs"]
mod limits;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[tokio::test]
async fn demo_serves_the_example_models_and_stops_on_sigterm() {
    let data_dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args([
            "serve",
            "--demo",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
            "--data-dir",
        ])
        .arg(data_dir.path())
        .env_remove("SLUICE_REGISTRY_URL")
        .env_remove("SLUICE_TOKEN")
        .env_remove("ORT_DYLIB_PATH")
        .env_remove("SLUICE_ORT_LIBRARY")
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting sluice");

    // The log lines that say where they listen give the ephemeral ports.
    let addresses =
        common::listening_addresses(&mut child, &["sluice is listening", "registry is listening"]);
    let addr = addresses["sluice is listening"].clone();
    let registry_url = format!("http://{}", addresses["registry is listening"]);
    let base = format!("http://{addr}");
    let client = reqwest::Client::builder().no_proxy().build().unwrap();

    common::wait_ready(&client, &base, Duration::from_secs(30)).await;

    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    for model in ["credit_risk", "digits"] {
        let body = std::fs::read(root.join(format!("models/examples/{model}.json"))).unwrap();
        let response = client
            .post(format!("{base}/v2/models/{model}/infer"))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let answer: serde_json::Value = response.json().await.unwrap();
        assert_eq!(answer["model_name"], model);
        assert_eq!(answer["outputs"][0]["name"], "label");
    }

    // The CLI finds the admin token the embedded registry created, and shows
    // the demo's release: approved into staging, taking all traffic.
    let cli = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(args)
            .args(["--registry-url", &registry_url, "--data-dir"])
            .arg(data_dir.path())
            .env_remove("SLUICE_TOKEN")
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    };
    let versions = cli(&["versions", "list", "credit_risk"]);
    assert!(versions.contains("staging"), "{versions}");
    assert!(versions.contains("train_auc=0.778"), "{versions}");
    let traffic = cli(&["traffic", "show", "credit_risk"]);
    assert!(traffic.contains("100%"), "{traffic}");

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        assert!(
            Instant::now() < deadline,
            "sluice did not stop within 10 s of SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(exit.success(), "sluice exited with {exit}");
}
