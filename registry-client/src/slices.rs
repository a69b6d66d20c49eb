//! Slices: realized performance broken down by one feature the model card
//! declares (an age band, a region code), and the largest gap between
//! slices, which a stage gate can bound. The classic failure this catches:
//! equal accuracy, unequal false rejection rates.
//!
//! Gateways name each logged row's slice from the card's [`SliceSpec`]; the
//! registry joins those rows with their labels and answers a
//! [`SliceReport`] per version.

use serde::{Deserialize, Serialize};

/// The slice feature of a model card: `{"feature": "age", "edges": [30, 45, 60]}`
/// cuts ages into bands; without edges each value is a slice of its own
/// (a region code).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SliceSpec {
    /// An input (`region`) or one column of one (`x[3]`), as data contracts name them.
    pub feature: String,
    /// Ascending band edges; a value equal to an edge is in the band above it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub edges: Vec<f64>,
}

/// At most this many slices of a feature without edges: values past them
/// share one slice, so a continuous feature declared by mistake cannot
/// grow the join's memory without bound.
pub const MAX_CATEGORIES: usize = 64;

/// The slice that rows past [`MAX_CATEGORIES`] share. It mixes groups, so
/// it never counts towards a gap.
pub const OTHER_SLICES: &str = "other slices";

impl SliceSpec {
    /// What the registry checks before storing a card's slice feature.
    pub fn validate(&self) -> Result<(), String> {
        if self.feature.trim().is_empty() {
            return Err("slice: 'feature' is empty: expected an input name such as \"age\"".into());
        }
        if self.edges.iter().any(|edge| !edge.is_finite()) {
            return Err("slice: every edge must be a finite number".into());
        }
        if self.edges.windows(2).any(|pair| pair[0] >= pair[1]) {
            return Err(format!(
                "slice: edges {:?} must be strictly ascending",
                self.edges
            ));
        }
        Ok(())
    }

    /// The slice a value is in: `age < 30`, `30 <= age < 45`, `age >= 60`,
    /// `region = 3`, or `age missing` for NaN.
    pub fn name_of(&self, value: f64) -> String {
        let feature = &self.feature;
        if value.is_nan() {
            return format!("{feature} missing");
        }
        if self.edges.is_empty() {
            return format!("{feature} = {value}");
        }
        let band = self.edges.partition_point(|edge| *edge <= value);
        match band {
            0 => format!("{feature} < {}", self.edges[0]),
            band if band == self.edges.len() => format!("{feature} >= {}", self.edges[band - 1]),
            band => format!("{} <= {feature} < {}", self.edges[band - 1], self.edges[band]),
        }
    }

    /// Where a slice sorts: bands in ascending order, then the rest by name.
    pub fn order_of(&self, slice: &str) -> (usize, String) {
        let band = (0..=self.edges.len()).find(|&band| {
            let value = match band {
                0 => self.edges.first().map(|edge| edge - 1.0),
                band => self.edges.get(band - 1).copied(),
            };
            value.is_some_and(|value| self.name_of(value) == slice)
        });
        (band.unwrap_or(usize::MAX), slice.to_string())
    }
}

/// One slice's realized performance.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SliceMetrics {
    pub slice: String,
    /// Joined rows (a prediction and its label).
    pub rows: u64,
    /// Enough rows to count towards the gaps (`min_rows`).
    pub counted: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accuracy: Option<f64>,
    /// From the positive class's score binned in hundredths.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auc: Option<f64>,
    /// Of the rows labelled 0, the share predicted 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub false_positive_rate: Option<f64>,
    /// Of the rows labelled 1, the share predicted 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub false_negative_rate: Option<f64>,
    /// Mean absolute error (regressors).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mae: Option<f64>,
}

/// The metrics a gap is measured on; `<metric>_gap` in a slice gate.
pub const SLICE_METRICS: [&str; 5] = [
    "accuracy",
    "auc",
    "false_positive_rate",
    "false_negative_rate",
    "mae",
];

impl SliceMetrics {
    pub fn metric(&self, name: &str) -> Option<f64> {
        match name {
            "accuracy" => self.accuracy,
            "auc" => self.auc,
            "false_positive_rate" => self.false_positive_rate,
            "false_negative_rate" => self.false_negative_rate,
            "mae" => self.mae,
            _ => None,
        }
    }
}

/// The largest difference of one metric between counted slices.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SliceGap {
    pub metric: String,
    pub gap: f64,
    /// The slices with the highest and the lowest value.
    pub highest: String,
    pub lowest: String,
}

/// `GET /api/v1/models/{model}/slices`: one version's slices.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SliceReport {
    pub model: String,
    pub version: u64,
    /// Labels joined in the last `window_ms`.
    pub window_ms: u64,
    /// The card's slice feature; `None` when it declares none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<SliceSpec>,
    pub min_rows: u64,
    /// Every slice seen, by name.
    pub slices: Vec<SliceMetrics>,
    /// Per metric, over slices with at least `min_rows` rows and a value.
    pub gaps: Vec<SliceGap>,
}

impl SliceReport {
    /// Fills `counted` and `gaps` from `slices`.
    pub fn with_gaps(mut self) -> SliceReport {
        for slice in &mut self.slices {
            slice.counted = slice.rows >= self.min_rows && slice.slice != OTHER_SLICES;
        }

        self.gaps = SLICE_METRICS
            .iter()
            .filter_map(|metric| {
                let values: Vec<(f64, &str)> = self
                    .slices
                    .iter()
                    .filter(|slice| slice.counted)
                    .filter_map(|slice| Some((slice.metric(metric)?, slice.slice.as_str())))
                    .collect();
                if values.len() < 2 {
                    return None;
                }
                let highest = values.iter().max_by(|a, b| a.0.total_cmp(&b.0))?;
                let lowest = values.iter().min_by(|a, b| a.0.total_cmp(&b.0))?;
                Some(SliceGap {
                    metric: metric.to_string(),
                    gap: highest.0 - lowest.0,
                    highest: highest.1.to_string(),
                    lowest: lowest.1.to_string(),
                })
            })
            .collect();
        self
    }

    /// Names the card's slice feature, its bands listed in order.
    pub fn with_spec(mut self, spec_opt: Option<SliceSpec>) -> SliceReport {
        if let Some(spec) = &spec_opt {
            self.slices
                .sort_by_cached_key(|slice| spec.order_of(&slice.slice));
        }
        self.spec = spec_opt;
        self
    }

    pub fn gap(&self, metric: &str) -> Option<&SliceGap> {
        self.gaps.iter().find(|gap| gap.metric == metric)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bands_are_named_by_their_edges() {
        let spec = SliceSpec {
            feature: "age".into(),
            edges: vec![30.0, 45.0, 60.0],
        };
        spec.validate().unwrap();
        assert_eq!(spec.name_of(18.0), "age < 30");
        assert_eq!(spec.name_of(30.0), "30 <= age < 45");
        assert_eq!(spec.name_of(59.9), "45 <= age < 60");
        assert_eq!(spec.name_of(60.0), "age >= 60");
        assert_eq!(spec.name_of(f64::NAN), "age missing");
        let region = SliceSpec {
            feature: "region".into(),
            edges: vec![],
        };
        assert_eq!(region.name_of(3.0), "region = 3");
        assert_eq!(region.name_of(0.5), "region = 0.5");
        let mut names = vec![
            "age >= 60",
            "age < 30",
            "45 <= age < 60",
            "age missing",
            "30 <= age < 45",
        ];
        names.sort_by_cached_key(|name| spec.order_of(name));
        assert_eq!(
            names,
            [
                "age < 30",
                "30 <= age < 45",
                "45 <= age < 60",
                "age >= 60",
                "age missing"
            ]
        );
        let unsorted = SliceSpec {
            feature: "age".into(),
            edges: vec![30.0, 30.0],
        };
        assert!(unsorted.validate().unwrap_err().contains("ascending"));
    }

    #[test]
    fn gaps_leave_out_small_slices() {
        let slice = |name: &str, rows, fnr| SliceMetrics {
            slice: name.into(),
            rows,
            false_negative_rate: Some(fnr),
            accuracy: Some(0.8),
            ..Default::default()
        };
        let report = SliceReport {
            model: "m".into(),
            version: 1,
            window_ms: 0,
            spec: None,
            min_rows: 10,
            slices: vec![
                slice("a", 50, 0.1),
                slice("b", 40, 0.35),
                slice("c", 5, 0.9),
                slice(OTHER_SLICES, 500, 0.0),
            ],
            gaps: vec![],
        }
        .with_gaps();
        let gap = report.gap("false_negative_rate").unwrap();
        assert!((gap.gap - 0.25).abs() < 1e-12);
        assert_eq!((gap.highest.as_str(), gap.lowest.as_str()), ("b", "a"));
        assert_eq!(report.gap("accuracy").unwrap().gap, 0.0);
        assert!(report.gap("auc").is_none());
        assert!(!report.slices[2].counted);
        assert!(!report.slices[3].counted, "the overflow slice mixes groups");
    }
}
