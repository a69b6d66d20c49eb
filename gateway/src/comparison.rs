//! How a shadow version's answer compares with the primary's: classes that
//! agree, numbers that differ, outputs of another shape; and the counters
//! of one version's comparisons.

use metrics::{Counter, Histogram};

use crate::tensor::{Tensor, TensorData};

/// How a shadow's answer compares with the primary's, for one request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Comparison {
    /// Rows whose predicted class was compared (argmax of the first class
    /// score output, else equality of the first integer output).
    pub rows: u64,
    pub agreements: u64,
    /// Numeric elements compared across every output both share.
    pub values: u64,
    pub sum_abs_diff: f64,
    pub max_abs_diff: f64,
    /// Outputs present in both answers with different shapes.
    pub mismatched_outputs: u64,
}

/// Compares two answers of models with the same outputs, by position.
pub fn compare(primary: &[Tensor], shadow: &[Tensor]) -> Comparison {
    let mut comparison = Comparison::default();
    let pairs: Vec<(&Tensor, &Tensor)> = primary.iter().zip(shadow).collect();
    for (a, b) in &pairs {
        if a.shape != b.shape {
            comparison.mismatched_outputs += 1;
            continue;
        }
        let (left, right) = (as_f64(&a.data), as_f64(&b.data));
        for (x, y) in left.iter().zip(&right) {
            let difference = (x - y).abs();
            if difference.is_nan() {
                continue;
            }
            comparison.values += 1;
            comparison.sum_abs_diff += difference;
            comparison.max_abs_diff = comparison.max_abs_diff.max(difference);
        }
    }
    let scores = pairs
        .iter()
        .find(|(a, b)| a.shape == b.shape && a.shape.len() == 2 && a.shape[1] >= 2 && is_float(&a.data));
    let labels = pairs
        .iter()
        .find(|(a, b)| a.shape == b.shape && a.shape.len() == 1 && !is_float(&a.data) && !is_float(&b.data));
    if let Some((a, b)) = scores {
        let (left, right) = (as_f64(&a.data), as_f64(&b.data));
        let classes = a.shape[1];
        for (row_a, row_b) in left.chunks(classes).zip(right.chunks(classes)) {
            comparison.rows += 1;
            comparison.agreements += u64::from(argmax(row_a) == argmax(row_b));
        }
    } else if let Some((a, b)) = labels {
        comparison.rows += a.data.len() as u64;
        comparison.agreements += match (&a.data, &b.data) {
            // String class labels agree when their bytes do.
            (TensorData::Bytes(left), TensorData::Bytes(right)) => {
                left.iter().zip(right).filter(|(x, y)| x == y).count() as u64
            }
            _ => {
                let (left, right) = (as_f64(&a.data), as_f64(&b.data));
                left.iter().zip(&right).filter(|(x, y)| x == y).count() as u64
            }
        };
    }
    comparison
}

fn is_float(data: &TensorData) -> bool {
    matches!(data, TensorData::F16(_) | TensorData::F32(_) | TensorData::F64(_))
}

fn as_f64(data: &TensorData) -> Vec<f64> {
    match data {
        TensorData::Bool(v) => v.iter().map(|&x| f64::from(u8::from(x))).collect(),
        TensorData::U8(v) => v.iter().map(|&x| f64::from(x)).collect(),
        TensorData::U16(v) => v.iter().map(|&x| f64::from(x)).collect(),
        TensorData::U32(v) => v.iter().map(|&x| f64::from(x)).collect(),
        TensorData::U64(v) => v.iter().map(|&x| x as f64).collect(),
        TensorData::I8(v) => v.iter().map(|&x| f64::from(x)).collect(),
        TensorData::I16(v) => v.iter().map(|&x| f64::from(x)).collect(),
        TensorData::I32(v) => v.iter().map(|&x| f64::from(x)).collect(),
        TensorData::I64(v) => v.iter().map(|&x| x as f64).collect(),
        TensorData::F16(v) => v.iter().map(|&x| f64::from(x)).collect(),
        TensorData::F32(v) => v.iter().map(|&x| f64::from(x)).collect(),
        TensorData::F64(v) => v.clone(),
        // Strings have no difference to measure, only equality (labels above).
        TensorData::Bytes(_) => Vec::new(),
    }
}

fn argmax(row: &[f64]) -> usize {
    row.iter()
        .enumerate()
        .fold((0, f64::NEG_INFINITY), |(best, best_value), (index, &value)| {
            if value > best_value {
                (index, value)
            } else {
                (best, best_value)
            }
        })
        .0
}

/// The shadow series of one version, resolved when it loads.
pub struct ShadowMetrics {
    pub requests: Counter,
    pub errors: Counter,
    pub dropped: Counter,
    pub rows: Counter,
    pub agreements: Counter,
    pub mean_abs_diff: Histogram,
    pub max_abs_diff: Histogram,
}

impl ShadowMetrics {
    pub fn new(model: &str, version: &str) -> ShadowMetrics {
        crate::metrics::handle();
        let labels = [("model", model.to_string()), ("version", version.to_string())];
        ShadowMetrics {
            requests: metrics::counter!(crate::metrics::SHADOW_REQUESTS, &labels),
            errors: metrics::counter!(crate::metrics::SHADOW_ERRORS, &labels),
            dropped: metrics::counter!(crate::metrics::SHADOW_DROPPED, &labels),
            rows: metrics::counter!(crate::metrics::SHADOW_ROWS, &labels),
            agreements: metrics::counter!(crate::metrics::SHADOW_AGREEMENTS, &labels),
            mean_abs_diff: metrics::histogram!(crate::metrics::SHADOW_MEAN_ABS_DIFF, &labels),
            max_abs_diff: metrics::histogram!(crate::metrics::SHADOW_MAX_ABS_DIFF, &labels),
        }
    }

    pub fn record(&self, comparison: &Comparison) {
        self.requests.increment(1);
        self.rows.increment(comparison.rows);
        self.agreements.increment(comparison.agreements);
        if comparison.values > 0 {
            self.mean_abs_diff
                .record(comparison.sum_abs_diff / comparison.values as f64);
            self.max_abs_diff.record(comparison.max_abs_diff);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tensor(shape: &[usize], data: TensorData) -> Tensor {
        Tensor {
            shape: shape.to_vec(),
            data,
        }
    }

    #[test]
    fn string_labels_agree_when_their_bytes_do() {
        let labels = |words: &[&str]| Tensor {
            shape: vec![words.len()],
            data: TensorData::Bytes(words.iter().map(|word| word.as_bytes().to_vec()).collect()),
        };
        let comparison = compare(
            &[labels(&["cat", "dog", "cat"])],
            &[labels(&["cat", "cat", "cat"])],
        );
        assert_eq!((comparison.rows, comparison.agreements), (3, 2));
        assert_eq!(comparison.values, 0, "no numeric difference between strings");
    }

    #[test]
    fn class_scores_compare_by_argmax_and_numbers_by_difference() {
        let primary = [
            tensor(&[3], TensorData::I64(vec![0, 1, 1])),
            tensor(&[3, 2], TensorData::F32(vec![0.9, 0.1, 0.2, 0.8, 0.4, 0.6])),
        ];
        let shadow = [
            tensor(&[3], TensorData::I64(vec![0, 1, 0])),
            tensor(&[3, 2], TensorData::F32(vec![0.8, 0.2, 0.2, 0.8, 0.7, 0.3])),
        ];
        let comparison = compare(&primary, &shadow);
        assert_eq!((comparison.rows, comparison.agreements), (3, 2));
        assert_eq!(comparison.values, 9);
        // |0-0|+|1-1|+|1-0| + 0.1+0.1+0+0+0.3+0.3 = 1.8, over 9 values.
        assert!((comparison.sum_abs_diff - 1.8).abs() < 1e-6, "{comparison:?}");
        assert!((comparison.max_abs_diff - 1.0).abs() < 1e-6);
        assert_eq!(comparison.mismatched_outputs, 0);
    }

    #[test]
    fn labels_alone_compare_by_equality_and_mismatches_are_counted() {
        let primary = [
            tensor(&[4], TensorData::I64(vec![1, 2, 3, 4])),
            tensor(&[1], TensorData::F32(vec![1.0])),
        ];
        let shadow = [
            tensor(&[4], TensorData::I64(vec![1, 2, 0, 4])),
            tensor(&[2], TensorData::F32(vec![1.0, 2.0])),
        ];
        let comparison = compare(&primary, &shadow);
        assert_eq!((comparison.rows, comparison.agreements), (4, 3));
        assert_eq!(comparison.mismatched_outputs, 1);
        assert_eq!(comparison.max_abs_diff, 3.0);
    }
}
