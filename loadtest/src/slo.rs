//! Pass/fail thresholds for CI: `p99<10ms`, `error_rate<0.1%`, `rps>=500`,
//! scoped to one version with `version=2:p99<10ms`.
//!
//! A threshold with no samples to judge is an error, never a pass.

use std::fmt;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::stats::Stats;

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// A latency quantile (0.99 for p99), in milliseconds.
    Quantile(f64),
    Max,
    Mean,
    /// Failed requests over all requests, as a fraction.
    ErrorRate,
    /// Completed requests per second.
    Rps,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Comparison {
    #[serde(rename = "<")]
    Less,
    #[serde(rename = "<=")]
    LessOrEqual,
    #[serde(rename = ">")]
    Greater,
    #[serde(rename = ">=")]
    GreaterOrEqual,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Slo {
    pub expression: String,
    pub version_opt: Option<String>,
    pub metric: Metric,
    pub comparison: Comparison,
    /// In milliseconds for latencies, a fraction for the error rate.
    pub bound: f64,
}

/// How one threshold fared.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    pub expression: String,
    /// `None` when there was nothing to measure (an invalid threshold).
    pub measured: Option<f64>,
    pub passed: bool,
}

impl Slo {
    pub fn parse(text: &str) -> Result<Slo> {
        let bad = |why: &str| {
            Error::usage(format!(
                "--slo '{text}': {why}; expected [version=V:]METRIC OP VALUE, e.g. p99<10ms, error_rate<0.1%, rps>=500"
            ))
        };
        let (version_opt, rest) = match text.strip_prefix("version=") {
            Some(scoped) => {
                let (version, rest) = scoped
                    .split_once(':')
                    .ok_or_else(|| bad("missing ':' after the version"))?;
                (Some(version.to_string()), rest)
            }
            None => (None, text),
        };
        let rest = rest.trim();
        let (position, comparison, width) = [
            ("<=", Comparison::LessOrEqual),
            (">=", Comparison::GreaterOrEqual),
            ("<", Comparison::Less),
            (">", Comparison::Greater),
        ]
        .into_iter()
        .find_map(|(op, comparison)| rest.find(op).map(|at| (at, comparison, op.len())))
        .ok_or_else(|| bad("no comparison"))?;
        let name = rest[..position].trim();
        let value = rest[position + width..].trim();
        let metric = match name {
            "max" => Metric::Max,
            "mean" => Metric::Mean,
            "error_rate" => Metric::ErrorRate,
            "rps" => Metric::Rps,
            quantile if quantile.starts_with('p') => {
                let percent: f64 = quantile[1..].parse().map_err(|_| bad("unknown metric"))?;
                if !(0.0..=100.0).contains(&percent) {
                    return Err(bad("percentile out of range"));
                }
                Metric::Quantile(percent / 100.0)
            }
            _ => return Err(bad("unknown metric")),
        };
        let bound = match metric {
            Metric::ErrorRate => {
                parse_fraction(value).ok_or_else(|| bad("error_rate takes a fraction or a percentage"))?
            }
            Metric::Rps => value.parse().map_err(|_| bad("rps takes a number"))?,
            _ => parse_millis(value).ok_or_else(|| bad("latency takes a value with a unit: us, ms or s"))?,
        };
        Ok(Slo {
            expression: text.to_string(),
            version_opt,
            metric,
            comparison,
            bound,
        })
    }

    /// Measures `stats` (latencies from `corrected`) over `seconds` of run.
    pub fn judge(&self, stats_opt: Option<&Stats>, seconds: f64) -> Verdict {
        // Latency is of successful responses: with none, there is nothing
        // to judge, and a dead server must not pass `p99<10ms`.
        let measured = stats_opt.and_then(|stats| {
            let latency = &stats.corrected;
            match self.metric {
                Metric::Quantile(_) | Metric::Max | Metric::Mean if latency.is_empty() => None,
                Metric::Quantile(q) => Some(latency.value_at_quantile(q) as f64 / 1000.0),
                Metric::Max => Some(latency.max() as f64 / 1000.0),
                Metric::Mean => Some(latency.mean() / 1000.0),
                _ if stats.requests() == 0 => None,
                Metric::ErrorRate => Some(stats.error_rate()),
                Metric::Rps => Some(stats.ok_in_window as f64 / seconds.max(f64::EPSILON)),
            }
        });
        let passed = measured.is_some_and(|value| match self.comparison {
            Comparison::Less => value < self.bound,
            Comparison::LessOrEqual => value <= self.bound,
            Comparison::Greater => value > self.bound,
            Comparison::GreaterOrEqual => value >= self.bound,
        });
        Verdict {
            expression: self.expression.clone(),
            measured,
            passed,
        }
    }
}

impl fmt::Display for Slo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.expression)
    }
}

fn parse_millis(text: &str) -> Option<f64> {
    let (number, scale) = if let Some(n) = text.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = text.strip_suffix("µs") {
        (n, 0.001)
    } else if let Some(n) = text.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1000.0)
    } else {
        return None;
    };
    number.trim().parse::<f64>().ok().map(|v| v * scale)
}

fn parse_fraction(text: &str) -> Option<f64> {
    match text.strip_suffix('%') {
        Some(percent) => percent.trim().parse::<f64>().ok().map(|v| v / 100.0),
        None => text.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::micros;
    use std::time::Duration;

    #[test]
    fn parses_each_form() {
        let slo = Slo::parse("p99<10ms").unwrap();
        assert_eq!(
            (slo.metric, slo.comparison, slo.bound),
            (Metric::Quantile(0.99), Comparison::Less, 10.0)
        );
        let slo = Slo::parse("p99.9 <= 2s").unwrap();
        let Metric::Quantile(q) = slo.metric else {
            panic!("a quantile")
        };
        assert!((q - 0.999).abs() < 1e-12 && slo.bound == 2000.0);
        let slo = Slo::parse("error_rate<0.1%").unwrap();
        assert!((slo.bound - 0.001).abs() < 1e-12);
        let slo = Slo::parse("version=2:rps>=500").unwrap();
        assert_eq!(
            (slo.version_opt.as_deref(), slo.metric, slo.bound),
            (Some("2"), Metric::Rps, 500.0)
        );
        assert_eq!(Slo::parse("max<250us").unwrap().bound, 0.25);
        for bad in [
            "p99",
            "p99<10",
            "latency<1ms",
            "p120<1ms",
            "version=2p99<1ms",
            "error_rate<lots",
        ] {
            assert!(Slo::parse(bad).is_err(), "{bad} should not parse");
        }
    }

    #[test]
    fn judges_and_refuses_to_pass_on_no_samples() {
        let mut stats = Stats::default();
        for millis in 1..=100 {
            stats
                .corrected
                .record(micros(Duration::from_millis(millis)))
                .unwrap();
            stats.ok += 1;
            stats.ok_in_window += 1;
        }
        assert!(Slo::parse("p50<51ms").unwrap().judge(Some(&stats), 1.0).passed);
        assert!(!Slo::parse("p99<50ms").unwrap().judge(Some(&stats), 1.0).passed);
        assert!(Slo::parse("rps>=100").unwrap().judge(Some(&stats), 1.0).passed);
        let verdict = Slo::parse("p99<1s").unwrap().judge(None, 1.0);
        assert_eq!((verdict.measured, verdict.passed), (None, false));
        // Only errors: latency cannot be judged, the error rate can.
        let mut failing = Stats::default();
        failing.errors.insert("status 503".into(), 10);
        assert_eq!(
            Slo::parse("p99<10ms")
                .unwrap()
                .judge(Some(&failing), 1.0)
                .measured,
            None
        );
        assert_eq!(
            Slo::parse("error_rate<1%")
                .unwrap()
                .judge(Some(&failing), 1.0)
                .measured,
            Some(1.0)
        );
    }
}
