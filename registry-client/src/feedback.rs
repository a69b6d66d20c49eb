//! Ground truth: the labels applications send back for predictions they
//! were given, and the realized performance the registry computes by joining
//! them with the prediction log.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One label for one logged prediction, as `POST /v2/models/{m}/feedback`
/// takes it (alone, or many in a JSON array).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Feedback {
    /// The prediction's `x-request-id`.
    pub request_id: String,
    /// The true outcome: a class (number, string or boolean) for a
    /// classifier, a number for a regressor; a list of them, one per row,
    /// when the request held several rows.
    pub label: Value,
}

/// What a model's outputs are judged as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    Classifier,
    Regressor,
}

/// How a version's predictions fared against the labels that came back.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Performance {
    pub model: String,
    pub version: u64,
    /// The window: labels joined in the last `window_ms`.
    pub window_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<Task>,
    /// Rows with both a prediction and a label.
    pub joined: u64,
    /// Share of joined rows whose predicted class was the label (classifiers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accuracy: Option<f64>,
    /// Area under the ROC curve, from the positive class's score binned in
    /// hundredths (binary classifiers whose labels are 0 and 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auc: Option<f64>,
    /// Mean absolute error (regressors).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mae: Option<f64>,
    /// The version's recorded metrics (lineage), for comparison.
    #[serde(default)]
    pub recorded: BTreeMap<String, f64>,
    /// Each realized metric next to the recorded one it matches
    /// (`auc` ↔ `auc`, `val_auc`, `train_auc`...).
    #[serde(default)]
    pub compared: Vec<Comparison>,
    /// What the joiner could not use, for this model since the registry started.
    pub unmatched: Unmatched,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Comparison {
    pub metric: String,
    pub realized: f64,
    /// The recorded metric it is compared with, and its value.
    pub recorded_as: String,
    pub recorded: f64,
    /// `realized - recorded`.
    pub delta: f64,
}

/// Feedback that found no prediction to join with: counted, never an error.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Unmatched {
    /// No logged prediction has this request id.
    pub unknown: u64,
    /// The prediction was logged, but longer ago than the join horizon.
    pub late: u64,
    /// A second label for a prediction already labelled.
    pub duplicate: u64,
    /// The label's rows do not match the prediction's, or its type the task's.
    pub mismatched: u64,
    /// Waiting for its prediction's log segment (within the grace period).
    pub pending: u64,
    /// Let go while waiting: more labels waited than the registry holds
    /// (`--feedback-max-waiting-bytes`), the oldest first.
    #[serde(default)]
    pub dropped: u64,
}
