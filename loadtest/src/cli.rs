//! Flags (each with a `SLUICE_LOADTEST_*` variable) and what they build.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::error::{Error, Result};
use crate::http::Protocol;
use crate::runner::{Load, RunSpec};
use crate::schedule::{Arrivals, RateProfile};
use crate::slo::Slo;
use crate::sweep::{Stability, Sweep};
use crate::target::{self, Encoding, Target};

/// An honest load generator for Open Inference Protocol predict endpoints.
///
/// Open model (a schedule, latency corrected for coordinated omission):
///   sluice-loadtest URL --body req.json --rate 500 --duration 30s
/// Closed model (N connections, each sending when the last answer arrives):
///   sluice-loadtest URL --body req.json --connections 32 --duration 30s
#[derive(Debug, Parser)]
#[command(name = "sluice-loadtest", version, verbatim_doc_comment)]
pub struct Args {
    /// Infer endpoints, `[WEIGHT=]URL`, e.g. `3=http://127.0.0.1:8080/v2/models/m/infer`.
    #[arg(required = true, value_name = "TARGET")]
    pub targets: Vec<String>,

    /// A V2 JSON request body; repeat to rotate several.
    #[arg(
        long = "body",
        value_name = "FILE",
        env = "SLUICE_LOADTEST_BODY",
        value_delimiter = ','
    )]
    pub bodies: Vec<PathBuf>,

    /// Send bodies with the binary tensor extension (converted from JSON once, before the run).
    #[arg(long, env = "SLUICE_LOADTEST_BINARY", conflicts_with = "grpc")]
    pub binary: bool,

    /// Call the gRPC service (`ModelInfer`) instead of the REST API: each JSON body is
    /// converted once, before the run, to the message tritonclient sends (raw tensors).
    /// The URL's host, port, model and version are used.
    #[arg(long, env = "SLUICE_LOADTEST_GRPC")]
    pub grpc: bool,

    /// Speak the REST API over HTTP/2 without TLS (h2c, by prior knowledge).
    #[arg(long, env = "SLUICE_LOADTEST_H2C", conflicts_with = "grpc")]
    pub h2c: bool,

    /// With --grpc or --h2c: HTTP/2 connections the in-flight requests share as
    /// streams, at least one per worker thread [default: one per request in flight].
    #[arg(
        long = "h2-connections",
        value_name = "N",
        env = "SLUICE_LOADTEST_H2_CONNECTIONS"
    )]
    pub h2_connections: Option<usize>,

    /// Generate bodies from each target's model metadata: random tensors of the declared shapes.
    #[arg(long, env = "SLUICE_LOADTEST_FROM_METADATA", conflicts_with = "bodies")]
    pub from_metadata: bool,

    /// Size of dynamic dims in generated bodies.
    #[arg(long, default_value_t = 1, env = "SLUICE_LOADTEST_BATCH")]
    pub batch: usize,

    /// Generated bodies per target, rotated.
    #[arg(
        long = "generated-bodies",
        default_value_t = 8,
        env = "SLUICE_LOADTEST_GENERATED_BODIES"
    )]
    pub generated_bodies: usize,

    /// Open model at a constant rate, requests per second.
    #[arg(long, env = "SLUICE_LOADTEST_RATE", conflicts_with_all = ["steps", "ramp"])]
    pub rate: Option<f64>,

    /// Open model in steps, `OFFSET:RATE,...`, e.g. `0s:100,10s:200,20s:400`.
    #[arg(long, env = "SLUICE_LOADTEST_STEPS", conflicts_with = "ramp")]
    pub steps: Option<String>,

    /// Open model on a linear ramp, `FROM..TO/OVER`, e.g. `100..1000/30s`.
    #[arg(long, env = "SLUICE_LOADTEST_RAMP")]
    pub ramp: Option<String>,

    /// Arrivals in the open model.
    #[arg(long, value_enum, default_value_t = ArrivalsArg::Uniform, env = "SLUICE_LOADTEST_ARRIVALS")]
    pub arrivals: ArrivalsArg,

    /// Connections: the closed model's concurrency, the open model's most requests in flight.
    #[arg(long, default_value_t = 16, env = "SLUICE_LOADTEST_CONNECTIONS")]
    pub connections: usize,

    /// How long to run (e.g. 500ms, 30s, 2m).
    #[arg(long, default_value = "10s", value_parser = parse_duration, env = "SLUICE_LOADTEST_DURATION")]
    pub duration: Duration,

    /// Worker threads, each with its own event loop [default: cores].
    #[arg(long, env = "SLUICE_LOADTEST_THREADS")]
    pub threads: Option<usize>,

    /// A request not answered in this time is an error of class `timeout`.
    #[arg(long, default_value = "10s", value_parser = parse_duration, env = "SLUICE_LOADTEST_TIMEOUT")]
    pub timeout: Duration,

    /// Split latency and errors by this response header, e.g. `x-model-version`.
    #[arg(
        long = "split-by-header",
        value_name = "NAME",
        env = "SLUICE_LOADTEST_SPLIT_BY_HEADER"
    )]
    pub split_by_header: Option<String>,

    /// A threshold: `[version=V:]METRIC OP VALUE` with p50..p99.99, max, mean, error_rate, rps.
    #[arg(
        long = "slo",
        value_name = "EXPR",
        env = "SLUICE_LOADTEST_SLO",
        value_delimiter = ';'
    )]
    pub slos: Vec<String>,

    /// Sweep a dimension: `concurrency=1..128`, `rate=100..1000:100`, `rate=50,100,200`.
    #[arg(long, env = "SLUICE_LOADTEST_SWEEP", conflicts_with_all = ["max_rate_under", "slos", "hdr_out"])]
    pub sweep: Option<String>,

    /// Search the highest rate that keeps a threshold, e.g. `p99<5ms`.
    #[arg(
        long = "max-rate-under",
        value_name = "EXPR",
        env = "SLUICE_LOADTEST_MAX_RATE_UNDER"
    )]
    pub max_rate_under: Option<String>,

    /// First rate of the --max-rate-under search; it doubles from there.
    #[arg(
        long = "start-rate",
        default_value_t = 50.0,
        env = "SLUICE_LOADTEST_START_RATE"
    )]
    pub start_rate: f64,

    /// Measurement window of a sweep level.
    #[arg(long, default_value = "2s", value_parser = parse_duration, env = "SLUICE_LOADTEST_WINDOW")]
    pub window: Duration,

    /// Consecutive windows that must agree for a sweep level to be stable.
    #[arg(
        long = "stable-windows",
        default_value_t = 3,
        env = "SLUICE_LOADTEST_STABLE_WINDOWS"
    )]
    pub stable_windows: usize,

    /// How far those windows may differ from their mean, in percent.
    #[arg(long, default_value_t = 10.0, env = "SLUICE_LOADTEST_TOLERANCE")]
    pub tolerance: f64,

    /// Windows after which a level is reported unstable.
    #[arg(
        long = "max-windows",
        default_value_t = 10,
        env = "SLUICE_LOADTEST_MAX_WINDOWS"
    )]
    pub max_windows: usize,

    /// Print the report as JSON (schema `sluice-loadtest/v1`).
    #[arg(long, env = "SLUICE_LOADTEST_JSON")]
    pub json: bool,

    /// Write the corrected latency's percentile spectrum, in HdrHistogram's format.
    #[arg(long = "hdr-out", value_name = "FILE", env = "SLUICE_LOADTEST_HDR_OUT")]
    pub hdr_out: Option<PathBuf>,

    /// Write SVG plots into this directory.
    #[arg(long = "plot-dir", value_name = "DIR", env = "SLUICE_LOADTEST_PLOT_DIR")]
    pub plot_dir: Option<PathBuf>,

    /// Open model: stop sleeping this long before each intended start and spin,
    /// so sends are on time to the microsecond (the timer ticks in ms). 0 saves
    /// the CPU and shows the timer's lateness as send lag. Pin the generator
    /// to its own cores when it spins.
    #[arg(long, default_value = "2ms", value_parser = parse_spin, env = "SLUICE_LOADTEST_SPIN")]
    pub spin: Duration,

    /// Seed of the arrival and body randomness.
    #[arg(long, default_value_t = 1, env = "SLUICE_LOADTEST_SEED")]
    pub seed: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ArrivalsArg {
    Uniform,
    Poisson,
}

/// `500ms`, `30s`, `2m`, `1h`, `1.5s`.
pub fn parse_duration(text: &str) -> std::result::Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("'{text}' is not a duration like 500ms, 30s or 2m"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" | "" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(format!("'{text}': unknown unit '{unit}', expected ms, s, m or h")),
    };
    if !(seconds.is_finite() && seconds > 0.0) {
        return Err(format!("'{text}' must be positive"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// The most requests per second one run may schedule: beyond it, gaps round
/// to nothing and the schedule would spin forever.
const MAX_RATE: f64 = 10_000_000.0;

fn check_rate(rate: f64, flag: &str) -> Result<f64> {
    if rate.is_finite() && rate > 0.0 && rate <= MAX_RATE {
        Ok(rate)
    } else {
        Err(Error::usage(format!(
            "{flag} must be a positive number of requests per second, at most {MAX_RATE}"
        )))
    }
}

fn parse_spin(text: &str) -> std::result::Result<Duration, String> {
    if text.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    parse_duration(text)
}

fn parse_steps(text: &str) -> Result<RateProfile> {
    let mut steps = text
        .split(',')
        .map(|step| {
            let (offset, rate) = step.split_once(':').ok_or_else(|| {
                Error::usage(format!("--steps '{step}': expected OFFSET:RATE, e.g. 10s:200"))
            })?;
            let offset = if offset.trim() == "0" {
                Duration::ZERO
            } else {
                parse_duration(offset).map_err(Error::Usage)?
            };
            let rate: f64 = rate
                .trim()
                .parse()
                .ok()
                .filter(|rate: &f64| rate.is_finite() && (0.0..=MAX_RATE).contains(rate))
                .ok_or_else(|| {
                    Error::usage(format!(
                        "--steps '{step}': rate must be a number from 0 to {MAX_RATE}"
                    ))
                })?;
            Ok((offset, rate))
        })
        .collect::<Result<Vec<_>>>()?;
    steps.sort_by_key(|(offset, _)| *offset);
    Ok(RateProfile::Steps(steps))
}

fn parse_ramp(text: &str) -> Result<RateProfile> {
    let bad = || {
        Error::usage(format!(
            "--ramp '{text}': expected FROM..TO/OVER, e.g. 100..1000/30s"
        ))
    };
    let (rates, over) = text.split_once('/').ok_or_else(bad)?;
    let (from, to) = rates.split_once("..").ok_or_else(bad)?;
    let rate = |text: &str| {
        text.trim()
            .parse::<f64>()
            .ok()
            .filter(|rate| rate.is_finite() && (0.0..=MAX_RATE).contains(rate))
            .ok_or_else(bad)
    };
    Ok(RateProfile::Ramp {
        from: rate(from)?,
        to: rate(to)?,
        over: parse_duration(over).map_err(|_| bad())?,
    })
}

impl Args {
    pub fn load(&self) -> Result<Load> {
        if self.connections == 0 {
            return Err(Error::usage("--connections must be positive"));
        }
        let profile_opt = match (&self.rate, &self.steps, &self.ramp) {
            (Some(rate), _, _) => Some(RateProfile::Constant(check_rate(*rate, "--rate")?)),
            (None, Some(steps), _) => Some(parse_steps(steps)?),
            (None, None, Some(ramp)) => Some(parse_ramp(ramp)?),
            (None, None, None) => None,
        };
        let arrivals = self.arrivals();
        Ok(match profile_opt {
            Some(profile) => Load::Open {
                profile,
                arrivals,
                connections: self.connections,
            },
            None => Load::Closed {
                connections: self.connections,
            },
        })
    }

    pub fn arrivals(&self) -> Arrivals {
        match self.arrivals {
            ArrivalsArg::Uniform => Arrivals::Uniform,
            ArrivalsArg::Poisson => Arrivals::Poisson,
        }
    }

    pub fn start_rate(&self) -> Result<f64> {
        check_rate(self.start_rate, "--start-rate")
    }

    pub fn slos(&self) -> Result<Vec<Slo>> {
        self.slos.iter().map(|text| Slo::parse(text)).collect()
    }

    pub fn sweep(&self) -> Result<Option<Sweep>> {
        self.sweep.as_deref().map(Sweep::parse).transpose()
    }

    pub fn stability(&self) -> Stability {
        Stability {
            window: self.window,
            windows: self.stable_windows.max(2),
            tolerance: self.tolerance / 100.0,
            max_windows: self.max_windows.max(self.stable_windows.max(2)),
        }
    }

    /// How requests travel (`--grpc`, `--h2c`).
    pub fn protocol(&self) -> Protocol {
        match (self.grpc, self.h2c) {
            (true, _) => Protocol::Grpc,
            (false, true) => Protocol::H2c,
            (false, false) => Protocol::Http1,
        }
    }

    /// Builds targets and every body they will send; fetches metadata when asked.
    pub async fn targets(&self) -> Result<Vec<Target>> {
        let parsed = self
            .targets
            .iter()
            .map(|text| target::parse_target(text))
            .collect::<Result<Vec<_>>>()?;
        if !self.from_metadata && self.bodies.is_empty() {
            return Err(Error::usage("give --body FILE (repeatable) or --from-metadata"));
        }
        let bodies = self
            .bodies
            .iter()
            .map(|path| {
                std::fs::read(path)
                    .map(|text| (path.display().to_string(), text))
                    .map_err(|err| Error::usage(format!("body {}: {err}", path.display())))
            })
            .collect::<Result<Vec<_>>>()?;
        let mut targets = Vec::new();
        for (index, (url, weight)) in parsed.into_iter().enumerate() {
            // gRPC names the model in each message: bodies are per target.
            let encoding = match (self.protocol(), self.binary) {
                (Protocol::Grpc, _) => Encoding::Grpc(target::model_of(&url)?),
                (_, true) => Encoding::Binary,
                (_, false) => Encoding::Json,
            };
            let payloads = if self.from_metadata {
                let metadata_url = target::metadata_url(&url)?;
                let (status, body) = crate::http::get(&metadata_url).await?;
                if status != 200 {
                    return Err(Error::Setup(format!(
                        "GET {metadata_url} answered {status}: {}",
                        String::from_utf8_lossy(&body)
                    )));
                }
                let metadata: serde_json::Value = serde_json::from_slice(&body).map_err(|err| {
                    Error::Setup(format!("metadata from {metadata_url} is not JSON: {err}"))
                })?;
                target::payloads_from_metadata(
                    &metadata,
                    self.batch.max(1),
                    self.generated_bodies,
                    self.seed.wrapping_add(index as u64),
                    &encoding,
                )?
            } else {
                bodies
                    .iter()
                    .map(|(origin, text)| target::payload_from_json(text, origin, &encoding))
                    .collect::<Result<Vec<_>>>()?
            };
            targets.push(Target::new(url, weight, self.protocol(), payloads));
        }
        Ok(targets)
    }

    pub fn spec(&self, targets: Vec<Target>) -> Result<RunSpec> {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        Ok(RunSpec {
            targets: Arc::new(targets),
            load: self.load()?,
            duration: self.duration,
            threads: self.threads.unwrap_or(cores).max(1),
            timeout: self.timeout,
            split_header_opt: self.split_by_header.clone().map(|name| name.to_ascii_lowercase()),
            h2_connections_opt: match self.h2_connections {
                Some(0) => return Err(Error::usage("--h2-connections must be positive")),
                other => other,
            },
            seed: self.seed,
            spin: self.spin,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_units() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("0s").is_err());
    }

    #[test]
    fn open_or_closed_from_flags() {
        let args = Args::try_parse_from(["t", "http://h/x", "--body", "b.json", "--rate", "100"]).unwrap();
        assert!(matches!(args.load().unwrap(), Load::Open { .. }));
        let args =
            Args::try_parse_from(["t", "http://h/x", "--body", "b.json", "--connections", "4"]).unwrap();
        assert_eq!(args.load().unwrap(), Load::Closed { connections: 4 });
        let args = Args::try_parse_from(["t", "http://h/x", "--steps", "0:10,5s:20"]).unwrap();
        let Load::Open { profile, .. } = args.load().unwrap() else {
            panic!("open")
        };
        assert_eq!(profile.rate_at(Duration::from_secs(6)), 20.0);
        let args = Args::try_parse_from(["t", "http://h/x", "--ramp", "10..100/10s"]).unwrap();
        assert!(args.load().is_ok());
        assert!(Args::try_parse_from(["t", "http://h/x", "--rate", "1", "--ramp", "1..2/1s"]).is_err());
    }

    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        Args::command().debug_assert();
    }
}
