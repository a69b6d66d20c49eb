//! Request and response bodies of the registry's `/api/v1`, documented in
//! `registry/API.md`. Times are RFC 3339 strings in UTC.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize};

use crate::contract::ContractMode;
use crate::slices::SliceSpec;

/// A model: a named endpoint and the versions registered under it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Model {
    pub name: String,
    pub description: String,
    pub tags: BTreeMap<String, String>,
    pub created_at: String,
    pub created_by: String,
    pub updated_at: String,
    /// The highest version number, `None` before the first version.
    pub latest_version: Option<u64>,
}

/// `POST /api/v1/models`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateModel {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

/// `PATCH /api/v1/models/{model}`: each field present replaces the stored one.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateModel {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<BTreeMap<String, String>>,
}

/// Lifecycle of a version: `none → staging → production → archived`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    None,
    Staging,
    Production,
    Archived,
}

impl Stage {
    pub const ALL: [Stage; 4] = [Stage::None, Stage::Staging, Stage::Production, Stage::Archived];

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::None => "none",
            Stage::Staging => "staging",
            Stage::Production => "production",
            Stage::Archived => "archived",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Stage {
    type Err = String;

    fn from_str(text: &str) -> Result<Stage, String> {
        Stage::ALL
            .into_iter()
            .find(|stage| stage.as_str() == text)
            .ok_or_else(|| format!("unknown stage '{text}': expected none, staging, production or archived"))
    }
}

/// Name, datatype and shape (`-1` for a dynamic dim) of one tensor, as the
/// Open Inference Protocol's model metadata states it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TensorSpec {
    pub name: String,
    pub datatype: String,
    pub shape: Vec<i64>,
}

/// What a model takes and gives, read by loading the artifact.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Signature {
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
}

/// The dataset a version was trained on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Dataset {
    pub uri: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// Lineage and model card of a version: where it came from and what it is for.
/// Every field is optional at registration; the registry stores what it is given.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Lineage {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training_run_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_commit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset: Option<Dataset>,
    /// Hyper-parameters, as given (`max_depth = "6"`).
    #[serde(default)]
    pub parameters: BTreeMap<String, String>,
    /// Evaluation metrics (`auc = 0.91`): what stage gates are checked against.
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
    /// Language and library versions (`python = "3.11"`, `scikit-learn = "1.9.1"`).
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intended_use: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limitations: Option<String>,
    /// The version this one was retrained from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_version: Option<u64>,
    /// The training trigger run that asked for it: registering the version
    /// completes that run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger_id: Option<u64>,
    /// The feature realized performance is broken down by (an age band, a
    /// region), so that a gap between groups shows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slice: Option<SliceSpec>,
}

/// An immutable, auto-numbered version of a model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Version {
    pub model: String,
    pub version: u64,
    pub stage: Stage,
    /// sha256 of the ONNX artifact, hex: its address in the artifact store.
    pub sha256: String,
    pub size: u64,
    pub signature: Signature,
    pub lineage: Lineage,
    /// Where the artifact was read from, when registered from a URI.
    pub source_uri: Option<String>,
    pub author: String,
    pub created_at: String,
    /// Aliases that point at this version.
    pub aliases: Vec<String>,
    /// Moved out of its stage by the policy's `max_versions` (archived),
    /// it stays deployable until then: the rollback window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_until: Option<String>,
}

/// Where a new version's artifact comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ArtifactSource {
    /// An artifact uploaded before with `POST /api/v1/artifacts`.
    Sha256(String),
    /// A URI the registry's store can read (`file:///...` under its import root).
    Uri(String),
}

/// `POST /api/v1/models/{model}/versions`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateVersion {
    pub artifact: ArtifactSource,
    #[serde(default)]
    pub lineage: Lineage,
}

/// An artifact in the store, as `POST /api/v1/artifacts` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Artifact {
    pub sha256: String,
    pub size: u64,
    pub signature: Signature,
}

/// A named JSON document attached to a version (a drift reference profile, say).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Document {
    pub model: String,
    pub version: u64,
    pub name: String,
    pub body: serde_json::Value,
    pub updated_at: String,
    pub updated_by: String,
}

/// State of a transition request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TransitionStatus {
    /// Waiting for approvals.
    Pending,
    /// Approved and applied: the version is in the target stage.
    Applied,
    Rejected,
}

impl fmt::Display for TransitionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TransitionStatus::Pending => "pending",
            TransitionStatus::Applied => "applied",
            TransitionStatus::Rejected => "rejected",
        })
    }
}

/// `approve` or `reject`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Approve,
    Reject,
}

/// One actor's decision on a transition request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Review {
    pub actor: String,
    pub decision: Decision,
    /// The kind of approval given (`technical`, `business`); `None` on a rejection.
    pub approval: Option<String>,
    pub comment: String,
    pub at: String,
}

/// A request to move a version to another stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Transition {
    pub id: u64,
    pub model: String,
    pub version: u64,
    pub from_stage: Stage,
    pub to_stage: Stage,
    pub status: TransitionStatus,
    pub requested_by: String,
    pub requested_at: String,
    pub comment: String,
    pub reviews: Vec<Review>,
    /// Approvals the policy asks for that nobody has given yet.
    pub missing_approvals: Vec<String>,
}

/// One gate of a transition's target stage, judged now against its
/// version (`GET /api/v1/transitions/{id}/gates`): what an approver sees
/// before approving. The suite and slice gates ran when the transition was
/// requested; the metric gates are checked again when it applies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GateResult {
    /// `metric` (the version's recorded metrics), `suite` (its latest
    /// behavioural suite report) or `slice` (its gaps between slices).
    pub kind: String,
    /// The gate as the policy words it (`auc >= 0.8`), or `behavioural suite`.
    pub gate: String,
    pub passed: bool,
    /// Why it passes or fails, in words.
    pub detail: String,
}

/// `POST /api/v1/models/{model}/versions/{version}/transitions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestTransition {
    pub to_stage: Stage,
    #[serde(default)]
    pub comment: String,
}

/// `POST /api/v1/transitions/{id}/approve` (with `approval`) or `/reject`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReviewTransition {
    /// Which approval this is (`technical`): one the target stage's policy asks for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<String>,
    #[serde(default)]
    pub comment: String,
}

/// A mutable pointer to a version (`champion`, `challenger`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Alias {
    pub model: String,
    pub alias: String,
    pub version: u64,
    pub updated_at: String,
    pub updated_by: String,
}

/// `PUT /api/v1/models/{model}/aliases/{alias}`: compare-and-swap.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetAlias {
    pub version: u64,
    /// Absent: set whatever the alias points at. `null`: only if the alias
    /// does not exist yet. A number: only if it points at that version now.
    #[serde(
        default,
        deserialize_with = "present_or_null",
        skip_serializing_if = "Option::is_none"
    )]
    pub if_version: Option<Option<u64>>,
}

/// A version that takes a share of an endpoint's traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TrafficTarget {
    pub version: u64,
    /// Percent of requests; the weights of a deployment add up to 100.
    pub weight: u32,
}

/// A version that sees a copy of a sample of the traffic; its answers are
/// compared, never returned.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Shadow {
    pub version: u64,
    /// Fraction of requests mirrored, from 0 (paused) to 1.
    pub sample_rate: f64,
}

/// The desired traffic of one endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TrafficSpec {
    pub targets: Vec<TrafficTarget>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<Shadow>,
    /// Header whose value pins a caller to one version (`x-user-id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sticky_header: Option<String>,
    /// Progressive rollout policy; its shape belongs to the rollout controller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<serde_json::Value>,
    /// Log every prediction (request id, outputs) and this share of them
    /// with their inputs, from 0 to 1. Absent: no prediction log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_sample_rate: Option<f64>,
    /// Dynamic batching of this endpoint's requests, for every version it serves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batching: Option<Batching>,
    /// Check each version's data contract: count violations, or refuse them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contract: Option<ContractMode>,
    /// How each version of this endpoint is warmed before it takes traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup: Option<crate::warmup::Warmup>,
}

/// Dynamic batching, with Triton's knobs: requests queued for a version are
/// joined along their first (batch) dimension and run as one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Batching {
    /// Most rows one run takes; a request with more is refused (400).
    pub max_batch_size: usize,
    /// How long the first request of a batch waits for others, in
    /// microseconds. 0: batch only what is already queued.
    #[serde(default)]
    pub max_queue_delay_us: u64,
    /// Sizes worth running at once without waiting out the delay.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub preferred_batch_sizes: Vec<usize>,
    /// Requests waiting at most; beyond it a request is answered 503 with `Retry-After`.
    #[serde(default = "Batching::default_queue_size")]
    pub max_queue_size: usize,
    /// Batches that may run at once (Triton's instance count).
    #[serde(default = "Batching::default_instances")]
    pub instances: usize,
}

impl Batching {
    pub const MAX_BATCH_SIZE: usize = 65_536;
    pub const MAX_QUEUE_DELAY_US: u64 = 10_000_000;
    pub const MAX_INSTANCES: usize = 64;

    fn default_queue_size() -> usize {
        1024
    }

    fn default_instances() -> usize {
        2
    }

    /// Only the batch size set; the rest at their defaults.
    pub fn with_max_batch_size(max_batch_size: usize) -> Batching {
        Batching {
            max_batch_size,
            max_queue_delay_us: 0,
            preferred_batch_sizes: Vec::new(),
            max_queue_size: Batching::default_queue_size(),
            instances: Batching::default_instances(),
        }
    }

    /// Why these settings cannot run, in words a user can act on.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=Batching::MAX_BATCH_SIZE).contains(&self.max_batch_size) {
            return Err(format!(
                "batching max_batch_size is {}: expected 1 to {}",
                self.max_batch_size,
                Batching::MAX_BATCH_SIZE
            ));
        }
        if self.max_queue_delay_us > Batching::MAX_QUEUE_DELAY_US {
            return Err(format!(
                "batching max_queue_delay_us is {}: expected at most {} (10 s)",
                self.max_queue_delay_us,
                Batching::MAX_QUEUE_DELAY_US
            ));
        }
        if let Some(size) = self
            .preferred_batch_sizes
            .iter()
            .find(|&&size| size == 0 || size > self.max_batch_size)
        {
            return Err(format!(
                "batching preferred_batch_sizes holds {size}: expected sizes from 1 to max_batch_size ({})",
                self.max_batch_size
            ));
        }
        if self.max_queue_size == 0 {
            return Err("batching max_queue_size is 0: expected at least 1".into());
        }
        if !(1..=Batching::MAX_INSTANCES).contains(&self.instances) {
            return Err(format!(
                "batching instances is {}: expected 1 to {}",
                self.instances,
                Batching::MAX_INSTANCES
            ));
        }
        Ok(())
    }
}

impl TrafficSpec {
    /// `(version, weight)` of each target, in the spec's order.
    pub fn weights(&self) -> Vec<(u64, u32)> {
        self.targets
            .iter()
            .map(|target| (target.version, target.weight))
            .collect()
    }

    /// Weighted targets alone (`[(version, weight)]`): no shadow, sticky key or rollout.
    pub fn weighted(targets: &[(u64, u32)]) -> TrafficSpec {
        TrafficSpec {
            targets: targets
                .iter()
                .map(|&(version, weight)| TrafficTarget { version, weight })
                .collect(),
            shadow: None,
            sticky_header: None,
            rollout: None,
            log_sample_rate: None,
            batching: None,
            contract: None,
            warmup: None,
        }
    }
}

/// `PUT /api/v1/deployments/{model}`: a [`TrafficSpec`] plus the write's
/// precondition and reason, all at the top level of the body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetDeployment {
    pub targets: Vec<TrafficTarget>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<Shadow>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sticky_header: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_sample_rate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batching: Option<Batching>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contract: Option<ContractMode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup: Option<crate::warmup::Warmup>,
    /// Refuse with 409 unless the deployment is at this revision now
    /// (`0`: unless it does not exist yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub if_revision: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl SetDeployment {
    pub fn new(spec: TrafficSpec) -> SetDeployment {
        SetDeployment {
            targets: spec.targets,
            shadow: spec.shadow,
            sticky_header: spec.sticky_header,
            rollout: spec.rollout,
            log_sample_rate: spec.log_sample_rate,
            batching: spec.batching,
            contract: spec.contract,
            warmup: spec.warmup,
            if_revision: None,
            reason: None,
        }
    }

    pub fn spec(&self) -> TrafficSpec {
        TrafficSpec {
            targets: self.targets.clone(),
            shadow: self.shadow,
            sticky_header: self.sticky_header.clone(),
            rollout: self.rollout.clone(),
            log_sample_rate: self.log_sample_rate,
            batching: self.batching.clone(),
            contract: self.contract,
            warmup: self.warmup.clone(),
        }
    }
}

/// The artifact of a version a deployment refers to: what a gateway fetches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeployedVersion {
    pub version: u64,
    pub sha256: String,
    pub size: u64,
    /// The card's slice feature: gateways name each logged row's slice by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slice: Option<SliceSpec>,
}

/// The desired traffic of one endpoint, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Deployment {
    pub model: String,
    /// The registry-wide revision of this deployment's last change.
    pub revision: u64,
    #[serde(flatten)]
    pub spec: TrafficSpec,
    /// Every version the spec names, with its artifact.
    pub versions: Vec<DeployedVersion>,
    pub updated_at: String,
    pub updated_by: String,
}

/// `GET /api/v1/deployments`: every deployment at one registry-wide revision.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Deployments {
    /// Bumped by every deployment change; what `?watch=` waits on.
    pub revision: u64,
    pub deployments: Vec<Deployment>,
}

/// One entry of the append-only audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Event {
    pub id: u64,
    pub at: String,
    pub actor: String,
    /// What happened: `model.create`, `version.create`, `transition.approve`, ...
    pub action: String,
    /// What it happened to: `credit_risk`, `credit_risk/3`, `transition/7`.
    pub subject: String,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
    pub reason: Option<String>,
    /// The policy rule that allowed the change, where one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
}

/// `GET /api/v1/gateways`: every gateway that reported lately, and the
/// revision they should serve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Fleet {
    /// The registry's deployments revision now.
    pub revision: u64,
    pub gateways: Vec<GatewayState>,
}

/// One gateway as its last report left it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GatewayState {
    /// Its name (host and process).
    pub gateway: String,
    /// What it serves; `None` for a gateway too old to say.
    pub serving: Option<crate::rollout::GatewayServing>,
    /// When its last report arrived (RFC 3339), and how long ago.
    pub last_report_at: String,
    pub seconds_since_report: f64,
    pub interval_ms: u64,
    /// Silent for more than three of its intervals (or 30 s when it did not
    /// say its interval): down, cut off, or stuck.
    pub stale: bool,
}

/// What `GET /api/v1/events` is asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventQuery {
    /// Only ids above this.
    pub since: u64,
    /// Only ids below this: the cursor of a newest-first page.
    pub before: Option<u64>,
    pub limit: u32,
    /// Only events about this model (its versions, aliases, traffic, transitions).
    pub model: Option<String>,
    pub actor: Option<String>,
    /// An action (`traffic.set`), or a prefix ending in `*` (`rollout.*`).
    pub action: Option<String>,
    pub newest_first: bool,
}

/// `GET /api/v1/whoami`: the caller as the registry sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Identity {
    pub actor: String,
    pub role: String,
}

/// A bearer token of the registry API as `GET /api/v1/tokens` lists it:
/// who it speaks for and its life, never the token itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TokenInfo {
    pub id: u64,
    pub actor: String,
    pub role: String,
    /// `api`: made with `POST /api/v1/tokens`; `file`: read from the tokens
    /// file at start.
    pub source: String,
    pub created_at: String,
    pub created_by: String,
    pub expires_at: Option<String>,
    pub revoked_at: Option<String>,
    pub revoked_by: Option<String>,
}

/// `POST /api/v1/tokens`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    pub actor: String,
    /// viewer, deployer, approver, gateway or admin.
    pub role: String,
    /// Seconds until it stops working; without it, until revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in_s: Option<u64>,
}

/// The answer to `POST /api/v1/tokens`: the only time the token is seen in clear.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CreatedToken {
    pub token: String,
    #[serde(flatten)]
    pub info: TokenInfo,
}

/// `{"error": "..."}`, the body of every refusal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: String,
}

/// Tells an absent field (`None`) from an explicit `null` (`Some(None)`).
fn present_or_null<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Option<u64>>, D::Error> {
    Option::<u64>::deserialize(deserializer).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_version_tells_absent_from_null() {
        let absent: SetAlias = serde_json::from_str(r#"{"version": 2}"#).unwrap();
        assert_eq!(absent.if_version, None);
        let null: SetAlias = serde_json::from_str(r#"{"version": 2, "if_version": null}"#).unwrap();
        assert_eq!(null.if_version, Some(None));
        let number: SetAlias = serde_json::from_str(r#"{"version": 2, "if_version": 1}"#).unwrap();
        assert_eq!(number.if_version, Some(Some(1)));
        let back = serde_json::to_value(&null).unwrap();
        assert_eq!(back["if_version"], serde_json::Value::Null);
    }

    #[test]
    fn artifact_source_is_one_key() {
        let source: ArtifactSource = serde_json::from_str(r#"{"sha256": "ab"}"#).unwrap();
        assert_eq!(source, ArtifactSource::Sha256("ab".into()));
        let source: ArtifactSource = serde_json::from_str(r#"{"uri": "file:///m.onnx"}"#).unwrap();
        assert_eq!(source, ArtifactSource::Uri("file:///m.onnx".into()));
        assert!(serde_json::from_str::<ArtifactSource>(r#"{"path": "x"}"#).is_err());
    }

    #[test]
    fn deployment_spec_is_flat_on_the_wire() {
        let set: SetDeployment = serde_json::from_str(
            r#"{"targets": [{"version": 3, "weight": 100}], "sticky_header": "x-user-id", "if_revision": 4}"#,
        )
        .unwrap();
        assert_eq!(
            set.targets,
            vec![TrafficTarget {
                version: 3,
                weight: 100
            }]
        );
        assert_eq!(set.if_revision, Some(4));
        assert!(serde_json::from_str::<SetDeployment>(r#"{"targets": [], "weights": 1}"#).is_err());
    }
}
