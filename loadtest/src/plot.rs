//! SVG plots with `plotters`: latency over time with version changes
//! marked, the percentile spectrum, and throughput against latency for sweeps.

use std::path::Path;

use hdrhistogram::Histogram;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use crate::error::{Error, Result};
use crate::report::Report;
use crate::sweep::SweepReport;

fn failed(what: &str) -> impl Fn(String) -> Error + '_ {
    move |err| Error::Setup(format!("drawing {what}: {err}"))
}

/// An axis bound 10% above the largest value, and never below `floor`, so
/// an empty or flat series still draws.
fn headroom(values: impl Iterator<Item = f64>, floor: f64) -> f64 {
    values.fold(0.0, f64::max).max(floor) * 1.1
}

type Chart<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// A white 900×480 canvas with a captioned chart and its labelled mesh.
fn chart<'a, 'b>(
    root: &'a DrawingArea<SVGBackend<'b>, plotters::coord::Shift>,
    caption: &str,
    (x_range, x_desc): (std::ops::Range<f64>, &str),
    (y_range, y_desc): (std::ops::Range<f64>, &str),
    x_format_opt: Option<&dyn Fn(&f64) -> String>,
) -> std::result::Result<Chart<'a, 'b>, String> {
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let mut chart = ChartBuilder::on(root)
        .caption(caption, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(60)
        .build_cartesian_2d(x_range, y_range)
        .map_err(|e| e.to_string())?;
    let mut mesh = chart.configure_mesh();
    mesh.x_desc(x_desc).y_desc(y_desc);
    if let Some(format) = x_format_opt {
        mesh.x_label_formatter(format);
    }
    mesh.draw().map_err(|e| e.to_string())?;
    Ok(chart)
}

/// p50 and p99 of each second, with a vertical line where versions changed.
pub fn latency_over_time(report: &Report, path: &Path) -> Result<()> {
    let fail = failed("latency over time");
    let root = SVGBackend::new(path, (900, 480)).into_drawing_area();
    let seconds = report.timeline.len().max(1) as f64;
    let top = headroom(report.timeline.iter().map(|s| s.p99_ms), 0.001);
    let mut chart = chart(
        &root,
        "latency over time (corrected)",
        (0.0..seconds, "seconds"),
        (0.0..top, "ms"),
        None,
    )
    .map_err(&fail)?;
    let series = |pick: fn(&crate::report::SecondReport) -> f64| {
        report
            .timeline
            .iter()
            .filter(|s| s.completed > 0)
            .map(move |s| (s.second as f64 + 0.5, pick(s)))
            .collect::<Vec<_>>()
    };
    chart
        .draw_series(LineSeries::new(series(|s| s.p50_ms), BLUE.stroke_width(2)))
        .map_err(|e| fail(e.to_string()))?
        .label("p50")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLUE));
    chart
        .draw_series(LineSeries::new(series(|s| s.p99_ms), RED.stroke_width(2)))
        .map_err(|e| fail(e.to_string()))?
        .label("p99")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], RED));
    for change in &report.version_changes {
        let x = change.second as f64;
        chart
            .draw_series(LineSeries::new(vec![(x, 0.0), (x, top)], BLACK.mix(0.5)))
            .map_err(|e| fail(e.to_string()))?;
        chart
            .draw_series(std::iter::once(Text::new(
                format!("versions {}", change.versions.join(",")),
                (x, top * 0.95),
                ("sans-serif", 12),
            )))
            .map_err(|e| fail(e.to_string()))?;
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .draw()
        .map_err(|e| fail(e.to_string()))?;
    root.present().map_err(|e| fail(e.to_string()))
}

/// Latency against percentile on HdrHistogram's axis (1/(1-p), log scale).
pub fn percentile_spectrum(
    corrected: &Histogram<u64>,
    service_opt: Option<&Histogram<u64>>,
    path: &Path,
) -> Result<()> {
    let fail = failed("the percentile spectrum");
    let points = |histogram: &Histogram<u64>| -> Vec<(f64, f64)> {
        histogram
            .iter_quantiles(5)
            .map(|step| {
                (
                    step.quantile_iterated_to(),
                    step.value_iterated_to() as f64 / 1000.0,
                )
            })
            .filter(|(q, _)| *q < 0.99999)
            .map(|(q, v)| ((1.0 / (1.0 - q)).log10(), v))
            .collect()
    };
    let corrected_points = points(corrected);
    let service_points = service_opt.map(points).unwrap_or_default();
    let top = headroom(corrected_points.iter().chain(&service_points).map(|p| p.1), 0.001);
    let root = SVGBackend::new(path, (900, 480)).into_drawing_area();
    let percent = |x: &f64| format!("{:.3}%", 100.0 * (1.0 - 10f64.powf(-x)));
    let mut chart = chart(
        &root,
        "latency by percentile",
        (0.0..5.0, "percentile"),
        (0.0..top, "ms"),
        Some(&percent),
    )
    .map_err(&fail)?;
    chart
        .draw_series(LineSeries::new(corrected_points, RED.stroke_width(2)))
        .map_err(|e| fail(e.to_string()))?
        .label("corrected")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], RED));
    if !service_points.is_empty() {
        chart
            .draw_series(LineSeries::new(service_points, BLUE.stroke_width(2)))
            .map_err(|e| fail(e.to_string()))?
            .label("service (uncorrected)")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLUE));
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .draw()
        .map_err(|e| fail(e.to_string()))?;
    root.present().map_err(|e| fail(e.to_string()))
}

/// Throughput against p99 for each level of a sweep; the knee in red.
pub fn sweep(report: &SweepReport, path: &Path) -> Result<()> {
    let fail = failed("the sweep");
    let right = headroom(report.levels.iter().map(|l| l.throughput), 1.0);
    let top = headroom(report.levels.iter().map(|l| l.p99_ms), 0.001);
    let root = SVGBackend::new(path, (900, 480)).into_drawing_area();
    let mut chart = chart(
        &root,
        "throughput against p99",
        (0.0..right, "requests per second"),
        (0.0..top, "p99 ms"),
        None,
    )
    .map_err(&fail)?;
    let points: Vec<(f64, f64)> = report.levels.iter().map(|l| (l.throughput, l.p99_ms)).collect();
    chart
        .draw_series(LineSeries::new(points.clone(), BLUE.stroke_width(2)))
        .map_err(|e| fail(e.to_string()))?;
    chart
        .draw_series(report.levels.iter().map(|l| {
            let color = if report.knee_opt == Some(l.level) {
                RED
            } else {
                BLUE
            };
            EmptyElement::at((l.throughput, l.p99_ms))
                + Circle::new((0, 0), 4, color.filled())
                + Text::new(format!("{}", l.level), (6, -12), ("sans-serif", 12))
        }))
        .map_err(|e| fail(e.to_string()))?;
    root.present().map_err(|e| fail(e.to_string()))
}
