//! Behavioural test suites: what a model must do, checked on a version
//! before it takes traffic (CheckList's test types, for tabular models).
//!
//! A suite belongs to a model, not to one version: each `PUT` stores a new
//! revision, and every version is tested against the revision of its
//! choosing (the latest by default). It holds four kinds of case:
//!
//! - **golden**: inputs with expected outputs, within a tolerance;
//! - **invariance**: a change that must not move the predicted class
//!   (an id, a timestamp, a year of age);
//! - **directional**: a change that must move a score one way only
//!   (raising `loan_amount` must not lower the default probability);
//! - **minimum functionality**: simple cases per named slice, each with an
//!   expected output, of which a share must pass per slice.
//!
//! Inputs are named by model input: a number for an input of one column per
//! row (`[N]` or `[N, 1]`), a list for a whole row of an `[N, K]` input, and
//! `x[k]` for one column of it. Outputs are named the same way
//! (`probabilities[1]`). A [`SuiteReport`] is what one run found, kept
//! with the version.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Inputs by name (`age`, `pixels`, `pixels[3]`).
pub type Inputs = BTreeMap<String, Value>;

/// Expected outputs by name (`label`, `probabilities[1]`).
pub type Expected = BTreeMap<String, Value>;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Suite {
    #[serde(default)]
    pub description: String,
    /// The output whose value is the predicted class: one value per row, or
    /// scores whose largest is the class. The first output when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    /// The output element directional cases judge (`probabilities[1]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<String>,
    /// Absolute tolerance of golden and minimum-functionality expectations.
    #[serde(default = "default_tolerance")]
    pub tolerance: f64,
    /// Share of a slice's minimum-functionality cases that must pass.
    #[serde(default = "default_min_pass_rate")]
    pub min_pass_rate: f64,
    /// Inputs every case starts from; a case's own inputs override them.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub base: Inputs,
    #[serde(default)]
    pub golden: Vec<GoldenCase>,
    #[serde(default)]
    pub invariance: Vec<InvarianceCase>,
    #[serde(default)]
    pub directional: Vec<DirectionalCase>,
    #[serde(default)]
    pub minimum: Vec<MinimumCase>,
}

fn default_tolerance() -> f64 {
    1e-4
}

fn default_min_pass_rate() -> f64 {
    1.0
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GoldenCase {
    pub name: String,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub inputs: Inputs,
    #[schema(value_type = Object)]
    pub expect: Expected,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerance: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InvarianceCase {
    pub name: String,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub inputs: Inputs,
    #[schema(value_type = Object)]
    pub change: BTreeMap<String, Change>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DirectionalCase {
    pub name: String,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub inputs: Inputs,
    #[schema(value_type = Object)]
    pub change: BTreeMap<String, Change>,
    pub expect: Direction,
    /// The score to judge, when not the suite's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MinimumCase {
    pub name: String,
    pub slice: String,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub inputs: Inputs,
    #[schema(value_type = Object)]
    pub expect: Expected,
}

/// A change to one input: a number sets it, `"+x"`, `"-x"` and `"*x"` add,
/// subtract and multiply.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Change {
    Set(f64),
    Add(f64),
    Multiply(f64),
}

impl Change {
    pub fn apply(self, value: f64) -> f64 {
        match self {
            Change::Set(to) => to,
            Change::Add(by) => value + by,
            Change::Multiply(by) => value * by,
        }
    }
}

impl TryFrom<Value> for Change {
    type Error = String;

    fn try_from(value: Value) -> Result<Change, String> {
        let expected = || {
            format!(
                "invalid change {value}: expected a number (the new value) or a string \"+x\", \"-x\" or \"*x\""
            )
        };
        match &value {
            Value::Number(number) => number.as_f64().map(Change::Set).ok_or_else(expected),
            Value::String(text) => {
                let text = text.trim();
                let (op, rest) = text.split_at(text.chars().next().map_or(0, char::len_utf8));
                let amount: f64 = rest.trim().parse().map_err(|_| expected())?;
                if !amount.is_finite() {
                    return Err(expected());
                }
                match op {
                    "+" => Ok(Change::Add(amount)),
                    "-" => Ok(Change::Add(-amount)),
                    "*" => Ok(Change::Multiply(amount)),
                    _ => Err(expected()),
                }
            }
            _ => Err(expected()),
        }
    }
}

impl From<Change> for Value {
    fn from(change: Change) -> Value {
        match change {
            Change::Set(to) => serde_json::json!(to),
            Change::Add(by) if by < 0.0 => Value::String(format!("-{}", -by)),
            Change::Add(by) => Value::String(format!("+{by}")),
            Change::Multiply(by) => Value::String(format!("*{by}")),
        }
    }
}

impl Serialize for Change {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        Value::from(*self).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Change {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Change, D::Error> {
        Change::try_from(Value::deserialize(deserializer)?).map_err(serde::de::Error::custom)
    }
}

/// How a directional case's score must move from before to after the change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Higher,
    Lower,
    NotLower,
    NotHigher,
}

impl Direction {
    /// Whether `after` moved as asked from `before`. Staying level within
    /// `slack` (the precision of the model's arithmetic) is "not lower" and
    /// "not higher", never "higher" or "lower".
    pub fn holds(self, before: f64, after: f64, slack: f64) -> bool {
        match self {
            Direction::Higher => after > before + slack,
            Direction::Lower => after < before - slack,
            Direction::NotLower => after >= before - slack,
            Direction::NotHigher => after <= before + slack,
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::Higher => "higher",
            Direction::Lower => "lower",
            Direction::NotLower => "not lower",
            Direction::NotHigher => "not higher",
        })
    }
}

/// `name` or `name[k]`: an input or output, or one column of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub name: String,
    pub column_opt: Option<usize>,
}

impl Reference {
    pub fn parse(text: &str) -> Result<Reference, String> {
        let invalid = || format!("invalid name '{text}': expected 'name' or 'name[k]'");
        match text.strip_suffix(']') {
            None if !text.is_empty() && !text.contains('[') => Ok(Reference {
                name: text.to_string(),
                column_opt: None,
            }),
            None => Err(invalid()),
            Some(rest) => {
                let (name, column) = rest.split_once('[').ok_or_else(invalid)?;
                let column = column.parse().map_err(|_| invalid())?;
                if name.is_empty() {
                    return Err(invalid());
                }
                Ok(Reference {
                    name: name.to_string(),
                    column_opt: Some(column),
                })
            }
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.column_opt {
            Some(column) => write!(f, "{}[{column}]", self.name),
            None => f.write_str(&self.name),
        }
    }
}

impl Suite {
    pub fn case_count(&self) -> usize {
        self.golden.len() + self.invariance.len() + self.directional.len() + self.minimum.len()
    }

    /// What the registry checks before storing a suite: its shape, not yet
    /// any version's signature (that is checked when a version runs it).
    pub fn validate(&self) -> Result<(), String> {
        if self.case_count() == 0 {
            return Err(
                "the suite has no case: expected golden, invariance, directional or minimum cases".into(),
            );
        }
        if !(self.tolerance.is_finite() && self.tolerance >= 0.0) {
            return Err(format!("tolerance {} must be a number >= 0", self.tolerance));
        }
        if !(0.0..=1.0).contains(&self.min_pass_rate) {
            return Err(format!(
                "min_pass_rate {} must be within 0 and 1",
                self.min_pass_rate
            ));
        }
        for text in self.class.iter().chain(&self.score) {
            Reference::parse(text)?;
        }
        check_inputs("base", &self.base)?;
        let mut names = std::collections::BTreeSet::new();
        let mut unique = |kind: CaseKind, name: &str| {
            if name.trim().is_empty() {
                return Err(format!("a {kind} case has an empty name"));
            }
            if !names.insert((kind, name.to_string())) {
                return Err(format!(
                    "two {kind} cases are named '{name}': names identify cases in reports"
                ));
            }
            Ok(())
        };
        for case in &self.golden {
            unique(CaseKind::Golden, &case.name)?;
            check_inputs(&case.name, &case.inputs)?;
            check_expected(&case.name, &case.expect)?;
            if let Some(tolerance) = case.tolerance
                && !(tolerance.is_finite() && tolerance >= 0.0)
            {
                return Err(format!(
                    "case '{}': tolerance {tolerance} must be a number >= 0",
                    case.name
                ));
            }
        }
        for case in &self.invariance {
            unique(CaseKind::Invariance, &case.name)?;
            check_inputs(&case.name, &case.inputs)?;
            check_change(&case.name, &case.change)?;
        }
        for case in &self.directional {
            unique(CaseKind::Directional, &case.name)?;
            check_inputs(&case.name, &case.inputs)?;
            check_change(&case.name, &case.change)?;
            match case.score.as_ref().or(self.score.as_ref()) {
                Some(score) => Reference::parse(score).map(drop)?,
                None => {
                    return Err(format!(
                        "directional case '{}' has no score to judge: set 'score' (\"probabilities[1]\") on the suite or the case",
                        case.name
                    ));
                }
            }
        }
        for case in &self.minimum {
            unique(CaseKind::Minimum, &case.name)?;
            if case.slice.trim().is_empty() {
                return Err(format!("minimum case '{}' names no slice", case.name));
            }
            check_inputs(&case.name, &case.inputs)?;
            check_expected(&case.name, &case.expect)?;
        }
        Ok(())
    }
}

fn check_inputs(case: &str, inputs: &Inputs) -> Result<(), String> {
    for (name, value) in inputs {
        let reference = Reference::parse(name).map_err(|err| format!("case '{case}': {err}"))?;
        let numeric = |value: &Value| value.is_number() || value.is_boolean();
        let fits = match value {
            Value::Array(row) => reference.column_opt.is_none() && row.iter().all(numeric),
            other => numeric(other),
        };
        if !fits {
            return Err(format!(
                "case '{case}': input '{name}' is {value}: expected a number, or a list of numbers for a whole row"
            ));
        }
    }
    Ok(())
}

fn check_change(case: &str, change: &BTreeMap<String, Change>) -> Result<(), String> {
    if change.is_empty() {
        return Err(format!(
            "case '{case}' changes nothing: expected 'change' with at least one input"
        ));
    }
    for name in change.keys() {
        Reference::parse(name).map_err(|err| format!("case '{case}': {err}"))?;
    }
    Ok(())
}

fn check_expected(case: &str, expect: &Expected) -> Result<(), String> {
    if expect.is_empty() {
        return Err(format!(
            "case '{case}' expects nothing: expected 'expect' with at least one output"
        ));
    }
    for name in expect.keys() {
        Reference::parse(name).map_err(|err| format!("case '{case}': {err}"))?;
    }
    Ok(())
}

/// A suite as stored: one revision of a model's suite.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StoredSuite {
    pub model: String,
    pub revision: u64,
    pub suite: Suite,
    pub created_at: String,
    pub created_by: String,
}

/// `POST /api/v1/models/{model}/versions/{version}/suite-runs`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunSuite {
    /// The suite revision to run; the latest when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<u64>,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum CaseKind {
    Golden,
    Invariance,
    Directional,
    Minimum,
}

impl CaseKind {
    pub const ALL: [CaseKind; 4] = [
        CaseKind::Golden,
        CaseKind::Invariance,
        CaseKind::Directional,
        CaseKind::Minimum,
    ];
}

impl fmt::Display for CaseKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CaseKind::Golden => "golden",
            CaseKind::Invariance => "invariance",
            CaseKind::Directional => "directional",
            CaseKind::Minimum => "minimum",
        })
    }
}

/// What one run of a suite on a version found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SuiteReport {
    pub model: String,
    pub version: u64,
    pub suite_revision: u64,
    /// Every golden, invariance and directional case passed, and every
    /// slice's minimum-functionality cases passed at `min_pass_rate`.
    pub passed: bool,
    pub ran_at: String,
    pub ran_by: String,
    pub kinds: Vec<KindOutcome>,
    pub slices: Vec<SliceOutcome>,
    /// Every case that failed, with what went in and came out.
    pub failures: Vec<CaseFailure>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct KindOutcome {
    pub kind: CaseKind,
    pub cases: u64,
    pub failed: u64,
}

/// Minimum-functionality cases of one slice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SliceOutcome {
    pub slice: String,
    pub cases: u64,
    pub passed: u64,
    pub pass_rate: f64,
    pub min_pass_rate: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CaseFailure {
    pub kind: CaseKind,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slice: Option<String>,
    /// Why, in words (`probabilities[1] fell from 0.41 to 0.12: expected not lower`).
    pub reason: String,
    /// The inputs as run, by input name.
    #[schema(value_type = Object)]
    pub inputs: Inputs,
    /// The outputs, by output name; empty when the model refused the inputs.
    pub outputs: BTreeMap<String, Value>,
    /// After the change, for invariance and directional cases.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object)]
    pub changed_inputs: Option<Inputs>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed_outputs: Option<BTreeMap<String, Value>>,
}

impl SuiteReport {
    /// One line: the verdict and the failures per kind.
    pub fn headline(&self) -> String {
        let cases: u64 = self.kinds.iter().map(|kind| kind.cases).sum();
        let failed: u64 = self.kinds.iter().map(|kind| kind.failed).sum();
        let per_kind: Vec<String> = self
            .kinds
            .iter()
            .filter(|kind| kind.cases > 0)
            .map(|kind| format!("{} {}/{}", kind.kind, kind.cases - kind.failed, kind.cases))
            .collect();
        format!(
            "suite revision {} on version {} of '{}': {} ({failed} of {cases} cases failed; passed: {})",
            self.suite_revision,
            self.version,
            self.model,
            if self.passed { "PASSED" } else { "FAILED" },
            per_kind.join(", ")
        )
    }

    /// The headline and up to `shown` failures, the first of each kind
    /// before the second of any, so every kind that failed is named.
    pub fn summary(&self, shown: usize) -> String {
        let mut text = self.headline();
        let mut seen: BTreeMap<CaseKind, usize> = BTreeMap::new();
        let mut ranked: Vec<(usize, &CaseFailure)> = self
            .failures
            .iter()
            .map(|failure| {
                let rank = seen.entry(failure.kind).or_default();
                *rank += 1;
                (*rank, failure)
            })
            .collect();
        ranked.sort_by_key(|(rank, _)| *rank);
        for (_, failure) in ranked.iter().take(shown) {
            text.push_str(&format!(
                "; {} '{}': {}",
                failure.kind, failure.name, failure.reason
            ));
        }
        if self.failures.len() > shown {
            text.push_str(&format!("; and {} more", self.failures.len() - shown));
        }
        text
    }
}

impl fmt::Display for SuiteReport {
    /// The whole report, for a terminal: every failure with its inputs and outputs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.headline())?;
        writeln!(f, "ran {} by {}", self.ran_at, self.ran_by)?;
        for slice in &self.slices {
            writeln!(
                f,
                "  slice {:<24} {}/{} minimum cases passed ({:.0}%, needs {:.0}%)",
                slice.slice,
                slice.passed,
                slice.cases,
                100.0 * slice.pass_rate,
                100.0 * slice.min_pass_rate
            )?;
        }
        for failure in &self.failures {
            let slice = failure
                .slice
                .as_ref()
                .map(|slice| format!(" [{slice}]"))
                .unwrap_or_default();
            writeln!(
                f,
                "FAIL {} '{}'{slice}: {}",
                failure.kind, failure.name, failure.reason
            )?;
            writeln!(f, "    inputs:  {}", one_line(&failure.inputs))?;
            if !failure.outputs.is_empty() {
                writeln!(f, "    outputs: {}", one_line(&failure.outputs))?;
            }
            if let Some(changed) = &failure.changed_inputs {
                writeln!(f, "    changed: {}", one_line(changed))?;
            }
            if let Some(outputs) = &failure.changed_outputs {
                writeln!(f, "    then:    {}", one_line(outputs))?;
            }
        }
        Ok(())
    }
}

fn one_line(values: &BTreeMap<String, Value>) -> String {
    let parts: Vec<String> = values
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect();
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn suite(body: Value) -> Result<Suite, String> {
        let suite: Suite = serde_json::from_value(body).map_err(|err| err.to_string())?;
        suite.validate()?;
        Ok(suite)
    }

    #[test]
    fn changes_parse_and_apply() {
        let change = |value: Value| Change::try_from(value);
        assert_eq!(change(json!(5)), Ok(Change::Set(5.0)));
        assert_eq!(change(json!("+10000")), Ok(Change::Add(10000.0)));
        assert_eq!(change(json!("-0.5")), Ok(Change::Add(-0.5)));
        assert_eq!(change(json!("*1.1")), Ok(Change::Multiply(1.1)));
        assert!(change(json!("/2")).unwrap_err().contains("expected a number"));
        assert!(change(json!("+inf")).is_err());
        assert!(change(json!([1])).is_err());
        assert_eq!(Change::Add(-2.0).apply(5.0), 3.0);
        assert_eq!(Change::Multiply(2.0).apply(5.0), 10.0);
        for change in [
            Change::Set(1.5),
            Change::Add(-2.0),
            Change::Add(3.0),
            Change::Multiply(1.1),
        ] {
            assert_eq!(Change::try_from(Value::from(change)), Ok(change));
        }
    }

    #[test]
    fn directions_hold_with_slack() {
        assert!(Direction::NotLower.holds(0.5, 0.5 - 1e-9, 1e-6));
        assert!(!Direction::NotLower.holds(0.5, 0.4, 1e-6));
        assert!(!Direction::Higher.holds(0.5, 0.5 + 1e-9, 1e-6));
        assert!(Direction::Higher.holds(0.5, 0.6, 1e-6));
        assert!(Direction::NotHigher.holds(0.5, 0.4, 1e-6));
        assert!(Direction::Lower.holds(0.5, 0.4, 1e-6));
        assert_eq!(
            serde_json::to_value(Direction::NotLower).unwrap(),
            json!("not_lower")
        );
    }

    #[test]
    fn a_summary_names_every_kind_that_failed() {
        let failure = |kind, name: &str| CaseFailure {
            kind,
            name: name.into(),
            slice: None,
            reason: "wrong".into(),
            inputs: Inputs::new(),
            outputs: BTreeMap::new(),
            changed_inputs: None,
            changed_outputs: None,
        };
        let report = SuiteReport {
            model: "m".into(),
            version: 2,
            suite_revision: 1,
            passed: false,
            ran_at: String::new(),
            ran_by: String::new(),
            kinds: vec![],
            slices: vec![],
            failures: vec![
                failure(CaseKind::Golden, "a"),
                failure(CaseKind::Golden, "b"),
                failure(CaseKind::Directional, "c"),
            ],
        };
        let summary = report.summary(2);
        assert!(
            summary.ends_with("; golden 'a': wrong; directional 'c': wrong; and 1 more"),
            "{summary}"
        );
    }

    #[test]
    fn references_name_a_tensor_or_a_column() {
        assert_eq!(
            Reference::parse("probabilities[1]").unwrap(),
            Reference {
                name: "probabilities".into(),
                column_opt: Some(1)
            }
        );
        assert_eq!(Reference::parse("label").unwrap().column_opt, None);
        for bad in ["", "x[", "x[a]", "[1]", "x]"] {
            assert!(Reference::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn validation_names_what_is_wrong() {
        let ok = json!({
            "score": "probabilities[1]",
            "base": {"age": 40, "pixels": [1, 2]},
            "golden": [{"name": "a", "inputs": {"age": 30}, "expect": {"label": 0}}],
            "directional": [{"name": "d", "change": {"loan_amount": "+10"}, "expect": "not_lower"}],
            "minimum": [{"name": "m", "slice": "age < 30", "expect": {"label": 1}}]
        });
        let parsed = suite(ok.clone()).unwrap();
        assert_eq!(parsed.case_count(), 3);
        assert_eq!(parsed.tolerance, 1e-4);
        assert_eq!(parsed.min_pass_rate, 1.0);

        let broken = |patch: Value| {
            let mut body = ok.clone();
            for (key, value) in patch.as_object().unwrap() {
                body[key] = value.clone();
            }
            suite(body).unwrap_err()
        };
        assert!(broken(json!({"score": null})).contains("no score to judge"));
        assert!(broken(json!({"tolerance": -1})).contains("tolerance"));
        assert!(broken(json!({"min_pass_rate": 2})).contains("min_pass_rate"));
        assert!(broken(json!({"base": {"age": "old"}})).contains("expected a number"));
        assert!(
            broken(json!({"golden": [{"name": "a", "expect": {"l": 0}}, {"name": "a", "expect": {"l": 1}}]}))
                .contains("two golden cases are named 'a'")
        );
        assert!(broken(json!({"golden": [{"name": "a", "expect": {}}]})).contains("expects nothing"));
        assert!(
            broken(json!({"directional": [{"name": "d", "change": {}, "expect": "higher"}]}))
                .contains("changes nothing")
        );
        assert!(
            broken(json!({"golden": [{"name": "a", "expect": {"l": 0}, "extra": 1}]}))
                .contains("unknown field")
        );
        assert!(suite(json!({})).unwrap_err().contains("no case"));
    }
}
