//! `sluice profile create`: a version's reference profile, built from its
//! training data (CSV with a header, or JSON Lines of flat objects), with
//! its outputs on that data when asked (`--outputs`, in [`super::outputs`]),
//! and stored with the version as the `reference_profile` document; and
//! `sluice drift show`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use clap::Subcommand;
use sluice_registry_client::profile::{PROFILE_DOCUMENT, ReferenceProfile, profile_table};
use sluice_registry_client::{ClientError, RegistryClient};

#[derive(Debug, Clone, Subcommand)]
pub enum ProfileCommand {
    /// Build a version's reference profile from its training data and store it with the version.
    Create {
        /// Name of the model.
        model: String,

        /// A version number or alias.
        version: String,

        /// Training data: CSV with a header row (no quoted commas), or JSON Lines (`.jsonl`)
        /// of flat objects.
        #[arg(long, value_name = "FILE")]
        data: PathBuf,

        /// Quantile bins per numeric feature (10 to 20 is usual).
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(2..=100))]
        bins: u32,

        /// Categories kept per text feature; the rest count as "other".
        #[arg(long, default_value_t = 20)]
        top: usize,

        /// Columns that are not features (the label, ids); repeat for several.
        #[arg(long, value_name = "COLUMN")]
        exclude: Vec<String>,

        /// Also profile the version's answers on this data, for prediction drift: the artifact is
        /// fetched and run here (tract, or ONNX Runtime when ORT_DYLIB_PATH names it).
        #[arg(long)]
        outputs: bool,
    },
}

pub async fn run_profile(
    client: &RegistryClient,
    command: ProfileCommand,
    output: Output,
) -> Result<String, ClientError> {
    let ProfileCommand::Create {
        model,
        version,
        data,
        bins,
        top,
        exclude,
        outputs,
    } = command;
    let (header, rows) = read_table(&data)?;
    let excluded: BTreeSet<&String> = exclude.iter().collect();
    let keep: Vec<usize> = (0..header.len())
        .filter(|&i| !excluded.contains(&header[i]))
        .collect();
    let header: Vec<String> = keep.iter().map(|&i| header[i].clone()).collect();
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            keep.iter()
                .map(|&i| row.get(i).cloned().unwrap_or_default())
                .collect()
        })
        .collect();
    let mut profile = profile_table(&header, &rows, bins as usize, top);
    if outputs {
        profile.outputs = super::outputs::profile_outputs(
            client,
            (&model, &version),
            (&header, &rows),
            (bins as usize, top),
        )
        .await?;
    }
    let body = serde_json::to_value(&profile).map_err(|err| ClientError::Decode(err.to_string()))?;
    let document = client
        .put_document(&model, &version, PROFILE_DOCUMENT, &body)
        .await?;
    if output.is_machine() {
        return output.render(&document);
    }
    Ok(summary(&model, document.version, &profile))
}

fn summary(model: &str, version: u64, profile: &ReferenceProfile) -> String {
    let names: Vec<&str> = profile.features.keys().map(String::as_str).collect();
    let mut text = format!(
        "stored the reference profile of {model} version {version}: {} rows, {} features ({})",
        profile.rows,
        names.len(),
        names.join(", ")
    );
    if !profile.outputs.is_empty() {
        let outputs: Vec<&str> = profile.outputs.keys().map(String::as_str).collect();
        text.push_str(&format!(
            ", {} output columns ({})",
            outputs.len(),
            outputs.join(", ")
        ));
    }
    text.push('\n');
    text
}

/// The header and rows of a CSV or JSON Lines file, as text cells.
fn read_table(path: &Path) -> Result<(Vec<String>, Vec<Vec<String>>), ClientError> {
    let text = std::fs::read_to_string(path)
        .map_err(|err| ClientError::Io(format!("cannot read {}: {err}", path.display())))?;
    let is_jsonl = path
        .extension()
        .is_some_and(|extension| extension == "jsonl" || extension == "ndjson");
    if !is_jsonl {
        let mut lines = text.lines().filter(|line| !line.trim().is_empty());
        let header: Vec<String> = lines
            .next()
            .ok_or_else(|| ClientError::Io(format!("{} is empty: expected a header row", path.display())))?
            .split(',')
            .map(|cell| cell.trim().to_string())
            .collect();
        let rows = lines
            .map(|line| line.split(',').map(str::to_string).collect())
            .collect();
        return Ok((header, rows));
    }
    let mut header: Vec<String> = Vec::new();
    let mut objects = Vec::new();
    for (number, line) in text
        .lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
    {
        let object: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(line).map_err(|err| {
                ClientError::Io(format!(
                    "{} line {}: expected a JSON object: {err}",
                    path.display(),
                    number + 1
                ))
            })?;
        for key in object.keys() {
            if !header.contains(key) {
                header.push(key.clone());
            }
        }
        objects.push(object);
    }
    let rows = objects
        .iter()
        .map(|object| {
            header
                .iter()
                .map(|key| match object.get(key) {
                    None | Some(serde_json::Value::Null) => String::new(),
                    Some(serde_json::Value::String(text)) => text.clone(),
                    Some(other) => other.to_string(),
                })
                .collect()
        })
        .collect();
    Ok((header, rows))
}

#[derive(Debug, Clone, Subcommand)]
pub enum DriftCommand {
    /// Drift of a model's live traffic against its version's reference profile, per feature.
    Show {
        /// Name of the model.
        model: String,

        /// A version number or alias [default: the deployment's heaviest target].
        version: Option<String>,

        /// The sliding window, in seconds.
        #[arg(long, default_value_t = 600)]
        window_secs: u64,
    },
}

pub async fn run_drift(
    client: &RegistryClient,
    command: DriftCommand,
    output: Output,
) -> Result<String, ClientError> {
    let DriftCommand::Show {
        model,
        version,
        window_secs,
    } = command;
    let report = client
        .drift(
            &model,
            version.as_deref(),
            std::time::Duration::from_secs(window_secs),
        )
        .await?;
    if output.is_machine() {
        return output.render(&report);
    }
    let mut text = format!(
        "{} version {}, last {} s: {} rows, {:.0}% of judged features drifted{}\n",
        report.model,
        report.version,
        report.window_ms / 1000,
        report.rows,
        report.drifted_share * 100.0,
        if report.dataset_drift {
            ": DATASET DRIFT"
        } else {
            ""
        }
    );
    text.push_str(&drift_table("FEATURE", &report.features));
    if !report.outputs.is_empty() {
        text.push_str(&format!(
            "\nprediction drift{}:\n",
            if report.prediction_drift { ": DRIFTED" } else { "" }
        ));
        text.push_str(&drift_table("OUTPUT", &report.outputs));
    }
    if let Some(contract) = &report.contract {
        text.push_str(&format!("\ndata contract: {} rows checked\n", contract.rows));
        let mut table = super::table::Table::new(&["CHECK", "VIOLATIONS", "RATE"]);
        for (check, count) in &contract.violations {
            let rate = contract.rates.get(check).copied().unwrap_or(0.0);
            table.push(vec![
                check.clone(),
                count.to_string(),
                format!("{:.2}%", rate * 100.0),
            ]);
        }
        text.push_str(&table.render());
    }
    Ok(text)
}

/// PSI, JS, and KS (numbers) or chi-square and its p-value (categories), per column.
fn drift_table(first: &str, columns: &[sluice_registry_client::profile::FeatureDrift]) -> String {
    let mut table = super::table::Table::new(&[first, "ROWS", "PSI", "JS", "KS / CHI2 (P)", "STATUS"]);
    for column in columns {
        let test = match (column.ks, column.chi_square, column.chi_square_p) {
            (Some(ks), _, _) => format!("{ks:.4}"),
            (None, Some(statistic), Some(p)) => format!("{statistic:.1} ({p:.3})"),
            _ => "-".to_string(),
        };
        // No rows, no distance: a number there would read as drift.
        let measured = |value: f64| match column.rows {
            0 => "-".to_string(),
            _ => format!("{value:.4}"),
        };
        table.push(vec![
            column.name.clone(),
            column.rows.to_string(),
            measured(column.psi),
            measured(column.js_distance),
            test,
            column.status.clone(),
        ]);
    }
    table.render()
}
use super::args::Output;
