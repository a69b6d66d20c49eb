//! The real `sluice` binary under the floods of issue 20, as a child
//! process whose memory and descriptors are the point: answers amplified by
//! repeated outputs, 8 MiB request ids, labels for ids nobody logged,
//! thousands of idle connections against a low `RLIMIT_NOFILE`. Its RSS
//! and open descriptors stay flat and every model is still served; and
//! what it writes under a umask of 022 is its owner's alone.

use std::process::{Command, Stdio};

use super::common;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// `sluice ARGS` under `umask 022` and `ulimit -n 256`, its JSON log piped.
fn spawn(data_dir: &std::path::Path, args: &[&str]) -> common::Running {
    let command = format!(
        "umask 022; ulimit -n 256; exec {} \"$@\"",
        env!("CARGO_BIN_EXE_sluice")
    );
    let child = Command::new("bash")
        .args(["-c", &command, "sluice"])
        .args(args)
        .args(["--log-format", "json", "--data-dir"])
        .arg(data_dir)
        .env_remove("SLUICE_REGISTRY_URL")
        .env_remove("SLUICE_TOKEN")
        .env_remove("ORT_DYLIB_PATH")
        .env_remove("SLUICE_ORT_LIBRARY")
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting sluice");
    common::Running(child)
}

/// The process's resident memory, in MiB.
fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.split_whitespace().next())
        .and_then(|value| value.parse().ok())
        .unwrap();
    kib / 1024.0
}

fn open_descriptors(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count()
}

fn digits_request(rows: usize) -> Value {
    json!({"inputs": [{"name": "pixels", "shape": [rows, 64], "datatype": "FP32", "data": vec![1.0; rows * 64]}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floods_leave_memory_and_descriptors_flat_and_every_model_served() {
    let dir = tempfile::tempdir().unwrap();
    let mut running = spawn(
        &dir.path().join("data"),
        &[
            "serve",
            "--demo",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--monitor-tick-ms",
            "200",
            "--feedback-grace-ms",
            "600000",
            "--feedback-max-waiting-bytes",
            "1048576",
        ],
    );
    let pid = running.0.id();
    let addresses =
        common::listening_addresses(&mut running.0, &["sluice is listening", "registry is listening"]);
    let base = format!("http://{}", addresses["sluice is listening"]);
    let registry_url = format!("http://{}", addresses["registry is listening"]);
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    common::wait_ready(&client, &base, Duration::from_secs(30)).await;
    // digits' predictions are logged: each keeps its request id.
    cli(
        &registry_url,
        &dir.path().join("data"),
        &["traffic", "set", "digits", "1=100", "--log-sample-rate", "0"],
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let response = client
            .post(format!("{base}/v2/models/digits/infer"))
            .header("x-request-id", "l".repeat(300))
            .json(&digits_request(1))
            .send()
            .await
            .unwrap();
        if response.status() == 400 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "digits' logging never reached the gateway"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (rss_before, descriptors_before) = (rss_mib(pid), open_descriptors(pid));
    let addr: std::net::SocketAddr = addresses["sluice is listening"].parse().unwrap();

    // Twice the same floods: what the first leaves (the allocator keeps
    // what it freed) the second must not add to.
    let first = flood(&client, &base, addr, 0).await;
    let rss_first = rss_mib(pid);
    let second = flood(&client, &base, addr, 1).await;
    let (rss_second, descriptors_after) = (rss_mib(pid), open_descriptors(pid));
    eprintln!(
        "RSS {rss_before:.1} MiB at rest, {rss_first:.1} after a round of floods, {rss_second:.1} after a second; \
         descriptors {descriptors_before} -> {descriptors_after}"
    );
    assert!(
        rss_first < rss_before + 200.0,
        "RSS {rss_before:.1} -> {rss_first:.1} MiB"
    );
    assert!(
        rss_second < rss_first + 30.0,
        "RSS {rss_first:.1} -> {rss_second:.1} MiB"
    );
    assert!(descriptors_after <= 256, "{descriptors_after}");
    drop((first, second));
}

/// One round of every flood, then a check that other models are served.
/// Returns the idle connections it opened, still open.
async fn flood(
    client: &reqwest::Client,
    base: &str,
    addr: std::net::SocketAddr,
    round: usize,
) -> Vec<tokio::net::TcpStream> {
    // Amplification: 20,000 copies of an output, three at once: refused.
    let mut amplified = digits_request(1);
    amplified["outputs"] = Value::Array(vec![json!({"name": "probabilities"}); 20_000]);
    let floods: Vec<_> = (0..3)
        .map(|_| {
            let (client, url, body) = (
                client.clone(),
                format!("{base}/v2/models/digits/infer"),
                amplified.clone(),
            );
            tokio::spawn(async move { client.post(url).json(&body).send().await.unwrap().status() })
        })
        .collect();
    for flood in floods {
        assert_eq!(flood.await.unwrap(), 400);
    }
    // 8 MiB request ids for logged predictions, ten times: refused.
    let mut long_id = digits_request(1);
    long_id["id"] = json!("i".repeat(8 << 20));
    for _ in 0..10 {
        let response = client
            .post(format!("{base}/v2/models/digits/infer"))
            .json(&long_id)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400);
    }
    // Labels for ids nobody logged, forty bodies of 8,192-row labels:
    // stored, and the registry keeps 1 MiB of them waiting at most.
    let labels: Vec<Value> = (0..15)
        .map(|index| json!({"request_id": format!("nobody-{round}-{index}"), "label": vec![1; 8192]}))
        .collect();
    let body = serde_json::to_vec(&labels).unwrap();
    let dropped_before = dropped(client, base).await;
    for _ in 0..40 {
        let response = client
            .post(format!("{base}/v2/models/credit_risk/feedback"))
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while dropped(client, base).await < dropped_before + 500.0 {
        assert!(
            Instant::now() < deadline,
            "the labels never reached the registry's bound"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A thousand idle connections against 256 descriptors.
    let mut idle = Vec::new();
    for _ in 0..1000 {
        if let Ok(stream) = tokio::net::TcpStream::connect(addr).await {
            idle.push(stream);
        }
    }
    // Every model is still served, at once, to a new connection (a pooled
    // one may have been closed to make room: idle connections are).
    let started = Instant::now();
    let credit = std::fs::read(repo_root().join("models/examples/credit_risk.json")).unwrap();
    let fresh = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let status = loop {
        let answer = fresh
            .post(format!("{base}/v2/models/credit_risk/infer"))
            .body(credit.clone())
            .send()
            .await;
        match answer {
            Ok(response) if response.status() == 200 => break 200,
            // Refused while the connections asked to make room close.
            Ok(response) if response.status() == 503 => {}
            Err(err) if err.is_connect() || err.is_request() => {}
            other => panic!("{other:?}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "not served within 2 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status, 200);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    idle
}

/// Labels the registry let go of while they waited for their prediction.
async fn dropped(client: &reqwest::Client, base: &str) -> f64 {
    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    metrics
        .lines()
        .find(|line| line.starts_with("sluice_feedback_unmatched{") && line.contains("kind=\"dropped\""))
        .and_then(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .unwrap_or(0.0)
}

/// `sluice ARGS` against the embedded registry at `registry_url`, with the
/// admin token it created under `data_dir`; panics unless it succeeds.
fn cli(registry_url: &str, data_dir: &std::path::Path, args: &[&str]) {
    let output = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .args(["--registry-url", registry_url, "--data-dir"])
        .arg(data_dir)
        .env_remove("SLUICE_TOKEN")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn repo_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_sluice_writes_is_its_owners_alone_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let actions = dir.path().join("actions.toml");
    std::fs::write(&actions, "[commands.retrain]\nprogram = \"true\"\n").unwrap();
    let mut running = spawn(
        &data_dir,
        &[
            "serve",
            "--demo",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--segment-max-age-ms",
            "100",
            "--actions-file",
            actions.to_str().unwrap(),
        ],
    );
    let addresses =
        common::listening_addresses(&mut running.0, &["sluice is listening", "registry is listening"]);
    let base = format!("http://{}", addresses["sluice is listening"]);
    let registry_url = format!("http://{}", addresses["registry is listening"]);
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    common::wait_ready(&client, &base, Duration::from_secs(30)).await;
    let cli = |args: &[&str]| cli(&registry_url, &data_dir, args);
    // Every kind of file: predictions, feedback, a trigger run's log.
    cli(&["traffic", "set", "credit_risk", "1=100", "--log-sample-rate", "1"]);
    let policy = dir.path().join("policy.json");
    std::fs::write(&policy, r#"{"action": {"command": {"name": "retrain"}}}"#).unwrap();
    cli(&["triggers", "set", "credit_risk", policy.to_str().unwrap()]);
    cli(&["triggers", "fire", "credit_risk"]);
    let credit = std::fs::read(repo_root().join("models/examples/credit_risk.json")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !data_dir.join("predictions").exists() || !data_dir.join("triggers").exists() {
        assert!(Instant::now() < deadline, "nothing was logged");
        let response = client
            .post(format!("{base}/v2/models/credit_risk/infer"))
            .header("x-request-id", "applicant-1")
            .body(credit.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let labelled = client
        .post(format!("{base}/v2/models/credit_risk/feedback"))
        .json(&json!({"request_id": "applicant-1", "label": 0}))
        .send()
        .await
        .unwrap();
    assert_eq!(labelled.status(), 200);
    let status = Command::new("kill")
        .args(["-TERM", &running.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exited = running.0.wait().unwrap();
    assert!(exited.success(), "{exited}");

    let mut seen = Vec::new();
    let mut stack = vec![data_dir.clone()];
    while let Some(path) = stack.pop() {
        let mode = std::fs::symlink_metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "{} is {:o}", path.display(), mode & 0o777);
        seen.push(path.strip_prefix(&data_dir).unwrap().display().to_string());
        if path.is_dir() {
            stack.extend(
                std::fs::read_dir(&path)
                    .unwrap()
                    .map(|entry| entry.unwrap().path()),
            );
        }
    }
    for kind in [
        "registry.db",
        "admin.token",
        "artifacts",
        "cache",
        "predictions",
        "feedback",
        "triggers",
    ] {
        assert!(
            seen.iter().any(|path| path.starts_with(kind)),
            "no {kind} in {seen:?}"
        );
    }
    assert!(seen.len() > 20, "{seen:?}");
}
