//! Data contracts enforced at the gateway: a version's `contract` document
//! compiled against its signature once, then checked on every decoded
//! request of a deployment that asks for it (`observe` or `reject`).
//!
//! A feature names an input shaped `[N]` or `[N, 1]`, or one column
//! `input[k]` of an `[N, K]` input, as reference profiles do. Each check
//! (a feature's min, max, categories or missing values, or a cross-field
//! rule) has its own counter, `sluice_contract_violations_total{check}`,
//! beside `sluice_contract_rows_total`: violation rates per check. A check on
//! a feature the model does not carry is dropped at load, and said so.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use sluice_registry_client::contract::{Comparison, DataContract, FeatureContract, Linear, Rule, column_of};

use crate::error::Error;
use crate::signature::Signature;
use crate::tensor::Tensor;

/// At most this many violations are spelled out in a 422 or a log line.
const SHOWN_VIOLATIONS: usize = 5;

/// Where a feature's values are: every `width`-th element of input
/// `input`, from `column`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Place {
    input: usize,
    column: usize,
    width: usize,
}

impl Place {
    /// Its text on `row`, when the input is `BYTES`.
    fn text<'a>(&self, inputs: &'a [Tensor], row: usize) -> Option<&'a [u8]> {
        inputs
            .get(self.input)
            .and_then(|tensor| tensor.bytes_at(row * self.width + self.column))
    }

    pub(crate) fn value(&self, inputs: &[Tensor], row: usize) -> f64 {
        inputs
            .get(self.input)
            .and_then(|tensor| tensor.f64_at(row * self.width + self.column))
            .unwrap_or(f64::NAN)
    }
}

struct FeatureCheck {
    name: String,
    place: Place,
    contract: FeatureContract,
    /// The categories as numbers, compared to FP32 precision.
    categories_opt: Option<Vec<f64>>,
    counters: [metrics::Counter; 4],
    /// The same counts since the last report to the registry.
    pending: [AtomicU64; 4],
}

const MIN: usize = 0;
const MAX: usize = 1;
const CATEGORY: usize = 2;
const MISSING: usize = 3;
const CHECK_NAMES: [&str; 4] = ["min", "max", "categories", "missing"];

struct RuleCheck {
    rule: Rule,
    left: Side,
    right: Side,
    counter: metrics::Counter,
    pending: AtomicU64,
}

/// One side of a rule with its features resolved to where their values are.
struct Side {
    constant: f64,
    terms: Vec<(f64, Place)>,
}

impl Side {
    fn compile(linear: &Linear, signature: &Signature) -> Option<Side> {
        let terms = linear
            .terms
            .iter()
            .map(|(coefficient, name)| Some((*coefficient, place_of(name, signature)?)))
            .collect::<Option<_>>()?;
        Some(Side {
            constant: linear.constant,
            terms,
        })
    }

    /// Its value on `row`; NaN when a value is missing.
    fn eval(&self, inputs: &[Tensor], row: usize) -> f64 {
        self.terms
            .iter()
            .fold(self.constant, |sum, (coefficient, place)| {
                sum + coefficient * place.value(inputs, row)
            })
    }
}

/// A contract compiled for one model version.
pub struct ContractChecker {
    model: String,
    version: String,
    features: Vec<FeatureCheck>,
    rules: Vec<RuleCheck>,
    rows: metrics::Counter,
    pending_rows: AtomicU64,
    /// Requests that broke the contract under `observe`, for log sampling.
    observed: AtomicU64,
    /// What the contract names that this model does not carry.
    unmatched: Vec<String>,
}

/// What one request broke.
#[derive(Debug, Default)]
pub struct Violations {
    pub count: usize,
    pub shown: Vec<String>,
}

impl Violations {
    fn add(&mut self, text: impl FnOnce() -> String) {
        self.count += 1;
        if self.shown.len() < SHOWN_VIOLATIONS {
            self.shown.push(text());
        }
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The 422 a `reject` deployment answers with.
    pub fn into_error(self) -> Error {
        let more = match self.count.saturating_sub(self.shown.len()) {
            0 => String::new(),
            more => format!("; and {more} more"),
        };
        Error::ContractViolated(format!(
            "the request breaks the model's data contract: {}{more}",
            self.shown.join("; ")
        ))
    }
}

impl ContractChecker {
    pub fn new(
        contract: &DataContract,
        signature: &Signature,
        model: &str,
        version: &str,
    ) -> ContractChecker {
        let counter = |check: String| metrics::counter!(crate::metrics::CONTRACT_VIOLATIONS, "model" => model.to_string(), "version" => version.to_string(), "check" => check);
        let mut unmatched = Vec::new();
        let mut features = Vec::new();
        for (name, feature) in &contract.features {
            let Some(place) = place_of(name, signature) else {
                unmatched.push(name.clone());
                continue;
            };
            let categories_opt = feature.categories.as_ref().map(|categories| {
                categories
                    .iter()
                    .filter_map(|text| text.trim().parse::<f64>().ok())
                    .collect()
            });
            features.push(FeatureCheck {
                name: name.clone(),
                place,
                contract: feature.clone(),
                categories_opt,
                counters: CHECK_NAMES.map(|check| counter(format!("{name}:{check}"))),
                pending: Default::default(),
            });
        }
        let mut rules = Vec::new();
        for text in &contract.rules {
            // The registry validated the contract; a rule that does not
            // parse here came from elsewhere and is dropped like a stranger.
            let Ok(rule) = Rule::parse(text) else {
                unmatched.push(text.clone());
                continue;
            };
            match Side::compile(&rule.left, signature).zip(Side::compile(&rule.right, signature)) {
                Some((left, right)) => rules.push(RuleCheck {
                    counter: counter(rule.text.clone()),
                    pending: AtomicU64::new(0),
                    rule,
                    left,
                    right,
                }),
                None => unmatched.push(text.clone()),
            }
        }
        ContractChecker {
            model: model.to_string(),
            version: version.to_string(),
            observed: AtomicU64::new(0),
            pending_rows: AtomicU64::new(0),
            features,
            rules,
            rows: metrics::counter!(crate::metrics::CONTRACT_ROWS, "model" => model.to_string(), "version" => version.to_string()),
            unmatched,
        }
    }

    /// Contract features and rules this model has no input for: not checked.
    pub fn unmatched(&self) -> &[String] {
        &self.unmatched
    }

    /// Rows checked and violations per check since the last take, zeroed as
    /// they are read: the version's window for the registry's drift report.
    pub fn take(&self) -> (u64, BTreeMap<String, u64>) {
        // Violations first, rows after; `check` counts them the other way
        // round (Release, Acquire): every violation taken has its row in
        // this window or an earlier one, so a window's rate of violations
        // is never above one.
        let mut violations = BTreeMap::new();
        for feature in &self.features {
            for (check, pending) in CHECK_NAMES.iter().zip(&feature.pending) {
                let count = pending.swap(0, Ordering::Acquire);
                if count > 0 {
                    violations.insert(format!("{}:{check}", feature.name), count);
                }
            }
        }
        for rule in &self.rules {
            let count = rule.pending.swap(0, Ordering::Acquire);
            if count > 0 {
                violations.insert(rule.rule.text.clone(), count);
            }
        }
        (self.pending_rows.swap(0, Ordering::Relaxed), violations)
    }

    /// Logs a sample of the requests an `observe` deployment let through
    /// (the 1st, 2nd, 4th, 8th... and every 1000th), so that a flood of bad
    /// requests cannot flood the log.
    pub fn observed(&self, violations: &Violations) {
        let seen = self.observed.fetch_add(1, Ordering::Relaxed) + 1;
        if seen.is_power_of_two() || seen.is_multiple_of(1000) {
            tracing::warn!(
                model = %self.model,
                version = %self.version,
                breaking_requests = seen,
                violations = violations.count,
                sample = %violations.shown.join("; "),
                "requests break the data contract (observe: answered anyway)"
            );
        }
    }

    /// Checks every row of `inputs` (in signature order), counting each
    /// violation under its check.
    pub fn check(&self, inputs: &[Tensor]) -> Violations {
        let rows = inputs.first().map_or(0, Tensor::rows);
        self.rows.increment(rows as u64);
        // Before the violations (see `take`).
        self.pending_rows.fetch_add(rows as u64, Ordering::Relaxed);
        let mut violations = Violations::default();
        for row in 0..rows {
            for feature in &self.features {
                feature.check(inputs, row, &mut violations);
            }
            for rule in &self.rules {
                rule.check(inputs, row, &mut violations);
            }
        }
        violations
    }
}

impl FeatureCheck {
    fn check(&self, inputs: &[Tensor], row: usize, violations: &mut Violations) {
        let value = self.place.value(inputs, row);
        let name = &self.name;
        let mut broke = |check: usize, text: &dyn Fn() -> String| {
            self.counters[check].increment(1);
            // Release: a take that sees it sees its row (see `take`).
            self.pending[check].fetch_add(1, Ordering::Release);
            violations.add(|| format!("row {row}: {}", text()));
        };
        // A string feature (BYTES): missing when empty, else one of its
        // categories by its very text; a minimum or maximum says nothing of it.
        if let Some(text) = self.place.text(inputs, row) {
            if text.is_empty() {
                if !self.contract.nullable {
                    broke(MISSING, &|| format!("{name} is missing (empty) and may not be"));
                }
            } else if let Some(categories) = &self.contract.categories
                && !categories.iter().any(|category| category.as_bytes() == text)
            {
                let shown = sluice_registry_client::limits::quote(&String::from_utf8_lossy(text)).to_string();
                broke(CATEGORY, &|| {
                    format!("{name} = '{shown}' is not one of its categories")
                });
            }
            return;
        }
        if value.is_nan() {
            if !self.contract.nullable {
                broke(MISSING, &|| format!("{name} is missing (NaN) and may not be"));
            }
            return;
        }
        if let Some(min) = self.contract.min
            && value < min - tolerance(min)
        {
            broke(MIN, &|| format!("{name} = {value} is below its minimum {min}"));
        }
        if let Some(max) = self.contract.max
            && value > max + tolerance(max)
        {
            broke(MAX, &|| format!("{name} = {value} is above its maximum {max}"));
        }
        if let Some(categories) = &self.categories_opt
            && !categories
                .iter()
                .any(|&category| (category - value).abs() <= tolerance(category))
        {
            broke(CATEGORY, &|| {
                format!("{name} = {value} is not one of its categories")
            });
        }
    }
}

impl RuleCheck {
    fn check(&self, inputs: &[Tensor], row: usize, violations: &mut Violations) {
        let (left, right) = (self.left.eval(inputs, row), self.right.eval(inputs, row));
        // A missing value breaks no rule: the feature's own check says whether it may be missing.
        if left.is_nan() || right.is_nan() || holds_within_fp32(self.rule.op, left, right) {
            return;
        }
        self.counter.increment(1);
        self.pending.fetch_add(1, Ordering::Release);
        violations.add(|| {
            format!(
                "row {row}: rule '{}' fails ({left} {} {right} is false)",
                self.rule.text,
                self.rule.op.symbol()
            )
        });
    }
}

/// `x` for an input `x` of one column per row, `x[k]` for column `k` of an
/// `[N, K]` input: the registry resolves names the same way when it stores
/// a contract.
pub(crate) fn place_of(name: &str, signature: &Signature) -> Option<Place> {
    let inputs: Vec<(&str, &[i64])> = signature
        .inputs
        .iter()
        .map(|spec| (spec.name.as_str(), spec.shape.as_slice()))
        .collect();
    let (input, column, width) = column_of(name, &inputs)?;
    Some(Place { input, column, width })
}

/// `left op right`, ties within FP32's precision counting as equal: values
/// computed from FP32 inputs are no more exact than that.
fn holds_within_fp32(op: Comparison, left: f64, right: f64) -> bool {
    let tied = (left - right).abs() <= tolerance(left.abs().max(right.abs()));
    match op {
        Comparison::LessOrEqual | Comparison::GreaterOrEqual | Comparison::Equal if tied => true,
        Comparison::Less | Comparison::Greater if tied => false,
        Comparison::NotEqual => !tied,
        _ => op.holds(left, right),
    }
}

use crate::tensor::fp32_tolerance as tolerance;

#[cfg(test)]
mod tests;
