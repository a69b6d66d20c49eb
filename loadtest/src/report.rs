//! The report of one run: a serializable document (`--json`, schema
//! `sluice-loadtest/v1`, see `loadtest/README.md`), its text rendering, and
//! HdrHistogram's percentile-distribution format for the plotter.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::runner::{Load, RunResult, RunSpec};
use crate::slo::{Slo, Verdict};
use crate::stats::Stats;

pub const SCHEMA: &str = "sluice-loadtest/v1";

/// The verdict of a valid run given no `--slo`: nothing to pass or fail.
pub const NO_THRESHOLDS: &str = "no-thresholds";

/// Above this share of late sends the schedule was not kept.
const LATE_FRACTION_LIMIT: f64 = 0.01;
/// Above this CPU use the generator itself was the bottleneck.
const CPU_SATURATION: f64 = 0.9;

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub schema: &'static str,
    pub mode: &'static str,
    /// True when latency is measured from the intended start (open model).
    pub corrected: bool,
    pub targets: Vec<TargetReport>,
    pub duration_s: f64,
    pub threads: usize,
    pub connections: usize,
    pub target_rps_opt: Option<f64>,
    /// Successful responses that ended inside the window, per second.
    pub achieved_rps: f64,
    pub total: GroupReport,
    pub by_version: BTreeMap<String, GroupReport>,
    pub version_changes: Vec<VersionChange>,
    pub generator: GeneratorReport,
    pub slo: Vec<Verdict>,
    /// `pass`, `fail` (a threshold missed) or `invalid` (nothing to judge, or
    /// a generator that could not do its job).
    /// `pass`, `fail`, `invalid` (the generator could not keep its
    /// schedule, or nothing was measured), or `no-thresholds`.
    pub verdict: &'static str,
    pub timeline: Vec<SecondReport>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TargetReport {
    pub url: String,
    pub weight: u32,
    pub bodies: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct GroupReport {
    pub requests: u64,
    pub ok: u64,
    pub error_rate: f64,
    pub errors: BTreeMap<String, u64>,
    pub messages: BTreeMap<String, u64>,
    pub latency_ms: LatencyReport,
}

#[derive(Debug, Clone, Serialize)]
pub struct LatencyReport {
    /// From the intended start: what users saw (equals `service` in the closed model).
    pub corrected: Percentiles,
    /// From the actual send.
    pub service: Percentiles,
    /// From the intended start to the send.
    pub lag: Percentiles,
}

#[derive(Debug, Clone, Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p99_9: f64,
    pub p99_99: f64,
    pub max: f64,
    pub mean: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct VersionChange {
    pub second: usize,
    pub versions: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct GeneratorReport {
    pub cpu_utilization_opt: Option<f64>,
    pub saturated: bool,
    /// Sends more than 1 ms late although their connection was free.
    pub late_requests: u64,
    pub late_fraction: f64,
    /// Sends that waited for their connection's previous response.
    pub queued_behind_server: u64,
    pub max_lag_ms: f64,
    pub kept_schedule: bool,
    /// Connections opened, first ones and reconnections.
    pub connections_opened: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct SecondReport {
    pub second: usize,
    pub completed: u64,
    pub errors: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub versions: Vec<String>,
}

fn millis(histogram: &Histogram<u64>, quantile: f64) -> f64 {
    histogram.value_at_quantile(quantile) as f64 / 1000.0
}

pub fn percentiles(histogram: &Histogram<u64>) -> Percentiles {
    if histogram.is_empty() {
        return Percentiles {
            p50: 0.0,
            p90: 0.0,
            p99: 0.0,
            p99_9: 0.0,
            p99_99: 0.0,
            max: 0.0,
            mean: 0.0,
        };
    }
    Percentiles {
        p50: millis(histogram, 0.5),
        p90: millis(histogram, 0.9),
        p99: millis(histogram, 0.99),
        p99_9: millis(histogram, 0.999),
        p99_99: millis(histogram, 0.9999),
        max: histogram.max() as f64 / 1000.0,
        mean: histogram.mean() / 1000.0,
    }
}

fn group(stats: &Stats) -> GroupReport {
    GroupReport {
        requests: stats.requests(),
        ok: stats.ok,
        error_rate: stats.error_rate(),
        errors: stats.errors.clone(),
        messages: stats.messages.clone(),
        latency_ms: LatencyReport {
            corrected: percentiles(&stats.corrected),
            service: percentiles(&stats.service),
            lag: percentiles(&stats.lag),
        },
    }
}

impl Report {
    pub fn new(spec: &RunSpec, result: &RunResult, slos: &[Slo]) -> Report {
        let recorder = &result.recorder;
        let seconds = result.window.as_secs_f64();
        let (mode, corrected, target_rps_opt) = match &spec.load {
            Load::Open { profile, .. } => ("open", true, Some(profile.mean_rate(spec.duration))),
            Load::Closed { .. } => ("closed", false, None),
        };
        let requests = recorder.total.requests();
        let late_fraction = if requests == 0 {
            0.0
        } else {
            recorder.late as f64 / requests as f64
        };
        // Busy is not saturated: waiting for a request's start spins the last
        // millisecond, so CPU alone says little. A generator that is busy and
        // also late was the bottleneck.
        let late_too = corrected && late_fraction > LATE_FRACTION_LIMIT;
        let saturated = late_too && result.cpu_utilization_opt.is_some_and(|cpu| cpu > CPU_SATURATION);
        let generator = GeneratorReport {
            cpu_utilization_opt: result.cpu_utilization_opt,
            saturated,
            late_requests: recorder.late,
            late_fraction,
            queued_behind_server: recorder.queued_behind_server,
            max_lag_ms: recorder.total.lag.max() as f64 / 1000.0,
            kept_schedule: !corrected || late_fraction <= LATE_FRACTION_LIMIT,
            connections_opened: recorder.connections_opened,
        };
        let slo: Vec<Verdict> = slos
            .iter()
            .map(|slo| {
                let stats_opt = match &slo.version_opt {
                    Some(version) => recorder.by_version.get(version),
                    None => Some(&recorder.total),
                };
                slo.judge(stats_opt, seconds)
            })
            .collect();
        let verdict = if saturated || requests == 0 || slo.iter().any(|v| v.measured.is_none()) {
            "invalid"
        } else if slo.is_empty() {
            // Nothing was asked, so nothing passed: a valid run, judged by no one.
            NO_THRESHOLDS
        } else if slo.iter().all(|v| v.passed) {
            "pass"
        } else {
            "fail"
        };
        Report {
            schema: SCHEMA,
            mode,
            corrected,
            targets: spec
                .targets
                .iter()
                .map(|t| TargetReport {
                    url: t.url().to_string(),
                    weight: t.weight,
                    bodies: t.payloads.len(),
                })
                .collect(),
            duration_s: seconds,
            threads: result.threads,
            connections: spec.load.connections(),
            target_rps_opt,
            achieved_rps: result.achieved_rate(),
            total: group(&recorder.total),
            by_version: recorder
                .by_version
                .iter()
                .map(|(v, s)| (v.clone(), group(s)))
                .collect(),
            version_changes: recorder
                .version_changes()
                .into_iter()
                .map(|(second, versions)| VersionChange {
                    second,
                    versions: versions.into_iter().collect(),
                })
                .collect(),
            generator,
            slo,
            verdict,
            timeline: recorder
                .timeline
                .iter()
                .enumerate()
                .map(|(second, bucket)| SecondReport {
                    second,
                    completed: bucket.completed,
                    errors: bucket.errors,
                    p50_ms: if bucket.completed == 0 {
                        0.0
                    } else {
                        millis(&bucket.corrected, 0.5)
                    },
                    p99_ms: if bucket.completed == 0 {
                        0.0
                    } else {
                        millis(&bucket.corrected, 0.99)
                    },
                    versions: bucket.versions.iter().cloned().collect(),
                })
                .collect(),
        }
    }

    /// The human-readable report.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let label = if self.corrected {
            "open model, latency corrected for coordinated omission"
        } else {
            "closed model, latency NOT corrected for coordinated omission"
        };
        let _ = writeln!(out, "sluice-loadtest: {label}");
        for target in &self.targets {
            let _ = writeln!(
                out,
                "  target {} (weight {}, {} bodies)",
                target.url, target.weight, target.bodies
            );
        }
        let _ = writeln!(
            out,
            "  {:.1} s, {} threads, {} connections",
            self.duration_s, self.threads, self.connections
        );
        let target = self
            .target_rps_opt
            .map_or(String::new(), |rate| format!(" (target {rate:.1})"));
        let _ = writeln!(
            out,
            "\nthroughput: {:.1} ok req/s{target}; {} requests, {} ok, error rate {:.3}%",
            self.achieved_rps,
            self.total.requests,
            self.total.ok,
            self.total.error_rate * 100.0
        );
        write_group(&mut out, "all", &self.total, self.corrected);
        for (version, group) in &self.by_version {
            write_group(&mut out, &format!("version {version}"), group, self.corrected);
        }
        if !self.version_changes.is_empty() {
            let _ = writeln!(out, "\nversion changes:");
            for change in &self.version_changes {
                let _ = writeln!(out, "  at {:>4} s: {}", change.second, change.versions.join(", "));
            }
        }
        let g = &self.generator;
        let _ = writeln!(out, "\ngenerator:");
        if let Some(cpu) = g.cpu_utilization_opt {
            let _ = writeln!(
                out,
                "  cpu {:.0}% of its threads{}",
                cpu * 100.0,
                if g.saturated {
                    " - SATURATED, the generator was the bottleneck"
                } else {
                    ""
                }
            );
        }
        if self.corrected {
            let _ = writeln!(
                out,
                "  {} requests ({:.2}%) sent more than 1 ms late, max lag {:.2} ms{}",
                g.late_requests,
                g.late_fraction * 100.0,
                g.max_lag_ms,
                if g.kept_schedule {
                    ""
                } else {
                    " - the generator did NOT keep the schedule: add --threads, or pin it to its own cores"
                }
            );
        }
        if self.corrected && g.queued_behind_server > 0 {
            let _ = writeln!(
                out,
                "  {} sends waited for their connection's previous answer: the server was slower than the schedule \
                 (corrected latency counts that wait; add --connections to send them on time)",
                g.queued_behind_server
            );
        }
        if !self.slo.is_empty() {
            let _ = writeln!(out, "\nthresholds:");
            for verdict in &self.slo {
                let measured = verdict
                    .measured
                    .map_or("no samples".to_string(), |m| format!("{m:.4}"));
                let mark = if verdict.passed { "pass" } else { "FAIL" };
                let _ = writeln!(out, "  {mark}  {} (measured {measured})", verdict.expression);
            }
        }
        if self.verdict == NO_THRESHOLDS {
            let _ = writeln!(
                out,
                "\nverdict: none: no thresholds were given (--slo), so the run is valid but nothing was judged"
            );
        } else {
            let _ = writeln!(out, "\nverdict: {}", self.verdict);
        }
        out
    }
}

fn write_group(out: &mut String, title: &str, group: &GroupReport, corrected: bool) {
    let _ = writeln!(
        out,
        "\n{title}: {} requests, error rate {:.3}%",
        group.requests,
        group.error_rate * 100.0
    );
    let _ = writeln!(
        out,
        "  {:<22} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "latency (ms)", "p50", "p90", "p99", "p99.9", "p99.99", "max"
    );
    let mut rows = vec![("corrected", &group.latency_ms.corrected)];
    if corrected {
        rows.push(("service (uncorrected)", &group.latency_ms.service));
        rows.push(("send lag", &group.latency_ms.lag));
    } else {
        rows[0].0 = "not corrected";
    }
    for (name, p) in rows {
        let _ = writeln!(
            out,
            "  {name:<22} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3}",
            p.p50, p.p90, p.p99, p.p99_9, p.p99_99, p.max
        );
    }
    for (class, count) in &group.errors {
        let _ = writeln!(out, "  error {class}: {count}");
    }
    for (message, count) in &group.messages {
        let _ = writeln!(out, "  message \"{message}\": {count}");
    }
}

/// HdrHistogram's percentile distribution (values in milliseconds), the
/// format its online plotter and wrk2's `--latency` output use.
pub fn percentile_spectrum(histogram: &Histogram<u64>) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    for step in histogram.iter_quantiles(5) {
        let quantile = step.quantile_iterated_to();
        let inverse = if quantile < 1.0 {
            format!("{:>14.2}", 1.0 / (1.0 - quantile))
        } else {
            format!("{:>14}", "inf")
        };
        let _ = writeln!(
            out,
            "{:>12.3} {:>14.12} {:>10} {inverse}",
            step.value_iterated_to() as f64 / 1000.0,
            quantile,
            step.count_since_last_iteration(),
        );
    }
    let _ = writeln!(
        out,
        "#[Mean    = {:>12.3}, StdDeviation   = {:>12.3}]",
        histogram.mean() / 1000.0,
        histogram.stdev() / 1000.0
    );
    let _ = writeln!(
        out,
        "#[Max     = {:>12.3}, Total count    = {:>12}]",
        histogram.max() as f64 / 1000.0,
        histogram.len()
    );
    let _ = writeln!(
        out,
        "#[Buckets = {:>12}, SubBuckets     = {:>12}]",
        histogram.buckets(),
        histogram.distinct_values()
    );
    out
}
