//! tritonclient.grpc and KServe's InferenceGRPCClient against the gateway,
//! plain and over TLS, each RPC they call checked by `tests/grpc/clients.py`
//! (outputs against ONNX Runtime's, and against the same server's HTTP).

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use sluice_common::tls::TlsFiles;
use sluice_gateway::Server;
use sluice_gateway::config::ServeConfig;
use sluice_tests::pki::TestCa;
use sluice_tests::{TempDir, TestGateway, TestRepository, example_model, ort_library, repo_root};

/// The Python with the clients (`scripts/test.sh` makes it), or `None`
/// where it is missing and the run does not require it.
fn clients_python() -> Option<PathBuf> {
    let python = std::env::var_os("SLUICE_GRPC_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                .join(".cache/sluice/grpc-venv/bin/python")
        });
    if python.exists() {
        return Some(python);
    }
    assert!(
        std::env::var("SLUICE_REQUIRE_GRPC_CLIENTS").as_deref() != Ok("1"),
        "{} is missing: scripts/test.sh installs tests/grpc/requirements.txt there",
        python.display()
    );
    eprintln!(
        "SKIPPED: no gRPC clients' Python at {} (scripts/test.sh makes it)",
        python.display()
    );
    None
}

fn repository() -> TestRepository {
    TestRepository::new()
        .with_model("credit_risk", 1, &example_model("credit_risk"))
        .with_model("digits", 1, &example_model("digits"))
}

/// Runs `clients.py` as `client` against `address`; fails with its output.
async fn run_clients(python: &PathBuf, client: &str, address: &str, tls_ca_opt: Option<&PathBuf>) {
    let mut command = Command::new(python);
    command
        .arg(repo_root().join("tests/grpc/clients.py"))
        .args(["--client", client, "--address", address, "--repository"])
        .arg(repo_root().join("models/repository"));
    if let Some(ca) = tls_ca_opt {
        command.arg("--tls-ca").arg(ca);
    }
    let output = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{client} against {address} failed:\n{stderr}"
    );
    eprintln!(
        "{client} against {address}: {}",
        stderr.lines().last().unwrap_or_default()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tritonclient_and_kserve_call_every_rpc_on_the_http_port() {
    let Some(python) = clients_python() else {
        return;
    };
    let repository = repository();
    let gateway = TestGateway::start(&repository).await;
    let address = gateway.server.addr.to_string();
    run_clients(&python, "tritonclient", &address, None).await;
    run_clients(&python, "kserve", &address, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clients_speak_grpc_over_tls_where_https_is_served() {
    let Some(python) = clients_python() else {
        return;
    };
    let pki = TempDir::new().unwrap();
    let ca = TestCa::new("gateway CA");
    let served = ca.issue(pki.path(), "gateway", &["localhost", "127.0.0.1"]);
    let ca_file = ca.write(pki.path(), "ca.pem");
    let repository = repository();
    let mut config = ServeConfig::for_repository(repository.path());
    config.settings.poll_interval = Duration::from_millis(50);
    config.settings.engines.ort_library_opt = Some(ort_library());
    config.settings.tls_opt = Some(TlsFiles {
        cert: served.cert.clone(),
        key: served.key.clone(),
        client_ca_opt: None,
        reload_interval: Duration::from_secs(60),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = Server::start(config, listener).await.unwrap();
    // HTTP/1.1 still answers on the port that offers h2 by ALPN.
    let https = ca.client();
    let ready = format!("https://localhost:{}/v2/health/ready", server.addr.port());
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let answer = https.get(&ready).send().await;
        if answer.is_ok_and(|response| response.status() == 200) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never ready over HTTPS");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let address = format!("localhost:{}", server.addr.port());
    run_clients(&python, "tritonclient", &address, Some(&ca_file)).await;
    run_clients(&python, "kserve", &address, Some(&ca_file)).await;
    server.shutdown().await.unwrap();
}
