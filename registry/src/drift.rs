//! Drift statistics between a reference distribution over bins (shares, from
//! a version's reference profile) and the counts observed over the same bins.
//! Checked against numpy and scipy on fixed data (`models/drift_fixtures.py`).
//!
//! - PSI: `sum((o - r) * ln(o / r))`, with a zero share replaced by
//!   [`EPSILON`] on either side (the bins stay as they are; nothing is
//!   renormalized);
//! - Jensen-Shannon distance, log base 2, so it lies in [0, 1];
//! - KS statistic of the binned distributions: the largest gap between the
//!   two cumulative distributions at the bin boundaries (bins in order);
//! - chi-square statistic, degrees of freedom and p-value of the counts
//!   against the reference, for categorical features.

use sluice_registry_client::profile::{
    ColumnProfile, ContractSummary, DriftReport, DriftThresholds, FeatureDrift, ReferenceProfile,
};
use sluice_registry_client::rollout::VersionWindow;
use statrs::distribution::{ChiSquared, ContinuousCDF};

/// What replaces a zero share in PSI, where a log of zero would be infinite.
pub const EPSILON: f64 = 1e-4;

/// Counts to shares; all zeros without counts.
pub fn shares(counts: &[u64]) -> Vec<f64> {
    let total: u64 = counts.iter().sum();
    counts
        .iter()
        .map(|&count| {
            if total == 0 {
                0.0
            } else {
                count as f64 / total as f64
            }
        })
        .collect()
}

pub fn psi(reference: &[f64], observed: &[f64]) -> f64 {
    reference
        .iter()
        .zip(observed)
        .map(|(&r, &o)| {
            let r = if r == 0.0 { EPSILON } else { r };
            let o = if o == 0.0 { EPSILON } else { o };
            (o - r) * (o / r).ln()
        })
        .sum()
}

pub fn js_distance(reference: &[f64], observed: &[f64]) -> f64 {
    // scipy normalizes both to sum 1 first; so do we.
    let normalize = |values: &[f64]| {
        let total: f64 = values.iter().sum();
        values.iter().map(|v| v / total).collect::<Vec<f64>>()
    };
    let (p, q) = (normalize(reference), normalize(observed));
    let relative_entropy = |a: &[f64], m: &[f64]| -> f64 {
        a.iter()
            .zip(m)
            .filter(|(x, _)| **x > 0.0)
            .map(|(x, y)| x * (x / y).log2())
            .sum()
    };
    let m: Vec<f64> = p.iter().zip(&q).map(|(a, b)| (a + b) / 2.0).collect();
    let divergence = (relative_entropy(&p, &m) + relative_entropy(&q, &m)) / 2.0;
    divergence.max(0.0).sqrt()
}

pub fn ks_statistic(reference: &[f64], observed: &[f64]) -> f64 {
    let (mut cumulative_r, mut cumulative_o, mut largest) = (0.0, 0.0, 0.0f64);
    for (r, o) in reference.iter().zip(observed) {
        cumulative_r += r;
        cumulative_o += o;
        largest = largest.max((cumulative_r - cumulative_o).abs());
    }
    largest
}

/// Pearson's chi-square of `counts` against `reference` shares: the
/// statistic, its degrees of freedom (bins - 1) and p-value.
pub fn chi_square(reference: &[f64], counts: &[u64]) -> (f64, usize, f64) {
    let total: u64 = counts.iter().sum();
    let statistic: f64 = reference
        .iter()
        .zip(counts)
        .filter(|(r, _)| **r > 0.0)
        .map(|(r, &count)| {
            let expected = r * total as f64;
            (count as f64 - expected).powi(2) / expected
        })
        .sum();
    let freedom = reference.len().saturating_sub(1).max(1);
    (statistic, freedom, chi_square_survival(statistic, freedom as f64))
}

/// P(X > x) for X chi-square with `k` degrees of freedom (statrs: the
/// regularized upper incomplete gamma Q(k/2, x/2)).
fn chi_square_survival(x: f64, k: f64) -> f64 {
    if x <= 0.0 {
        return 1.0;
    }
    // `k` is a count of bins less one, at least 1: always a valid distribution.
    ChiSquared::new(k).map_or(f64::NAN, |distribution| distribution.sf(x))
}

/// One numeric feature's drift from its reference shares (over the
/// profile's bins) and the counts a window saw over the same bins plus
/// underflow, overflow and missing.
pub fn feature_drift(
    name: &str,
    reference_bins: &[f64],
    counts: &[u64],
    thresholds: &DriftThresholds,
) -> FeatureDrift {
    let bins = reference_bins.len();
    // The training data fills none of the extra slots.
    let mut reference = reference_bins.to_vec();
    reference.extend([0.0, 0.0, 0.0]);
    let mut counts = counts.to_vec();
    counts.resize(bins + 3, 0);
    let observed = shares(&counts);
    // KS in value order: underflow, the bins, overflow (missing has no place).
    let ordered = |values: &[f64]| {
        let mut ordered = vec![values[bins]];
        ordered.extend_from_slice(&values[..bins]);
        ordered.push(values[bins + 1]);
        let total: f64 = ordered.iter().sum();
        ordered
            .iter()
            .map(|v| if total > 0.0 { v / total } else { 0.0 })
            .collect::<Vec<f64>>()
    };
    let mut drift = judged(name, &reference, &counts, thresholds);
    drift.ks = Some(ks_statistic(&ordered(&reference), &ordered(&observed)));
    drift
}

/// One categorical column's drift: its categories and "other" against the
/// counts over the same, plus missing; with Pearson's chi-square.
pub fn categorical_drift(
    name: &str,
    reference_shares: &[f64],
    other: f64,
    counts: &[u64],
    thresholds: &DriftThresholds,
) -> FeatureDrift {
    let mut reference = reference_shares.to_vec();
    reference.extend([other, 0.0]);
    let mut counts = counts.to_vec();
    counts.resize(reference.len(), 0);
    let mut drift = judged(name, &reference, &counts, thresholds);
    // Over the slots the reference expects anything in (its degrees of
    // freedom are theirs less one); rows elsewhere show in PSI and JS.
    let (expected, seen): (Vec<f64>, Vec<u64>) = reference
        .iter()
        .zip(&counts)
        .filter(|(share, _)| **share > 0.0)
        .map(|(share, count)| (*share, *count))
        .unzip();
    if seen.iter().sum::<u64>() > 0 && expected.len() > 1 {
        let (statistic, _, p_value) = chi_square(&expected, &seen);
        drift.chi_square = Some(statistic);
        drift.chi_square_p = Some(p_value);
    }
    drift
}

/// PSI, Jensen-Shannon distance and the status, for either kind of column.
fn judged(name: &str, reference: &[f64], counts: &[u64], thresholds: &DriftThresholds) -> FeatureDrift {
    let rows: u64 = counts.iter().sum();
    let observed = shares(counts);
    let psi = psi(reference, &observed);
    let js = if rows > 0 {
        js_distance(reference, &observed)
    } else {
        0.0
    };
    let status = if rows < thresholds.min_rows {
        "insufficient data"
    } else if psi >= thresholds.psi_drift || js >= thresholds.js_drift {
        "drifted"
    } else if psi >= thresholds.psi_warning {
        "warning"
    } else {
        "ok"
    };
    FeatureDrift {
        name: name.to_string(),
        rows,
        psi,
        js_distance: js,
        ks: None,
        chi_square: None,
        chi_square_p: None,
        status: status.to_string(),
    }
}

/// A version's stored reference profile, if it has one.
pub fn load_profile(
    connection: &crate::store::sql::Connection<'_>,
    model: &str,
    version: u64,
) -> crate::error::Result<Option<ReferenceProfile>> {
    let Some(document) = crate::store::versions::find_document(
        connection,
        model,
        version,
        sluice_registry_client::profile::PROFILE_DOCUMENT,
    )?
    else {
        return Ok(None);
    };
    serde_json::from_value(document.body).map(Some).map_err(|err| {
        crate::error::Error::refused(format!(
            "the stored reference profile is not a sluice profile: {err}"
        ))
    })
}

/// A profile's columns against the counts a window saw of them.
fn columns_drift(
    columns: &std::collections::BTreeMap<String, ColumnProfile>,
    counted: &std::collections::BTreeMap<String, Vec<u64>>,
    thresholds: &DriftThresholds,
) -> Vec<FeatureDrift> {
    columns
        .iter()
        .map(|(name, column)| {
            let counts = counted.get(name).cloned().unwrap_or_default();
            match column {
                ColumnProfile::Numeric { shares, .. } => feature_drift(name, shares, &counts, thresholds),
                ColumnProfile::Categorical { shares, other, .. } => {
                    categorical_drift(name, shares, *other, &counts, thresholds)
                }
            }
        })
        .collect()
}

/// A version's drift: every profiled feature the window counted, the
/// dataset's share of drifted ones, and every profiled output (prediction
/// drift).
pub fn report(
    model: &str,
    version: u64,
    window_ms: u64,
    profile: &ReferenceProfile,
    window: &VersionWindow,
    thresholds: DriftThresholds,
) -> DriftReport {
    let features = columns_drift(&profile.features, &window.features, &thresholds);
    let outputs = columns_drift(&profile.outputs, &window.outputs, &thresholds);
    let judged = features
        .iter()
        .filter(|f| f.status != "insufficient data")
        .count();
    let drifted = features.iter().filter(|f| f.status == "drifted").count();
    let drifted_share = if judged == 0 {
        0.0
    } else {
        drifted as f64 / judged as f64
    };
    DriftReport {
        model: model.to_string(),
        version,
        window_ms,
        rows: features.iter().map(|f| f.rows).max().unwrap_or(0),
        features,
        drifted_share,
        dataset_drift: judged > 0 && drifted_share >= thresholds.dataset_share,
        prediction_drift: outputs.iter().any(|output| output.status == "drifted"),
        outputs,
        contract: ContractSummary::of(window.contract_rows, &window.contract_violations),
        thresholds,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The numpy/scipy values of `models/fixtures/drift.json`.
    #[test]
    fn statistics_match_numpy_and_scipy() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../models/fixtures/drift.json");
        let fixture: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        assert_eq!(fixture["epsilon"].as_f64(), Some(EPSILON));
        for case in fixture["cases"].as_array().unwrap() {
            let name = case["name"].as_str().unwrap();
            let reference: Vec<f64> = serde_json::from_value(case["reference"].clone()).unwrap();
            let counts: Vec<u64> = serde_json::from_value(case["counts"].clone()).unwrap();
            let observed = shares(&counts);
            let close = |ours: f64, key: &str| {
                let theirs = case[key].as_f64().unwrap();
                let tolerance = 1e-9 * theirs.abs().max(1.0);
                assert!(
                    (ours - theirs).abs() <= tolerance,
                    "{name} {key}: ours {ours}, numpy/scipy {theirs}"
                );
            };
            close(psi(&reference, &observed), "psi");
            close(js_distance(&reference, &observed), "js_distance");
            close(ks_statistic(&reference, &observed), "ks");
            let (statistic, freedom, p_value) = chi_square(&reference, &counts);
            assert_eq!(freedom, reference.len() - 1);
            close(statistic, "chi_square");
            let expected_p = case["chi_square_p"].as_f64().unwrap();
            // Tiny p-values agree in relative terms.
            assert!(
                (p_value - expected_p).abs() <= 1e-9 * expected_p.max(1e-300) + 1e-12,
                "{name} p-value: ours {p_value}, scipy {expected_p}"
            );
        }
    }
}
