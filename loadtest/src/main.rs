//! The `sluice-loadtest` binary: parses flags, runs, reports, and exits with
//! a code CI can trust (see `sluice_loadtest::exit`).

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use sluice_loadtest::cli::Args;
use sluice_loadtest::output::Outputs;
use sluice_loadtest::report::{Report, percentile_spectrum};
use sluice_loadtest::runner::{Progress, run};
use sluice_loadtest::slo::Slo;
use sluice_loadtest::{exit, plot, sweep};

fn main() {
    let args = Args::parse();
    let code = match run_command(&args) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("sluice-loadtest: {err:#}");
            exit::ERROR
        }
    };
    #[allow(clippy::exit)]
    std::process::exit(code);
}

fn run_command(args: &Args) -> anyhow::Result<i32> {
    // Before anything is sent: a run must not end unable to write.
    let mut outputs = Outputs::prepare(args.hdr_out.as_deref(), args.plot_dir.as_deref())?;
    let setup = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let targets = setup.block_on(args.targets())?;
    drop(setup);
    let spec = args.spec(targets)?;
    let slos = args.slos()?;
    let progress = Arc::new(Progress::default());
    let _line = ProgressLine::start(&progress);

    if let Some(sweep_spec) = args.sweep()? {
        let report = sweep::sweep(&spec, &sweep_spec, args.arrivals(), &args.stability(), &progress)?;
        if args.json {
            emit(&serde_json::to_string_pretty(&report)?);
        } else {
            emit(&sweep_text(&report));
        }
        if let Some(dir) = outputs.plot_dir() {
            plot::sweep(&report, &dir.join("sweep.svg"))?;
        }
        return Ok(exit::PASS);
    }

    if let Some(expression) = &args.max_rate_under {
        let slo = Slo::parse(expression)?;
        let report = sweep::max_rate_under(&spec, &slo, args.arrivals(), args.start_rate()?, 5, &progress)?;
        if args.json {
            emit(&serde_json::to_string_pretty(&report)?);
        } else {
            let mut text = String::new();
            for probe in &report.probes {
                let measured = probe
                    .measured_opt
                    .map_or("no samples".into(), |m| format!("{m:.3}"));
                let verdict = if probe.passed { "pass" } else { "fail" };
                text.push_str(&format!(
                    "rate {:>10.1}: achieved {:>10.1}, {} = {measured}: {verdict}\n",
                    probe.rate, probe.achieved, report.slo
                ));
            }
            text.push_str(&match report.max_rate_opt {
                Some(rate) => format!("highest rate under {}: {rate:.1} req/s\n", report.slo),
                None => format!("no rate tried kept {}\n", report.slo),
            });
            emit(&text);
        }
        return Ok(match (report.max_rate_opt, report.invalid()) {
            (Some(_), _) => exit::PASS,
            (None, true) => exit::INVALID_RUN,
            (None, false) => exit::THRESHOLD_FAILED,
        });
    }

    let result = run(&spec, &progress)?;
    let report = Report::new(&spec, &result, &slos);
    if args.json {
        emit(&serde_json::to_string_pretty(&report)?);
    } else {
        emit(&report.text());
    }
    outputs.write_hdr(&percentile_spectrum(&result.recorder.total.corrected))?;
    if let Some(dir) = outputs.plot_dir() {
        plot::latency_over_time(&report, &dir.join("latency_over_time.svg"))?;
        let service = report.corrected.then_some(&result.recorder.total.service);
        plot::percentile_spectrum(
            &result.recorder.total.corrected,
            service,
            &dir.join("percentiles.svg"),
        )?;
    }
    Ok(match report.verdict {
        "pass" | sluice_loadtest::report::NO_THRESHOLDS => exit::PASS,
        "fail" => exit::THRESHOLD_FAILED,
        _ => exit::INVALID_RUN,
    })
}

/// Writes a report to stdout (the tool's output, unlike logs on stderr).
fn emit(text: &str) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    if !text.ends_with('\n') {
        let _ = stdout.write_all(b"\n");
    }
}

fn sweep_text(report: &sweep::SweepReport) -> String {
    let mut out = format!(
        "{:>12} {:>12} {:>10} {:>10} {:>8} {:>8}\n",
        format!("{:?}", report.dimension).to_lowercase(),
        "req/s",
        "p50 ms",
        "p99 ms",
        "errors",
        "stable"
    );
    for level in &report.levels {
        let knee = if report.knee_opt == Some(level.level) {
            "  <- knee"
        } else {
            ""
        };
        out.push_str(&format!(
            "{:>12} {:>12.1} {:>10.3} {:>10.3} {:>7.2}% {:>8}{knee}\n",
            level.level,
            level.throughput,
            level.p50_ms,
            level.p99_ms,
            level.error_rate * 100.0,
            if level.stable { "yes" } else { "NO" },
        ));
    }
    out
}

/// A live line on stderr, from its own thread, reading relaxed counters:
/// nothing it does touches the request path. Shown only on a terminal.
struct ProgressLine {
    stop: Arc<AtomicBool>,
    thread_opt: Option<std::thread::JoinHandle<()>>,
}

impl ProgressLine {
    fn start(progress: &Arc<Progress>) -> ProgressLine {
        let stop = Arc::new(AtomicBool::new(false));
        let thread_opt = std::io::stderr().is_terminal().then(|| {
            let (stop, progress) = (stop.clone(), progress.clone());
            std::thread::spawn(move || {
                let started = Instant::now();
                let mut last = 0;
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_secs(1));
                    let done = progress.completed.load(Ordering::Relaxed);
                    let errors = progress.errors.load(Ordering::Relaxed);
                    eprint!(
                        "\r{:>6.0}s  {done:>10} done  {:>8} req/s  {errors:>8} errors ",
                        started.elapsed().as_secs_f64(),
                        done - last
                    );
                    last = done;
                }
                eprintln!();
            })
        });
        ProgressLine { stop, thread_opt }
    }
}

impl Drop for ProgressLine {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread_opt.take() {
            let _ = thread.join();
        }
    }
}
