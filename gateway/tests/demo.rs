//! The real `sluice` binary: `serve --demo` comes up ready on its own,
//! answers a prediction, and exits cleanly on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[tokio::test]
async fn demo_serves_the_example_models_and_stops_on_sigterm() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args([
            "serve",
            "--demo",
            "--listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
        ])
        .env_remove("ORT_DYLIB_PATH")
        .env_remove("SLUICE_ORT_LIBRARY")
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting sluice");

    // The log line that says where it listens gives the ephemeral port.
    let stderr = child.stderr.take().unwrap();
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let Ok(entry) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            if entry["fields"]["message"] == "sluice is listening" {
                let _ = addr_tx.send(entry["fields"]["addr"].as_str().unwrap().to_string());
            }
        }
    });
    let addr = addr_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("sluice never said where it listens");
    let base = format!("http://{addr}");
    let client = reqwest::Client::builder().no_proxy().build().unwrap();

    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = client.get(format!("{base}/v2/health/ready")).send().await;
        if ready.is_ok_and(|response| response.status() == 200) {
            break;
        }
        assert!(Instant::now() < deadline, "demo not ready in 30 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

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
