//! The governance policy: which approvals each stage needs, which metric
//! gates a version must pass to enter it, and which stages may take traffic.
//!
//! ```toml
//! deployable_stages = ["staging", "production"]
//!
//! [stages.staging]
//! approvals = ["technical"]
//! requester_may_approve = true
//!
//! [stages.production]
//! approvals = ["technical", "business"]
//! gates = ["auc >= 0.85"]
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::Deserialize;
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
            gates: Vec::new(),
            requester_may_approve,
        };
        Policy {
            deployable_stages: default_deployable_stages(),
            stages: BTreeMap::from([
                (Stage::Staging, rule(&["technical"], true)),
                (Stage::Production, rule(&["technical", "business"], false)),
            ]),
        }
    }
}

impl Policy {
    pub fn load(path: &Path) -> Result<Policy, String> {
        let text = std::fs::read_to_string(path).map_err(|err| format!("{}: {err}", path.display()))?;
        toml::from_str(&text).map_err(|err| format!("{}: {err}", path.display()))
    }

    pub fn rule(&self, stage: Stage) -> StageRule {
        self.stages.get(&stage).cloned().unwrap_or_default()
    }

    /// Every gate of `stage` that `lineage` fails, as one message.
    pub fn gate_failures(&self, stage: Stage, lineage: &Lineage) -> Option<String> {
        let failures: Vec<String> = self
            .rule(stage)
            .gates
            .iter()
            .filter_map(|gate| gate.failure(lineage))
            .collect();
        (!failures.is_empty()).then(|| format!("cannot enter {stage}: {}", failures.join("; ")))
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
