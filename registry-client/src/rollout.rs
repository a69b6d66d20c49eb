//! Wire types of traffic feedback: the per-version statistics gateways
//! report, and progressive rollouts the registry runs on them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Upper bounds (milliseconds) of the latency buckets every gateway counts
/// into; the last bucket is everything above. Fixed, so that windows from
/// many replicas merge by adding counts.
pub const LATENCY_BUCKETS_MS: [f64; 28] = [
    0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 50.0, 75.0, 100.0,
    150.0, 200.0, 300.0, 500.0, 750.0, 1000.0, 2000.0, 5000.0, 10000.0,
];

/// Counts of one version over one window of one gateway; windows add up.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VersionWindow {
    pub model: String,
    pub version: u64,
    /// When the gateway began and ended counting this window (Unix
    /// milliseconds): a rollout interval or trigger window takes the
    /// windows that ended in it.
    #[serde(default)]
    pub started_ms: u64,
    #[serde(default)]
    pub ended_ms: u64,
    pub requests: u64,
    /// 4xx answers: the client's mistakes, not the version's.
    pub client_errors: u64,
    /// 5xx answers but 503 and 504 (an overloaded gateway, or the client's
    /// own expired `timeout`, is not the version's fault): what error-rate
    /// checks and the guard count.
    pub server_errors: u64,
    /// Requests the engine refused as invalid after the gateway's own
    /// validation passed them (answered 400). Not in `client_errors`: a
    /// rollout fails a canary that refuses more than the stable version.
    #[serde(default)]
    pub engine_refused: u64,
    /// 504s: the caller's `timeout` passed before the answer.
    #[serde(default)]
    pub timeouts: u64,
    /// Rows answered (the outputs' first dimension), and those holding a
    /// NaN or an infinity in any floating-point output.
    #[serde(default)]
    pub output_rows: u64,
    #[serde(default)]
    pub nonfinite_rows: u64,
    /// One count per [`LATENCY_BUCKETS_MS`] bound, plus one above the last.
    pub latency_buckets: Vec<u64>,
    /// Requests mirrored to this version as a shadow, and how it compared.
    #[serde(default)]
    pub shadow: ShadowWindow,
    /// Rows per bin of each profiled feature: the reference profile's bins,
    /// then underflow, overflow and missing.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub features: std::collections::BTreeMap<String, Vec<u64>>,
    /// The same for each profiled output column (prediction drift).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub outputs: std::collections::BTreeMap<String, Vec<u64>>,
    /// Rows checked against the version's data contract.
    #[serde(default)]
    pub contract_rows: u64,
    /// Rows breaking each check of the contract (`age:min`, a rule's text).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub contract_violations: std::collections::BTreeMap<String, u64>,
}

/// Adds bin counts by column name.
fn add_bins(
    totals: &mut std::collections::BTreeMap<String, Vec<u64>>,
    more: &std::collections::BTreeMap<String, Vec<u64>>,
) {
    for (name, counts) in more {
        let mine = totals.entry(name.clone()).or_default();
        if mine.len() < counts.len() {
            mine.resize(counts.len(), 0);
        }
        for (total, count) in mine.iter_mut().zip(counts) {
            *total = total.saturating_add(*count);
        }
    }
}

/// A shadow version's comparison with the primary over a window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ShadowWindow {
    pub requests: u64,
    pub errors: u64,
    pub rows: u64,
    pub agreements: u64,
    pub values: u64,
    pub sum_abs_diff: f64,
    pub max_abs_diff: f64,
}

impl VersionWindow {
    /// The highest share of checked rows that broke one check of the data
    /// contract, with that check; `None` when no row was checked.
    pub fn worst_contract_check(&self) -> Option<(&str, f64)> {
        (self.contract_rows > 0).then(|| {
            self.contract_violations
                .iter()
                .map(|(check, &count)| (check.as_str(), count as f64 / self.contract_rows as f64))
                .max_by(|a, b| a.1.total_cmp(&b.1))
                .unwrap_or(("", 0.0))
        })
    }

    /// Whether this window counted nothing at all. Every counter is looked
    /// at, not only `requests`: the gateway takes its counters one after the
    /// other while requests go on, so a request in flight at that moment
    /// can have its rows, its error or its latency in this window and its
    /// count in the next, or the other way round.
    pub fn is_empty(&self) -> bool {
        let shadow = &self.shadow;
        self.requests == 0
            && self.client_errors == 0
            && self.server_errors == 0
            && self.engine_refused == 0
            && self.timeouts == 0
            && self.output_rows == 0
            && self.nonfinite_rows == 0
            && self.latency_buckets.iter().all(|&count| count == 0)
            && shadow.requests == 0
            && shadow.errors == 0
            && shadow.rows == 0
            && shadow.agreements == 0
            && shadow.values == 0
            && shadow.sum_abs_diff == 0.0
            && shadow.max_abs_diff == 0.0
            && self.features.is_empty()
            && self.outputs.is_empty()
            && self.contract_rows == 0
            && self.contract_violations.is_empty()
    }

    /// Whether this window can be added to others: one count per latency
    /// bucket, finite differences.
    pub fn is_well_formed(&self) -> bool {
        self.latency_buckets.len() == LATENCY_BUCKETS_MS.len() + 1
            && self.shadow.sum_abs_diff.is_finite()
            && self.shadow.max_abs_diff.is_finite()
    }

    /// Adds `other` (the same version, another window or replica). Counts
    /// saturate rather than wrap: a report is never trusted to be small.
    pub fn merge(&mut self, other: &VersionWindow) {
        self.requests = self.requests.saturating_add(other.requests);
        self.client_errors = self.client_errors.saturating_add(other.client_errors);
        self.server_errors = self.server_errors.saturating_add(other.server_errors);
        self.engine_refused = self.engine_refused.saturating_add(other.engine_refused);
        self.timeouts = self.timeouts.saturating_add(other.timeouts);
        self.output_rows = self.output_rows.saturating_add(other.output_rows);
        self.nonfinite_rows = self.nonfinite_rows.saturating_add(other.nonfinite_rows);
        if self.latency_buckets.len() < other.latency_buckets.len() {
            self.latency_buckets.resize(other.latency_buckets.len(), 0);
        }
        for (mine, theirs) in self.latency_buckets.iter_mut().zip(&other.latency_buckets) {
            *mine = mine.saturating_add(*theirs);
        }
        let shadow = &mut self.shadow;
        shadow.requests = shadow.requests.saturating_add(other.shadow.requests);
        shadow.errors = shadow.errors.saturating_add(other.shadow.errors);
        shadow.rows = shadow.rows.saturating_add(other.shadow.rows);
        shadow.agreements = shadow.agreements.saturating_add(other.shadow.agreements);
        shadow.values = shadow.values.saturating_add(other.shadow.values);
        shadow.sum_abs_diff += other.shadow.sum_abs_diff;
        shadow.max_abs_diff = shadow.max_abs_diff.max(other.shadow.max_abs_diff);
        add_bins(&mut self.features, &other.features);
        add_bins(&mut self.outputs, &other.outputs);
        self.contract_rows = self.contract_rows.saturating_add(other.contract_rows);
        for (check, count) in &other.contract_violations {
            let mine = self.contract_violations.entry(check.clone()).or_default();
            *mine = mine.saturating_add(*count);
        }
    }

    /// 5xx answers (503 and 504 aside) per request; `None` without requests.
    pub fn error_rate(&self) -> Option<f64> {
        (self.requests > 0).then(|| self.server_errors as f64 / self.requests as f64)
    }

    /// Share of answered rows with a NaN or an infinity; `None` without rows.
    pub fn nonfinite_rate(&self) -> Option<f64> {
        (self.output_rows > 0).then(|| self.nonfinite_rows as f64 / self.output_rows as f64)
    }

    /// 504s per request; `None` without requests.
    pub fn timeout_rate(&self) -> Option<f64> {
        (self.requests > 0).then(|| self.timeouts as f64 / self.requests as f64)
    }

    /// The engine's refusals per request; `None` without requests.
    pub fn engine_refused_rate(&self) -> Option<f64> {
        (self.requests > 0).then(|| self.engine_refused as f64 / self.requests as f64)
    }

    /// The latency under which `quantile` of requests answered, interpolated
    /// linearly inside the bucket it falls in (as Prometheus'
    /// `histogram_quantile` does); above the last bound, that bound. `None`
    /// without requests.
    pub fn latency_quantile_ms(&self, quantile: f64) -> Option<f64> {
        let total = self
            .latency_buckets
            .iter()
            .fold(0u64, |sum, count| sum.saturating_add(*count));
        if total == 0 {
            return None;
        }
        let rank = (quantile * total as f64).max(1.0);
        let mut seen = 0u64;
        for (index, &count) in self.latency_buckets.iter().enumerate() {
            if count > 0 && seen.saturating_add(count) as f64 >= rank {
                let Some(&upper) = LATENCY_BUCKETS_MS.get(index) else {
                    return LATENCY_BUCKETS_MS.last().copied();
                };
                let lower = if index == 0 {
                    0.0
                } else {
                    LATENCY_BUCKETS_MS[index - 1]
                };
                let within = (rank - seen as f64) / count as f64;
                return Some(lower + (upper - lower) * within.clamp(0.0, 1.0));
            }
            seen = seen.saturating_add(count);
        }
        LATENCY_BUCKETS_MS.last().copied()
    }

    /// Share of compared rows whose class differed from the primary's.
    pub fn shadow_disagreement(&self) -> Option<f64> {
        (self.shadow.rows > 0).then(|| 1.0 - self.shadow.agreements as f64 / self.shadow.rows as f64)
    }
}

/// `POST /api/v1/stats`: one gateway's windows, sent every few seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StatsReport {
    /// Which replica sent it (host and process), for diagnostics.
    pub gateway: String,
    /// How often it reports (`--stats-interval-ms`): a rollout interval
    /// shorter than two of these could hold no whole window. 0: not said.
    #[serde(default)]
    pub interval_ms: u64,
    pub versions: Vec<VersionWindow>,
    /// What the gateway serves now, for the fleet view (`sluice gateways`);
    /// absent from gateways older than it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serving: Option<GatewayServing>,
}

/// What one gateway serves, as it says in each statistics report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GatewayServing {
    /// The registry's deployments revision its routing table is built from.
    pub revision: u64,
    /// Each model it routes, with the versions it has loaded.
    pub models: BTreeMap<String, Vec<u64>>,
    /// When the process started (RFC 3339).
    pub started_at: String,
    /// Its build (`sluice --version`).
    pub build: String,
}

/// `POST /api/v1/guard/{model}`: a gateway's local guard stopped routing to
/// a version that failed too often; the registry rolls it back everywhere.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GuardReport {
    pub gateway: String,
    /// The deployments revision the gateway served when it tripped: a report
    /// from before the current rollout began is about something else.
    #[serde(default)]
    pub revision: u64,
    pub version: u64,
    /// Failures among the last `window` requests when it tripped: server
    /// errors, or engine refusals beyond the stable version's.
    pub errors: u64,
    pub window: u64,
}

/// A progressive rollout's policy (Flagger's semantics): the canary's weight
/// climbs `step_weights` one `interval_ms` at a time while its checks pass.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RolloutPolicy {
    /// Canary weights, in order; the last step passed promotes it to 100.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub step_weights: Vec<u32>,
    /// Or: steps of `step_weight` up to `max_weight`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_weight: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_weight: Option<u32>,
    pub interval_ms: u64,
    /// Canary requests an interval needs to be judged; fewer is inconclusive.
    #[serde(default = "default_min_requests")]
    pub min_requests: u64,
    /// Largest excess of the canary's share of failures over the stable
    /// version's in the same interval, for each class: 5xx answers, the
    /// engine's refusals of input the gateway passed, and timeouts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_error_rate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_p99_ms: Option<f64>,
    /// Largest canary p99 over the stable version's p99.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_p99_ratio: Option<f64>,
    /// How much slower than the stable version's a canary's p99 must also
    /// be, in milliseconds, to break `max_p99_ratio`: 0.2 ms against 0.1 ms
    /// is noise, not a 2x regression.
    #[serde(default = "default_p99_floor_ms")]
    pub p99_floor_ms: f64,
    /// Largest excess of the canary's share of answered rows holding a NaN
    /// or an infinity over the stable version's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_nan_rate: Option<f64>,
    /// Largest share of rows where the canary, shadowing, disagreed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_shadow_disagreement: Option<f64>,
    /// Largest share of the canary's rows breaking any one check of its data
    /// contract (the deployment must check it: `contract`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_contract_violation_rate: Option<f64>,
    /// Failed intervals that roll the canary back.
    #[serde(default = "default_threshold")]
    pub threshold: u32,
    /// Called with the rollout (POST, JSON) when it is rolled back or
    /// promoted, and when it stalls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<String>,
    /// Inconclusive intervals in a row after which the rollout has stalled:
    /// a `rollout.inconclusive` event and metric, and the webhook, once.
    #[serde(default = "default_max_inconclusive")]
    pub max_inconclusive: u32,
    /// A stalled rollout rolls back instead of holding its weights.
    #[serde(default)]
    pub rollback_when_inconclusive: bool,
}

fn default_min_requests() -> u64 {
    100
}

fn default_threshold() -> u32 {
    3
}

fn default_max_inconclusive() -> u32 {
    10
}

fn default_p99_floor_ms() -> f64 {
    1.0
}

impl RolloutPolicy {
    /// The canary's weight at each step.
    pub fn steps(&self) -> Result<Vec<u32>, String> {
        let steps = if !self.step_weights.is_empty() {
            self.step_weights.clone()
        } else {
            let step = self
                .step_weight
                .ok_or("give step_weights, or step_weight with max_weight")?;
            let max = self.max_weight.unwrap_or(100);
            if step == 0 || step > 100 || max == 0 || max > 100 {
                return Err(format!(
                    "step_weight {step} and max_weight {max}: expected both from 1 to 100"
                ));
            }
            // Flagger's stepping: step, 2 x step, ..., and max_weight last.
            let mut steps: Vec<u32> = (1..=max / step).map(|n| n * step).collect();
            if steps.last() != Some(&max) {
                steps.push(max);
            }
            steps
        };
        if steps.is_empty() || steps.iter().any(|&weight| weight == 0 || weight > 100) {
            return Err(format!("steps {steps:?}: expected weights from 1 to 100"));
        }
        if steps.windows(2).any(|pair| pair[0] >= pair[1]) {
            return Err(format!("steps {steps:?}: expected increasing weights"));
        }
        if self.interval_ms == 0 {
            return Err("interval_ms must be positive".into());
        }
        if self.threshold == 0 {
            return Err("threshold must be at least 1".into());
        }
        if let Some(rate) = self.max_contract_violation_rate
            && !(0.0..=1.0).contains(&rate)
        {
            return Err(format!(
                "max_contract_violation_rate is {rate}: expected a share from 0 to 1"
            ));
        }
        Ok(steps)
    }
}

/// Where a rollout is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RolloutStatus {
    Progressing,
    Paused,
    /// The canary passed its last step but is not in production: it holds
    /// its share until it enters production through production's approvals
    /// and gates (a stage request), then takes all traffic.
    AwaitingPromotion,
    /// The canary took all traffic, in production.
    Promoted,
    /// Failed checks reached the threshold (or a gateway's guard tripped).
    RolledBack,
    /// Stopped by hand: the stable version took all traffic back.
    Aborted,
}

impl RolloutStatus {
    pub fn is_active(self) -> bool {
        matches!(
            self,
            RolloutStatus::Progressing | RolloutStatus::Paused | RolloutStatus::AwaitingPromotion
        )
    }

    /// For people: `rolled back`, not `rolled_back`.
    pub fn describe(self) -> &'static str {
        match self {
            RolloutStatus::Progressing => "progressing",
            RolloutStatus::Paused => "paused",
            RolloutStatus::AwaitingPromotion => "awaiting promotion to production",
            RolloutStatus::Promoted => "promoted",
            RolloutStatus::RolledBack => "rolled back",
            RolloutStatus::Aborted => "aborted",
        }
    }
}

/// What one interval measured and decided.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct IntervalResult {
    pub ended_at: String,
    pub canary_weight: u32,
    pub canary_requests: u64,
    pub error_rate: Option<f64>,
    /// The stable version's, in the same interval: the canary is judged on
    /// its excess over it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_error_rate: Option<f64>,
    /// Share of the canary's requests its engine refused, and the stable
    /// version's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine_refused_rate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_engine_refused_rate: Option<f64>,
    /// Share of the canary's answered rows holding a NaN or an infinity,
    /// and the stable version's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonfinite_rate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_nonfinite_rate: Option<f64>,
    pub p99_ms: Option<f64>,
    pub stable_p99_ms: Option<f64>,
    pub shadow_disagreement: Option<f64>,
    /// `passed`, `failed` or `inconclusive`.
    pub verdict: String,
    /// Why it failed or was inconclusive.
    pub reasons: Vec<String>,
    /// Failed before its end: the sequential tests found the evidence
    /// against the canary conclusive, and it was rolled back at once.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub conclusive: bool,
}

/// A rollout as the registry runs it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Rollout {
    pub model: String,
    pub canary: u64,
    pub stable: u64,
    pub policy: RolloutPolicy,
    pub status: RolloutStatus,
    /// Index into the steps of the current canary weight.
    pub step: usize,
    pub canary_weight: u32,
    pub failed_intervals: u32,
    pub intervals: Vec<IntervalResult>,
    pub started_by: String,
    pub started_at: String,
    pub updated_at: String,
    /// When the current interval began (Unix milliseconds).
    pub interval_started_ms: u64,
    /// The deployments revision this rollout began at.
    pub started_revision: u64,
    /// The deployment's revision after this rollout's last change: another
    /// revision means someone else changed the traffic.
    pub deployment_revision: u64,
    /// Inconclusive intervals since the last judged one.
    #[serde(default)]
    pub inconclusive_in_a_row: u32,
    /// What the sequential tests have seen of the canary so far.
    #[serde(default)]
    pub evidence: Evidence,
}

/// The state of a rollout's sequential tests (the registry's
/// `rollout/evidence.rs` says how they work): one per class of bad answer
/// the policy asks about, fed every statistics window as it arrives, so a
/// clearly bad canary is rolled back before its interval ends.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Evidence {
    /// Windows that reached the registry before this (Unix milliseconds,
    /// the registry's clock) are in.
    pub until_ms: u64,
    pub classes: Vec<ClassEvidence>,
    /// The stable version's latency buckets over the rollout: where
    /// "slow" begins for the canary.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stable_latency: Vec<u64>,
}

/// One sequential test: bad events (5xx, refusals, NaN rows, slow
/// requests, disagreeing rows) among trials, the canary's and the stable
/// version's, since the rollout started.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ClassEvidence {
    /// `error rate`, `engine refusal rate`, `timeout rate`, `non-finite
    /// rows`, `slow requests` or `shadow disagreement`.
    pub class: String,
    pub canary_events: f64,
    pub canary_trials: f64,
    pub stable_events: f64,
    pub stable_trials: f64,
    /// The stable version's counts of the last half minute or so (older
    /// windows fade): its rate now, to compare each window with.
    #[serde(default)]
    pub recent_stable_events: f64,
    #[serde(default)]
    pub recent_stable_trials: f64,
    /// Log-likelihood ratio of each alternative (the canary worse than
    /// the stable version by the policy's limit, twice it, four times...)
    /// against the canary being as good, reset at 0 (a CUSUM).
    pub log_ratios: Vec<f64>,
    /// The largest log-likelihood ratio over the boundary: 1 or more rolls
    /// the canary back.
    pub score: f64,
}

/// `POST /api/v1/rollouts/{model}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartRollout {
    pub canary: u64,
    pub policy: RolloutPolicy,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RolloutPolicy {
        RolloutPolicy {
            step_weights: Vec::new(),
            step_weight: Some(20),
            max_weight: Some(50),
            interval_ms: 1000,
            min_requests: 1,
            max_error_rate: None,
            max_p99_ms: None,
            max_p99_ratio: None,
            p99_floor_ms: 1.0,
            max_shadow_disagreement: None,
            max_nan_rate: None,
            max_contract_violation_rate: None,
            threshold: 1,
            webhook: None,
            max_inconclusive: 10,
            rollback_when_inconclusive: false,
        }
    }

    #[test]
    fn steps_follow_flagger_and_refuse_nonsense() {
        assert_eq!(policy().steps().unwrap(), vec![20, 40, 50]);
        let huge = RolloutPolicy {
            step_weight: Some(1),
            max_weight: Some(4_000_000_000),
            ..policy()
        };
        assert!(huge.steps().unwrap_err().contains("from 1 to 100"));
        let backwards = RolloutPolicy {
            step_weights: vec![30, 10],
            ..policy()
        };
        assert!(backwards.steps().unwrap_err().contains("increasing"));
    }

    #[test]
    fn quantiles_interpolate_inside_a_bucket_and_merges_saturate() {
        let mut window = VersionWindow {
            latency_buckets: vec![0; LATENCY_BUCKETS_MS.len() + 1],
            ..Default::default()
        };
        // 100 answers between 7.5 and 10 ms.
        window.latency_buckets[12] = 100;
        let p99 = window.latency_quantile_ms(0.99).unwrap();
        assert!((p99 - 9.975).abs() < 1e-9, "{p99}");
        assert_eq!(window.latency_quantile_ms(0.5), Some(8.75));
        let mut huge = window.clone();
        huge.requests = u64::MAX;
        window.requests = 7;
        window.merge(&huge);
        assert_eq!(window.requests, u64::MAX);
        assert!(window.is_well_formed());
        window.latency_buckets.pop();
        assert!(!window.is_well_formed());
    }

    #[test]
    fn a_window_with_any_count_is_not_empty() {
        assert!(VersionWindow::default().is_empty());
        let mut rows_only = VersionWindow::default();
        rows_only.features.insert("age".into(), vec![0, 1, 0]);
        assert!(
            !rows_only.is_empty(),
            "a request's rows, its answer not yet counted"
        );
        let outputs_only = VersionWindow {
            outputs: [("label".to_string(), vec![1])].into(),
            ..Default::default()
        };
        assert!(!outputs_only.is_empty());
        let contract_only = VersionWindow {
            contract_rows: 1,
            ..Default::default()
        };
        assert!(!contract_only.is_empty());
        let mut latency_only = VersionWindow {
            latency_buckets: vec![0; LATENCY_BUCKETS_MS.len() + 1],
            ..Default::default()
        };
        assert!(latency_only.is_empty(), "zero buckets count nothing");
        latency_only.latency_buckets[3] = 1;
        assert!(
            !latency_only.is_empty(),
            "a request's latency, its count in the last window"
        );
        let mut agreement_only = VersionWindow::default();
        agreement_only.shadow.agreements = 2;
        assert!(!agreement_only.is_empty());
    }
}
