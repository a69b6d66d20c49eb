//! What a label says of a prediction: the predicted class (or number) of
//! each row, counts of agreements and errors in time buckets, score
//! histograms for AUC.

use serde_json::Value;

/// Score histogram bins for AUC.
pub(super) const SCORE_BINS: usize = 100;

/// What a logged prediction answered, per row.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Predicted {
    /// A class (canonical text: `1`, `0.5`, `cat`), with the positive
    /// class's score when the model gave two-class probabilities.
    Class {
        class: String,
        score_opt: Option<f64>,
    },
    Value(f64),
}

/// One bucket (a minute by default) of joined rows of one version.
#[derive(Debug, Clone, Default)]
pub(super) struct Bucket {
    /// Its start, in buckets since the epoch.
    pub(super) slot: u64,
    pub(super) joined: u64,
    pub(super) classified: u64,
    pub(super) correct: u64,
    pub(super) regressed: u64,
    pub(super) abs_error: f64,
    /// Scores of rows labelled 1 and 0, in hundredths.
    pub(super) positives: Vec<u64>,
    pub(super) negatives: Vec<u64>,
    /// Rows of a two-class classifier (classes 0 and 1) by label, and
    /// those it got wrong.
    pub(super) labelled_positive: u64,
    pub(super) labelled_negative: u64,
    pub(super) false_positive: u64,
    pub(super) false_negative: u64,
}

impl Bucket {
    pub(super) fn merge(&mut self, other: &Bucket) {
        self.joined += other.joined;
        self.classified += other.classified;
        self.correct += other.correct;
        self.regressed += other.regressed;
        self.abs_error += other.abs_error;
        self.labelled_positive += other.labelled_positive;
        self.labelled_negative += other.labelled_negative;
        self.false_positive += other.false_positive;
        self.false_negative += other.false_negative;
        for (mine, theirs) in [
            (&mut self.positives, &other.positives),
            (&mut self.negatives, &other.negatives),
        ] {
            if mine.is_empty() {
                mine.resize(theirs.len(), 0);
            }
            for (count, more) in mine.iter_mut().zip(theirs) {
                *count += more;
            }
        }
    }

    pub(super) fn accuracy(&self) -> Option<f64> {
        ratio(self.correct, self.classified)
    }

    pub(super) fn mae(&self) -> Option<f64> {
        (self.regressed > 0).then(|| self.abs_error / self.regressed as f64)
    }
}

pub(super) fn ratio(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

/// Adds each (prediction, label) row to `bucket`; false when a label does
/// not fit the prediction's kind.
pub(super) fn score_rows(bucket: &mut Bucket, rows: &[Predicted], labels: &[&Value]) -> bool {
    for (row, label) in rows.iter().zip(labels) {
        match row {
            Predicted::Class { class, score_opt } => {
                let Some(truth) = canonical(label) else {
                    return false;
                };
                bucket.classified += 1;
                bucket.correct += u64::from(truth == *class);
                match (truth.as_str(), class.as_str()) {
                    ("1", "1") => bucket.labelled_positive += 1,
                    ("1", "0") => {
                        bucket.labelled_positive += 1;
                        bucket.false_negative += 1;
                    }
                    ("0", "0") => bucket.labelled_negative += 1,
                    ("0", "1") => {
                        bucket.labelled_negative += 1;
                        bucket.false_positive += 1;
                    }
                    _ => {}
                }
                if let Some(score) = score_opt {
                    let histogram = match truth.as_str() {
                        "1" => &mut bucket.positives,
                        "0" => &mut bucket.negatives,
                        _ => continue,
                    };
                    if histogram.is_empty() {
                        histogram.resize(SCORE_BINS, 0);
                    }
                    let bin = ((score * SCORE_BINS as f64) as usize).min(SCORE_BINS - 1);
                    histogram[bin] += 1;
                }
            }
            Predicted::Value(value) => {
                let Some(truth) = label.as_f64() else {
                    return false;
                };
                bucket.regressed += 1;
                bucket.abs_error += (truth - value).abs();
            }
        }
    }
    bucket.joined += rows.len() as u64;
    true
}

/// AUC from binned scores: the probability that a positive outscores a
/// negative, ties (same hundredth) counted half.
pub(super) fn auc(positives: &[u64], negatives: &[u64]) -> Option<f64> {
    let total_positive: u64 = positives.iter().sum();
    let total_negative: u64 = negatives.iter().sum();
    if total_positive == 0 || total_negative == 0 {
        return None;
    }
    let mut below = 0u64;
    let mut wins = 0f64;
    for (positive, negative) in positives.iter().zip(negatives) {
        wins += *positive as f64 * (below as f64 + *negative as f64 / 2.0);
        below += negative;
    }
    Some(wins / (total_positive as f64 * total_negative as f64))
}

/// What each row of a logged prediction answered: a class output (integers,
/// strings or booleans) makes it a classifier, with a two-wide probability
/// output as the positive class's score; otherwise the first numeric output
/// is a regression value.
pub(super) fn predicted_rows(outputs: &serde_json::Map<String, Value>) -> Vec<Predicted> {
    let lists: Vec<&Vec<Value>> = outputs.values().filter_map(Value::as_array).collect();
    let class_opt = lists
        .iter()
        .find(|values| !values.is_empty() && values.iter().all(is_class));
    if let Some(classes) = class_opt {
        let scores_opt = lists.iter().find(|values| {
            values.len() == classes.len()
                && values
                    .iter()
                    .all(|row| row.as_array().is_some_and(|pair| pair.len() == 2))
        });
        return classes
            .iter()
            .enumerate()
            .map(|(index, value)| Predicted::Class {
                class: canonical(value).unwrap_or_default(),
                score_opt: scores_opt.and_then(|scores| scores[index].get(1).and_then(Value::as_f64)),
            })
            .collect();
    }
    let scalar = |value: &Value| match value {
        Value::Array(one) if one.len() == 1 => one[0].as_f64(),
        other => other.as_f64(),
    };
    lists
        .iter()
        .find(|values| !values.is_empty() && values.iter().all(|value| scalar(value).is_some()))
        .map(|values| {
            values
                .iter()
                .map(|value| Predicted::Value(scalar(value).unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default()
}

pub(super) fn is_class(value: &Value) -> bool {
    value.is_i64() || value.is_u64() || value.is_string() || value.is_boolean()
}

/// A class as text, so that `1`, `1.0` and `true` are the same class.
pub(super) fn canonical(value: &Value) -> Option<String> {
    match value {
        Value::Bool(flag) => Some(if *flag { "1" } else { "0" }.to_string()),
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => {
            let float = number.as_f64()?;
            Some(if float.fract() == 0.0 && float.abs() < 1e15 {
                format!("{}", float as i64)
            } else {
                format!("{float}")
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_classifier_with_probabilities() {
        let outputs = json!({"label": [1, 0], "probabilities": [[0.2, 0.8], [0.9, 0.1]]});
        let rows = predicted_rows(outputs.as_object().unwrap());
        assert_eq!(
            rows,
            vec![
                Predicted::Class {
                    class: "1".into(),
                    score_opt: Some(0.8)
                },
                Predicted::Class {
                    class: "0".into(),
                    score_opt: Some(0.1)
                },
            ]
        );
        let outputs = json!({"price": [[3.5], [1.0]]});
        assert_eq!(
            predicted_rows(outputs.as_object().unwrap()),
            vec![Predicted::Value(3.5), Predicted::Value(1.0)]
        );
    }

    #[test]
    fn auc_counts_ties_as_half() {
        // Perfect separation, all ties, and a known mix.
        let bins = |hits: &[(usize, u64)]| {
            let mut histogram = vec![0; SCORE_BINS];
            for (bin, count) in hits {
                histogram[*bin] = *count;
            }
            histogram
        };
        assert_eq!(auc(&bins(&[(90, 5)]), &bins(&[(10, 5)])), Some(1.0));
        assert_eq!(auc(&bins(&[(50, 3)]), &bins(&[(50, 3)])), Some(0.5));
        // Positives at 0.2 and 0.8, negatives at 0.5: one of two pairs won each.
        assert_eq!(auc(&bins(&[(20, 1), (80, 1)]), &bins(&[(50, 1)])), Some(0.5));
        assert_eq!(auc(&bins(&[(80, 1)]), &[]), None);
    }

    /// A fresh directory for the logs, an hour's horizon, no grace, minute buckets.

    #[test]
    fn labels_compare_as_classes() {
        assert_eq!(canonical(&json!(true)), canonical(&json!(1)));
        assert_eq!(canonical(&json!(1.0)), Some("1".into()));
        assert_eq!(canonical(&json!("good")), Some("good".into()));
    }
}
