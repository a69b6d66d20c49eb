//! `sluice versions`: push an artifact with its lineage, list and show
//! versions.

use std::path::Path;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use sluice_registry_client::slices::SliceSpec;
use sluice_registry_client::types::*;
use sluice_registry_client::{ClientError, RegistryClient};

use super::args::*;
use super::table::{Table, human_size, key_values, or_dash, pairs, short_hash, version_or_dash};

#[derive(Debug, Clone, Subcommand)]
pub enum VersionsCommand {
    /// Upload an ONNX file and register it as the model's next version, with its lineage.
    // Boxed: its many flags would make every other variant as large (clippy::large_enum_variant).
    Push(Box<PushArgs>),

    /// List the versions of a model.
    List {
        /// Name of the model.
        model: String,
    },

    /// Show one version: artifact, signature and lineage.
    Show {
        /// Name of the model.
        model: String,

        /// Version number, or an alias such as `champion`.
        version: String,
    },

    /// Run the model's behavioural suite on a version and print the report; exit 1 when it fails.
    Test {
        /// Name of the model.
        model: String,

        /// Version number, or an alias such as `champion`.
        version: String,

        /// The suite revision to run [default: the latest].
        #[arg(long)]
        revision: Option<u64>,
    },
}

// The flags of `versions push`; see `VersionsCommand::Push` for its help text.
#[derive(Debug, Clone, Args)]
pub struct PushArgs {
    /// Model to register the version under; it must exist (`sluice models create`).
    #[arg(value_name = "MODEL")]
    pub model: String,

    /// The ONNX file to upload.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,

    /// An evaluation metric, NAME=NUMBER (`auc=0.91`), as stage gates check; repeat for several.
    #[arg(long = "metric", value_name = "NAME=NUMBER", value_parser = parse_metric)]
    pub metrics: Vec<(String, f64)>,

    /// A training parameter, KEY=VALUE (`max_depth=6`); repeat for several.
    #[arg(long = "param", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub parameters: Vec<(String, String)>,

    /// A language or library version, KEY=VALUE (`python=3.11`); repeat for several.
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub environment: Vec<(String, String)>,

    /// URI of the dataset the version was trained on.
    #[arg(long, value_name = "URI")]
    pub dataset: Option<String>,

    /// sha256 of that dataset, so it can be told from a later one at the same URI.
    #[arg(long, value_name = "SHA256", requires = "dataset")]
    pub dataset_sha256: Option<String>,

    /// Commit of the training code.
    #[arg(long, value_name = "SHA")]
    pub commit: Option<String>,

    /// Id of the training run (in your experiment tracker).
    #[arg(long, value_name = "ID")]
    pub run_id: Option<String>,

    /// What the version is meant to be used for (model card).
    #[arg(long, value_name = "TEXT")]
    pub intended_use: Option<String>,

    /// Known limitations (model card).
    #[arg(long, value_name = "TEXT")]
    pub limitations: Option<String>,

    /// The version this one was retrained from (lineage).
    #[arg(long, value_name = "VERSION")]
    pub parent_version: Option<u64>,

    /// The training trigger run that asked for this version; registering it
    /// completes the run (`sluice triggers history`).
    #[arg(long, value_name = "ID", env = "SLUICE_TRIGGER_ID")]
    pub trigger_id: Option<u64>,

    /// The feature realized performance is broken down by (model card): an input, or `x[k]`.
    #[arg(long, value_name = "FEATURE")]
    pub slice_feature: Option<String>,

    /// Band edges of the slice feature, ascending (`30,45,60`); without them each value is a slice.
    #[arg(
        long,
        value_name = "EDGES",
        value_delimiter = ',',
        allow_hyphen_values = true,
        requires = "slice_feature"
    )]
    pub slice_edges: Vec<f64>,
}

/// Hex digits of a sha256 in tables: enough to tell artifacts apart.
pub(super) const TABLE_HASH_DIGITS: usize = 12;

/// Hex digits of a sha256 in one-line messages, which are read, not compared.
pub(super) const MESSAGE_HASH_DIGITS: usize = 8;

pub async fn run_versions(
    client: &RegistryClient,
    command: VersionsCommand,
    output: Output,
) -> Result<String, ClientError> {
    match command {
        VersionsCommand::Push(push) => push_version(client, *push, output).await,
        VersionsCommand::List { model } => {
            let versions = client.list_versions(&model).await?;
            if output.is_machine() {
                return output.render(&versions);
            }
            Ok(versions_table(&versions, output.is_wide()))
        }
        VersionsCommand::Show { model, version } => {
            let found = client.get_version(&model, &version).await?;
            if output.is_machine() {
                return output.render(&found);
            }
            Ok(version_listing(&found))
        }
        VersionsCommand::Test { .. } => {
            unreachable!("cli::run sends it to quality::run_suite, for its exit code")
        }
    }
}

pub(super) async fn push_version(
    client: &RegistryClient,
    push: PushArgs,
    output: Output,
) -> Result<String, ClientError> {
    let PushArgs {
        file,
        model,
        metrics,
        parameters,
        environment,
        dataset,
        dataset_sha256,
        commit,
        run_id,
        intended_use,
        limitations,
        parent_version,
        trigger_id,
        slice_feature,
        slice_edges,
    } = push;
    check_is_file(&file).await?;
    let slice = slice_feature.map(|feature| SliceSpec {
        feature,
        edges: slice_edges,
    });
    if let Some(slice) = &slice {
        slice
            .validate()
            .map_err(|err| ClientError::Io(format!("--slice-edges: {err}")))?;
    }
    // A misspelt model then fails at once, not after uploading a large artifact for nothing.
    client.get_model(&model).await?;
    let artifact = client.upload_artifact(&file).await?;
    let lineage = Lineage {
        training_run_id: run_id,
        code_commit: commit,
        dataset: dataset.map(|uri| Dataset {
            uri,
            sha256: dataset_sha256,
        }),
        parameters: parameters.into_iter().collect(),
        metrics: metrics.into_iter().collect(),
        environment: environment.into_iter().collect(),
        intended_use,
        limitations,
        parent_version,
        trigger_id,
        slice,
    };
    let body = CreateVersion {
        artifact: ArtifactSource::Sha256(artifact.sha256),
        lineage,
    };
    let version = client.create_version(&model, &body).await?;
    if output.is_machine() {
        return output.render(&version);
    }
    Ok(format!(
        "registered {} version {} (sha256 {}…, {})\n",
        version.model,
        version.version,
        short_hash(&version.sha256, MESSAGE_HASH_DIGITS),
        human_size(version.size)
    ))
}

/// The upload would open a directory without complaint and fail mid-stream,
/// reported as a broken connection; this says what is actually wrong.
pub(super) async fn check_is_file(path: &Path) -> Result<(), ClientError> {
    let metadata = tokio::fs::metadata(path)
        .await
        .map_err(|err| ClientError::Io(format!("cannot read {}: {err}", path.display())))?;
    if !metadata.is_file() {
        return Err(ClientError::Io(format!("{} is not a file", path.display())));
    }
    Ok(())
}

/// `wide`: the whole hash, and the lineage's parent, commit and dataset.
pub(super) fn versions_table(versions: &[Version], wide: bool) -> String {
    if versions.is_empty() {
        return "no versions yet: `sluice versions push MODEL FILE` registers one\n".to_string();
    }
    let mut headers = vec![
        "VERSION", "STAGE", "ALIASES", "SHA256", "SIZE", "METRICS", "AUTHOR", "CREATED",
    ];
    if wide {
        headers.extend(["PARENT", "COMMIT", "DATASET"]);
    }
    let mut table = Table::new(&headers);
    for version in versions {
        let lineage = &version.lineage;
        let hash = if wide {
            version.sha256.as_str()
        } else {
            short_hash(&version.sha256, TABLE_HASH_DIGITS)
        };
        let mut row = vec![
            version.version.to_string(),
            stage_cell(version),
            or_dash(&version.aliases.join(",")),
            hash.to_string(),
            human_size(version.size),
            pairs(&lineage.metrics),
            version.author.clone(),
            version.created_at.clone(),
        ];
        if wide {
            row.extend([
                version_or_dash(lineage.parent_version),
                or_dash(lineage.code_commit.as_deref().unwrap_or_default()),
                or_dash(
                    lineage
                        .dataset
                        .as_ref()
                        .map_or("", |dataset| dataset.uri.as_str()),
                ),
            ]);
        }
        table.push(row);
    }
    table.render()
}

/// The stage, and the rollback window of a version moved out of production.
fn stage_cell(version: &Version) -> String {
    match &version.rollback_until {
        Some(until) => format!("{} (deployable for a rollback until {until})", version.stage),
        None => version.stage.to_string(),
    }
}

pub(super) fn version_listing(version: &Version) -> String {
    let lineage = &version.lineage;
    let mut rows: Vec<(&str, String)> = vec![
        ("model", version.model.clone()),
        ("version", version.version.to_string()),
        ("stage", stage_cell(version)),
        ("aliases", or_dash(&version.aliases.join(", "))),
        ("sha256", version.sha256.clone()),
        (
            "size",
            format!("{} ({} bytes)", human_size(version.size), version.size),
        ),
    ];
    if let Some(source_uri) = &version.source_uri {
        rows.push(("source", source_uri.clone()));
    }
    rows.push(("author", version.author.clone()));
    rows.push(("created", version.created_at.clone()));
    push_tensors(&mut rows, "inputs", &version.signature.inputs);
    push_tensors(&mut rows, "outputs", &version.signature.outputs);
    rows.push((
        "training run",
        or_dash(lineage.training_run_id.as_deref().unwrap_or_default()),
    ));
    rows.push((
        "code commit",
        or_dash(lineage.code_commit.as_deref().unwrap_or_default()),
    ));
    if let Some(parent) = lineage.parent_version {
        rows.push(("parent version", parent.to_string()));
    }
    if let Some(trigger) = lineage.trigger_id {
        rows.push(("trigger run", trigger.to_string()));
    }
    if let Some(slice) = &lineage.slice {
        let edges: Vec<String> = slice.edges.iter().map(f64::to_string).collect();
        let bands = match edges.is_empty() {
            true => "each value".to_string(),
            false => format!("bands at {}", edges.join(", ")),
        };
        rows.push(("slice feature", format!("{} ({bands})", slice.feature)));
    }
    let dataset = match &lineage.dataset {
        Some(Dataset {
            uri,
            sha256: Some(hash),
        }) => format!("{uri} (sha256 {hash})"),
        Some(Dataset { uri, sha256: None }) => uri.clone(),
        None => "-".to_string(),
    };
    rows.push(("dataset", dataset));
    rows.push(("parameters", pairs(&lineage.parameters)));
    rows.push(("metrics", pairs(&lineage.metrics)));
    rows.push(("environment", pairs(&lineage.environment)));
    rows.push((
        "intended use",
        or_dash(lineage.intended_use.as_deref().unwrap_or_default()),
    ));
    rows.push((
        "limitations",
        or_dash(lineage.limitations.as_deref().unwrap_or_default()),
    ));
    key_values(&rows)
}

/// One row per tensor, the key only on the first, so they read as one list.
pub(super) fn push_tensors<'a>(rows: &mut Vec<(&'a str, String)>, key: &'a str, tensors: &[TensorSpec]) {
    if tensors.is_empty() {
        rows.push((key, "-".to_string()));
        return;
    }
    for (index, tensor) in tensors.iter().enumerate() {
        let shown_key = if index == 0 { key } else { "" };
        rows.push((shown_key, tensor_line(tensor)));
    }
}

/// `features FP32 [-1, 4]`: name, datatype and shape, `-1` a dynamic dim.
pub(super) fn tensor_line(tensor: &TensorSpec) -> String {
    let dims: Vec<String> = tensor.shape.iter().map(|dim| dim.to_string()).collect();
    format!("{} {} [{}]", tensor.name, tensor.datatype, dims.join(", "))
}
