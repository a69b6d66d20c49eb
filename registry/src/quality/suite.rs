//! Runs a behavioural suite on a version: every case becomes one or two
//! Open Inference Protocol requests (before and after its change), the
//! gateway's own engine answers them through the [`Inspector`], and each
//! answer is judged against the case.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use sluice_registry_client::suite::{
    CaseFailure, CaseKind, Change, Direction, Expected, Inputs, KindOutcome, Reference, SliceOutcome,
    StoredSuite, Suite, SuiteReport,
};
use sluice_registry_client::types::{Signature, TensorSpec, Version};

use crate::Inspector;
use crate::error::{Error, Result};

/// How far a score may move and still be "not lower" or "not higher": the
/// precision of FP32 arithmetic on scores near 1.
const DIRECTION_SLACK: f64 = 1e-6;

/// One input's values for one row, by input name.
type Rows = BTreeMap<String, Vec<Value>>;

/// One output's values for one row, by output name.
type Outputs = BTreeMap<String, Vec<Value>>;

/// What a case asks of the engine: its inputs, and for invariance and
/// directional cases the inputs after the change.
struct Resolved {
    before: Rows,
    after_opt: Option<Rows>,
}

/// Runs `stored` on `version`, whose artifact is `artifact`. Blocking: it
/// loads the model and runs every case.
pub fn run(
    inspector: &dyn Inspector,
    artifact: &[u8],
    version: &Version,
    stored: &StoredSuite,
    actor: &str,
) -> Result<SuiteReport> {
    let suite = &stored.suite;
    let misfit = |err: String| {
        Error::refused(format!(
            "suite revision {} of '{}' does not fit version {}: {err}",
            stored.revision, version.model, version.version
        ))
    };
    let signature = &version.signature;
    let mut resolved = Vec::new();
    for (name, inputs, change_opt) in cases(suite) {
        let before =
            rows(signature, &suite.base, inputs).map_err(|err| misfit(format!("case '{name}': {err}")))?;
        let after_opt = change_opt
            .map(|change| changed(signature, &before, change))
            .transpose()
            .map_err(|err| misfit(format!("case '{name}': {err}")))?;
        resolved.push(Resolved { before, after_opt });
    }
    let mut requests = Vec::new();
    for case in &resolved {
        requests.push(request(signature, &case.before).map_err(misfit)?);
        if let Some(after) = &case.after_opt {
            requests.push(request(signature, after).map_err(misfit)?);
        }
    }
    let answers = inspector
        .infer(artifact, &requests)
        .map_err(|err| Error::Internal(format!("cannot run version {}: {err}", version.version)))?;
    if answers.len() != requests.len() {
        return Err(Error::Internal(format!(
            "the engine answered {} of {} requests",
            answers.len(),
            requests.len()
        )));
    }
    let mut answers = answers
        .into_iter()
        .map(|answer| answer.and_then(|body| outputs(&body)));
    let mut judge = Judge {
        suite,
        class: suite
            .class
            .clone()
            .or_else(|| signature.outputs.first().map(|output| output.name.clone()))
            .unwrap_or_default(),
        failures: Vec::new(),
        kinds: CaseKind::ALL
            .iter()
            .map(|&kind| KindOutcome {
                kind,
                cases: 0,
                failed: 0,
            })
            .collect(),
        slices: BTreeMap::new(),
    };
    let mut resolved = resolved.into_iter();
    for case in suite_cases(suite) {
        let Some(Resolved { before, after_opt }) = resolved.next() else {
            break;
        };
        let first = answers.next().unwrap_or_else(|| Err("no answer".into()));
        let second_opt = after_opt
            .as_ref()
            .map(|_| answers.next().unwrap_or_else(|| Err("no answer".into())));
        judge.case(
            case,
            Ran {
                before: &before,
                first,
                after_opt: after_opt.as_ref(),
                second_opt,
            },
        );
    }
    let Judge {
        failures,
        kinds,
        slices,
        ..
    } = judge;
    let slices: Vec<SliceOutcome> = slices
        .into_iter()
        .map(|(slice, (cases, passed))| SliceOutcome {
            slice,
            cases,
            passed,
            pass_rate: passed as f64 / cases.max(1) as f64,
            min_pass_rate: suite.min_pass_rate,
        })
        .collect();
    let strict_failures = failures
        .iter()
        .filter(|failure| failure.kind != CaseKind::Minimum)
        .count();
    let passed = strict_failures == 0 && slices.iter().all(|slice| slice.pass_rate >= slice.min_pass_rate);
    Ok(SuiteReport {
        model: version.model.clone(),
        version: version.version,
        suite_revision: stored.revision,
        passed,
        ran_at: crate::store::now(),
        ran_by: actor.to_string(),
        kinds,
        slices,
        failures,
    })
}

/// A case, borrowed from the suite, in the order requests are built.
enum Case<'a> {
    Golden(&'a sluice_registry_client::suite::GoldenCase),
    Invariance(&'a sluice_registry_client::suite::InvarianceCase),
    Directional(&'a sluice_registry_client::suite::DirectionalCase),
    Minimum(&'a sluice_registry_client::suite::MinimumCase),
}

fn suite_cases(suite: &Suite) -> impl Iterator<Item = Case<'_>> {
    suite
        .golden
        .iter()
        .map(Case::Golden)
        .chain(suite.invariance.iter().map(Case::Invariance))
        .chain(suite.directional.iter().map(Case::Directional))
        .chain(suite.minimum.iter().map(Case::Minimum))
}

type ChangeSet = BTreeMap<String, Change>;

/// Each case's name, inputs and change, in [`suite_cases`] order.
fn cases(suite: &Suite) -> Vec<(&str, &Inputs, Option<&ChangeSet>)> {
    suite_cases(suite)
        .map(|case| match case {
            Case::Golden(case) => (case.name.as_str(), &case.inputs, None),
            Case::Invariance(case) => (case.name.as_str(), &case.inputs, Some(&case.change)),
            Case::Directional(case) => (case.name.as_str(), &case.inputs, Some(&case.change)),
            Case::Minimum(case) => (case.name.as_str(), &case.inputs, None),
        })
        .collect()
}

/// The row of every input: the suite's base, then the case's inputs (whole
/// rows before single columns, as names sort).
fn rows(signature: &Signature, base: &Inputs, inputs: &Inputs) -> std::result::Result<Rows, String> {
    let mut rows = Rows::new();
    for given in [base, inputs] {
        for (name, value) in given {
            let reference = Reference::parse(name)?;
            let spec = input_spec(signature, &reference.name)?;
            match (reference.column_opt, value) {
                (None, Value::Array(row)) => {
                    match width(spec) {
                        Some(width) if width != row.len() => {
                            return Err(format!(
                                "input '{name}' takes {width} values per row, the case gives {}",
                                row.len()
                            ));
                        }
                        _ if spec.shape.len() < 2 => {
                            return Err(format!("input '{name}' takes one value per row: give a number"));
                        }
                        _ => {}
                    }
                    rows.insert(spec.name.clone(), row.clone());
                }
                (None, scalar) => {
                    if let Some(width) = width(spec).filter(|width| *width != 1) {
                        return Err(format!(
                            "input '{name}' takes {width} values per row: give a list, or '{name}[k]' for one of them"
                        ));
                    }
                    rows.insert(spec.name.clone(), vec![scalar.clone()]);
                }
                (Some(column), value) => {
                    let row = rows.get_mut(&spec.name).ok_or_else(|| {
                        format!("'{name}' sets one column of '{}', which has no row yet: give the whole row in base", spec.name)
                    })?;
                    let width = row.len();
                    let cell = row
                        .get_mut(column)
                        .ok_or_else(|| format!("'{name}': the row of '{}' has {width} values", spec.name))?;
                    *cell = value.clone();
                }
            }
        }
    }
    if let Some(missing) = signature
        .inputs
        .iter()
        .find(|spec| !rows.contains_key(&spec.name))
    {
        return Err(format!(
            "no value for input '{}': give it in the case's inputs or the suite's base",
            missing.name
        ));
    }
    Ok(rows)
}

/// `before` with `change` applied.
fn changed(signature: &Signature, before: &Rows, change: &ChangeSet) -> std::result::Result<Rows, String> {
    let mut after = before.clone();
    for (name, change) in change {
        let reference = Reference::parse(name)?;
        let spec = input_spec(signature, &reference.name)?;
        let row = after
            .get_mut(&spec.name)
            .ok_or_else(|| format!("no row for '{name}'"))?;
        let column = match reference.column_opt {
            Some(column) => column,
            None if row.len() == 1 => 0,
            None => {
                return Err(format!(
                    "change '{name}': the input has {} values per row: change '{name}[k]'",
                    row.len()
                ));
            }
        };
        let width = row.len();
        let cell = row
            .get_mut(column)
            .ok_or_else(|| format!("change '{name}': the row has {width} values"))?;
        let value = number(cell).ok_or_else(|| format!("change '{name}': {cell} is not a number"))?;
        let changed = change.apply(value);
        *cell = serde_json::Number::from_f64(changed)
            .map(Value::Number)
            .ok_or_else(|| format!("change '{name}' makes {changed}"))?;
    }
    Ok(after)
}

fn input_spec<'a>(signature: &'a Signature, name: &str) -> std::result::Result<&'a TensorSpec, String> {
    signature
        .inputs
        .iter()
        .find(|spec| spec.name == name)
        .ok_or_else(|| {
            let names: Vec<&str> = signature.inputs.iter().map(|spec| spec.name.as_str()).collect();
            format!("unknown input '{name}': the model takes {}", names.join(", "))
        })
}

/// Values per row, when the shape fixes it (`[N]`, `[N, K]`, `[N, C, H, W]`).
fn width(spec: &TensorSpec) -> Option<usize> {
    let rest = spec.shape.get(1..).unwrap_or_default();
    rest.iter().try_fold(1usize, |product, &dim| {
        usize::try_from(dim).ok().and_then(|dim| product.checked_mul(dim))
    })
}

/// The request a gateway would get for these rows: one row per input, in
/// the input's own datatype (integers as integers, booleans as booleans).
fn request(signature: &Signature, rows: &Rows) -> std::result::Result<Value, String> {
    let inputs = signature
        .inputs
        .iter()
        .map(|spec| {
            let row = &rows[&spec.name];
            let shape: Vec<i64> = match spec.shape.len() {
                0 | 1 => vec![1],
                2 => vec![1, row.len() as i64],
                _ => {
                    let mut shape = vec![1];
                    shape.extend(spec.shape[1..].iter().copied());
                    shape
                }
            };
            let data = row
                .iter()
                .map(|value| typed(value, &spec.datatype))
                .collect::<std::result::Result<Vec<Value>, String>>()
                .map_err(|err| format!("input '{}': {err}", spec.name))?;
            Ok(json!({"name": spec.name, "datatype": spec.datatype, "shape": shape, "data": data}))
        })
        .collect::<std::result::Result<Vec<Value>, String>>()?;
    Ok(json!({ "inputs": inputs }))
}

fn typed(value: &Value, datatype: &str) -> std::result::Result<Value, String> {
    let number = number(value).ok_or_else(|| format!("{value} is not a number"))?;
    match datatype {
        "BOOL" => Ok(Value::Bool(number != 0.0)),
        "FP16" | "FP32" | "FP64" | "BF16" => Ok(json!(number)),
        _ if number.fract() == 0.0 && number.abs() < 9.0e15 => Ok(json!(number as i64)),
        _ => Err(format!("{value} is not an integer, and the input is {datatype}")),
    }
}

fn number(value: &Value) -> Option<f64> {
    match value {
        Value::Bool(flag) => Some(f64::from(u8::from(*flag))),
        other => other.as_f64(),
    }
}

/// A response's outputs, by name, as one row each.
fn outputs(body: &Value) -> std::result::Result<Outputs, String> {
    let list = body
        .get("outputs")
        .and_then(Value::as_array)
        .ok_or_else(|| "the response has no outputs".to_string())?;
    Ok(list
        .iter()
        .filter_map(|output| {
            let name = output.get("name")?.as_str()?.to_string();
            let data = output.get("data")?.as_array()?.clone();
            Some((name, data))
        })
        .collect())
}

/// `name` or `name[k]` of one row's outputs: one value, or the whole row.
fn pick(outputs: &Outputs, text: &str) -> std::result::Result<Value, String> {
    let reference = Reference::parse(text)?;
    let row = outputs.get(&reference.name).ok_or_else(|| {
        let names: Vec<&str> = outputs.keys().map(String::as_str).collect();
        format!(
            "no output '{}': the model gives {}",
            reference.name,
            names.join(", ")
        )
    })?;
    match reference.column_opt {
        Some(column) => row
            .get(column)
            .cloned()
            .ok_or_else(|| format!("'{text}': the output has {} values per row", row.len())),
        None if row.len() == 1 => Ok(row[0].clone()),
        None => Ok(Value::Array(row.clone())),
    }
}

/// The predicted class: a single value as text, or the index of the largest score.
fn class_of(outputs: &Outputs, name: &str) -> std::result::Result<String, String> {
    match pick(outputs, name)? {
        Value::Array(scores) => scores
            .iter()
            .enumerate()
            .filter_map(|(index, score)| Some((index, score.as_f64()?)))
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(index, _)| index.to_string())
            .ok_or_else(|| format!("'{name}' holds no number")),
        value => Ok(text(&value)),
    }
}

/// A value as a class is written: `1`, `1.0` and `true` alike.
fn text(value: &Value) -> String {
    match number(value) {
        Some(number) if number.fract() == 0.0 && number.abs() < 1e15 => format!("{}", number as i64),
        Some(number) => format!("{number}"),
        None => value.as_str().map_or_else(|| value.to_string(), str::to_string),
    }
}

/// Why `actual` is not `expected` within `tolerance`, `None` when it is.
fn mismatch(name: &str, actual: &Value, expected: &Value, tolerance: f64) -> Option<String> {
    let close = |a: &Value, e: &Value| match (number(a), number(e)) {
        (Some(a), Some(e)) => (a - e).abs() <= tolerance,
        _ => text(a) == text(e),
    };
    let equal = match (actual, expected) {
        (Value::Array(a), Value::Array(e)) => a.len() == e.len() && a.iter().zip(e).all(|(a, e)| close(a, e)),
        (Value::Array(_), _) | (_, Value::Array(_)) => false,
        (a, e) => close(a, e),
    };
    // A class (an integer output) or a string has no tolerance to speak of.
    let exact = actual.is_i64() || actual.is_u64() || !actual.is_number() || tolerance == 0.0;
    (!equal).then(|| {
        if exact {
            format!("{name} is {actual}, expected {expected}")
        } else {
            format!("{name} is {actual}, expected {expected} ± {tolerance}")
        }
    })
}

/// One case's answers.
struct Ran<'a> {
    before: &'a Rows,
    first: std::result::Result<Outputs, String>,
    after_opt: Option<&'a Rows>,
    second_opt: Option<std::result::Result<Outputs, String>>,
}

struct Judge<'a> {
    suite: &'a Suite,
    /// The suite's `class`, or the signature's first output.
    class: String,
    failures: Vec<CaseFailure>,
    kinds: Vec<KindOutcome>,
    /// Per slice: minimum cases, and how many passed.
    slices: BTreeMap<String, (u64, u64)>,
}

impl Judge<'_> {
    fn case(&mut self, case: Case<'_>, ran: Ran<'_>) {
        let (kind, name, slice_opt) = match &case {
            Case::Golden(case) => (CaseKind::Golden, &case.name, None),
            Case::Invariance(case) => (CaseKind::Invariance, &case.name, None),
            Case::Directional(case) => (CaseKind::Directional, &case.name, None),
            Case::Minimum(case) => (CaseKind::Minimum, &case.name, Some(case.slice.clone())),
        };
        let verdict = self.verdict(&case, &ran);
        if let Some(outcome) = self.kinds.iter_mut().find(|outcome| outcome.kind == kind) {
            outcome.cases += 1;
            outcome.failed += u64::from(verdict.is_some());
        }
        if let Some(slice) = &slice_opt {
            let counts = self.slices.entry(slice.clone()).or_default();
            counts.0 += 1;
            counts.1 += u64::from(verdict.is_none());
        }
        let Some(reason) = verdict else {
            return;
        };
        let shown = |rows: &Rows| -> Inputs {
            rows.iter()
                .map(|(name, row)| (name.clone(), one_or_all(row)))
                .collect()
        };
        let answered = |outputs: &std::result::Result<Outputs, String>| -> BTreeMap<String, Value> {
            outputs
                .as_ref()
                .map(|outputs| {
                    outputs
                        .iter()
                        .map(|(name, row)| (name.clone(), one_or_all(row)))
                        .collect()
                })
                .unwrap_or_default()
        };
        self.failures.push(CaseFailure {
            kind,
            name: name.clone(),
            slice: slice_opt,
            reason,
            inputs: shown(ran.before),
            outputs: answered(&ran.first),
            changed_inputs: ran.after_opt.map(shown),
            changed_outputs: ran.second_opt.as_ref().map(answered),
        });
    }

    /// Why the case failed, `None` when it passed.
    fn verdict(&self, case: &Case<'_>, ran: &Ran<'_>) -> Option<String> {
        let refused = |err: &String| format!("the model refused the inputs: {err}");
        let before = match &ran.first {
            Ok(outputs) => outputs,
            Err(err) => return Some(refused(err)),
        };
        let after = match &ran.second_opt {
            Some(Ok(outputs)) => Some(outputs),
            Some(Err(err)) => return Some(refused(err)),
            None => None,
        };
        match (case, after) {
            (Case::Golden(case), _) => self.expected(
                before,
                &case.expect,
                case.tolerance.unwrap_or(self.suite.tolerance),
            ),
            (Case::Minimum(case), _) => self.expected(before, &case.expect, self.suite.tolerance),
            (Case::Invariance(_), Some(after)) => {
                match (class_of(before, &self.class), class_of(after, &self.class)) {
                    (Ok(from), Ok(to)) if from == to => None,
                    (Ok(from), Ok(to)) => Some(format!("the predicted class changed from {from} to {to}")),
                    (Err(err), _) | (_, Err(err)) => Some(err),
                }
            }
            (Case::Directional(case), Some(after)) => {
                let score = case
                    .score
                    .as_deref()
                    .or(self.suite.score.as_deref())
                    .unwrap_or_default();
                let read = |outputs: &Outputs| {
                    pick(outputs, score).and_then(|value| {
                        value
                            .as_f64()
                            .ok_or_else(|| format!("'{score}' is {value}, not one number"))
                    })
                };
                match (read(before), read(after)) {
                    (Ok(from), Ok(to)) if case.expect.holds(from, to, DIRECTION_SLACK) => None,
                    (Ok(from), Ok(to)) => Some(format!(
                        "{score} {} from {from} to {to}: expected {}",
                        if to > from {
                            "rose"
                        } else if to < from {
                            "fell"
                        } else {
                            "stayed"
                        },
                        match case.expect {
                            Direction::Higher | Direction::Lower => format!("it to be {}", case.expect),
                            Direction::NotLower | Direction::NotHigher => case.expect.to_string(),
                        }
                    )),
                    (Err(err), _) | (_, Err(err)) => Some(err),
                }
            }
            (Case::Invariance(_) | Case::Directional(_), None) => Some("no answer after the change".into()),
        }
    }

    fn expected(&self, outputs: &Outputs, expect: &Expected, tolerance: f64) -> Option<String> {
        let problems: Vec<String> = expect
            .iter()
            .filter_map(|(name, expected)| match pick(outputs, name) {
                Ok(actual) => mismatch(name, &actual, expected, tolerance),
                Err(err) => Some(err),
            })
            .collect();
        (!problems.is_empty()).then(|| problems.join("; "))
    }
}

fn one_or_all(row: &[Value]) -> Value {
    match row {
        [one] => one.clone(),
        many => Value::Array(many.to_vec()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, datatype: &str, shape: &[i64]) -> TensorSpec {
        TensorSpec {
            name: name.into(),
            datatype: datatype.into(),
            shape: shape.to_vec(),
        }
    }

    fn signature() -> Signature {
        Signature {
            inputs: vec![
                spec("age", "FP32", &[-1, 1]),
                spec("pixels", "FP32", &[-1, 3]),
                spec("n", "INT64", &[-1]),
            ],
            outputs: vec![
                spec("label", "INT64", &[-1]),
                spec("probabilities", "FP32", &[-1, 2]),
            ],
        }
    }

    fn inputs(value: Value) -> Inputs {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn rows_merge_base_case_and_columns() {
        let base = inputs(json!({"age": 40, "pixels": [0, 0, 0], "n": 2}));
        let merged = rows(&signature(), &base, &inputs(json!({"age": 30, "pixels[1]": 5}))).unwrap();
        assert_eq!(merged["age"], vec![json!(30)]);
        assert_eq!(merged["pixels"], vec![json!(0), json!(5), json!(0)]);

        let change: ChangeSet =
            serde_json::from_value(json!({"age": "+1", "pixels[2]": "*2", "n": 7})).unwrap();
        let after = changed(&signature(), &merged, &change).unwrap();
        assert_eq!(after["age"], vec![json!(31.0)]);
        assert_eq!(after["n"], vec![json!(7.0)]);

        let body = request(&signature(), &after).unwrap();
        assert_eq!(body["inputs"][1]["shape"], json!([1, 3]));
        assert_eq!(
            body["inputs"][2]["data"],
            json!([7]),
            "integers go out as integers"
        );
        assert_eq!(body["inputs"][2]["shape"], json!([1]));

        let err = rows(&signature(), &base, &inputs(json!({"pixels": 1}))).unwrap_err();
        assert!(err.contains("takes 3 values per row"), "{err}");
        let err = rows(&signature(), &base, &inputs(json!({"pixels": [1, 2]}))).unwrap_err();
        assert!(err.contains("takes 3 values per row, the case gives 2"), "{err}");
        let err = rows(&signature(), &base, &inputs(json!({"n": [1]}))).unwrap_err();
        assert!(err.contains("one value per row"), "{err}");
        let err = rows(&signature(), &inputs(json!({"age": 1})), &Inputs::new()).unwrap_err();
        assert!(err.contains("no value for input 'pixels'"), "{err}");
        let err = rows(&signature(), &base, &inputs(json!({"height": 1}))).unwrap_err();
        assert!(
            err.contains("unknown input 'height': the model takes age, pixels, n"),
            "{err}"
        );
        let half: ChangeSet = serde_json::from_value(json!({"n": "+0.5"})).unwrap();
        let err = request(&signature(), &changed(&signature(), &merged, &half).unwrap()).unwrap_err();
        assert!(err.contains("not an integer"), "{err}");
    }

    #[test]
    fn outputs_are_picked_and_compared() {
        let outputs: Outputs = [
            ("label".to_string(), vec![json!(1)]),
            ("probabilities".to_string(), vec![json!(0.25), json!(0.75)]),
        ]
        .into();
        assert_eq!(pick(&outputs, "probabilities[1]").unwrap(), json!(0.75));
        assert_eq!(pick(&outputs, "label").unwrap(), json!(1));
        assert!(
            pick(&outputs, "scores")
                .unwrap_err()
                .contains("the model gives label, probabilities")
        );
        assert_eq!(class_of(&outputs, "label").unwrap(), "1");
        assert_eq!(class_of(&outputs, "probabilities").unwrap(), "1");
        assert_eq!(mismatch("label", &json!(1), &json!(1.0), 0.0), None);
        assert_eq!(
            mismatch("label", &json!(1), &json!(0), 1e-4).unwrap(),
            "label is 1, expected 0"
        );
        assert_eq!(mismatch("p", &json!(0.75), &json!(0.7501), 1e-3), None);
        assert_eq!(
            mismatch("p", &json!(0.75), &json!(0.7), 1e-3).unwrap(),
            "p is 0.75, expected 0.7 ± 0.001"
        );
        assert!(mismatch("p", &json!([0.25, 0.75]), &json!([0.25, 0.7]), 1e-3).is_some());
        assert_eq!(mismatch("c", &json!("cat"), &json!("cat"), 0.0), None);
    }
}
