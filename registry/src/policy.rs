//! The governance policy: which approvals each stage needs, which gates a
//! version must pass to enter it (recorded metrics, the model's behavioural
//! suite, the gaps between slices in realized performance), which stages
//! may take traffic, and what a rollout needs to start.
//!
//! ```toml
//! deployable_stages = ["staging", "production"]
//! slice_min_rows = 30
//!
//! [stages.staging]
//! approvals = ["technical"]
//! requester_may_approve = true
//! require_suite = true
//! max_weight = 50          # a staging version takes at most half the traffic
//!
//! [stages.production]
//! approvals = ["technical", "business"]
//! gates = ["auc >= 0.85"]
//! require_suite = true
//! slice_gates = ["false_negative_rate_gap <= 0.1"]
//!
//! [rollouts]
//! require_suite = true
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::Deserialize;
use sluice_registry_client::slices::{SLICE_METRICS, SliceReport};
use sluice_registry_client::types::{Lineage, Stage};

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Stages whose versions may take weight in a deployment.
    #[serde(default = "default_deployable_stages")]
    pub deployable_stages: Vec<Stage>,
    /// Rules to enter each stage; a stage not listed needs nothing.
    #[serde(default)]
    pub stages: BTreeMap<Stage, StageRule>,
    /// What a progressive rollout's canary must pass before it starts.
    #[serde(default)]
    pub rollouts: RolloutRule,
    /// Labelled rows a slice needs to count towards a slice gap.
    #[serde(default = "default_slice_min_rows")]
    pub slice_min_rows: u64,
    /// How long a version moved out of a stage by `max_versions` (the
    /// previous production version, when another enters production) stays
    /// deployable, so that `traffic undo` and a fast way back work; then it
    /// is archived for good.
    #[serde(default = "default_rollback_window_ms")]
    pub rollback_window_ms: u64,
}

fn default_slice_min_rows() -> u64 {
    30
}

/// A day: the next working day's on-call can still go back.
pub const DEFAULT_ROLLBACK_WINDOW_MS: u64 = 24 * 3600 * 1000;

fn default_rollback_window_ms() -> u64 {
    DEFAULT_ROLLBACK_WINDOW_MS
}

/// One production version per model unless the policy says more.
pub const DEFAULT_MAX_PRODUCTION_VERSIONS: u32 = 1;

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutRule {
    /// The model's behavioural suite must pass on the canary.
    #[serde(default)]
    pub require_suite: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageRule {
    /// Kinds of approval, each from a different approver.
    #[serde(default)]
    pub approvals: Vec<String>,
    #[serde(default)]
    pub gates: Vec<Gate>,
    /// Whether whoever requested the transition may also approve it
    /// (four eyes when false, the default).
    #[serde(default)]
    pub requester_may_approve: bool,
    /// The model's behavioural suite (its latest revision) must pass on
    /// the version; run when the transition is requested.
    #[serde(default)]
    pub require_suite: bool,
    /// `<metric>_gap op threshold` on the version's realized performance
    /// per slice (`false_negative_rate_gap <= 0.1`).
    #[serde(default)]
    pub slice_gates: Vec<Gate>,
    /// The largest share of an endpoint's traffic, in percent, a version
    /// in this stage may take, on every path that sets weights (traffic
    /// set, rollout steps, undo); absent: 100. With staging below 100, no
    /// version serves all traffic before it passes production's rules.
    #[serde(default)]
    pub max_weight: Option<u32>,
    /// The most versions of a model this stage holds at once: a version
    /// entering it moves the oldest others out (archived, deployable for
    /// the rollback window). Absent: 1 for production, no bound elsewhere.
    #[serde(default)]
    pub max_versions: Option<u32>,
}

/// `metric op threshold`, checked against the version's recorded metrics.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "String")]
pub struct Gate {
    pub metric: String,
    pub op: Comparison,
    pub threshold: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    AtLeast,
    Above,
    AtMost,
    Below,
}

impl Comparison {
    fn symbol(self) -> &'static str {
        match self {
            Comparison::AtLeast => ">=",
            Comparison::Above => ">",
            Comparison::AtMost => "<=",
            Comparison::Below => "<",
        }
    }

    fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Comparison::AtLeast => value >= threshold,
            Comparison::Above => value > threshold,
            Comparison::AtMost => value <= threshold,
            Comparison::Below => value < threshold,
        }
    }
}

impl TryFrom<String> for Gate {
    type Error = String;

    fn try_from(text: String) -> Result<Gate, String> {
        let expected =
            || format!("invalid gate '{text}': expected 'metric OP number' with OP one of >=, >, <=, <");
        let parts: Vec<&str> = text.split_whitespace().collect();
        let [metric, op, threshold] = parts[..] else {
            return Err(expected());
        };
        let op = match op {
            ">=" => Comparison::AtLeast,
            ">" => Comparison::Above,
            "<=" => Comparison::AtMost,
            "<" => Comparison::Below,
            _ => return Err(expected()),
        };
        let threshold: f64 = threshold.parse().map_err(|_| expected())?;
        Ok(Gate {
            metric: metric.to_string(),
            op,
            threshold,
        })
    }
}

impl fmt::Display for Gate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.metric, self.op.symbol(), self.threshold)
    }
}

impl Gate {
    /// Why a slice gate fails on `report`, `None` when it passes.
    pub fn slice_failure(&self, report: &SliceReport) -> Option<String> {
        let metric = self.metric.strip_suffix("_gap").unwrap_or(&self.metric);
        let Some(gap) = report.gap(metric) else {
            let counted = report.slices.iter().filter(|slice| slice.counted).count();
            return Some(format!(
                "slice gate '{self}' fails: it needs {metric} on two slices with at least {} labelled rows in the last {}, and version {} has {counted} such slice{}",
                report.min_rows,
                humantime::format_duration(std::time::Duration::from_millis(report.window_ms)),
                report.version,
                if counted == 1 { "" } else { "s" }
            ));
        };
        (!self.op.holds(gap.gap, self.threshold)).then(|| {
            let value = |name: &str| {
                report
                    .slices
                    .iter()
                    .find(|slice| slice.slice == name)
                    .and_then(|slice| slice.metric(metric))
                    .unwrap_or(f64::NAN)
            };
            format!(
                "slice gate '{self}' fails: {metric} is {:.4} for '{}' and {:.4} for '{}', a gap of {:.4}",
                value(&gap.highest),
                gap.highest,
                value(&gap.lowest),
                gap.lowest,
                gap.gap
            )
        })
    }

    /// Why the gate fails for these metrics, `None` when it passes.
    pub fn failure(&self, lineage: &Lineage) -> Option<String> {
        match lineage.metrics.get(&self.metric) {
            None => Some(format!(
                "gate '{self}' fails: metric '{}' is not recorded",
                self.metric
            )),
            Some(&value) if !self.op.holds(value, self.threshold) => {
                Some(format!("gate '{self}' fails: {} is {value}", self.metric))
            }
            Some(_) => None,
        }
    }
}

fn default_deployable_stages() -> Vec<Stage> {
    vec![Stage::Staging, Stage::Production]
}

impl Default for Policy {
    /// Staging needs a technical approval (the requester's own will do),
    /// production a technical and a business one from people other than the
    /// requester; staging and production versions may take traffic.
    fn default() -> Policy {
        let rule = |approvals: &[&str], requester_may_approve| StageRule {
            approvals: approvals.iter().map(|kind| kind.to_string()).collect(),
            requester_may_approve,
            ..StageRule::default()
        };
        Policy {
            deployable_stages: default_deployable_stages(),
            rollouts: RolloutRule::default(),
            slice_min_rows: default_slice_min_rows(),
            rollback_window_ms: DEFAULT_ROLLBACK_WINDOW_MS,
            stages: BTreeMap::from([
                (Stage::Staging, rule(&["technical"], true)),
                (Stage::Production, rule(&["technical", "business"], false)),
            ]),
        }
    }
}

impl Policy {
    /// A policy file, TOML or JSON (`sluice_common::documents`), checked.
    pub fn load(path: &Path) -> Result<Policy, String> {
        let policy: Policy = sluice_common::documents::read(path)?;
        policy
            .check()
            .map_err(|err| format!("{}: {err}", path.display()))?;
        Ok(policy)
    }

    /// A policy file's text, checked (the fuzz target `policy` feeds it anything).
    pub fn parse(text: &str) -> Result<Policy, String> {
        let policy: Policy = toml::from_str(text).map_err(|err| err.to_string())?;
        policy.check()?;
        Ok(policy)
    }

    /// What serde cannot check: slice gates name a gap of a known metric,
    /// a stage's max_weight is a percentage.
    pub fn check(&self) -> Result<(), String> {
        for (stage, rule) in &self.stages {
            if let Some(weight) = rule.max_weight
                && weight > 100
            {
                return Err(format!(
                    "stages.{stage}.max_weight is {weight}: expected a percentage from 0 to 100"
                ));
            }
            if rule.max_versions == Some(0) {
                return Err(format!(
                    "stages.{stage}.max_versions is 0: expected at least 1 (leave it out for no bound)"
                ));
            }
            for gate in &rule.slice_gates {
                let known = gate
                    .metric
                    .strip_suffix("_gap")
                    .is_some_and(|metric| SLICE_METRICS.contains(&metric));
                if !known {
                    let names: Vec<String> = SLICE_METRICS
                        .iter()
                        .map(|metric| format!("{metric}_gap"))
                        .collect();
                    return Err(format!(
                        "stages.{stage}.slice_gates: '{gate}' names no slice gap: expected one of {}",
                        names.join(", ")
                    ));
                }
            }
        }
        Ok(())
    }

    pub fn rule(&self, stage: Stage) -> StageRule {
        self.stages.get(&stage).cloned().unwrap_or_default()
    }

    /// Every gate of `stage` that `lineage` fails, as one message.
    pub fn gate_failures(&self, stage: Stage, lineage: &Lineage) -> Option<String> {
        let failures = self.failed_gates(stage, lineage);
        (!failures.is_empty()).then(|| format!("cannot enter {stage}: {}", failures.join("; ")))
    }

    /// Why each gate of `stage` that `lineage` fails, fails.
    pub fn failed_gates(&self, stage: Stage, lineage: &Lineage) -> Vec<String> {
        self.rule(stage)
            .gates
            .iter()
            .filter_map(|gate| gate.failure(lineage))
            .collect()
    }

    /// The largest weight a version in `stage` may take (`max_weight`).
    pub fn max_weight(&self, stage: Stage) -> u32 {
        self.stages
            .get(&stage)
            .and_then(|rule| rule.max_weight)
            .unwrap_or(100)
    }

    /// The most versions `stage` holds at once; `None`: no bound.
    pub fn max_versions(&self, stage: Stage) -> Option<u32> {
        let rule = self.stages.get(&stage).and_then(|rule| rule.max_versions);
        match (rule, stage) {
            (Some(most), _) => Some(most),
            (None, Stage::Production) => Some(DEFAULT_MAX_PRODUCTION_VERSIONS),
            (None, _) => None,
        }
    }

    /// The rule that lets a version into `stage`, for the audit log:
    /// `stages.production: approvals technical, business; gates auc >= 0.85`.
    pub fn describe_rule(&self, stage: Stage) -> String {
        let rule = self.rule(stage);
        let mut parts = Vec::new();
        if !rule.approvals.is_empty() {
            let four_eyes = if rule.requester_may_approve {
                ""
            } else {
                " (not the requester)"
            };
            parts.push(format!("approvals {}{four_eyes}", rule.approvals.join(", ")));
        }
        if !rule.gates.is_empty() {
            let gates: Vec<String> = rule.gates.iter().map(Gate::to_string).collect();
            parts.push(format!("gates {}", gates.join(", ")));
        }
        if !rule.slice_gates.is_empty() {
            let gates: Vec<String> = rule.slice_gates.iter().map(Gate::to_string).collect();
            parts.push(format!("slice gates {}", gates.join(", ")));
        }
        if rule.require_suite {
            parts.push("suite passed".into());
        }
        if parts.is_empty() {
            parts.push("nothing required".into());
        }
        format!("stages.{stage}: {}", parts.join("; "))
    }

    pub fn is_deployable(&self, stage: Stage) -> bool {
        self.deployable_stages.contains(&stage)
    }

    pub fn deployable_names(&self) -> String {
        let names: Vec<&str> = self
            .deployable_stages
            .iter()
            .map(|stage| stage.as_str())
            .collect();
        names.join(" or ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_policy_file() {
        let policy: Policy = toml::from_str(
            "deployable_stages = [\"production\"]\n[stages.production]\napprovals = [\"technical\"]\ngates = [\"auc >= 0.85\", \"latency_ms < 20\"]",
        )
        .unwrap();
        assert_eq!(policy.deployable_stages, vec![Stage::Production]);
        let rule = policy.rule(Stage::Production);
        assert_eq!(rule.gates[1].to_string(), "latency_ms < 20");
        assert_eq!(policy.rule(Stage::Staging), StageRule::default());
        assert!(toml::from_str::<Policy>("[stages.production]\ngates = [\"auc => 1\"]").is_err());
        assert!(toml::from_str::<Policy>("[stages.live]\napprovals = []").is_err());
    }

    #[test]
    fn the_example_policy_with_quality_gates_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/policy.toml");
        let policy = Policy::load(&path).unwrap();
        let production = policy.rule(Stage::Production);
        assert!(production.require_suite && policy.rollouts.require_suite);
        assert_eq!(
            production.slice_gates[0].to_string(),
            "false_negative_rate_gap <= 0.15"
        );
        let unknown: Policy = toml::from_str("[stages.production]\nslice_gates = [\"auc >= 0.8\"]").unwrap();
        let err = unknown.check().unwrap_err();
        assert!(err.contains("'auc >= 0.8' names no slice gap"), "{err}");
    }

    #[test]
    fn slice_gates_pass_fail_or_want_more_rows() {
        use sluice_registry_client::slices::SliceMetrics;
        let gate = Gate::try_from("false_negative_rate_gap <= 0.1".to_string()).unwrap();
        let report = |rows: u64, rates: [f64; 2]| {
            SliceReport {
                model: "m".into(),
                version: 3,
                window_ms: 3600 * 1000,
                spec: None,
                min_rows: 30,
                slices: ["age < 30", "age >= 30"]
                    .iter()
                    .zip(rates)
                    .map(|(name, rate)| SliceMetrics {
                        slice: name.to_string(),
                        rows,
                        false_negative_rate: Some(rate),
                        ..Default::default()
                    })
                    .collect(),
                gaps: vec![],
            }
            .with_gaps()
        };
        assert_eq!(gate.slice_failure(&report(50, [0.20, 0.25])), None);
        let failure = gate.slice_failure(&report(50, [0.20, 0.45])).unwrap();
        assert!(
            failure.contains("0.4500 for 'age >= 30' and 0.2000 for 'age < 30', a gap of 0.2500"),
            "{failure}"
        );
        let failure = gate.slice_failure(&report(10, [0.20, 0.25])).unwrap();
        assert!(
            failure.contains(
                "two slices with at least 30 labelled rows in the last 1h, and version 3 has 0 such slices"
            ),
            "{failure}"
        );
    }

    #[test]
    fn gates_name_what_fails() {
        let policy: Policy =
            toml::from_str("[stages.production]\ngates = [\"auc >= 0.85\", \"ks > 0.3\"]").unwrap();
        let mut lineage = Lineage::default();
        lineage.metrics.insert("auc".into(), 0.81);
        let failure = policy.gate_failures(Stage::Production, &lineage).unwrap();
        assert!(
            failure.contains("gate 'auc >= 0.85' fails: auc is 0.81"),
            "{failure}"
        );
        assert!(failure.contains("metric 'ks' is not recorded"), "{failure}");
        lineage.metrics.insert("auc".into(), 0.85);
        lineage.metrics.insert("ks".into(), 0.4);
        assert_eq!(policy.gate_failures(Stage::Production, &lineage), None);
    }
}
