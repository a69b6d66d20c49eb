//! Training triggers: when a model should be retrained, how the training
//! pipeline is asked, and the record of every time it was.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::profile::DriftThresholds;
use crate::rollout::RolloutPolicy;

/// A model's trigger policy (`PUT /api/v1/models/{m}/triggers/policy`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TriggerPolicy {
    /// What fires a run on its own; with none, only `sluice triggers fire` does.
    #[serde(default)]
    pub rules: Vec<TriggerRule>,
    pub action: TriggerAction,
    /// After a run fires, automatic rules wait this long (manual fires do not).
    #[serde(default = "default_cooldown_ms")]
    pub cooldown_ms: u64,
    /// Runs dispatched or running at once; a rule that fires beyond it is skipped.
    #[serde(default = "default_max_concurrent")]
    pub max_concurrent: u32,
    /// A run that has not completed (registered a version, or reported) in
    /// this long is marked expired and stops counting against the cap.
    #[serde(default = "default_run_timeout_ms")]
    pub run_timeout_ms: u64,
    /// When set, a version a run registers is rolled out as a canary with
    /// this policy as soon as it reaches a stage that may take traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutPolicy>,
}

fn default_cooldown_ms() -> u64 {
    6 * 3600 * 1000
}

fn default_max_concurrent() -> u32 {
    1
}

fn default_run_timeout_ms() -> u64 {
    6 * 3600 * 1000
}

fn default_windows() -> u32 {
    3
}

fn default_min_labels() -> u64 {
    100
}

/// One condition that fires a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum TriggerRule {
    /// Dataset drift of the serving version in `windows` consecutive windows
    /// of `window_ms` (aligned to the clock: a 10-minute window ends at :00,
    /// :10, ...).
    Drift {
        window_ms: u64,
        #[serde(default = "default_windows")]
        windows: u32,
        /// Default: the drift API's defaults.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        thresholds: Option<DriftThresholds>,
    },
    /// The realized metric (`accuracy`, `auc`, or `mae`) worse than
    /// `threshold` (below it; above it for `mae`) in `windows` consecutive
    /// windows, each with at least `min_labels` joined rows.
    Performance {
        metric: String,
        threshold: f64,
        window_ms: u64,
        #[serde(default = "default_windows")]
        windows: u32,
        #[serde(default = "default_min_labels")]
        min_labels: u64,
    },
    /// More than `max_rate` of the serving version's checked rows broke one
    /// check of its data contract in `windows` consecutive windows, each
    /// with at least `min_rows` rows checked.
    Contract {
        max_rate: f64,
        window_ms: u64,
        #[serde(default = "default_windows")]
        windows: u32,
        #[serde(default = "default_min_labels")]
        min_rows: u64,
    },
    /// A five-field cron expression (minute hour day-of-month month
    /// day-of-week), in UTC.
    Schedule { cron: String },
}

impl TriggerRule {
    pub fn reason(&self) -> &'static str {
        match self {
            TriggerRule::Drift { .. } => "drift",
            TriggerRule::Performance { .. } => "performance",
            TriggerRule::Contract { .. } => "contract",
            TriggerRule::Schedule { .. } => "schedule",
        }
    }
}

/// How the training pipeline is asked to run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum TriggerAction {
    /// POST a JSON payload to a host the registry's operator allows
    /// (`webhook_hosts`), retried with exponential backoff on 5xx, 429 and
    /// connection errors; redirects are not followed. `format: airflow` wraps it as Airflow's
    /// `dagRuns` body (`dag_run_id` + `conf`); an Airflow 409 (that run
    /// exists already) counts as delivered.
    Webhook {
        url: String,
        #[serde(default)]
        format: WebhookFormat,
        /// Extra headers; a value `${NAME}` is the registry's environment
        /// variable NAME, when its operator allows that name
        /// (`webhook_env`), so secrets stay out of the database.
        #[serde(default)]
        headers: BTreeMap<String, String>,
        #[serde(default = "default_attempts")]
        max_attempts: u32,
        /// The first retry's delay; each next one doubles it.
        #[serde(default = "default_backoff_ms")]
        backoff_ms: u64,
    },
    /// Run a command the registry's operator declared (`--actions-file`):
    /// a policy names it and fills the parameters the declaration allows,
    /// and can add no program and no argument. It gets the run in its
    /// environment (`SLUICE_TRIGGER_ID`, `SLUICE_MODEL`,
    /// `SLUICE_BASE_VERSION`, `SLUICE_TRIGGER_REASON`,
    /// `SLUICE_REGISTRY_URL`) and the whole run as JSON in the file named by
    /// `SLUICE_TRIGGER_CONTEXT`. Exit status 0 is success.
    Command {
        name: String,
        /// Values for the declared parameters, by name (an integer, a
        /// number, `true`/`false` for a switch, or one of its choices).
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        params: BTreeMap<String, Value>,
    },
}

fn default_attempts() -> u32 {
    5
}

fn default_backoff_ms() -> u64 {
    1000
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WebhookFormat {
    /// The run itself (see [`TriggerPayload`]): for Argo Events' webhook
    /// source, Argo Workflows' `/api/v1/events/{namespace}/{discriminator}`,
    /// or your own service.
    #[default]
    Sluice,
    /// `{"dag_run_id": "sluice-<model>-<id>", "conf": <payload>}` for
    /// Airflow's `POST /api/v1/dags/{dag_id}/dagRuns`.
    Airflow,
}

/// A model's policy with what it has done lately (`sluice triggers list`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TriggerState {
    pub model: String,
    pub policy: TriggerPolicy,
    pub updated_at: String,
    pub updated_by: String,
    /// Runs dispatched or running now.
    pub active_runs: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<TriggerRun>,
    /// Where each windowed rule stands (drift, performance, contract), as
    /// the monitor last judged it: why a rule has not fired yet. Kept in
    /// memory: empty until the monitor's first window after a restart.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub progress: Vec<RuleProgress>,
}

/// One windowed rule's streak.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RuleProgress {
    /// The rule's place in the policy's `rules`, from 0.
    pub rule: usize,
    /// The end of the last window judged (Unix milliseconds).
    pub last_window_end_ms: u64,
    /// Bad windows in a row so far, of the rule's `windows`.
    pub bad_in_a_row: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Fired; the action is being delivered.
    Dispatching,
    /// Delivered: the pipeline runs (a webhook) or the command does.
    Running,
    Succeeded,
    Failed,
    /// Did not complete within the policy's `run_timeout_ms`.
    Expired,
}

impl RunStatus {
    pub fn is_active(self) -> bool {
        matches!(self, RunStatus::Dispatching | RunStatus::Running)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Dispatching => "dispatching",
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Expired => "expired",
        }
    }
}

/// One time a model's training was asked for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TriggerRun {
    pub id: u64,
    pub model: String,
    /// The version serving when it fired: what the new one is trained to replace.
    pub base_version: u64,
    /// `drift`, `performance`, `schedule` or `manual`.
    pub reason: String,
    /// Why: the drifted features and by how much, the realized metric, the
    /// scheduled time, or the caller's note.
    pub evidence: Value,
    pub window_start_ms: u64,
    pub window_end_ms: u64,
    /// At most one run per key: a rule firing twice for the same window
    /// (two registry ticks, a restart) fires once.
    pub idempotency_key: String,
    pub status: RunStatus,
    /// Webhook deliveries tried.
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The version the run registered (its lineage names this run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_version: Option<u64>,
    /// What became of the automatic canary of that version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<String>,
    pub fired_by: String,
    pub created_at: String,
    pub created_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
}

/// What a webhook receives and a command reads from `SLUICE_TRIGGER_CONTEXT`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TriggerPayload {
    pub trigger_id: u64,
    pub model: String,
    pub base_version: u64,
    pub reason: String,
    pub evidence: Value,
    pub window: PayloadWindow,
    pub idempotency_key: String,
    /// Where the pipeline registers the new version (with
    /// `lineage.trigger_id` and `lineage.parent_version` set).
    pub registry_url: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PayloadWindow {
    pub start_ms: u64,
    pub end_ms: u64,
}

/// `POST /api/v1/models/{m}/triggers`: fire a run by hand.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FireTrigger {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Firing twice with the same key fires once (the second answer is the first run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

/// `POST /api/v1/triggers/{id}/complete`: an external pipeline reports its end.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompleteRun {
    pub succeeded: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}
