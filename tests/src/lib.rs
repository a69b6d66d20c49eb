//! Harness for Sluice's end-to-end tests: a real gateway on an ephemeral
//! port, fed by a model repository in a temporary directory or by a real
//! registry ([`registry`]), and an HTTP client.
//!
//! ```text
//! let repo = TestRepository::new().with_model("credit_risk", 1, &example_model("credit_risk"));
//! let gateway = TestGateway::start(&repo).await;
//! let response = gateway.post_json("/v2/models/credit_risk/infer", &body).await;
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use sluice_common::clock::Clock;
use sluice_gateway::config::ServerLimits;
use sluice_gateway::guard::GuardLimits;
use sluice_gateway::model::LoadedModel;
use sluice_gateway::{ServeConfig, Server};
use sluice_registry_client::RegistryClient;

pub mod pki;
pub mod postgres;
pub mod registry;
pub use registry::{ACTORS, RegistryOptions, TestRegistry};

pub use tempfile::TempDir;

/// The repository root, where `models/` lives.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Bytes of a committed example model, by name.
pub fn example_model(name: &str) -> Vec<u8> {
    let root = repo_root().join("models");
    let path = ["repository", "ort-only", "test"]
        .iter()
        .map(|kind| root.join(kind).join(name).join("1/model.onnx"))
        .find(|path| path.exists())
        .unwrap_or_else(|| panic!("no example model named {name} under models/"));
    std::fs::read(path).expect("reading an example model")
}

/// The credit-risk model's eight features, in the training data's column order.
pub const CREDIT_FEATURES: [&str; 8] = [
    "age",
    "income",
    "debt_ratio",
    "credit_lines",
    "late_payments_90d",
    "utilization",
    "months_employed",
    "loan_amount",
];

/// One V2 request per applicant of the credit training data (the real input
/// space), the first `rows` of them, with `age_shift` years added to each age.
pub fn credit_applicants(rows: usize, age_shift: f64) -> Vec<Value> {
    let text = std::fs::read_to_string(repo_root().join("models/data/credit_risk_train.csv")).unwrap();
    text.lines()
        .skip(1)
        .take(rows)
        .map(|line| {
            let values: Vec<f64> = line.split(',').map(|value| value.parse().unwrap()).collect();
            let inputs: Vec<Value> = CREDIT_FEATURES
                .iter()
                .zip(&values)
                .map(|(name, value)| {
                    let value = if *name == "age" { value + age_shift } else { *value };
                    serde_json::json!({"name": name, "datatype": "FP32", "shape": [1, 1], "data": [value]})
                })
                .collect();
            serde_json::json!({ "inputs": inputs })
        })
        .collect()
}

/// The credit model's committed reference profile (`models/cards.py`), as JSON.
pub fn credit_profile() -> Value {
    let path = repo_root().join("models/repository/credit_risk/1/profile.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("the committed profile"))
        .expect("a JSON profile")
}

/// A committed reference fixture: a request and ONNX Runtime's outputs for it.
pub fn fixture(name: &str) -> Value {
    let path = repo_root().join("models/fixtures").join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
    serde_json::from_str(&text).expect("fixtures are JSON")
}

/// The ONNX Runtime library the tests load. `scripts/test.sh` fetches it and
/// sets `ORT_DYLIB_PATH`; ort tests must not silently skip, so its absence fails.
pub fn ort_library() -> PathBuf {
    if let Some(path) = std::env::var_os("ORT_DYLIB_PATH") {
        return PathBuf::from(path);
    }
    let local = repo_root().join(".ort");
    std::fs::read_dir(&local)
        .ok()
        .and_then(|entries| {
            entries
                .flatten()
                .map(|entry| entry.path())
                .find(|path| path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("libonnxruntime.so")))
        })
        .expect("ONNX Runtime library not found: run the tests with scripts/test.sh (it fetches it), or set ORT_DYLIB_PATH")
}

/// A model repository in a temporary directory.
pub struct TestRepository {
    dir: TempDir,
}

impl Default for TestRepository {
    fn default() -> Self {
        TestRepository::new()
    }
}

impl TestRepository {
    pub fn new() -> TestRepository {
        TestRepository {
            dir: tempfile::tempdir().expect("creating a temporary directory"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn with_model(self, name: &str, version: u64, artifact: &[u8]) -> TestRepository {
        self.add_version(name, version, artifact);
        self
    }

    pub fn with_config(self, name: &str, toml: &str) -> TestRepository {
        let dir = self.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("config.toml"), toml).unwrap();
        self
    }

    /// Writes aside and renames, as a deployment tool should, so the poller
    /// never sees half a file.
    pub fn add_version(&self, name: &str, version: u64, artifact: &[u8]) {
        let dir = self.path().join(name).join(version.to_string());
        std::fs::create_dir_all(&dir).unwrap();
        let partial = dir.join(".model.onnx.partial");
        std::fs::write(&partial, artifact).unwrap();
        std::fs::rename(&partial, dir.join("model.onnx")).unwrap();
    }

    pub fn remove_version(&self, name: &str, version: u64) {
        std::fs::remove_dir_all(self.path().join(name).join(version.to_string())).unwrap();
    }
}

/// Gateway settings a test may change before starting.
#[derive(Clone)]
pub struct Options {
    pub with_ort: bool,
    pub poll_interval: Duration,
    pub max_request_bytes: usize,
    pub compute_queue: usize,
    pub compute_threads: usize,
    /// How often statistics go to the registry: fast, so rollouts run in test time.
    pub stats_interval: Duration,
    pub guard: GuardLimits,
    /// How old a prediction log segment may grow before it is written.
    pub segment_max_age: Duration,
    /// Admission, timeouts and shutdown; `sluice serve`'s defaults when `None`.
    pub limits_opt: Option<ServerLimits>,
    /// `--predict-tokens-file`.
    pub predict_tokens_opt: Option<PathBuf>,
    /// `--inline-below-us`: a model whose warm run beats it runs on the reactor.
    pub inline_below: Duration,
    /// What statistics windows and log timestamps read: a test's manual
    /// clock (the registry's too), or the system's.
    pub clock: Clock,
    /// `--strict-readiness`: ready only once every repository model serves.
    pub strict_readiness: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            with_ort: true,
            poll_interval: Duration::from_millis(50),
            max_request_bytes: 64 * 1024 * 1024,
            compute_queue: 1024,
            compute_threads: 2,
            stats_interval: Duration::from_millis(50),
            guard: GuardLimits::default(),
            segment_max_age: Duration::from_secs(60),
            limits_opt: None,
            predict_tokens_opt: None,
            inline_below: sluice_gateway::backend::EngineOptions::default().inline_below,
            clock: Clock::System,
            strict_readiness: true,
        }
    }
}

/// A running gateway on 127.0.0.1 and an ephemeral port.
pub struct TestGateway {
    pub server: Server,
    pub base: String,
    pub client: reqwest::Client,
}

impl TestGateway {
    pub async fn start(repository: &TestRepository) -> TestGateway {
        TestGateway::start_with(repository, Options::default()).await
    }

    pub async fn start_with(repository: &TestRepository, options: Options) -> TestGateway {
        let gateway = TestGateway::launch(repository, options).await;
        gateway.wait_ready().await;
        gateway
    }

    /// Starts the gateway without waiting for it to be ready, for tests of
    /// readiness itself.
    pub async fn launch(repository: &TestRepository, options: Options) -> TestGateway {
        TestGateway::launch_config(ServeConfig::for_repository(repository.path()), options).await
    }

    /// A gateway that follows `registry` (as the gateway `gw`), caching
    /// artifacts under `cache_dir`; waits until it is ready.
    pub async fn follow(registry: &TestRegistry, cache_dir: &Path, options: Options) -> TestGateway {
        let client = RegistryClient::new(&registry.url(), Some(registry.token("gw")));
        let mut config = ServeConfig::for_registry(client, cache_dir);
        // As in `sluice serve`: the registry joins what its gateways log.
        config.settings.logs_opt = Some(registry.logs());
        let gateway = TestGateway::launch_config(config, options).await;
        gateway.wait_ready().await;
        gateway
    }

    /// A gateway following `registry` that writes prediction log segments
    /// every 100 ms (so the registry sees them in test time), once `model`
    /// serves `versions`.
    pub async fn follow_logging(
        registry: &TestRegistry,
        cache_dir: &Path,
        model: &str,
        versions: &[u64],
    ) -> TestGateway {
        let options = Options {
            segment_max_age: Duration::from_millis(100),
            ..Options::default()
        };
        let gateway = TestGateway::follow(registry, cache_dir, options).await;
        gateway.wait_versions(model, versions).await;
        gateway
    }

    /// Posts a JSON request to `model` under `request_id` (`x-request-id`);
    /// the answer, which must be a 200.
    pub async fn predict_as(&self, model: &str, request_id: &str, body: &Value) -> Value {
        let response = self
            .client
            .post(self.url(&format!("/v2/models/{model}/infer")))
            .header("x-request-id", request_id)
            .json(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{model} as {request_id}");
        response.json().await.unwrap()
    }

    /// A gateway following the registry at `url`, not waited for.
    pub async fn launch_following(url: &str, token: &str, cache_dir: &Path, options: Options) -> TestGateway {
        let client = RegistryClient::new(url, Some(token.to_string()));
        TestGateway::launch_config(ServeConfig::for_registry(client, cache_dir), options).await
    }

    async fn launch_config(mut config: ServeConfig, options: Options) -> TestGateway {
        config.settings.poll_interval = options.poll_interval;
        config.settings.max_request_bytes = options.max_request_bytes;
        config.settings.compute_queue = options.compute_queue;
        config.settings.compute_threads = options.compute_threads;
        config.settings.limits = options
            .limits_opt
            .unwrap_or_else(|| ServerLimits::for_pool(options.compute_threads, options.compute_queue));
        config.settings.stats_interval = options.stats_interval;
        config.settings.guard_limits = options.guard;
        config.settings.segment_limits.max_age = options.segment_max_age;
        config.settings.engines.ort_library_opt = options.with_ort.then(ort_library);
        config.settings.predict_tokens_opt = options.predict_tokens_opt;
        config.settings.engines.inline_below = options.inline_below;
        config.settings.clock = options.clock;
        config.settings.strict_readiness = options.strict_readiness;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding an ephemeral port");
        let server = Server::start(config, listener)
            .await
            .expect("starting the gateway");
        TestGateway {
            base: format!("http://{}", server.addr),
            server,
            client: reqwest::Client::builder().no_proxy().build().unwrap(),
        }
    }

    /// The version an unpinned request to `model` gets right now.
    pub fn serving(&self, model: &str) -> Arc<LoadedModel> {
        self.server
            .routes
            .snapshot()
            .resolve(model, None)
            .unwrap_or_else(|err| panic!("{model} is not served: {err}"))
            .clone()
    }

    /// Polls `/v2/health/ready` until 200, with a deadline instead of a sleep.
    pub async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(response) = self.client.get(self.url("/v2/health/ready")).send().await
                && response.status() == 200
            {
                return;
            }
            assert!(Instant::now() < deadline, "gateway not ready within 30 s");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until `model` serves exactly `versions`.
    pub async fn wait_versions(&self, model: &str, versions: &[u64]) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let live: Vec<u64> = self
                .server
                .routes
                .snapshot()
                .live_versions()
                .into_iter()
                .filter(|(name, _)| name == model)
                .map(|(_, version)| version)
                .collect();
            if live == versions {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{model} serves {live:?}, expected {versions:?}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Waits until the version `model` serves has compiled its data contract.
    pub async fn wait_contract(&self, model: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.serving(model).contract.get().is_none() {
            assert!(
                Instant::now() < deadline,
                "the contract of {model} never reached the gateway"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics(&self) -> String {
        let response = self.client.get(self.url("/metrics")).send().await.unwrap();
        response.text().await.unwrap()
    }

    /// `sluice_model_load_failures_total` for `model`, 0 when not yet counted.
    pub async fn load_failures(&self, model: &str) -> f64 {
        let prefix = format!("sluice_model_load_failures_total{{model=\"{model}\"}} ");
        self.metrics()
            .await
            .lines()
            .find_map(|line| line.strip_prefix(&prefix))
            .map_or(0.0, |value| value.parse().unwrap())
    }

    /// Waits until `model` has failed to load at least `at_least` times.
    pub async fn wait_load_failures(&self, model: &str, at_least: f64) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.load_failures(model).await < at_least {
            assert!(
                Instant::now() < deadline,
                "load failure {at_least} of {model} was never counted"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let response = self.client.get(self.url(path)).send().await.expect("GET");
        read_json(response).await
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> (u16, Value) {
        // No Content-Type, as tritonclient sends pure-JSON requests.
        let response = self
            .client
            .post(self.url(path))
            .body(serde_json::to_vec(body).unwrap())
            .send()
            .await
            .expect("POST");
        read_json(response).await
    }

    pub async fn post_raw(&self, path: &str, headers: &[(&str, String)], body: Vec<u8>) -> reqwest::Response {
        let mut request = self.client.post(self.url(path)).body(body);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        request.send().await.expect("POST")
    }
}

pub async fn read_json(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let bytes = response.bytes().await.expect("reading a response body");
    let value = serde_json::from_slice(&bytes).unwrap_or_else(|err| {
        panic!(
            "status {status}: body is not JSON ({err}): {}",
            String::from_utf8_lossy(&bytes)
        )
    });
    (status, value)
}

/// The error message of a `{"error": "..."}` body.
pub fn error_message(body: &Value) -> &str {
    body.get("error")
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("expected {{\"error\": ...}}, got {body}"))
}

/// Row `row` of a batched V2 request, as a request of one row.
pub fn request_row(request: &Value, row: usize) -> Value {
    let inputs: Vec<Value> = request["inputs"]
        .as_array()
        .expect("inputs is a list")
        .iter()
        .map(|input| {
            let mut shape: Vec<usize> = serde_json::from_value(input["shape"].clone()).expect("a shape");
            let per_row: usize = shape[1..].iter().product();
            shape[0] = 1;
            let data = flatten(&input["data"])[row * per_row..(row + 1) * per_row].to_vec();
            serde_json::json!({ "name": input["name"], "datatype": input["datatype"], "shape": shape, "data": data })
        })
        .collect();
    serde_json::json!({ "inputs": inputs })
}

/// The elements of nested JSON arrays, row-major.
pub fn flatten(data: &Value) -> Vec<Value> {
    match data {
        Value::Array(items) => items.iter().flat_map(flatten).collect(),
        scalar => vec![scalar.clone()],
    }
}

/// Asserts two output lists (V2 JSON) agree: names, datatypes, shapes exactly,
/// data within `tolerance`.
pub fn assert_outputs_match(actual: &Value, expected: &Value, tolerance: f64) {
    let actual = actual.as_array().expect("outputs is a list");
    let expected = expected.as_array().expect("expected outputs is a list");
    assert_eq!(actual.len(), expected.len(), "output count");
    for want in expected {
        let name = want["name"].as_str().unwrap();
        let got = actual
            .iter()
            .find(|output| output["name"] == name)
            .unwrap_or_else(|| panic!("output {name} missing"));
        assert_eq!(got["datatype"], want["datatype"], "{name} datatype");
        assert_eq!(got["shape"], want["shape"], "{name} shape");
        let got_data = got["data"].as_array().unwrap();
        let want_data = want["data"].as_array().unwrap();
        assert_eq!(got_data.len(), want_data.len(), "{name} length");
        for (index, (g, w)) in got_data.iter().zip(want_data).enumerate() {
            let (g, w) = (as_f64(g), as_f64(w));
            assert!(
                (g - w).abs() <= tolerance * w.abs().max(1.0),
                "{name}[{index}]: got {g}, ONNX Runtime reference {w}"
            );
        }
    }
}

fn as_f64(value: &Value) -> f64 {
    match value {
        Value::Bool(flag) => f64::from(u8::from(*flag)),
        other => other.as_f64().unwrap_or_else(|| panic!("not a number: {other}")),
    }
}
