//! Drift accounting at the gateway: each profiled feature's values, and
//! each profiled output column's answers (prediction drift), counted into
//! the reference profile's bins, in atomics, and reported with the version's
//! statistics window. The registry adds the windows of every replica and
//! measures drift.
//!
//! Numeric columns count into the profile's bins plus underflow, overflow
//! and missing (NaN); categorical ones into its categories plus other and
//! missing, a value falling in the category whose text reads as that number.
//! Memory is bounded whatever the traffic: a fixed set of counters per
//! column. Inputs and outputs count per column, as the profile names them:
//! `age` of an `[N]` or `[N, 1]` input, `pixels[3]` of an `[N, 64]` one,
//! `probabilities[1]` of an `[N, 2]` output.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use sluice_registry_client::profile::{ColumnProfile, ReferenceProfile, bin_of, output_columns};

use crate::signature::{Signature, TensorSpec};
use crate::tensor::{Tensor, TensorData};

/// How a column's values map to its slots.
enum Bins {
    /// `edges.len() - 1` bins, then underflow, overflow, missing.
    Numeric { edges: Vec<f64> },
    /// The categories, then other, missing. A number is matched to the
    /// category whose text reads as it (`3`, `3.0` and `03` alike), to FP32
    /// precision; no text is made per value. A `BYTES` value is matched to
    /// the category of its very text (`red`), the empty string is missing.
    Categorical {
        numbers: Vec<Option<f64>>,
        texts: Vec<String>,
    },
}

impl Bins {
    fn of(profile: &ColumnProfile) -> Option<Bins> {
        match profile {
            ColumnProfile::Numeric { edges, .. } if edges.len() >= 2 => {
                Some(Bins::Numeric { edges: edges.clone() })
            }
            ColumnProfile::Numeric { .. } => None,
            ColumnProfile::Categorical { categories, .. } => Some(Bins::Categorical {
                numbers: categories
                    .iter()
                    .map(|category| category.trim().parse::<f64>().ok())
                    .collect(),
                texts: categories.clone(),
            }),
        }
    }

    fn slots(&self) -> usize {
        match self {
            Bins::Numeric { edges } => edges.len() - 1 + 3,
            Bins::Categorical { numbers, .. } => numbers.len() + 2,
        }
    }

    fn slot(&self, value: f64) -> usize {
        match self {
            Bins::Numeric { edges } => {
                let bins = edges.len() - 1;
                if value.is_nan() {
                    bins + 2
                } else {
                    match bin_of(edges, value) {
                        Some(bin) => bin,
                        None if value < edges[0] => bins,
                        None => bins + 1,
                    }
                }
            }
            Bins::Categorical { numbers, .. } => {
                if value.is_nan() {
                    return numbers.len() + 1;
                }
                // An FP32 0.1 is 0.10000000149 as f64: equal within FP32's precision.
                let tolerance = crate::tensor::fp32_tolerance;
                numbers
                    .iter()
                    .position(|number| {
                        number.is_some_and(|number| (number - value).abs() <= tolerance(number))
                    })
                    .unwrap_or(numbers.len())
            }
        }
    }
}

impl Bins {
    /// The slot of a string value: its category, else other; the empty
    /// string is missing. A numeric column has no slot for text: other
    /// than its bins, it counts as missing.
    fn text_slot(&self, value: &[u8]) -> usize {
        match self {
            Bins::Numeric { edges } => edges.len() - 1 + 2,
            Bins::Categorical { texts, .. } if value.is_empty() => texts.len() + 1,
            Bins::Categorical { texts, .. } => texts
                .iter()
                .position(|text| text.as_bytes() == value)
                .unwrap_or(texts.len()),
        }
    }
}

/// One column's bins and counts.
struct Column {
    name: String,
    /// Index of the tensor (input or output) that carries it.
    tensor: usize,
    /// Which column of that tensor, and how many it has.
    column: usize,
    width: usize,
    bins: Bins,
    counts: Box<[AtomicU64]>,
}

impl Column {
    fn count(&self, tensor: &Tensor) {
        let add = |value: f64| {
            self.counts[self.bins.slot(value)].fetch_add(1, Ordering::Relaxed);
        };
        // This column's values: every `width`-th from `column`.
        let (skip, step) = (self.column, self.width);
        match &tensor.data {
            TensorData::F32(values) => values
                .iter()
                .skip(skip)
                .step_by(step)
                .for_each(|&v| add(f64::from(v))),
            TensorData::F64(values) => values.iter().skip(skip).step_by(step).for_each(|&v| add(v)),
            TensorData::I64(values) => values
                .iter()
                .skip(skip)
                .step_by(step)
                .for_each(|&v| add(v as f64)),
            TensorData::I32(values) => values
                .iter()
                .skip(skip)
                .step_by(step)
                .for_each(|&v| add(f64::from(v))),
            TensorData::Bool(values) => values
                .iter()
                .skip(skip)
                .step_by(step)
                .for_each(|&v| add(f64::from(u8::from(v)))),
            TensorData::Bytes(values) => values.iter().skip(skip).step_by(step).for_each(|v| {
                self.counts[self.bins.text_slot(v)].fetch_add(1, Ordering::Relaxed);
            }),
            _ => {}
        }
    }

    fn take(&self) -> (String, Vec<u64>) {
        let counts = self
            .counts
            .iter()
            .map(|count| count.swap(0, Ordering::Relaxed))
            .collect();
        (self.name.clone(), counts)
    }
}

/// The drift counters of one loaded version.
pub struct DriftCounter {
    features: Vec<Column>,
    outputs: Vec<Column>,
    /// Profiled columns the model has no countable tensor for.
    unmatched: Vec<String>,
}

impl DriftCounter {
    /// Counters for the columns of `profile` the model has; `None` when
    /// there is none.
    pub fn new(profile: &ReferenceProfile, signature: &Signature) -> Option<DriftCounter> {
        let features = profiled_columns(&signature.inputs, &profile.features);
        let outputs = profiled_columns(&signature.outputs, &profile.outputs);
        let counted: std::collections::BTreeSet<&str> = features
            .iter()
            .chain(&outputs)
            .map(|column| column.name.as_str())
            .collect();
        let unmatched = profile
            .features
            .keys()
            .chain(profile.outputs.keys())
            .filter(|name| !counted.contains(name.as_str()))
            .cloned()
            .collect();
        (!features.is_empty() || !outputs.is_empty()).then_some(DriftCounter {
            features,
            outputs,
            unmatched,
        })
    }

    /// Profiled columns no tensor of the model carries as a countable
    /// column (another name, a shape not `[N]`, `[N, 1]` or `[N, K]`): they
    /// stay "insufficient data".
    pub fn unmatched(&self) -> &[String] {
        &self.unmatched
    }

    /// Counts every row of `inputs` (in signature order).
    pub fn count(&self, inputs: &[Tensor]) {
        for feature in &self.features {
            if let Some(tensor) = inputs.get(feature.tensor) {
                feature.count(tensor);
            }
        }
    }

    /// Counts every row of `outputs` (in signature order).
    pub fn count_outputs(&self, outputs: &[Tensor]) {
        for output in &self.outputs {
            if let Some(tensor) = outputs.get(output.tensor) {
                output.count(tensor);
            }
        }
    }

    /// The feature and output counts since the last take, zeroed as they are read.
    pub fn take(&self) -> (BTreeMap<String, Vec<u64>>, BTreeMap<String, Vec<u64>>) {
        let taken = |columns: &[Column]| {
            columns
                .iter()
                .map(Column::take)
                .filter(|(_, counts)| counts.iter().any(|&count| count > 0))
                .collect()
        };
        (taken(&self.features), taken(&self.outputs))
    }
}

/// A counter for each column of `specs` that `profiled` names. Inputs'
/// columns are named as outputs' are: `age` for `[N]` or `[N, 1]`,
/// `pixels[3]` for column 3 of `[N, 64]`.
fn profiled_columns(specs: &[TensorSpec], profiled: &BTreeMap<String, ColumnProfile>) -> Vec<Column> {
    let mut columns = Vec::new();
    for (index, spec) in specs.iter().enumerate() {
        let Some(width) = columns_of(spec) else {
            continue;
        };
        for (column, name) in output_columns(&spec.name, width).iter().enumerate() {
            if let Some(profile) = profiled.get(name) {
                columns.extend(new_column(name, index, column, width, profile));
            }
        }
    }
    columns
}

fn new_column(
    name: &str,
    tensor: usize,
    column: usize,
    width: usize,
    profile: &ColumnProfile,
) -> Option<Column> {
    let bins = Bins::of(profile)?;
    Some(Column {
        name: name.to_string(),
        tensor,
        column,
        width,
        counts: (0..bins.slots()).map(|_| AtomicU64::new(0)).collect(),
        bins,
    })
}

/// The columns of a `[N]`, `[N, 1]` or `[N, K]` tensor; `None` for other shapes
/// or a `K` not known ahead.
fn columns_of(spec: &TensorSpec) -> Option<usize> {
    match spec.shape[..] {
        [_] => Some(1),
        [_, width] if width >= 1 => usize::try_from(width).ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signature::TensorSpec;
    use crate::tensor::DataType;

    fn numeric(edges: Vec<f64>, shares: Vec<f64>) -> ColumnProfile {
        ColumnProfile::Numeric {
            edges,
            shares,
            count: 4,
            mean: 0.0,
            std: 1.0,
        }
    }

    fn categorical(categories: &[&str], shares: Vec<f64>) -> ColumnProfile {
        ColumnProfile::Categorical {
            categories: categories.iter().map(|category| category.to_string()).collect(),
            shares,
            other: 0.0,
            count: 4,
        }
    }

    fn profile(
        features: Vec<(&str, ColumnProfile)>,
        outputs: Vec<(&str, ColumnProfile)>,
    ) -> ReferenceProfile {
        let named = |columns: Vec<(&str, ColumnProfile)>| {
            columns
                .into_iter()
                .map(|(name, column)| (name.to_string(), column))
                .collect()
        };
        ReferenceProfile {
            schema: "sluice-profile/v1".into(),
            rows: 4,
            features: named(features),
            outputs: named(outputs),
        }
    }

    fn spec(name: &str, datatype: DataType, shape: Vec<i64>) -> TensorSpec {
        TensorSpec {
            name: name.into(),
            datatype,
            dim_symbols: vec![None; shape.len()],
            shape,
            labels: Vec::new(),
        }
    }

    #[test]
    fn each_column_of_a_wide_input_counts_under_its_own_name() {
        let profile = profile(
            vec![
                ("pixels[0]", numeric(vec![0.0, 8.0, 16.0], vec![0.5, 0.5])),
                ("pixels[2]", numeric(vec![0.0, 8.0, 16.0], vec![0.5, 0.5])),
                ("px1", numeric(vec![0.0, 16.0], vec![1.0])),
            ],
            vec![],
        );
        let signature = Signature {
            inputs: vec![spec("pixels", DataType::F32, vec![-1, 3])],
            outputs: vec![],
        };
        let counter = DriftCounter::new(&profile, &signature).unwrap();
        assert_eq!(counter.unmatched(), ["px1"], "a name the model has no column of");
        counter.count(&[Tensor {
            shape: vec![2, 3],
            data: TensorData::F32(vec![1.0, 99.0, 9.0, 2.0, 99.0, 10.0]),
        }]);
        let (features, _) = counter.take();
        // Two bins, then underflow, overflow, missing.
        assert_eq!(features["pixels[0]"], vec![2, 0, 0, 0, 0]);
        assert_eq!(features["pixels[2]"], vec![0, 2, 0, 0, 0]);
    }

    #[test]
    fn strings_fall_in_their_categories_other_and_missing() {
        let profile = profile(
            vec![
                ("color", categorical(&["red", "blue"], vec![0.5, 0.5])),
                ("age", numeric(vec![20.0, 40.0], vec![1.0])),
            ],
            vec![],
        );
        let signature = Signature {
            inputs: vec![
                spec("color", DataType::Bytes, vec![-1]),
                spec("age", DataType::Bytes, vec![-1]),
            ],
            outputs: vec![],
        };
        let counter = DriftCounter::new(&profile, &signature).unwrap();
        let words = |words: &[&str]| Tensor {
            shape: vec![words.len()],
            data: TensorData::Bytes(words.iter().map(|word| word.as_bytes().to_vec()).collect()),
        };
        counter.count(&[words(&["red", "red", "teal", "", "blue"]), words(&["30"])]);
        let (features, _) = counter.take();
        // red, blue, other, missing.
        assert_eq!(features["color"], vec![2, 1, 1, 1]);
        // Text in a numeric column: missing, never a bin.
        assert_eq!(features["age"], vec![0, 0, 0, 1]);
    }

    #[test]
    fn values_fall_in_bins_underflow_overflow_and_missing() {
        let profile = profile(
            vec![("age", numeric(vec![20.0, 40.0, 60.0], vec![0.5, 0.5]))],
            vec![],
        );
        let signature = Signature {
            inputs: vec![spec("age", DataType::F32, vec![-1, 1])],
            outputs: vec![],
        };
        let counter = DriftCounter::new(&profile, &signature).unwrap();
        counter.count(&[Tensor {
            shape: vec![6, 1],
            data: TensorData::F32(vec![25.0, 40.0, 60.0, 10.0, 99.0, f32::NAN]),
        }]);
        // bins [20, 40) and [40, 60], then underflow, overflow, missing.
        assert_eq!(counter.take().0["age"], vec![1, 2, 1, 1, 1]);
        assert!(counter.take().0.is_empty(), "taking resets");
    }

    #[test]
    fn categories_match_by_the_number_their_text_reads_as() {
        let grade = categorical(&["0.1", "1.0", "red"], vec![0.4, 0.4, 0.2]);
        let profile = profile(vec![("grade", grade)], vec![]);
        let signature = Signature {
            inputs: vec![spec("grade", DataType::F32, vec![-1, 1])],
            outputs: vec![],
        };
        let counter = DriftCounter::new(&profile, &signature).unwrap();
        assert!(counter.unmatched().is_empty());
        counter.count(&[Tensor {
            shape: vec![5, 1],
            data: TensorData::F32(vec![0.1, 1.0, 1.0, 2.0, f32::NAN]),
        }]);
        // FP32 0.1 is "0.1", 1 is "1.0"; "red" matches no number; 2 is other.
        assert_eq!(counter.take().0["grade"], vec![1, 2, 0, 1, 1]);
    }

    #[test]
    fn outputs_count_per_column_and_classes_as_categories() {
        let profile = profile(
            vec![],
            vec![
                ("label", categorical(&["0", "1"], vec![0.9, 0.1])),
                ("probabilities[1]", numeric(vec![0.0, 0.5, 1.0], vec![0.9, 0.1])),
            ],
        );
        let signature = Signature {
            inputs: vec![],
            outputs: vec![
                spec("label", DataType::I64, vec![-1]),
                spec("probabilities", DataType::F32, vec![-1, 2]),
            ],
        };
        let counter = DriftCounter::new(&profile, &signature).unwrap();
        counter.count_outputs(&[
            Tensor {
                shape: vec![4],
                data: TensorData::I64(vec![0, 1, 1, 7]),
            },
            Tensor {
                shape: vec![4, 2],
                data: TensorData::F32(vec![0.9, 0.1, 0.2, 0.8, 0.4, 0.6, f32::NAN, f32::NAN]),
            },
        ]);
        let (features, outputs) = counter.take();
        assert!(features.is_empty());
        // Categories 0 and 1, then other (the 7) and missing.
        assert_eq!(outputs["label"], vec![1, 2, 1, 0]);
        // Only the second column: 0.1 | 0.8, 0.6 | underflow, overflow, missing (NaN).
        assert_eq!(outputs["probabilities[1]"], vec![1, 2, 0, 0, 1]);
    }
}
