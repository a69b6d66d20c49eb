//! A typed async client for the registry's `/api/v1`.
//!
//! Every method is one HTTP call. A refusal becomes [`ClientError::Api`] with
//! the registry's status and message; nothing is retried here, because the
//! caller knows whether a retry is safe (the gateway's watch loop retries, the
//! CLI reports).

use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::ClientError;
use crate::feedback::Performance;
use crate::profile::DriftReport;
use crate::rollout::{GuardReport, Rollout, StartRollout, StatsReport, VersionWindow};
use crate::slices::SliceReport;
use crate::suite::{RunSuite, StoredSuite, Suite, SuiteReport};
use crate::trigger::{CompleteRun, FireTrigger, TriggerPolicy, TriggerRun, TriggerState};
use crate::types::*;

/// How a client reaches an `https://` registry: a private CA to trust, and
/// a client certificate for a registry that requires one (mutual TLS).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientTls {
    /// PEM CA certificates trusted besides the system's.
    pub ca_opt: Option<PathBuf>,
    /// PEM certificate and private key presented to the registry.
    pub identity_opt: Option<(PathBuf, PathBuf)>,
}

fn read_file(path: &Path) -> Result<Vec<u8>, ClientError> {
    std::fs::read(path).map_err(|err| ClientError::Io(format!("cannot read {}: {err}", path.display())))
}

/// A client for one registry, acting as the holder of one bearer token.
#[derive(Clone)]
pub struct RegistryClient {
    base_url: String,
    token_opt: Option<String>,
    http: reqwest::Client,
}

/// Never the token: a `{:?}` in a log line must not leak it.
impl std::fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryClient")
            .field("base_url", &self.base_url)
            .field("token", &self.token_opt.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

impl RegistryClient {
    /// `base_url` is the registry's address (`http://127.0.0.1:8081`), with or
    /// without a trailing slash.
    /// An `https://` registry must have a certificate the system trusts;
    /// see [`RegistryClient::with_tls`] for a private CA.
    pub fn new(base_url: &str, token_opt: Option<String>) -> RegistryClient {
        RegistryClient::with_tls(base_url, token_opt, &ClientTls::default())
            .expect("a client without TLS files always builds")
    }

    /// A client that trusts `tls.ca_opt` besides the system's CAs and, for
    /// a registry that asks (mutual TLS), presents `tls.identity_opt`.
    pub fn with_tls(
        base_url: &str,
        token_opt: Option<String>,
        tls: &ClientTls,
    ) -> Result<RegistryClient, ClientError> {
        let mut builder = reqwest::Client::builder();
        if !base_url.starts_with("https://") && tls.ca_opt.is_none() {
            // Plain HTTP needs no trust store: without this, a host with no
            // CA bundle (a distroless image) could not build the client.
            builder = builder.tls_certs_only([]);
        }
        if let Some(path) = &tls.ca_opt {
            let pem = read_file(path)?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|err| {
                ClientError::Io(format!("{}: not a PEM certificate: {err}", path.display()))
            })?;
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        if let Some((cert, key)) = &tls.identity_opt {
            let mut pem = read_file(cert)?;
            pem.extend(read_file(key)?);
            let identity = reqwest::Identity::from_pem(&pem).map_err(|err| {
                ClientError::Io(format!(
                    "{} and {}: not a PEM certificate and key: {err}",
                    cert.display(),
                    key.display()
                ))
            })?;
            builder = builder.identity(identity);
        }
        RegistryClient::build(base_url, token_opt, builder)
    }

    /// A client whose TLS is exactly `config` (the embedded gateway's, which
    /// pins the certificate its own registry serves).
    pub fn with_rustls(
        base_url: &str,
        token_opt: Option<String>,
        config: rustls::ClientConfig,
    ) -> RegistryClient {
        RegistryClient::build(
            base_url,
            token_opt,
            reqwest::Client::builder().tls_backend_preconfigured(config),
        )
        .expect("a client with a preconfigured TLS config always builds")
    }

    fn build(
        base_url: &str,
        token_opt: Option<String>,
        builder: reqwest::ClientBuilder,
    ) -> Result<RegistryClient, ClientError> {
        let http = builder
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|err| ClientError::Local(format!("cannot configure the HTTP client: {err}")))?;
        Ok(RegistryClient {
            base_url: base_url.trim_end_matches('/').to_string(),
            token_opt,
            http,
        })
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// `GET /api/v1/health`: answers without a token.
    pub async fn health(&self) -> Result<(), ClientError> {
        self.send(self.request(Method::GET, "/api/v1/health"))
            .await
            .map(drop)
    }

    pub async fn whoami(&self) -> Result<Identity, ClientError> {
        self.get_json("/api/v1/whoami").await
    }

    // ---- models ----

    pub async fn create_model(&self, body: &CreateModel) -> Result<Model, ClientError> {
        self.send_json(Method::POST, "/api/v1/models", body).await
    }

    pub async fn list_models(&self) -> Result<Vec<Model>, ClientError> {
        self.get_json("/api/v1/models").await
    }

    pub async fn get_model(&self, model: &str) -> Result<Model, ClientError> {
        self.get_json(&format!("/api/v1/models/{}", segment(model))).await
    }

    pub async fn update_model(&self, model: &str, body: &UpdateModel) -> Result<Model, ClientError> {
        self.send_json(Method::PATCH, &format!("/api/v1/models/{}", segment(model)), body)
            .await
    }

    // ---- artifacts and versions ----

    /// Streams a file to `POST /api/v1/artifacts`; the registry hashes it,
    /// checks that an engine loads it, and stores it under its sha256.
    pub async fn upload_artifact(&self, path: &Path) -> Result<Artifact, ClientError> {
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|err| ClientError::Io(format!("cannot read {}: {err}", path.display())))?;
        let length = file
            .metadata()
            .await
            .map_err(|err| ClientError::Io(format!("cannot read {}: {err}", path.display())))?
            .len();
        let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(file));
        let request = self
            .request(Method::POST, "/api/v1/artifacts")
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .header(reqwest::header::CONTENT_LENGTH, length)
            .body(body);
        decode(self.send(request).await?).await
    }

    /// `POST /api/v1/artifacts` with bytes already in memory.
    pub async fn upload_artifact_bytes(&self, bytes: Vec<u8>) -> Result<Artifact, ClientError> {
        let request = self
            .request(Method::POST, "/api/v1/artifacts")
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(bytes);
        decode(self.send(request).await?).await
    }

    /// The artifact's bytes, as stored; the caller verifies the sha256.
    pub async fn download_artifact(&self, sha256: &str) -> Result<Vec<u8>, ClientError> {
        let response = self
            .send(self.request(Method::GET, &format!("/api/v1/artifacts/{}", segment(sha256))))
            .await?;
        let bytes = response.bytes().await.map_err(|err| self.unreachable(err))?;
        Ok(bytes.to_vec())
    }

    pub async fn create_version(&self, model: &str, body: &CreateVersion) -> Result<Version, ClientError> {
        self.send_json(
            Method::POST,
            &format!("/api/v1/models/{}/versions", segment(model)),
            body,
        )
        .await
    }

    pub async fn list_versions(&self, model: &str) -> Result<Vec<Version>, ClientError> {
        self.get_json(&format!("/api/v1/models/{}/versions", segment(model)))
            .await
    }

    /// `version` is a number or an alias (`champion`).
    pub async fn get_version(&self, model: &str, version: &str) -> Result<Version, ClientError> {
        self.get_json(&version_path(model, version)).await
    }

    pub async fn put_document(
        &self,
        model: &str,
        version: &str,
        name: &str,
        body: &serde_json::Value,
    ) -> Result<Document, ClientError> {
        let path = format!("{}/documents/{}", version_path(model, version), segment(name));
        self.send_json(Method::PUT, &path, body).await
    }

    pub async fn get_document(
        &self,
        model: &str,
        version: &str,
        name: &str,
    ) -> Result<Document, ClientError> {
        let path = format!("{}/documents/{}", version_path(model, version), segment(name));
        self.get_json(&path).await
    }

    pub async fn list_documents(&self, model: &str, version: &str) -> Result<Vec<Document>, ClientError> {
        self.get_json(&format!("{}/documents", version_path(model, version)))
            .await
    }

    // ---- governance ----

    pub async fn request_transition(
        &self,
        model: &str,
        version: &str,
        body: &RequestTransition,
    ) -> Result<Transition, ClientError> {
        let path = format!("{}/transitions", version_path(model, version));
        self.send_json(Method::POST, &path, body).await
    }

    /// Transitions, newest first; `model_opt` narrows to one model,
    /// `pending_only` to those waiting for approvals.
    pub async fn list_transitions(
        &self,
        model_opt: Option<&str>,
        pending_only: bool,
    ) -> Result<Vec<Transition>, ClientError> {
        let mut query: Vec<(&str, &str)> = Vec::new();
        if let Some(model) = model_opt {
            query.push(("model", model));
        }
        if pending_only {
            query.push(("status", "pending"));
        }
        let request = self.request(Method::GET, "/api/v1/transitions").query(&query);
        decode(self.send(request).await?).await
    }

    pub async fn get_transition(&self, id: u64) -> Result<Transition, ClientError> {
        self.get_json(&format!("/api/v1/transitions/{id}")).await
    }

    pub async fn review_transition(
        &self,
        id: u64,
        decision: Decision,
        body: &ReviewTransition,
    ) -> Result<Transition, ClientError> {
        let verb = match decision {
            Decision::Approve => "approve",
            Decision::Reject => "reject",
        };
        self.send_json(Method::POST, &format!("/api/v1/transitions/{id}/{verb}"), body)
            .await
    }

    pub async fn list_aliases(&self, model: &str) -> Result<Vec<Alias>, ClientError> {
        self.get_json(&format!("/api/v1/models/{}/aliases", segment(model)))
            .await
    }

    pub async fn set_alias(&self, model: &str, alias: &str, body: &SetAlias) -> Result<Alias, ClientError> {
        let path = format!("/api/v1/models/{}/aliases/{}", segment(model), segment(alias));
        self.send_json(Method::PUT, &path, body).await
    }

    // ---- deployments ----

    pub async fn list_deployments(&self) -> Result<Deployments, ClientError> {
        self.get_json("/api/v1/deployments").await
    }

    /// Long-polls until the registry-wide revision passes `revision`, or
    /// `timeout` passes (then the answer is the unchanged state).
    pub async fn watch_deployments(
        &self,
        revision: u64,
        timeout: Duration,
    ) -> Result<Deployments, ClientError> {
        let timeout_ms = timeout.as_millis().to_string();
        let revision = revision.to_string();
        let request = self
            .request(Method::GET, "/api/v1/deployments")
            .query(&[("watch", revision.as_str()), ("timeout_ms", timeout_ms.as_str())])
            // The registry answers by `timeout`; past that the connection is dead.
            .timeout(timeout + Duration::from_secs(10));
        decode(self.send(request).await?).await
    }

    pub async fn get_deployment(&self, model: &str) -> Result<Deployment, ClientError> {
        self.get_json(&format!("/api/v1/deployments/{}", segment(model)))
            .await
    }

    pub async fn set_deployment(&self, model: &str, body: &SetDeployment) -> Result<Deployment, ClientError> {
        self.send_json(
            Method::PUT,
            &format!("/api/v1/deployments/{}", segment(model)),
            body,
        )
        .await
    }

    // ---- traffic feedback and rollouts ----

    /// `POST /api/v1/stats`: a gateway's windows.
    /// Every gateway that reported lately, and the revision they should serve.
    pub async fn gateways(&self) -> Result<Fleet, ClientError> {
        self.get_json("/api/v1/gateways").await
    }

    pub async fn report_stats(&self, report: &StatsReport) -> Result<(), ClientError> {
        self.send(self.request(Method::POST, "/api/v1/stats").json(report))
            .await
            .map(drop)
    }

    /// Every version of `model`, merged over the last `window`, across gateways.
    pub async fn stats(&self, model: &str, window: Duration) -> Result<Vec<VersionWindow>, ClientError> {
        let window_ms = window.as_millis().to_string();
        let request = self
            .request(Method::GET, &format!("/api/v1/stats/{}", segment(model)))
            .query(&[("window_ms", window_ms.as_str())]);
        decode(self.send(request).await?).await
    }

    /// Drift of `version_opt` (the deployment's heaviest target by default)
    /// over the last `window`.
    pub async fn drift(
        &self,
        model: &str,
        version_opt: Option<&str>,
        window: Duration,
    ) -> Result<DriftReport, ClientError> {
        let window_ms = window.as_millis().to_string();
        let mut query = vec![("window_ms", window_ms.as_str())];
        if let Some(version) = version_opt {
            query.push(("version", version));
        }
        let request = self
            .request(Method::GET, &format!("/api/v1/models/{}/drift", segment(model)))
            .query(&query);
        decode(self.send(request).await?).await
    }

    /// `POST /api/v1/guard/{model}`: a gateway stopped routing to a version.
    pub async fn report_guard(&self, model: &str, report: &GuardReport) -> Result<(), ClientError> {
        let request = self
            .request(Method::POST, &format!("/api/v1/guard/{}", segment(model)))
            .json(report);
        self.send(request).await.map(drop)
    }

    pub async fn start_rollout(&self, model: &str, body: &StartRollout) -> Result<Rollout, ClientError> {
        self.send_json(
            Method::POST,
            &format!("/api/v1/rollouts/{}", segment(model)),
            body,
        )
        .await
    }

    pub async fn get_rollout(&self, model: &str) -> Result<Rollout, ClientError> {
        self.get_json(&format!("/api/v1/rollouts/{}", segment(model)))
            .await
    }

    /// `pause`, `resume`, `promote` or `abort`.
    pub async fn rollout_action(&self, model: &str, action: &str) -> Result<Rollout, ClientError> {
        let path = format!("/api/v1/rollouts/{}/{}", segment(model), segment(action));
        self.send_json(Method::POST, &path, &serde_json::json!({})).await
    }

    /// `GET /api/v1/models/{m}/performance`: labels joined in the last `window`.
    pub async fn performance(
        &self,
        model: &str,
        version_opt: Option<&str>,
        window: Duration,
    ) -> Result<Performance, ClientError> {
        let window_ms = window.as_millis().to_string();
        let mut query = vec![("window_ms", window_ms.as_str())];
        if let Some(version) = version_opt {
            query.push(("version", version));
        }
        let request = self
            .request(
                Method::GET,
                &format!("/api/v1/models/{}/performance", segment(model)),
            )
            .query(&query);
        decode(self.send(request).await?).await
    }

    /// `GET /api/v1/models/{m}/slices`: realized performance per slice;
    /// over what the join keeps when `window_opt` is `None`.
    pub async fn slices(
        &self,
        model: &str,
        version_opt: Option<&str>,
        window_opt: Option<Duration>,
    ) -> Result<SliceReport, ClientError> {
        let window_ms = window_opt.map(|window| window.as_millis().to_string());
        let mut query = Vec::new();
        if let Some(window_ms) = &window_ms {
            query.push(("window_ms", window_ms.as_str()));
        }
        if let Some(version) = version_opt {
            query.push(("version", version));
        }
        let request = self
            .request(Method::GET, &format!("/api/v1/models/{}/slices", segment(model)))
            .query(&query);
        decode(self.send(request).await?).await
    }

    // ---- behavioural suites ----

    /// Stores `suite` as the model's next revision.
    pub async fn put_suite(&self, model: &str, suite: &Suite) -> Result<StoredSuite, ClientError> {
        let path = format!("/api/v1/models/{}/suite", segment(model));
        self.send_json(Method::PUT, &path, suite).await
    }

    /// Revision `revision_opt` of the model's suite, or its latest.
    pub async fn get_suite(
        &self,
        model: &str,
        revision_opt: Option<u64>,
    ) -> Result<StoredSuite, ClientError> {
        let mut path = format!("/api/v1/models/{}/suite", segment(model));
        if let Some(revision) = revision_opt {
            path.push_str(&format!("?revision={revision}"));
        }
        self.get_json(&path).await
    }

    /// Runs the suite on a version now; the report says whether it passed.
    pub async fn run_suite(
        &self,
        model: &str,
        version: &str,
        revision_opt: Option<u64>,
    ) -> Result<SuiteReport, ClientError> {
        let path = format!("{}/suite-runs", version_path(model, version));
        let body = RunSuite {
            revision: revision_opt,
        };
        self.send_json(Method::POST, &path, &body).await
    }

    /// The version's latest suite report.
    pub async fn suite_report(&self, model: &str, version: &str) -> Result<SuiteReport, ClientError> {
        self.get_json(&format!("{}/suite-report", version_path(model, version)))
            .await
    }

    // ---- training triggers ----

    pub async fn trigger_policies(&self) -> Result<Vec<TriggerState>, ClientError> {
        self.get_json("/api/v1/triggers").await
    }

    pub async fn trigger_policy(&self, model: &str) -> Result<TriggerState, ClientError> {
        self.get_json(&format!("/api/v1/models/{}/triggers/policy", segment(model)))
            .await
    }

    pub async fn set_trigger_policy(
        &self,
        model: &str,
        policy: &TriggerPolicy,
    ) -> Result<TriggerState, ClientError> {
        let path = format!("/api/v1/models/{}/triggers/policy", segment(model));
        self.send_json(Method::PUT, &path, policy).await
    }

    pub async fn delete_trigger_policy(&self, model: &str) -> Result<(), ClientError> {
        let path = format!("/api/v1/models/{}/triggers/policy", segment(model));
        self.send(self.request(Method::DELETE, &path)).await.map(drop)
    }

    /// Fires a run by hand; with an idempotency key, firing again answers the first run.
    pub async fn fire_trigger(&self, model: &str, body: &FireTrigger) -> Result<TriggerRun, ClientError> {
        let path = format!("/api/v1/models/{}/triggers", segment(model));
        self.send_json(Method::POST, &path, body).await
    }

    /// Runs, newest first, of one model or all.
    pub async fn trigger_runs(
        &self,
        model_opt: Option<&str>,
        limit: u32,
    ) -> Result<Vec<TriggerRun>, ClientError> {
        let limit = limit.to_string();
        let mut query = vec![("limit", limit.as_str())];
        if let Some(model) = model_opt {
            query.push(("model", model));
        }
        let request = self.request(Method::GET, "/api/v1/triggers/runs").query(&query);
        decode(self.send(request).await?).await
    }

    pub async fn trigger_run(&self, id: u64) -> Result<TriggerRun, ClientError> {
        self.get_json(&format!("/api/v1/triggers/runs/{id}")).await
    }

    pub async fn complete_trigger_run(&self, id: u64, body: &CompleteRun) -> Result<TriggerRun, ClientError> {
        self.send_json(
            Method::POST,
            &format!("/api/v1/triggers/runs/{id}/complete"),
            body,
        )
        .await
    }

    // ---- tokens ----

    pub async fn create_token(&self, body: &CreateToken) -> Result<CreatedToken, ClientError> {
        self.send_json(Method::POST, "/api/v1/tokens", body).await
    }

    pub async fn list_tokens(&self) -> Result<Vec<TokenInfo>, ClientError> {
        self.get_json("/api/v1/tokens").await
    }

    pub async fn revoke_token(&self, id: u64) -> Result<TokenInfo, ClientError> {
        let request = self.request(Method::POST, &format!("/api/v1/tokens/{id}/revoke"));
        decode(self.send(request).await?).await
    }

    // ---- events ----

    /// Events with an id above `since`, oldest first, at most `limit`.
    pub async fn events(&self, since: u64, limit: u32) -> Result<Vec<Event>, ClientError> {
        let since = since.to_string();
        let limit = limit.to_string();
        let request = self
            .request(Method::GET, "/api/v1/events")
            .query(&[("since", since.as_str()), ("limit", limit.as_str())]);
        decode(self.send(request).await?).await
    }

    /// The events `query` selects (`GET /api/v1/events` with its filters).
    pub async fn query_events(&self, query: &EventQuery) -> Result<Vec<Event>, ClientError> {
        let mut pairs: Vec<(&str, String)> = vec![
            ("since", query.since.to_string()),
            ("limit", query.limit.to_string()),
            (
                "order",
                if query.newest_first { "desc" } else { "asc" }.to_string(),
            ),
        ];
        if let Some(before) = query.before {
            pairs.push(("before", before.to_string()));
        }
        for (key, value_opt) in [
            ("model", &query.model),
            ("actor", &query.actor),
            ("action", &query.action),
        ] {
            if let Some(value) = value_opt {
                pairs.push((key, value.clone()));
            }
        }
        let request = self.request(Method::GET, "/api/v1/events").query(&pairs);
        decode(self.send(request).await?).await
    }

    // ---- plumbing ----

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let builder = self.http.request(method, format!("{}{path}", self.base_url));
        match &self.token_opt {
            Some(token) => builder.bearer_auth(token),
            None => builder,
        }
    }

    async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        decode(self.send(self.request(Method::GET, path)).await?).await
    }

    async fn send_json<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        decode(self.send(self.request(method, path).json(body)).await?).await
    }

    /// Sends, and turns an error status into [`ClientError::Api`].
    async fn send(&self, request: RequestBuilder) -> Result<Response, ClientError> {
        let response = request.send().await.map_err(|err| self.unreachable(err))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let text = response.text().await.unwrap_or_default();
        let message = serde_json::from_str::<ErrorBody>(&text)
            .map(|body| body.error)
            .unwrap_or_else(|_| fallback_message(status, &text));
        Err(ClientError::Api {
            status: status.as_u16(),
            message,
        })
    }

    fn unreachable(&self, err: reqwest::Error) -> ClientError {
        // reqwest's Display stops at the outermost layer ("error sending
        // request"); the cause ("connection refused") is what a person needs.
        let mut message = err.to_string();
        let mut source = std::error::Error::source(&err);
        while let Some(cause) = source {
            message = format!("{message}: {cause}");
            source = cause.source();
        }
        ClientError::Unreachable {
            url: self.base_url.clone(),
            message,
        }
    }
}

async fn decode<T: DeserializeOwned>(response: Response) -> Result<T, ClientError> {
    let bytes = response
        .bytes()
        .await
        .map_err(|err| ClientError::Decode(format!("reading the body: {err}")))?;
    serde_json::from_slice(&bytes).map_err(|err| ClientError::Decode(err.to_string()))
}

fn fallback_message(status: StatusCode, text: &str) -> String {
    let text = text.trim();
    if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_lowercase()
    } else {
        text.chars().take(200).collect()
    }
}

fn version_path(model: &str, version: &str) -> String {
    format!("/api/v1/models/{}/versions/{}", segment(model), segment(version))
}

/// Percent-encodes a path segment, so a name can never climb out of its place.
fn segment(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_the_token() {
        let client = RegistryClient::new("http://registry:8081", Some("sluice_secret".into()));
        let shown = format!("{client:?}");
        assert!(
            !shown.contains("sluice_secret") && shown.contains("<redacted>"),
            "{shown}"
        );
    }

    #[test]
    fn segments_are_percent_encoded() {
        assert_eq!(segment("credit_risk"), "credit_risk");
        assert_eq!(segment("a/../b c"), "a%2F..%2Fb%20c");
    }
}
