//! Data contracts: what a version's inputs may hold, stored with the version
//! as the JSON document `contract` and enforced by gateways per deployment
//! (`observe` counts violations, `reject` answers 422 naming them).
//!
//! Per named feature: an allowed range, allowed categories, whether missing
//! values (NaN) are allowed; and cross-field rules kept to linear
//! comparisons (`loan_amount <= 50 * income`, `age - months_employed / 12 >= 14`).
//! [`DataContract::derive`] writes a first contract from the version's
//! reference profile; [`DataContract::validate`] is what the registry checks
//! before storing one.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::profile::{ColumnProfile, ReferenceProfile};

/// The document name a contract is stored under.
pub const CONTRACT_DOCUMENT: &str = "contract";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DataContract {
    /// Rules per feature, by the input (or `input[k]` column) they name.
    #[serde(default)]
    pub features: BTreeMap<String, FeatureContract>,
    /// Cross-field rules, each a comparison of two linear expressions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FeatureContract {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// Allowed values, written as a CSV cell would (`3`, `0.5`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub categories: Option<Vec<String>>,
    /// Missing values (NaN) are allowed.
    #[serde(default)]
    pub nullable: bool,
}

/// What a deployment does with a version's contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ContractMode {
    /// Count violations per feature and rule, log samples, answer as usual.
    Observe,
    /// Answer 422 naming each violated rule; nothing is computed.
    Reject,
}

impl std::fmt::Display for ContractMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ContractMode::Observe => "observe",
            ContractMode::Reject => "reject",
        })
    }
}

impl std::str::FromStr for ContractMode {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "observe" => Ok(ContractMode::Observe),
            "reject" => Ok(ContractMode::Reject),
            other => Err(format!("contract mode '{other}': expected observe or reject")),
        }
    }
}

impl DataContract {
    /// A first contract from a reference profile, one the training data
    /// keeps: each numeric feature's training range widened by `margin` of
    /// its width on both sides (never below zero for a feature that never
    /// was); each categorical feature's categories when they are numbers and
    /// cover every training row (no "other"); missing values allowed where
    /// training had them.
    pub fn derive(profile: &ReferenceProfile, margin: f64) -> DataContract {
        let features = profile
            .features
            .iter()
            .filter_map(|(name, column)| {
                let contract = match column {
                    ColumnProfile::Numeric { edges, count, .. } => {
                        let (low, high) = (edges.first().copied(), edges.last().copied());
                        let width = match (low, high) {
                            (Some(low), Some(high)) => (high - low).abs(),
                            _ => 0.0,
                        };
                        let widen = margin * width;
                        FeatureContract {
                            min: low.map(|low| {
                                if low >= 0.0 {
                                    (low - widen).max(0.0)
                                } else {
                                    low - widen
                                }
                            }),
                            max: high.map(|high| high + widen),
                            categories: None,
                            nullable: *count < profile.rows,
                        }
                    }
                    // Text categories name nothing a tensor holds; a list
                    // that leaves training rows out would refuse them.
                    ColumnProfile::Categorical {
                        categories,
                        other,
                        count,
                        ..
                    } => {
                        let numeric = categories.iter().all(|text| text.trim().parse::<f64>().is_ok());
                        if !numeric || *other > 0.0 {
                            return None;
                        }
                        FeatureContract {
                            categories: Some(categories.clone()),
                            nullable: *count < profile.rows,
                            ..FeatureContract::default()
                        }
                    }
                };
                Some((name.clone(), contract))
            })
            .collect();
        DataContract {
            features,
            rules: Vec::new(),
        }
    }

    /// Why this contract cannot be enforced, in words a user can act on.
    pub fn validate(&self) -> Result<(), String> {
        for (name, feature) in &self.features {
            if let (Some(min), Some(max)) = (feature.min, feature.max)
                && min > max
            {
                return Err(format!("contract feature '{name}': min {min} is above max {max}"));
            }
            if let Some(bound) = [feature.min, feature.max]
                .into_iter()
                .flatten()
                .find(|b| !b.is_finite())
            {
                return Err(format!(
                    "contract feature '{name}': bound {bound} is not a finite number"
                ));
            }
            if let Some(categories) = &feature.categories
                && let Some(text) = categories.iter().find(|text| text.trim().parse::<f64>().is_err())
            {
                return Err(format!(
                    "contract feature '{name}': category '{text}' is not a number, and tensors hold only numbers"
                ));
            }
        }
        for (index, rule) in self.rules.iter().enumerate() {
            Rule::parse(rule)?;
            if self.rules[..index].contains(rule) {
                return Err(format!("contract rule '{rule}' is listed twice"));
            }
        }
        Ok(())
    }

    /// Refuses features and rules naming columns that a model with these
    /// inputs (`(name, shape)`) does not have (see [`column_of`]).
    pub fn check_names(&self, inputs: &[(&str, &[i64])]) -> Result<(), String> {
        let known = |name: &str| column_of(name, inputs).is_some();
        if let Some(name) = self.features.keys().find(|name| !known(name)) {
            return Err(format!(
                "contract feature '{name}' is no column of the model's inputs: expected an input shaped [N] or [N, 1], or input[k] of an [N, K] input"
            ));
        }
        for text in &self.rules {
            let rule = Rule::parse(text)?;
            if let Some(name) = rule.features().find(|name| !known(name)) {
                return Err(format!(
                    "contract rule '{text}' names '{name}', no column of the model's inputs"
                ));
            }
        }
        Ok(())
    }
}

/// Where column `name` is among inputs `(name, shape)`, as `(input, column,
/// width)`: `x` is an input of one column per row (`[N]` or `[N, 1]`), and
/// `x[k]` column `k` of an `[N, K]` input.
pub fn column_of(name: &str, inputs: &[(&str, &[i64])]) -> Option<(usize, usize, usize)> {
    let width = |shape: &[i64]| match *shape {
        [_] => Some(1),
        [_, width] if width >= 1 => usize::try_from(width).ok(),
        _ => None,
    };
    if let Some(index) = inputs.iter().position(|(input, _)| *input == name) {
        return (width(inputs[index].1)? == 1).then_some((index, 0, 1));
    }
    let (base, column) = name.strip_suffix(']')?.split_once('[')?;
    let column: usize = column.parse().ok()?;
    let index = inputs.iter().position(|(input, _)| *input == base)?;
    let width = width(inputs[index].1)?;
    (column < width).then_some((index, column, width))
}

/// A cross-field rule: `left op right`, both sides linear in the features.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub text: String,
    pub left: Linear,
    pub op: Comparison,
    pub right: Linear,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    Less,
    LessOrEqual,
    Greater,
    GreaterOrEqual,
    Equal,
    NotEqual,
}

impl Comparison {
    pub fn holds(self, left: f64, right: f64) -> bool {
        match self {
            Comparison::Less => left < right,
            Comparison::LessOrEqual => left <= right,
            Comparison::Greater => left > right,
            Comparison::GreaterOrEqual => left >= right,
            Comparison::Equal => left == right,
            Comparison::NotEqual => left != right,
        }
    }

    pub fn symbol(self) -> &'static str {
        match self {
            Comparison::Less => "<",
            Comparison::LessOrEqual => "<=",
            Comparison::Greater => ">",
            Comparison::GreaterOrEqual => ">=",
            Comparison::Equal => "==",
            Comparison::NotEqual => "!=",
        }
    }
}

/// `constant + Σ coefficient × feature`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Linear {
    pub constant: f64,
    pub terms: Vec<(f64, String)>,
}

impl Linear {
    /// Its value with `value_of` giving each feature's; NaN propagates.
    pub fn eval(&self, value_of: impl Fn(&str) -> f64) -> f64 {
        self.terms.iter().fold(self.constant, |sum, (coefficient, name)| {
            sum + coefficient * value_of(name)
        })
    }

    pub fn features(&self) -> impl Iterator<Item = &str> {
        self.terms.iter().map(|(_, name)| name.as_str())
    }
}

impl Rule {
    /// Parses `left op right`: each side a sum of terms (`+`, `-`), each
    /// term a number, a feature, or `number * feature` / `feature * number` /
    /// `feature / number`; parentheses and products of features are not
    /// rules "kept simple".
    pub fn parse(text: &str) -> Result<Rule, String> {
        let refuse = |why: &str| format!("contract rule '{text}': {why}");
        let operators = ["<=", ">=", "==", "!=", "<", ">"];
        let (at, symbol) = operators
            .iter()
            .filter_map(|symbol| text.find(symbol).map(|at| (at, *symbol)))
            .min_by_key(|(at, symbol)| (*at, std::cmp::Reverse(symbol.len())))
            .ok_or_else(|| refuse("expected a comparison (<, <=, >, >=, ==, !=)"))?;
        let op = match symbol {
            "<=" => Comparison::LessOrEqual,
            ">=" => Comparison::GreaterOrEqual,
            "==" => Comparison::Equal,
            "!=" => Comparison::NotEqual,
            "<" => Comparison::Less,
            _ => Comparison::Greater,
        };
        let (left_text, right_text) = (&text[..at], &text[at + symbol.len()..]);
        if operators.iter().any(|symbol| right_text.contains(symbol)) {
            return Err(refuse("expected exactly one comparison"));
        }
        let left = linear(left_text).map_err(|why| refuse(&why))?;
        let right = linear(right_text).map_err(|why| refuse(&why))?;
        if left.terms.is_empty() && right.terms.is_empty() {
            return Err(refuse("names no feature"));
        }
        Ok(Rule {
            text: text.trim().to_string(),
            left,
            op,
            right,
        })
    }

    pub fn features(&self) -> impl Iterator<Item = &str> {
        self.left.features().chain(self.right.features())
    }
}

/// One side of a rule.
fn linear(text: &str) -> Result<Linear, String> {
    let mut result = Linear::default();
    let mut sign = 1.0;
    let mut expecting_term = true;
    let mut rest = text.trim_start();
    if rest.is_empty() {
        return Err("a side of the comparison is empty".into());
    }
    // A leading sign: `-3 * age + income > 0`.
    if let Some(after) = rest.strip_prefix('-') {
        sign = -1.0;
        rest = after.trim_start();
    } else if let Some(after) = rest.strip_prefix('+') {
        rest = after.trim_start();
    }
    while !rest.is_empty() {
        if expecting_term {
            let (term, after) = term(rest)?;
            match term {
                Term::Constant(value) => result.constant += sign * value,
                Term::Feature(coefficient, name) => result.terms.push((sign * coefficient, name)),
            }
            rest = after.trim_start();
            expecting_term = false;
        } else {
            sign = match rest.as_bytes()[0] {
                b'+' => 1.0,
                b'-' => -1.0,
                _ => return Err(format!("expected + or - before '{rest}'")),
            };
            rest = rest[1..].trim_start();
            expecting_term = true;
        }
    }
    if expecting_term {
        return Err("an expression ends with an operator".into());
    }
    Ok(result)
}

enum Term {
    Constant(f64),
    Feature(f64, String),
}

/// A term and what follows it.
fn term(text: &str) -> Result<(Term, &str), String> {
    let (first, rest) = factor(text)?;
    let rest_trimmed = rest.trim_start();
    let Some(operator) = rest_trimmed.chars().next().filter(|c| *c == '*' || *c == '/') else {
        return Ok((
            match first {
                Factor::Number(value) => Term::Constant(value),
                Factor::Name(name) => Term::Feature(1.0, name),
            },
            rest,
        ));
    };
    let (second, after) = factor(rest_trimmed[1..].trim_start())?;
    let term = match (first, operator, second) {
        (Factor::Number(a), '*', Factor::Name(name)) | (Factor::Name(name), '*', Factor::Number(a)) => {
            Term::Feature(a, name)
        }
        (Factor::Name(name), '/', Factor::Number(divisor)) if divisor != 0.0 => {
            Term::Feature(1.0 / divisor, name)
        }
        (Factor::Number(a), '*', Factor::Number(b)) => Term::Constant(a * b),
        (Factor::Number(a), '/', Factor::Number(b)) if b != 0.0 => Term::Constant(a / b),
        _ => {
            return Err(format!(
                "'{}' is not a number times a feature: rules are linear",
                text[..text.len() - after.len()].trim()
            ));
        }
    };
    if after.trim_start().starts_with(['*', '/']) {
        return Err("chain at most one * or / per term".into());
    }
    Ok((term, after))
}

enum Factor {
    Number(f64),
    Name(String),
}

fn factor(text: &str) -> Result<(Factor, &str), String> {
    let mut end = text
        .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '[' | ']')))
        .unwrap_or(text.len());
    // A number's exponent sign (`1e-3`) belongs to the number.
    if text.starts_with(|c: char| c.is_ascii_digit() || c == '.')
        && text[..end].ends_with(['e', 'E'])
        && text[end..].starts_with(['+', '-'])
    {
        end += 1 + text[end + 1..]
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len() - end - 1);
    }
    let token = &text[..end];
    if token.is_empty() {
        return Err(format!("expected a number or a feature at '{text}'"));
    }
    let factor = if token.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
        let number: f64 = token.parse().map_err(|_| format!("'{token}' is not a number"))?;
        if !number.is_finite() || (number != 0.0 && number.abs() < f64::MIN_POSITIVE) {
            return Err(format!("'{token}' is not a number a rule can compute with"));
        }
        Factor::Number(number)
    } else {
        Factor::Name(token.to_string())
    };
    Ok((factor, &text[end..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(name: &str) -> f64 {
        match name {
            "loan_amount" => 40_000.0,
            "income" => 1_000.0,
            "age" => 30.0,
            "months_employed" => 120.0,
            _ => f64::NAN,
        }
    }

    #[test]
    fn linear_rules_parse_and_evaluate() {
        let rule = Rule::parse("loan_amount <= 50 * income").unwrap();
        assert_eq!(rule.op, Comparison::LessOrEqual);
        assert!(rule.op.holds(rule.left.eval(values), rule.right.eval(values)));
        let rule = Rule::parse("age - months_employed / 12 >= 14").unwrap();
        assert_eq!(rule.left.eval(values), 20.0);
        assert!(rule.op.holds(rule.left.eval(values), rule.right.eval(values)));
        let rule = Rule::parse("income*2 + 3 > loan_amount - 1e3").unwrap();
        assert_eq!(rule.left.eval(values), 2003.0);
        assert_eq!(rule.right.eval(values), 39_000.0);
        assert!(!rule.op.holds(2003.0, 39_000.0));
        assert_eq!(rule.features().collect::<Vec<_>>(), vec!["income", "loan_amount"]);
        let rule = Rule::parse("-2 * age + 1e-3 * income >= -100").unwrap();
        assert_eq!(rule.left.eval(values), -59.0);
        assert_eq!(rule.right.eval(values), -100.0);
        let rule = Rule::parse("probabilities[1] != 0").unwrap();
        assert_eq!(rule.features().collect::<Vec<_>>(), vec!["probabilities[1]"]);
    }

    #[test]
    fn rules_that_are_not_simple_are_refused_with_the_reason() {
        for (text, why) in [
            ("loan_amount", "expected a comparison"),
            ("age * income > 3", "rules are linear"),
            ("age > 3 > 2", "exactly one comparison"),
            ("age >", "empty"),
            ("age + > 3", "ends with an operator"),
            ("3 > 2", "names no feature"),
            ("(age) > 2", "expected a number or a feature"),
            ("age / 0 > 1", "rules are linear"),
        ] {
            let err = Rule::parse(text).unwrap_err();
            assert!(err.contains(why), "{text}: {err}");
            assert!(err.contains(text), "{err}");
        }
    }

    #[test]
    fn a_contract_derives_from_a_profile() {
        let profile: ReferenceProfile = serde_json::from_value(serde_json::json!({
            "schema": "sluice-profile/v1",
            "rows": 100,
            "features": {
                "age": { "kind": "numeric", "edges": [18.0, 40.0, 68.0], "shares": [0.5, 0.5], "count": 100, "mean": 40.0, "std": 10.0 },
                "delta": { "kind": "numeric", "edges": [-1.0, 1.0], "shares": [1.0], "count": 100, "mean": 0.0, "std": 0.5 },
                "region": { "kind": "categorical", "categories": ["1", "2"], "shares": [0.6, 0.4], "other": 0.0, "count": 100 },
                "color": { "kind": "categorical", "categories": ["red"], "shares": [1.0], "other": 0.0, "count": 100 },
                "zip": { "kind": "categorical", "categories": ["75001"], "shares": [0.5], "other": 0.5, "count": 100 },
                "income": { "kind": "numeric", "edges": [0.0, 10.0], "shares": [1.0], "count": 90, "mean": 5.0, "std": 1.0 }
            }
        }))
        .unwrap();
        let contract = DataContract::derive(&profile, 0.5);
        let age = &contract.features["age"];
        assert_eq!(
            (age.min, age.max),
            (Some(0.0), Some(93.0)),
            "never below zero for a non-negative feature"
        );
        let delta = &contract.features["delta"];
        assert_eq!((delta.min, delta.max), (Some(-2.0), Some(2.0)));
        assert_eq!(
            contract.features["region"].categories,
            Some(vec!["1".into(), "2".into()])
        );
        assert!(
            !contract.features.contains_key("color"),
            "text categories name nothing a tensor holds"
        );
        assert!(
            !contract.features.contains_key("zip"),
            "training rows fell in 'other'"
        );
        assert!(
            contract.features["income"].nullable,
            "training had missing incomes"
        );
        assert!(!contract.features["age"].nullable);
        assert!(contract.validate().is_ok());
        let inputs: [(&str, &[i64]); 4] = [
            ("age", &[-1, 1]),
            ("delta", &[-1]),
            ("region", &[-1, 1]),
            ("income", &[-1, 1]),
        ];
        assert!(contract.check_names(&inputs).is_ok());
        let err = contract.check_names(&inputs[..3]).unwrap_err();
        assert!(err.contains("'income' is no column"), "{err}");
    }

    #[test]
    fn an_impossible_contract_is_refused() {
        let mut contract = DataContract::default();
        contract.features.insert(
            "age".into(),
            FeatureContract {
                min: Some(5.0),
                max: Some(1.0),
                ..FeatureContract::default()
            },
        );
        assert!(contract.validate().unwrap_err().contains("min 5 is above max 1"));
        contract.features.clear();
        contract.features.insert(
            "color".into(),
            FeatureContract {
                categories: Some(vec!["red".into()]),
                ..FeatureContract::default()
            },
        );
        assert!(contract.validate().unwrap_err().contains("'red' is not a number"));
        contract.features.clear();
        contract.rules.push("age >> 3".into());
        assert!(contract.validate().is_err());
        contract.rules = vec!["age > 3".into(), "age > 3".into()];
        assert!(contract.validate().unwrap_err().contains("listed twice"));
        assert!(
            Rule::parse("age * 1e999 > 3")
                .unwrap_err()
                .contains("can compute with")
        );
        let scores: [(&str, &[i64]); 1] = [("scores", &[-1, 2])];
        assert_eq!(column_of("scores[1]", &scores), Some((0, 1, 2)));
        assert_eq!(column_of("scores[2]", &scores), None);
        assert_eq!(
            column_of("scores", &scores),
            None,
            "a whole [N, K] input is no column"
        );
    }
}
