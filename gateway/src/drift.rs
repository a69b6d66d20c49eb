//! Drift accounting at the gateway: each profiled feature's values counted
//! into its reference profile's bins (plus underflow, overflow and
//! missing), in atomics, reported with the version's statistics window. The
//! registry adds the windows of every replica and measures drift.
//!
//! Memory is bounded whatever the traffic: a fixed set of counters per
//! feature. Features are the model's numeric inputs shaped `[N]` or
//! `[N, 1]` whose name the profile knows.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use sluice_registry_client::profile::{ColumnProfile, ReferenceProfile, bin_of};

use crate::model::Signature;
use crate::tensor::{Tensor, TensorData};

/// One feature's bins and counts.
struct FeatureBins {
    name: String,
    /// Index of the input that carries it.
    input: usize,
    edges: Vec<f64>,
    /// `edges.len() - 1` bins, then underflow, overflow, missing.
    counts: Box<[AtomicU64]>,
}

/// The drift counters of one loaded version.
pub struct DriftCounter {
    features: Vec<FeatureBins>,
}

impl DriftCounter {
    /// Counters for the features of `profile` the model takes as single
    /// numeric columns; `None` when there is none.
    pub fn new(profile: &ReferenceProfile, signature: &Signature) -> Option<DriftCounter> {
        let features: Vec<FeatureBins> = profile
            .features
            .iter()
            .filter_map(|(name, column)| {
                let ColumnProfile::Numeric { edges, .. } = column else {
                    return None;
                };
                let input = signature.input_index(name)?;
                let spec = &signature.inputs[input];
                let column_shaped = spec.shape.len() == 1 || (spec.shape.len() == 2 && spec.shape[1] == 1);
                if !column_shaped || edges.len() < 2 {
                    return None;
                }
                let slots = edges.len() - 1 + 3;
                Some(FeatureBins {
                    name: name.clone(),
                    input,
                    edges: edges.clone(),
                    counts: (0..slots).map(|_| AtomicU64::new(0)).collect(),
                })
            })
            .collect();
        (!features.is_empty()).then_some(DriftCounter { features })
    }

    /// Counts every row of `inputs` (in signature order).
    pub fn count(&self, inputs: &[Tensor]) {
        for feature in &self.features {
            let Some(tensor) = inputs.get(feature.input) else {
                continue;
            };
            let bins = feature.edges.len() - 1;
            let add = |value: f64| {
                let slot = if value.is_nan() {
                    bins + 2
                } else {
                    match bin_of(&feature.edges, value) {
                        Some(bin) => bin,
                        None if value < feature.edges[0] => bins,
                        None => bins + 1,
                    }
                };
                feature.counts[slot].fetch_add(1, Ordering::Relaxed);
            };
            match &tensor.data {
                TensorData::F32(values) => values.iter().for_each(|&v| add(f64::from(v))),
                TensorData::F64(values) => values.iter().for_each(|&v| add(v)),
                TensorData::I64(values) => values.iter().for_each(|&v| add(v as f64)),
                TensorData::I32(values) => values.iter().for_each(|&v| add(f64::from(v))),
                _ => {}
            }
        }
    }

    /// The counts since the last take, zeroed as they are read.
    pub fn take(&self) -> BTreeMap<String, Vec<u64>> {
        self.features
            .iter()
            .map(|feature| {
                let counts = feature
                    .counts
                    .iter()
                    .map(|count| count.swap(0, Ordering::Relaxed))
                    .collect();
                (feature.name.clone(), counts)
            })
            .filter(|(_, counts): &(String, Vec<u64>)| counts.iter().any(|&count| count > 0))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::TensorSpec;
    use crate::tensor::DataType;

    #[test]
    fn values_fall_in_bins_underflow_overflow_and_missing() {
        let profile = ReferenceProfile {
            schema: "sluice-profile/v1".into(),
            rows: 4,
            features: [(
                "age".to_string(),
                ColumnProfile::Numeric {
                    edges: vec![20.0, 40.0, 60.0],
                    shares: vec![0.5, 0.5],
                    count: 4,
                    mean: 40.0,
                    std: 10.0,
                },
            )]
            .into(),
            outputs: BTreeMap::new(),
        };
        let signature = Signature {
            inputs: vec![TensorSpec {
                name: "age".into(),
                datatype: DataType::F32,
                shape: vec![-1, 1],
                dim_symbols: vec![Some("N".into()), None],
            }],
            outputs: vec![],
        };
        let counter = DriftCounter::new(&profile, &signature).unwrap();
        counter.count(&[Tensor {
            shape: vec![6, 1],
            data: TensorData::F32(vec![25.0, 40.0, 60.0, 10.0, 99.0, f32::NAN]),
        }]);
        // bins [20, 40) and [40, 60], then underflow, overflow, missing.
        assert_eq!(counter.take()["age"], vec![1, 2, 1, 1, 1]);
        assert!(counter.take().is_empty(), "taking resets");
    }
}
