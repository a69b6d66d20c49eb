//! Sweeps over concurrency or rate, each level held until it is stable (as
//! perf_analyzer does), the knee found; and the search for the highest rate
//! that keeps an SLO.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::runner::{Load, Progress, RunResult, RunSpec, run};
use crate::schedule::{Arrivals, RateProfile};
use crate::slo::Slo;
use crate::stats::Recorder;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Dimension {
    Concurrency,
    Rate,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Sweep {
    pub dimension: Dimension,
    pub levels: Vec<f64>,
}

impl Sweep {
    /// `concurrency=1..128` (doubling), `rate=100..1000:100` (fixed step),
    /// or an explicit list `concurrency=1,8,32`.
    pub fn parse(text: &str) -> Result<Sweep> {
        let bad = |why: &str| {
            Error::usage(format!(
                "--sweep '{text}': {why}; expected concurrency=1..128, rate=100..1000:100 or rate=100,200,400"
            ))
        };
        let (name, range) = text.split_once('=').ok_or_else(|| bad("missing '='"))?;
        let dimension = match name {
            "concurrency" => Dimension::Concurrency,
            "rate" => Dimension::Rate,
            _ => return Err(bad("unknown dimension")),
        };
        let number = |s: &str| {
            s.trim()
                .parse::<f64>()
                .ok()
                .filter(|v| *v > 0.0)
                .ok_or_else(|| bad("levels must be positive numbers"))
        };
        let levels = if let Some((from, rest)) = range.split_once("..") {
            let (to, step_opt) = match rest.split_once(':') {
                Some((to, step)) => (number(to)?, Some(number(step)?)),
                None => (number(rest)?, None),
            };
            let mut level = number(from)?;
            if level > to {
                return Err(bad("the range runs backwards"));
            }
            let mut levels = Vec::new();
            while level <= to * (1.0 + 1e-9) && levels.len() < 64 {
                levels.push(level);
                level = match step_opt {
                    Some(step) => level + step,
                    None => level * 2.0,
                };
            }
            levels
        } else {
            range.split(',').map(number).collect::<Result<Vec<_>>>()?
        };
        if dimension == Dimension::Concurrency && levels.iter().any(|l| l.fract() != 0.0) {
            return Err(bad("concurrency levels are whole numbers"));
        }
        Ok(Sweep { dimension, levels })
    }
}

/// How long a level is measured and when it counts as stable.
#[derive(Debug, Clone, Copy)]
pub struct Stability {
    pub window: Duration,
    /// Consecutive windows whose throughput and p99 must agree.
    pub windows: usize,
    /// Allowed deviation from their mean, as a fraction.
    pub tolerance: f64,
    pub max_windows: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Level {
    pub level: f64,
    pub throughput: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub error_rate: f64,
    pub stable: bool,
    pub windows: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct SweepReport {
    pub dimension: Dimension,
    pub levels: Vec<Level>,
    /// The level with the best throughput per unit of p99 latency
    /// (Kleinrock's power): past it, waiting grows faster than work done.
    pub knee_opt: Option<f64>,
}

fn with_level(base: &RunSpec, dimension: Dimension, level: f64, arrivals: Arrivals) -> RunSpec {
    let mut spec = base.clone();
    spec.load = match dimension {
        Dimension::Concurrency => Load::Closed {
            connections: level as usize,
        },
        Dimension::Rate => Load::Open {
            profile: RateProfile::Constant(level),
            arrivals,
            connections: base.load.connections(),
        },
    };
    spec
}

/// Runs windows at one level until the last few agree; returns the merged
/// measurements of those windows.
pub fn measure_level(
    spec: &RunSpec,
    stability: &Stability,
    progress: &Arc<Progress>,
) -> Result<(RunResult, bool, usize)> {
    let mut window_spec = spec.clone();
    window_spec.duration = stability.window;
    let mut windows: Vec<RunResult> = Vec::new();
    loop {
        windows.push(run(&window_spec, progress)?);
        let recent = &windows[windows.len().saturating_sub(stability.windows)..];
        let stable = recent.len() == stability.windows && agree(recent, stability.tolerance);
        if stable || windows.len() >= stability.max_windows {
            let mut recorder = Recorder::default();
            let (mut elapsed, mut measured) = (Duration::ZERO, Duration::ZERO);
            for window in recent {
                recorder.merge(&window.recorder);
                elapsed += window.elapsed;
                measured += window.window;
            }
            let cpu = recent
                .iter()
                .filter_map(|w| w.cpu_utilization_opt)
                .fold(None, |acc: Option<f64>, c| Some(acc.map_or(c, |a| a.max(c))));
            let merged = RunResult {
                recorder,
                threads: recent[0].threads,
                window: measured,
                elapsed,
                cpu_utilization_opt: cpu,
            };
            return Ok((merged, stable, windows.len()));
        }
    }
}

fn agree(windows: &[RunResult], tolerance: f64) -> bool {
    let within = |values: Vec<f64>| {
        let mean = values.iter().sum::<f64>() / values.len() as f64;
        mean > 0.0 && values.iter().all(|v| (v - mean).abs() <= tolerance * mean)
    };
    within(windows.iter().map(RunResult::achieved_rate).collect())
        && within(
            windows
                .iter()
                .map(|w| w.recorder.total.corrected.value_at_quantile(0.99) as f64)
                .collect(),
        )
}

pub fn sweep(
    base: &RunSpec,
    sweep: &Sweep,
    arrivals: Arrivals,
    stability: &Stability,
    progress: &Arc<Progress>,
) -> Result<SweepReport> {
    let mut levels = Vec::new();
    for &level in &sweep.levels {
        let spec = with_level(base, sweep.dimension, level, arrivals);
        let (result, stable, windows) = measure_level(&spec, stability, progress)?;
        let total = &result.recorder.total;
        levels.push(Level {
            level,
            throughput: result.achieved_rate(),
            p50_ms: total.corrected.value_at_quantile(0.5) as f64 / 1000.0,
            p99_ms: total.corrected.value_at_quantile(0.99) as f64 / 1000.0,
            error_rate: total.error_rate(),
            stable,
            windows,
        });
    }
    let knee_opt = knee(&levels);
    Ok(SweepReport {
        dimension: sweep.dimension,
        levels,
        knee_opt,
    })
}

/// The stable level of best throughput per unit of p99. Only a stable
/// level can be the knee: an unstable one's throughput is what it did
/// before it fell behind, not what it sustains.
fn knee(levels: &[Level]) -> Option<f64> {
    levels
        .iter()
        .filter(|l| l.stable && l.p99_ms > 0.0 && l.error_rate < 0.5)
        .max_by(|a, b| (a.throughput / a.p99_ms).total_cmp(&(b.throughput / b.p99_ms)))
        .map(|l| l.level)
}

#[derive(Debug, Clone, Serialize)]
pub struct Probe {
    pub rate: f64,
    pub achieved: f64,
    pub measured_opt: Option<f64>,
    pub passed: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct MaxRateReport {
    pub slo: String,
    pub probes: Vec<Probe>,
    /// The highest rate that kept the SLO; `None` when even the first failed.
    pub max_rate_opt: Option<f64>,
}

impl MaxRateReport {
    /// No probe could be judged (no samples for the threshold at all).
    pub fn invalid(&self) -> bool {
        self.probes.iter().all(|probe| probe.measured_opt.is_none())
    }
}

/// Doubles the rate until the SLO breaks, then bisects between the last
/// pass and the first failure. A probe passes only if the SLO held, the
/// generator kept its schedule, and the achieved rate was within 5% of it.
pub fn max_rate_under(
    base: &RunSpec,
    slo: &Slo,
    arrivals: Arrivals,
    start: f64,
    bisections: usize,
    progress: &Arc<Progress>,
) -> Result<MaxRateReport> {
    let mut probes = Vec::new();
    let mut probe = |rate: f64| -> Result<bool> {
        let spec = with_level(base, Dimension::Rate, rate, arrivals);
        let result = run(&spec, progress)?;
        let seconds = result.window.as_secs_f64();
        let stats_opt = match &slo.version_opt {
            Some(version) => result.recorder.by_version.get(version),
            None => Some(&result.recorder.total),
        };
        let verdict = slo.judge(stats_opt, seconds);
        let achieved = result.achieved_rate();
        let requests = result.recorder.total.requests().max(1) as f64;
        let kept = result.recorder.late as f64 / requests <= 0.01 && achieved >= rate * 0.95;
        let passed = verdict.passed && kept;
        probes.push(Probe {
            rate,
            achieved,
            measured_opt: verdict.measured,
            passed,
        });
        Ok(passed)
    };
    let (mut low, mut high) = (None, None);
    let mut rate = start;
    for _ in 0..20 {
        if probe(rate)? {
            low = Some(rate);
            rate *= 2.0;
        } else {
            high = Some(rate);
            break;
        }
    }
    if let (Some(mut pass), Some(mut fail)) = (low, high) {
        for _ in 0..bisections {
            let middle = (pass + fail) / 2.0;
            if probe(middle)? {
                pass = middle;
            } else {
                fail = middle;
            }
        }
        low = Some(pass);
    }
    Ok(MaxRateReport {
        slo: slo.expression.clone(),
        probes,
        max_rate_opt: low,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ranges_steps_and_lists() {
        assert_eq!(
            Sweep::parse("concurrency=1..16").unwrap().levels,
            vec![1.0, 2.0, 4.0, 8.0, 16.0]
        );
        assert_eq!(
            Sweep::parse("rate=100..300:100").unwrap().levels,
            vec![100.0, 200.0, 300.0]
        );
        let list = Sweep::parse("rate=50,75").unwrap();
        assert_eq!((list.dimension, list.levels), (Dimension::Rate, vec![50.0, 75.0]));
        for bad in [
            "concurrency",
            "threads=1..2",
            "rate=5..1",
            "concurrency=1.5,2",
            "rate=0..10",
        ] {
            assert!(Sweep::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_knee_is_a_stable_level() {
        let level = |level: f64, throughput: f64, p99_ms: f64, stable: bool| Level {
            level,
            throughput,
            p50_ms: p99_ms / 2.0,
            p99_ms,
            error_rate: 0.0,
            stable,
            windows: 3,
        };
        // Level 8's power is the best, but it never settled.
        let levels = [
            level(1.0, 1000.0, 1.0, true),
            level(2.0, 1900.0, 1.5, true),
            level(8.0, 5000.0, 2.0, false),
        ];
        assert_eq!(knee(&levels), Some(2.0));
        assert_eq!(knee(&levels[2..]), None);
    }
}
