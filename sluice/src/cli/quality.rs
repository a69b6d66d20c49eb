//! `sluice suite put|show|run|report`, `sluice versions test` and `sluice
//! quality show`: a model's behavioural suite (JSON or TOML, stored as the
//! model's next revision), its runs on a version, and realized performance
//! per slice of the card's slice feature with the gaps between slices.
//!
//! A suite that fails is a finding, not an error: the report goes to
//! stdout and the command exits 1, so a CI step fails on it.

use std::time::Duration;

use clap::Subcommand;
use sluice_registry_client::slices::SliceReport;
use sluice_registry_client::suite::{Suite, SuiteReport};
use sluice_registry_client::{ClientError, RegistryClient};

use super::ExitReason;
use super::args::Output;
use super::table::Table;

#[derive(Debug, Clone, Subcommand)]
pub enum SuiteCommand {
    /// Store a suite (JSON, or TOML by a .toml extension) as the model's next revision.
    Put {
        /// Name of the model.
        model: String,
        /// The suite file.
        file: std::path::PathBuf,
    },
    /// Show the model's suite: its latest revision, or --revision.
    Show {
        /// Name of the model.
        model: String,
        /// The revision to show [default: the latest].
        #[arg(long)]
        revision: Option<u64>,
    },
    /// Run the suite on a version now and print the report; exit 1 when it fails.
    Run {
        /// Name of the model.
        model: String,
        /// A version number or alias.
        version: String,
        /// The suite revision to run [default: the latest].
        #[arg(long)]
        revision: Option<u64>,
    },
    /// Print the report of the version's latest suite run; exit 1 when it failed.
    Report {
        /// Name of the model.
        model: String,
        /// A version number or alias.
        version: String,
    },
}

#[derive(Debug, Clone, Subcommand)]
pub enum QualityCommand {
    /// Realized performance per slice of the card's slice feature, the largest gap per metric, and the version's
    /// latest suite verdict.
    Show {
        /// Name of the model.
        model: String,
        /// A version number or alias [default: the version serving most traffic].
        version: Option<String>,
        /// How far back (`1h`, `30m`) [default: every label the registry keeps joined].
        #[arg(long, value_parser = humantime::parse_duration)]
        window: Option<Duration>,
    },
}

/// The text to print, and the exit code: 1 for a failed suite.
pub async fn run_suite(
    client: &RegistryClient,
    command: SuiteCommand,
    output: Output,
) -> Result<(String, ExitReason), ClientError> {
    match command {
        SuiteCommand::Put { model, file } => {
            let suite = read_suite(&file).await?;
            let stored = client.put_suite(&model, &suite).await?;
            let text = if output.is_machine() {
                output.render(&stored)?
            } else {
                let cases = stored.suite.case_count();
                format!(
                    "stored revision {} of the suite of '{}': {cases} case{}\n",
                    stored.revision,
                    stored.model,
                    if cases == 1 { "" } else { "s" }
                )
            };
            Ok((text, ExitReason::Success))
        }
        SuiteCommand::Show { model, revision } => {
            let stored = client.get_suite(&model, revision).await?;
            Ok((output.render(&stored)?, ExitReason::Success))
        }
        SuiteCommand::Run {
            model,
            version,
            revision,
        } => verdict(client.run_suite(&model, &version, revision).await?, output),
        SuiteCommand::Report { model, version } => {
            verdict(client.suite_report(&model, &version).await?, output)
        }
    }
}

fn verdict(report: SuiteReport, output: Output) -> Result<(String, ExitReason), ClientError> {
    let text = if output.is_machine() {
        output.render(&report)?
    } else {
        report.to_string()
    };
    let exit = if report.passed {
        ExitReason::Success
    } else {
        ExitReason::Refused
    };
    Ok((text, exit))
}

async fn read_suite(file: &std::path::Path) -> Result<Suite, ClientError> {
    let suite: Suite = sluice_common::documents::read(file).map_err(ClientError::Io)?;
    // The registry checks again; this says it before anything is sent.
    suite
        .validate()
        .map_err(|err| ClientError::Io(format!("{}: {err}", file.display())))?;
    Ok(suite)
}

pub async fn run_quality(
    client: &RegistryClient,
    command: QualityCommand,
    output: Output,
) -> Result<String, ClientError> {
    let QualityCommand::Show {
        model,
        version,
        window,
    } = command;
    let report = client.slices(&model, version.as_deref(), window).await?;
    let reference = report.version.to_string();
    let suite_opt = match client.suite_report(&model, &reference).await {
        Ok(suite) => Some(suite),
        Err(err) if err.is_not_found() => None,
        Err(err) => return Err(err),
    };
    if output.is_machine() {
        return output.render(&serde_json::json!({"slices": report, "suite": suite_opt}));
    }
    Ok(render(&report, suite_opt.as_ref()))
}

fn render(report: &SliceReport, suite_opt: Option<&SuiteReport>) -> String {
    let window = humantime::format_duration(Duration::from_millis(report.window_ms));
    let mut text = match &report.spec {
        Some(spec) => format!(
            "{} version {}: labels joined in the last {window}, by slice of '{}' (gaps over slices of at least {} rows)\n",
            report.model, report.version, spec.feature, report.min_rows
        ),
        None => format!(
            "{} version {}: the model card declares no slice feature (lineage `slice`), so there are no slices\n",
            report.model, report.version
        ),
    };
    let cell = |value: Option<f64>| value.map_or_else(|| "-".to_string(), |value| format!("{value:.4}"));
    if !report.slices.is_empty() {
        let mut table = Table::new(&["SLICE", "ROWS", "ACCURACY", "AUC", "FALSE POS", "FALSE NEG"]);
        for slice in &report.slices {
            let rows = if slice.counted {
                slice.rows.to_string()
            } else {
                format!("{} (too few)", slice.rows)
            };
            table.push(vec![
                slice.slice.clone(),
                rows,
                cell(slice.accuracy),
                cell(slice.auc),
                cell(slice.false_positive_rate),
                cell(slice.false_negative_rate),
            ]);
        }
        text.push_str(&table.render());
    } else if report.spec.is_some() {
        text.push_str("no labelled rows yet\n");
    }
    for gap in &report.gaps {
        text.push_str(&format!(
            "largest {} gap: {:.4} ({} highest, {} lowest)\n",
            gap.metric, gap.gap, gap.highest, gap.lowest
        ));
    }
    match suite_opt {
        Some(suite) => text.push_str(&format!("{}\n", suite.headline())),
        None => text.push_str(&format!(
            "suite: not run on version {} (`sluice versions test {} {}`)\n",
            report.version, report.model, report.version
        )),
    }
    text
}
