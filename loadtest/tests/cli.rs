//! The `sluice-loadtest` binary against a real Sluice: bodies from metadata,
//! the split by version, the JSON report, and the exit codes CI relies on.

use std::process::Command;

use serde_json::Value;
use sluice_tests::{TestGateway, TestRepository, example_model, repo_root};

/// One generator at a time: they measure time, and spinning generators in
/// parallel on two cores would skew each other.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn loadtest(args: Vec<String>) -> (i32, String, String) {
    loadtest_timed(args).await.0
}

/// `loadtest`, and how long the generator ran (not counting its turn's wait).
async fn loadtest_timed(args: Vec<String>) -> ((i32, String, String), std::time::Duration) {
    let _turn = ONE_AT_A_TIME.lock().await;
    let started = std::time::Instant::now();
    let outcome = tokio::task::spawn_blocking(move || {
        let output = Command::new(env!("CARGO_BIN_EXE_sluice-loadtest"))
            .args(&args)
            .output()
            .unwrap();
        (
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    })
    .await
    .unwrap();
    (outcome, started.elapsed())
}

fn args(url: &str, extra: &[&str]) -> Vec<String> {
    let mut all = vec![
        url.to_string(),
        "--from-metadata".into(),
        "--connections".into(),
        "2".into(),
        "--duration".into(),
        "1s".into(),
        "--split-by-header".into(),
        "x-model-version".into(),
    ];
    all.extend(extra.iter().map(|s| s.to_string()));
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn against_sluice_with_thresholds_and_exit_codes() {
    let repository = TestRepository::new().with_model("digits", 1, &example_model("digits"));
    let gateway = TestGateway::start(&repository).await;
    let url = gateway.url("/v2/models/digits/infer");

    let (code, stdout, stderr) = loadtest(args(
        &url,
        &["--json", "--slo", "p99<5s", "--slo", "version=1:error_rate<1%"],
    ))
    .await;
    assert_eq!(code, 0, "{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["schema"], "sluice-loadtest/v1");
    assert_eq!(report["mode"], "closed");
    assert_eq!(report["corrected"], false);
    assert_eq!(report["verdict"], "pass");
    assert!(report["total"]["ok"].as_u64().unwrap() > 0);
    assert_eq!(report["total"]["error_rate"], 0.0);
    assert!(report["by_version"]["1"]["requests"].as_u64().unwrap() > 0);
    assert_eq!(report["targets"][0]["bodies"], 8);

    // A threshold no server meets fails with its own code.
    let (code, stdout, _) = loadtest(args(&url, &["--slo", "p99<1us"])).await;
    assert_eq!(code, 3, "{stdout}");
    assert!(stdout.contains("FAIL  p99<1us"), "{stdout}");

    // A threshold on a version that never answered cannot pass: invalid run.
    let (code, stdout, _) = loadtest(args(&url, &["--slo", "version=9:p99<1s"])).await;
    assert_eq!(code, 4, "{stdout}");
    assert!(stdout.contains("no samples"), "{stdout}");

    // Binary bodies, open model, HDR spectrum and plots.
    let dir = tempfile::tempdir().unwrap();
    let hdr = dir.path().join("spectrum.hgrm");
    let plots = dir.path().join("plots");
    let (code, stdout, stderr) = loadtest(args(
        &url,
        &[
            "--binary",
            "--rate",
            "200",
            // One spinning thread leaves the other core to the server.
            "--threads",
            "1",
            "--hdr-out",
            hdr.to_str().unwrap(),
            "--plot-dir",
            plots.to_str().unwrap(),
        ],
    ))
    .await;
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("open model, latency corrected"), "{stdout}");
    // No --slo: a valid run that nothing judged says so, and passes.
    assert!(
        stdout.contains("verdict: none: no thresholds were given"),
        "{stdout}"
    );
    let spectrum = std::fs::read_to_string(&hdr).unwrap();
    assert!(
        spectrum.contains("1/(1-Percentile)") && spectrum.contains("#[Max"),
        "{spectrum}"
    );
    for plot in ["latency_over_time.svg", "percentiles.svg"] {
        let svg = std::fs::read_to_string(plots.join(plot)).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("<polyline"), "{plot}");
    }

    // An output that cannot be written is refused before the run, in
    // much less than its 60 s.
    let missing = dir.path().join("no/such/folder/spectrum.hgrm");
    let mut long_run = args(&url, &["--hdr-out", missing.to_str().unwrap()]);
    let duration = long_run.iter().position(|arg| arg == "--duration").unwrap();
    long_run[duration + 1] = "60s".into();
    let ((code, stdout, stderr), took) = loadtest_timed(long_run).await;
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stderr.contains("--hdr-out") && stderr.contains("spectrum.hgrm"),
        "{stderr}"
    );
    assert!(
        took < std::time::Duration::from_secs(30),
        "refused only after the run"
    );

    // Bad usage is a clean error, not a panic.
    let (code, _, stderr) = loadtest(vec![
        url.clone(),
        "--slo".into(),
        "p99 under 5".into(),
        "--from-metadata".into(),
    ])
    .await;
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("expected [version=V:]METRIC OP VALUE"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrency_sweep_finds_a_knee() {
    let repository = TestRepository::new().with_model("credit_risk", 1, &example_model("credit_risk"));
    let gateway = TestGateway::start(&repository).await;
    let url = gateway.url("/v2/models/credit_risk/infer");
    let dir = tempfile::tempdir().unwrap();
    let (code, stdout, stderr) = loadtest(vec![
        url,
        "--from-metadata".into(),
        "--sweep".into(),
        "concurrency=1..4".into(),
        "--window".into(),
        "300ms".into(),
        "--max-windows".into(),
        "4".into(),
        "--tolerance".into(),
        "50".into(),
        "--json".into(),
        "--plot-dir".into(),
        dir.path().to_str().unwrap().into(),
    ])
    .await;
    assert_eq!(code, 0, "{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    let levels = report["levels"].as_array().unwrap();
    assert_eq!(
        levels
            .iter()
            .map(|l| l["level"].as_f64().unwrap())
            .collect::<Vec<_>>(),
        [1.0, 2.0, 4.0]
    );
    assert!(levels.iter().all(|l| l["throughput"].as_f64().unwrap() > 0.0));
    // The knee is the stable level of best throughput per millisecond of p99.
    let power = |l: &Value| l["throughput"].as_f64().unwrap() / l["p99_ms"].as_f64().unwrap();
    let best = levels
        .iter()
        .filter(|l| l["stable"] == true)
        .max_by(|a, b| power(a).total_cmp(&power(b)));
    assert_eq!(
        report["knee_opt"],
        best.map_or(Value::Null, |l| l["level"].clone())
    );
    assert!(
        std::fs::read_to_string(dir.path().join("sweep.svg"))
            .unwrap()
            .starts_with("<svg")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_rate_under_a_threshold_doubles_then_bisects() {
    let repository = TestRepository::new().with_model("credit_risk", 1, &example_model("credit_risk"));
    let gateway = TestGateway::start(&repository).await;
    let url = gateway.url("/v2/models/credit_risk/infer");
    let (code, stdout, stderr) = loadtest(vec![
        url,
        "--from-metadata".into(),
        "--max-rate-under".into(),
        "p99<1s".into(),
        "--start-rate".into(),
        "200".into(),
        // Long enough (600 sends a probe) that the few sends a busy 2-core
        // CI machine starts late stay under the 1% a probe tolerates: at
        // 300 ms and 600 ms one or two late sends failed the first probe,
        // and at 1500 ms (300 sends) four did once.
        "--duration".into(),
        "3000ms".into(),
        "--connections".into(),
        "8".into(),
        "--threads".into(),
        "1".into(),
        "--json".into(),
    ])
    .await;
    assert_eq!(code, 0, "{stdout}{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    let probes = report["probes"].as_array().unwrap();
    let max_rate = report["max_rate_opt"].as_f64().unwrap();
    // Doubling from 200 until a probe fails, then five bisections.
    assert_eq!(probes[0]["rate"], 200.0);
    assert_eq!(probes[1]["rate"], 400.0);
    let first_failure = probes.iter().position(|p| p["passed"] == false).unwrap();
    assert_eq!(probes.len(), first_failure + 1 + 5, "{probes:?}");
    assert!(max_rate >= 200.0);
    // The answer is a rate that passed, and no passing probe went higher.
    assert!(
        probes
            .iter()
            .any(|p| p["rate"].as_f64() == Some(max_rate) && p["passed"] == true)
    );
    assert!(
        probes
            .iter()
            .filter(|p| p["passed"] == true)
            .all(|p| p["rate"].as_f64().unwrap() <= max_rate)
    );
}

/// `--grpc` and `--h2c` against Sluice's one port: every request answered,
/// split by version from gRPC metadata; both requests in flight as streams
/// of one connection; a failing call counted by its gRPC code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_and_h2c_with_streams_on_shared_connections() {
    let repository = TestRepository::new().with_model("digits", 1, &example_model("digits"));
    let gateway = TestGateway::start(&repository).await;
    let url = gateway.url("/v2/models/digits/infer");
    for (extra, connections) in [
        (&["--grpc"][..], 2),
        (&["--grpc", "--h2-connections", "1"][..], 1),
        (&["--h2c", "--binary", "--h2-connections", "1"][..], 1),
    ] {
        let mut run = extra.to_vec();
        run.extend(["--json", "--threads", "1"]);
        let (code, stdout, stderr) = loadtest(args(&url, &run)).await;
        assert_eq!(code, 0, "{extra:?}: {stderr}");
        let report: Value = serde_json::from_str(&stdout).unwrap();
        // The slots share the one connection they were given.
        assert_eq!(
            report["generator"]["connections_opened"], connections,
            "{extra:?}"
        );
        assert!(report["total"]["ok"].as_u64().unwrap() > 0, "{extra:?}: {stdout}");
        assert_eq!(report["total"]["error_rate"], 0.0, "{extra:?}: {stdout}");
        assert!(
            report["by_version"]["1"]["requests"].as_u64().unwrap() > 0,
            "{extra:?}"
        );
    }
    // A pinned version that does not exist: every call fails as NOT_FOUND.
    let missing = gateway.url("/v2/models/digits/versions/9/infer");
    let body = repo_root().join("models/examples/digits.json");
    let (code, stdout, stderr) = loadtest(vec![
        missing,
        "--grpc".into(),
        "--body".into(),
        body.display().to_string(),
        "--connections".into(),
        "2".into(),
        "--duration".into(),
        "500ms".into(),
        "--json".into(),
    ])
    .await;
    assert_eq!(code, 0, "{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert!(
        report["total"]["errors"]["grpc NOT_FOUND"].as_u64().unwrap() > 0,
        "{stdout}"
    );
    assert_eq!(report["total"]["ok"], 0, "{stdout}");
}
