//! Reference profiles: how each feature (and output) of a version's training
//! data was distributed, stored with the version as the JSON document
//! `reference_profile`; drift is measured against it.
//!
//! A numeric column gets fixed bin edges at its quantiles (numpy's default,
//! linear interpolation; repeated edges merged), the share of rows in each bin
//! (the last bin closed, as `numpy.histogram`), and its count, mean and
//! standard deviation (population). Live values below the first edge, above
//! the last, or missing fall in the underflow, overflow and missing bins,
//! which the training data leaves empty. A text column gets its top
//! categories and "other"; live values outside them count as other, or
//! missing. Outputs are profiled the same way, one column per output column
//! ([`output_columns`]): a class output as categories, scores as numbers.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The document name a profile is stored under.
pub const PROFILE_DOCUMENT: &str = "reference_profile";
pub const PROFILE_SCHEMA: &str = "sluice-profile/v1";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReferenceProfile {
    pub schema: String,
    pub rows: u64,
    pub features: BTreeMap<String, ColumnProfile>,
    #[serde(default)]
    pub outputs: BTreeMap<String, ColumnProfile>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ColumnProfile {
    Numeric {
        /// `edges.len() - 1` bins.
        edges: Vec<f64>,
        /// Share of rows in each bin.
        shares: Vec<f64>,
        count: u64,
        mean: f64,
        std: f64,
    },
    Categorical {
        categories: Vec<String>,
        shares: Vec<f64>,
        /// Share of rows in no listed category.
        other: f64,
        count: u64,
    },
}

/// `GET /api/v1/models/{model}/drift`: drift of one version's live traffic
/// against its reference profile, over a sliding window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DriftReport {
    pub model: String,
    pub version: u64,
    pub window_ms: u64,
    /// Rows counted in the window (the most any feature saw).
    pub rows: u64,
    pub features: Vec<FeatureDrift>,
    /// Share of judged features that drifted.
    pub drifted_share: f64,
    /// `drifted_share` reached the dataset threshold.
    pub dataset_drift: bool,
    /// The model's answers against those it gave on the training data
    /// (prediction drift), judged as features are; not part of the dataset share.
    #[serde(default)]
    pub outputs: Vec<FeatureDrift>,
    /// Some output drifted.
    #[serde(default)]
    pub prediction_drift: bool,
    /// Violations of the version's data contract in the window, where a
    /// deployment checks it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contract: Option<ContractSummary>,
    pub thresholds: DriftThresholds,
}

/// Rows checked against a data contract over a window, and how many broke
/// each check (`age:min`, `region:categories`, `income:missing`, a rule's text).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ContractSummary {
    pub rows: u64,
    pub violations: BTreeMap<String, u64>,
    /// Each check's violations per row checked.
    pub rates: BTreeMap<String, f64>,
}

impl ContractSummary {
    /// `None` when no row was checked.
    pub fn of(rows: u64, violations: &BTreeMap<String, u64>) -> Option<ContractSummary> {
        (rows > 0).then(|| ContractSummary {
            rows,
            violations: violations.clone(),
            rates: violations
                .iter()
                .map(|(check, &count)| (check.clone(), count as f64 / rows as f64))
                .collect(),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FeatureDrift {
    pub name: String,
    pub rows: u64,
    pub psi: f64,
    /// Jensen-Shannon distance, log base 2.
    pub js_distance: f64,
    /// Numeric columns: the KS statistic of the binned distributions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ks: Option<f64>,
    /// Categorical columns: Pearson's chi-square of the counts against the
    /// reference shares, and its p-value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chi_square: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chi_square_p: Option<f64>,
    /// `drifted`, `warning`, `ok`, or `insufficient data` (fewer rows than `min_rows`).
    pub status: String,
}

/// When a feature, and the dataset, count as drifted.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct DriftThresholds {
    pub psi_drift: f64,
    pub psi_warning: f64,
    pub js_drift: f64,
    pub dataset_share: f64,
    pub min_rows: u64,
}

impl Default for DriftThresholds {
    fn default() -> Self {
        DriftThresholds {
            psi_drift: 0.2,
            psi_warning: 0.1,
            js_drift: 0.1,
            dataset_share: 0.5,
            min_rows: 100,
        }
    }
}

/// The category a number falls in, as a text column of a CSV would write
/// it: `3` for 3.0, `0.5` for 0.5 (booleans count as 1 and 0).
pub fn category_of(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        format!("{value}")
    }
}

/// The column names of an output: `name` for `[N]` and `[N, 1]`, and
/// `name[0]`, `name[1]`, ... for each column of `[N, K]`.
pub fn output_columns(name: &str, columns: usize) -> Vec<String> {
    if columns <= 1 {
        vec![name.to_string()]
    } else {
        (0..columns).map(|column| format!("{name}[{column}]")).collect()
    }
}

/// numpy's default quantile (linear interpolation between order statistics).
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    let position = q * (sorted.len() - 1) as f64;
    let below = position.floor() as usize;
    let above = position.ceil() as usize;
    let fraction = position - below as f64;
    sorted[below] + (sorted[above] - sorted[below]) * fraction
}

/// The bin of `value` among `edges`: `None` below the first edge or above
/// the last; the last bin includes its upper edge.
pub fn bin_of(edges: &[f64], value: f64) -> Option<usize> {
    let (first, last) = (*edges.first()?, *edges.last()?);
    if !(first..=last).contains(&value) {
        return None;
    }
    let bins = edges.len() - 1;
    Some(
        edges
            .partition_point(|&edge| edge <= value)
            .saturating_sub(1)
            .min(bins - 1),
    )
}

/// The profile of one numeric column (NaN values left out), with `bins`
/// quantile bins; `None` when it has no finite value.
pub fn numeric_profile(values: &[f64], bins: usize) -> Option<ColumnProfile> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|value| value.is_finite()).collect();
    if sorted.is_empty() || bins == 0 {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let mut edges: Vec<f64> = (0..=bins)
        .map(|step| quantile(&sorted, step as f64 / bins as f64))
        .collect();
    edges.dedup();
    if edges.len() == 1 {
        // A constant column: one bin that holds it.
        edges.push(edges[0]);
    }
    let mut counts = vec![0u64; edges.len() - 1];
    for &value in &sorted {
        if let Some(bin) = bin_of(&edges, value) {
            counts[bin] += 1;
        }
    }
    let count = sorted.len() as f64;
    let mean = sorted.iter().sum::<f64>() / count;
    let variance = sorted.iter().map(|value| (value - mean).powi(2)).sum::<f64>() / count;
    Some(ColumnProfile::Numeric {
        edges,
        shares: counts.iter().map(|&n| n as f64 / count).collect(),
        count: sorted.len() as u64,
        mean,
        std: variance.sqrt(),
    })
}

/// The profile of one text column: its `top` most frequent categories
/// (ties by name) and the share of the rest.
pub fn categorical_profile(values: &[String], top: usize) -> ColumnProfile {
    let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
    for value in values {
        *counts.entry(value).or_default() += 1;
    }
    let mut ranked: Vec<(&str, u64)> = counts.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    ranked.truncate(top);
    let total = values.len().max(1) as f64;
    let listed: u64 = ranked.iter().map(|(_, count)| count).sum();
    ColumnProfile::Categorical {
        categories: ranked.iter().map(|(name, _)| name.to_string()).collect(),
        shares: ranked.iter().map(|(_, count)| *count as f64 / total).collect(),
        other: (values.len() as u64 - listed) as f64 / total,
        count: values.len() as u64,
    }
}

/// A profile of a table's columns: numbers where every value parses, text
/// otherwise; empty cells are missing.
pub fn profile_table(header: &[String], rows: &[Vec<String>], bins: usize, top: usize) -> ReferenceProfile {
    let mut features = BTreeMap::new();
    for (index, name) in header.iter().enumerate() {
        let cells: Vec<&str> = rows
            .iter()
            .filter_map(|row| row.get(index))
            .map(|cell| cell.trim())
            .filter(|cell| !cell.is_empty())
            .collect();
        let numbers: Option<Vec<f64>> = cells.iter().map(|cell| cell.parse::<f64>().ok()).collect();
        let profile = match numbers {
            Some(numbers) => numeric_profile(&numbers, bins),
            None => {
                let texts: Vec<String> = cells.iter().map(|cell| cell.to_string()).collect();
                Some(categorical_profile(&texts, top))
            }
        };
        if let Some(profile) = profile {
            features.insert(name.clone(), profile);
        }
    }
    ReferenceProfile {
        schema: PROFILE_SCHEMA.into(),
        rows: rows.len() as u64,
        features,
        outputs: BTreeMap::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantile_bins_match_numpy_semantics() {
        let values: Vec<f64> = (1..=10).map(f64::from).collect();
        let ColumnProfile::Numeric {
            edges,
            shares,
            mean,
            std,
            ..
        } = numeric_profile(&values, 4).unwrap()
        else {
            panic!("numeric");
        };
        // numpy.quantile(range(1, 11), [0, .25, .5, .75, 1])
        assert_eq!(edges, vec![1.0, 3.25, 5.5, 7.75, 10.0]);
        // numpy.histogram(range(1, 11), edges): [3, 2, 2, 3] of 10.
        assert_eq!(shares, vec![0.3, 0.2, 0.2, 0.3]);
        assert_eq!(mean, 5.5);
        assert!((std - 2.8722813232690143).abs() < 1e-12);
        assert_eq!(bin_of(&edges, 0.5), None);
        assert_eq!(bin_of(&edges, 10.0), Some(3));
        assert_eq!(bin_of(&edges, 3.25), Some(1));
    }

    #[test]
    fn constant_and_text_columns() {
        let ColumnProfile::Numeric { edges, shares, .. } = numeric_profile(&[2.0; 5], 10).unwrap() else {
            panic!("numeric");
        };
        assert_eq!((edges, shares), (vec![2.0, 2.0], vec![1.0]));
        let texts: Vec<String> = ["a", "b", "a", "c", "a", "b"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let ColumnProfile::Categorical {
            categories,
            shares,
            other,
            ..
        } = categorical_profile(&texts, 2)
        else {
            panic!("categorical");
        };
        assert_eq!(categories, vec!["a", "b"]);
        assert_eq!(shares, vec![0.5, 2.0 / 6.0]);
        assert!((other - 1.0 / 6.0).abs() < 1e-12);
    }
}
