//! A real registry in-process on an ephemeral port, with a tokens file that
//! holds one token per test actor, and the steps of a release as one call.
//!
//! ```text
//! let registry = TestRegistry::start().await;
//! let version = registry.release("credit_risk", &example_model("credit_risk")).await;
//! let gateway = TestGateway::follow(&registry, Options::default()).await;
//! ```

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sluice::embedded::EngineInspector;
use sluice_common::objects::LogDirs;
use sluice_gateway::backend::EngineOptions;
use sluice_registry::auth::{Role, add_token};
use sluice_registry::policy::Policy;
use sluice_registry::{Registry, RegistryConfig};
use sluice_registry_client::RegistryClient;
use sluice_registry_client::contract::{CONTRACT_DOCUMENT, ContractMode};
use sluice_registry_client::rollout::VersionWindow;
use sluice_registry_client::types::*;
use tempfile::TempDir;

/// The test actors and their roles: `admin`, `dora` the deployer, `tom` and
/// `bea` the approvers, `vic` the viewer, `gw` the gateways.
pub const ACTORS: [(&str, Role); 6] = [
    ("admin", Role::Admin),
    ("dora", Role::Deployer),
    ("tom", Role::Approver),
    ("bea", Role::Approver),
    ("vic", Role::Viewer),
    ("gw", Role::Gateway),
];

/// Registry settings a test may change before starting.
#[derive(Clone, Default)]
pub struct RegistryOptions {
    pub policy: Option<Policy>,
    pub max_artifact_bytes: Option<usize>,
    pub import_root: Option<PathBuf>,
    /// How often the rollout controller looks for intervals to judge.
    pub rollout_tick: Option<std::time::Duration>,
    /// How often the monitor joins feedback and evaluates triggers.
    pub monitor_tick: Option<std::time::Duration>,
    /// How long feedback waits for its prediction's segment.
    pub feedback_grace_ms: Option<u64>,
    /// The resolution of realized-performance windows (a minute by default).
    pub feedback_bucket_ms: Option<u64>,
    /// How long an upload may send nothing before it is answered 408.
    pub upload_idle_timeout: Option<std::time::Duration>,
    /// `--metadata`. Unset: SQLite in the data dir, or a new database on
    /// the process's PostgreSQL when `SLUICE_TEST_METADATA=postgres` (how
    /// `scripts/test.sh` runs the registry suites a second time).
    pub metadata: Option<String>,
    /// SQLite in the data dir even when the suite runs on PostgreSQL (a
    /// test that reaches into the file).
    pub pin_sqlite: bool,
    /// `--actions-file`'s text (commands, webhook hosts, header
    /// variables), read with this process's environment. Unset: nothing
    /// is allowed, as a registry started without the flag.
    pub actions: Option<String>,
    /// A test's clock (`ManualClock::clock`), shared with its gateways;
    /// unset: the system's.
    pub clock: Option<sluice_common::clock::Clock>,
    /// `--no-console`.
    pub no_console: bool,
}

pub struct TestRegistry {
    dir: TempDir,
    pub addr: SocketAddr,
    options: RegistryOptions,
    tokens: HashMap<&'static str, String>,
    running: Option<Registry>,
}

impl TestRegistry {
    pub async fn start() -> TestRegistry {
        TestRegistry::start_with(RegistryOptions::default()).await
    }

    pub async fn start_with(mut options: RegistryOptions) -> TestRegistry {
        if options.metadata.is_none() && !options.pin_sqlite && on_postgres() {
            options.metadata = Some(crate::postgres::shared().create_database());
        }
        let dir = tempfile::tempdir().expect("creating a temporary directory");
        let tokens_file = dir.path().join("tokens.toml");
        let tokens = ACTORS
            .iter()
            .map(|(actor, role)| {
                (
                    *actor,
                    add_token(&tokens_file, actor, *role).expect("adding a token"),
                )
            })
            .collect();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding an ephemeral port");
        let addr = listener.local_addr().unwrap();
        let mut registry = TestRegistry {
            dir,
            addr,
            options,
            tokens,
            running: None,
        };
        registry.run(listener).await;
        registry
    }

    fn config(&self) -> RegistryConfig {
        let mut config = RegistryConfig::new(self.dir.path().join("data"));
        config.tokens_file_opt = Some(self.tokens_file());
        config.metadata_opt = self.options.metadata.clone();
        if let Some(policy) = &self.options.policy {
            config.policy = policy.clone();
        }
        if let Some(limit) = self.options.max_artifact_bytes {
            config.max_artifact_bytes = limit;
        }
        config.import_root_opt = self.options.import_root.clone();
        if let Some(clock) = &self.options.clock {
            config.clock = clock.clone();
        }
        if let Some(tick) = self.options.rollout_tick {
            config.rollout_tick = tick;
        }
        if let Some(tick) = self.options.monitor_tick {
            config.monitor.tick = tick;
        }
        if let Some(grace) = self.options.feedback_grace_ms {
            config.monitor.grace_ms = grace;
        }
        if let Some(bucket) = self.options.feedback_bucket_ms {
            config.monitor.bucket_ms = bucket;
        }
        if let Some(idle) = self.options.upload_idle_timeout {
            config.upload_idle_timeout = idle;
        }
        config.console = !self.options.no_console;
        if let Some(text) = &self.options.actions {
            config.actions = sluice_registry::actions::Actions::parse(text, |name| std::env::var(name).ok())
                .expect("the test's actions file");
        }
        config
    }

    /// Where gateways following it write predictions and feedback, and it reads them.
    pub fn logs(&self) -> LogDirs {
        self.config().monitor.logs
    }

    async fn run(&mut self, listener: tokio::net::TcpListener) {
        self.try_run(listener).await.expect("starting the registry");
    }

    async fn try_run(&mut self, listener: tokio::net::TcpListener) -> Result<(), String> {
        let engines = EngineOptions {
            ort_library_opt: Some(crate::ort_library()),
            ort_sessions: 1,
            ort_intra_threads: 1,
            ..EngineOptions::default()
        };
        // `/metrics` as `sluice registry` serves it, from the process's recorder.
        let metrics = sluice_gateway::metrics::handle();
        let inspector = Arc::new(EngineInspector::new(&engines));
        let registry =
            Registry::start_with_metrics(self.config(), listener, inspector, move || metrics.render())
                .await
                .map_err(|err| err.to_string())?;
        self.running = Some(registry);
        Ok(())
    }

    /// Stops the registry; its data stays for [`TestRegistry::restart`].
    pub async fn stop(&mut self) {
        if let Some(registry) = self.running.take() {
            registry.shutdown().await.expect("stopping the registry");
        }
    }

    /// Starts it again on the same address and data.
    pub async fn restart(&mut self) {
        self.try_restart_with(|_| {})
            .await
            .expect("starting the registry");
    }

    /// Starts it again on the same address and data, its options changed
    /// by `change`; `Err` is why the registry refused to start.
    pub async fn try_restart_with(
        &mut self,
        change: impl FnOnce(&mut RegistryOptions),
    ) -> Result<(), String> {
        self.stop().await;
        change(&mut self.options);
        let listener = tokio::net::TcpListener::bind(self.addr)
            .await
            .expect("binding the registry's address again");
        self.try_run(listener).await
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn tokens_file(&self) -> PathBuf {
        self.dir.path().join("tokens.toml")
    }

    pub fn token(&self, actor: &str) -> String {
        self.tokens
            .get(actor)
            .unwrap_or_else(|| panic!("no test actor named {actor}"))
            .clone()
    }

    /// A client acting as `actor`.
    /// `model`'s versions as the registry counts them in a span beginning
    /// now (on its clock): the windows gateways ended from now on.
    pub async fn windows_from_now(&self, model: &str) -> Vec<VersionWindow> {
        self.client("vic")
            .stats(model, std::time::Duration::ZERO)
            .await
            .expect("reading the registry's statistics")
    }

    /// Requests of every version of `model` in those windows.
    pub async fn requests_from_now(&self, model: &str) -> u64 {
        self.windows_from_now(model)
            .await
            .iter()
            .map(|window| window.requests)
            .sum()
    }

    pub fn client(&self, actor: &str) -> RegistryClient {
        RegistryClient::new(&self.url(), Some(self.token(actor)))
    }

    /// Creates the model unless it exists, and registers `artifact` as its
    /// next version with `metrics` in its lineage.
    pub async fn register(&self, model: &str, artifact: &[u8], metrics: &[(&str, f64)]) -> Version {
        let dora = self.client("dora");
        match dora.get_model(model).await {
            Ok(_) => {}
            Err(err) if err.is_not_found() => {
                let body = CreateModel {
                    name: model.to_string(),
                    ..Default::default()
                };
                dora.create_model(&body).await.expect("creating the model");
            }
            Err(err) => panic!("reading model {model}: {err}"),
        }
        let uploaded = dora
            .upload_artifact_bytes(artifact.to_vec())
            .await
            .expect("uploading the artifact");
        let lineage = Lineage {
            metrics: metrics
                .iter()
                .map(|(name, value)| (name.to_string(), *value))
                .collect(),
            ..Default::default()
        };
        let body = CreateVersion {
            artifact: ArtifactSource::Sha256(uploaded.sha256),
            lineage,
        };
        dora.create_version(model, &body)
            .await
            .expect("creating the version")
    }

    /// Requests staging for `version` (as dora) and approves it (as tom).
    pub async fn approve_staging(&self, model: &str, version: u64) {
        let request = RequestTransition {
            to_stage: Stage::Staging,
            comment: "tests pass".into(),
        };
        let transition = self
            .client("dora")
            .request_transition(model, &version.to_string(), &request)
            .await
            .expect("requesting staging");
        let review = ReviewTransition {
            approval: Some("technical".into()),
            comment: "looked at it".into(),
        };
        let approved = self
            .client("tom")
            .review_transition(transition.id, Decision::Approve, &review)
            .await
            .expect("approving staging");
        assert_eq!(approved.status, TransitionStatus::Applied);
    }

    /// Approves `version`'s production transition under the default
    /// policy: technical (tom) and business (bea). The one pending (a
    /// rollout opens it when its canary passes its last step), else one
    /// requested now as dora.
    pub async fn approve_production(&self, model: &str, version: u64) {
        let pending = self
            .client("vic")
            .list_transitions(Some(model), true)
            .await
            .expect("listing transitions")
            .into_iter()
            .find(|transition| transition.version == version && transition.to_stage == Stage::Production);
        let transition = match pending {
            Some(transition) => transition,
            None => {
                let request = RequestTransition {
                    to_stage: Stage::Production,
                    comment: "its rollout passed".into(),
                };
                self.client("dora")
                    .request_transition(model, &version.to_string(), &request)
                    .await
                    .expect("requesting production")
            }
        };
        for (actor, approval) in [("tom", "technical"), ("bea", "business")] {
            let review = ReviewTransition {
                approval: Some(approval.into()),
                comment: "looked at the rollout".into(),
            };
            self.client(actor)
                .review_transition(transition.id, Decision::Approve, &review)
                .await
                .expect("approving production");
        }
        let applied = self
            .client("vic")
            .get_version(model, &version.to_string())
            .await
            .unwrap();
        assert_eq!(applied.stage, Stage::Production);
    }

    /// Sends all traffic of `model` to `version` (as dora).
    pub async fn deploy(&self, model: &str, targets: &[(u64, u32)]) -> Deployment {
        let body = SetDeployment::new(TrafficSpec::weighted(targets));
        self.client("dora")
            .set_deployment(model, &body)
            .await
            .expect("setting the deployment")
    }

    /// Stores `contract` with version 1 of `model` and sends it all traffic,
    /// the contract checked in `mode` (as dora).
    pub async fn deploy_checked(
        &self,
        model: &str,
        contract: &serde_json::Value,
        mode: ContractMode,
    ) -> Deployment {
        let dora = self.client("dora");
        dora.put_document(model, "1", CONTRACT_DOCUMENT, contract)
            .await
            .expect("storing the contract");
        let mut spec = TrafficSpec::weighted(&[(1, 100)]);
        spec.contract = Some(mode);
        dora.set_deployment(model, &SetDeployment::new(spec))
            .await
            .expect("setting the deployment")
    }

    /// [`TestRegistry::deploy`], logging every prediction and `rate` of them with inputs.
    pub async fn deploy_logged(&self, model: &str, targets: &[(u64, u32)], rate: f64) -> Deployment {
        let mut body = SetDeployment::new(TrafficSpec::weighted(targets));
        body.log_sample_rate = Some(rate);
        self.client("dora")
            .set_deployment(model, &body)
            .await
            .expect("setting the deployment")
    }

    /// Register, approve into staging, and take all traffic: a release.
    pub async fn release(&self, model: &str, artifact: &[u8]) -> Version {
        let version = self.register(model, artifact, &[]).await;
        self.approve_staging(model, version.version).await;
        self.deploy(model, &[(version.version, 100)]).await;
        version
    }
}

/// Files a test may want to look at under a gateway's cache directory.
pub fn cached_artifact(cache_dir: &Path, sha256: &str) -> PathBuf {
    cache_dir.join("artifacts").join(format!("{sha256}.onnx"))
}

/// Whether registries start on PostgreSQL by default (`SLUICE_TEST_METADATA=postgres`).
pub fn on_postgres() -> bool {
    std::env::var("SLUICE_TEST_METADATA").is_ok_and(|value| value == "postgres")
}
