//! The embedded default: the registry runs inside the gateway's process, on
//! its own (admin) address, and the gateway follows it through the same
//! client and HTTP API as it would a remote one. One code path, two
//! deployments.

use std::path::PathBuf;
use std::sync::Arc;

use sluice_common::secrets::generate_token;
use sluice_registry::auth::{Caller, Role};
use sluice_registry::{Inspector, Registry, RegistryConfig};
use sluice_registry_client::RegistryClient;
use sluice_registry_client::types;
use tokio::net::TcpListener;

use sluice_gateway::backend::{BackendChoice, EngineOptions, Engines};
use sluice_gateway::config::{ServeConfig, ServeSettings, Source};
use sluice_gateway::error::{Error, Result};
use sluice_gateway::model::LoadedModel;
use sluice_gateway::server::Server;
use sluice_gateway::signature::Signature;

/// Lets the registry read an upload's signature with this process's engines,
/// so it accepts exactly what a gateway can load.
pub struct EngineInspector {
    engines: Engines,
}

impl EngineInspector {
    pub fn new(options: &EngineOptions) -> EngineInspector {
        EngineInspector {
            engines: Engines::new(options),
        }
    }
}

impl Inspector for EngineInspector {
    fn inspect(&self, artifact: &[u8]) -> std::result::Result<types::Signature, String> {
        LoadedModel::load(
            &self.engines,
            "registry-upload",
            0,
            artifact,
            BackendChoice::Auto,
            None,
        )
        .map(|model| wire_signature(&model.signature))
        .map_err(|err| err.to_string())
    }

    /// Decodes, runs and encodes each request with the code a gateway
    /// serves it with, so a suite tests what will answer in production.
    fn infer(
        &self,
        artifact: &[u8],
        requests: &[serde_json::Value],
    ) -> std::result::Result<Vec<std::result::Result<serde_json::Value, String>>, String> {
        // An engine that panics fails the load or the case, as on the data plane.
        let model = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            LoadedModel::load(
                &self.engines,
                "registry-suite",
                0,
                artifact,
                BackendChoice::Auto,
                None,
            )
        }))
        .map_err(|_| "the engine panicked while loading it".to_string())?
        .map_err(|err| err.to_string())?;
        let answer = |request: &serde_json::Value| -> Result<serde_json::Value> {
            let body = serde_json::to_vec(request).map_err(|err| Error::bad_request(err.to_string()))?;
            let decoded = sluice_gateway::protocol::request::decode(&body, None, &model.signature)?;
            let outputs = model.run(decoded.inputs)?;
            let encoded =
                sluice_gateway::protocol::response::encode(&model, None, &decoded.outputs, &outputs);
            serde_json::from_slice(&encoded.body).map_err(|err| Error::Internal(err.to_string()))
        };
        Ok(requests
            .iter()
            .map(|request| {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| answer(request)))
                    .unwrap_or_else(|_| Err(Error::Inference("the engine panicked".into())))
                    .map_err(|err| err.to_string())
            })
            .collect())
    }
}

/// The signature as the registry's API states it.
pub fn wire_signature(signature: &Signature) -> types::Signature {
    let specs = |specs: &[sluice_gateway::signature::TensorSpec]| {
        specs
            .iter()
            .map(|spec| types::TensorSpec {
                name: spec.name.clone(),
                datatype: spec.datatype.wire_name().to_string(),
                shape: spec.shape.clone(),
            })
            .collect()
    };
    types::Signature {
        inputs: specs(&signature.inputs),
        outputs: specs(&signature.outputs),
    }
}

/// A registry and the gateway that follows it, in one process.
pub struct Embedded {
    pub registry: Registry,
    pub gateway: Server,
    /// An admin client whose token is known to this process only (`--demo` uses it).
    pub admin: RegistryClient,
}

impl Embedded {
    /// Starts the registry on `admin_listener`, registers the demo models
    /// when asked (so the gateway is ready only once it serves them), then
    /// starts the gateway on `listener`, following the registry with a
    /// gateway token that lives only in this process.
    pub async fn start(
        mut registry_config: RegistryConfig,
        settings: ServeSettings,
        cache_dir: PathBuf,
        admin_listener: TcpListener,
        listener: TcpListener,
        demo: bool,
    ) -> Result<Embedded> {
        let gateway_token = generate_token().map_err(Error::Internal)?;
        let admin_token = generate_token().map_err(Error::Internal)?;
        registry_config.process_tokens.push((
            gateway_token.clone(),
            Caller {
                actor: "gateway".into(),
                role: Role::Gateway,
            },
        ));
        registry_config.process_tokens.push((
            admin_token.clone(),
            Caller {
                actor: "demo".into(),
                role: Role::Admin,
            },
        ));
        let inspector = Arc::new(EngineInspector::new(&settings.engines));
        let registry = Registry::start(registry_config, admin_listener, inspector)
            .await
            .map_err(|err| Error::Internal(format!("starting the registry: {err}")))?;
        // Over loopback: pin the certificate the registry serves, since
        // 127.0.0.1 is rarely a name in it.
        let url = registry.url();
        let client_for = |token: String| match registry.tls() {
            Some(tls) => RegistryClient::with_rustls(&url, Some(token), tls.loopback_client_config()),
            None => RegistryClient::new(&url, Some(token)),
        };
        let admin = client_for(admin_token);
        if demo {
            crate::demo::register(&admin)
                .await
                .map_err(|err| Error::Internal(format!("registering the demo models: {err}")))?;
            tracing::info!("demo models registered and deployed");
        }
        let client = client_for(gateway_token);
        let config = ServeConfig {
            source: Source::Registry { client, cache_dir },
            settings,
        };
        let gateway = Server::start(config, listener).await?;
        Ok(Embedded {
            registry,
            gateway,
            admin,
        })
    }

    /// Stops the gateway first (it finishes in-flight requests), then the registry.
    pub async fn shutdown(self) -> Result<()> {
        self.gateway.shutdown().await?;
        self.registry
            .shutdown()
            .await
            .map_err(|err| Error::Internal(format!("stopping the registry: {err}")))
    }
}
