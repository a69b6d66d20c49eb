//! `sluice profile create --outputs`: the version's answers on its training
//! data, profiled for prediction drift. The artifact is fetched from the
//! registry and run here, on tract (or ONNX Runtime when `ORT_DYLIB_PATH`
//! names it), in batches.

use std::collections::BTreeMap;

use sluice_registry_client::profile::{ColumnProfile, categorical_profile, numeric_profile, output_columns};
use sluice_registry_client::{ClientError, RegistryClient};

use sluice_gateway::backend::{BackendChoice, EngineOptions, Engines};
use sluice_gateway::model::LoadedModel;
use sluice_gateway::signature::TensorSpec;
use sluice_gateway::tensor::{DataType, Tensor, TensorData};

const BATCH_ROWS: usize = 1024;

/// The profile of each output column of `model` `version` run on `rows`
/// (cells by `header`): class outputs as categories, scores as bins.
pub async fn profile_outputs(
    client: &RegistryClient,
    (model, version): (&str, &str),
    (header, rows): (&[String], &[Vec<String>]),
    (bins, top): (usize, usize),
) -> Result<BTreeMap<String, ColumnProfile>, ClientError> {
    let found = client.get_version(model, version).await?;
    let artifact = client.download_artifact(&found.sha256).await?;
    let options = EngineOptions {
        ort_library_opt: std::env::var_os("ORT_DYLIB_PATH").map(Into::into),
        ..EngineOptions::default()
    };
    let loaded = LoadedModel::load(
        &Engines::new(&options),
        model,
        found.version,
        &artifact,
        BackendChoice::Auto,
        None,
    )
    .map_err(|err| ClientError::Local(format!("cannot run version {} here: {err}", found.version)))?;
    let mut columns: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut scores: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for batch in rows.chunks(BATCH_ROWS) {
        let inputs = batch_inputs(&loaded, header, batch)?;
        let outputs = loaded.run(inputs).map_err(|err| {
            ClientError::Local(format!("running version {} on the data: {err}", found.version))
        })?;
        for (spec, tensor) in loaded.signature.outputs.iter().zip(&outputs) {
            collect(spec, tensor, &mut columns, &mut scores);
        }
    }
    let mut profiles = BTreeMap::new();
    for (name, values) in columns {
        profiles.insert(name, categorical_profile(&values, top));
    }
    for (name, values) in scores {
        if let Some(profile) = numeric_profile(&values, bins) {
            profiles.insert(name, profile);
        }
    }
    Ok(profiles)
}

/// A batch's input tensors: one `[N, 1]` column per input named like a
/// column of the data, or, for a model with one `[N, K]` input, the `K`
/// columns of the data in order.
fn batch_inputs(
    model: &LoadedModel,
    header: &[String],
    batch: &[Vec<String>],
) -> Result<Vec<Tensor>, ClientError> {
    // An empty cell is missing, as in the features' profile: NaN to the model.
    let number = |row: &Vec<String>, index: usize| -> Result<f64, ClientError> {
        let cell = row.get(index).map(|cell| cell.trim()).unwrap_or_default();
        if cell.is_empty() {
            return Ok(f64::NAN);
        }
        cell.parse::<f64>()
            .map_err(|_| ClientError::Io(format!("column '{}': '{cell}' is not a number", header[index])))
    };
    let inputs = &model.signature.inputs;
    let mut tensors = Vec::with_capacity(inputs.len());
    for spec in inputs {
        let (shape, values) = match header.iter().position(|name| *name == spec.name) {
            Some(index) => {
                let values = batch
                    .iter()
                    .map(|row| number(row, index))
                    .collect::<Result<Vec<_>, _>>()?;
                let shape = if spec.shape.len() == 1 {
                    vec![batch.len()]
                } else {
                    vec![batch.len(), 1]
                };
                (shape, values)
            }
            None if inputs.len() == 1 && spec.shape.len() == 2 && spec.shape[1] == header.len() as i64 => {
                let mut values = Vec::with_capacity(batch.len() * header.len());
                for row in batch {
                    for index in 0..header.len() {
                        values.push(number(row, index)?);
                    }
                }
                (vec![batch.len(), header.len()], values)
            }
            None => {
                return Err(ClientError::Io(format!(
                    "the model's input '{}' is no column of the data (columns: {})",
                    spec.name,
                    header.join(", ")
                )));
            }
        };
        let data = match spec.datatype {
            DataType::F64 => TensorData::F64(values),
            DataType::I64 => TensorData::I64(values.iter().map(|&v| v as i64).collect()),
            DataType::I32 => TensorData::I32(values.iter().map(|&v| v as i32).collect()),
            DataType::F32 => TensorData::F32(values.iter().map(|&v| v as f32).collect()),
            other => {
                return Err(ClientError::Io(format!(
                    "the model's input '{}' is {}: only FP32, FP64, INT32 and INT64 inputs are profiled",
                    spec.name,
                    other.wire_name()
                )));
            }
        };
        tensors.push(Tensor { shape, data });
    }
    Ok(tensors)
}

/// Adds one output's rows, per column (named as the gateway counts them):
/// integers and booleans as classes (text), floats as scores.
fn collect(
    spec: &TensorSpec,
    tensor: &Tensor,
    classes: &mut BTreeMap<String, Vec<String>>,
    scores: &mut BTreeMap<String, Vec<f64>>,
) {
    let width = tensor.shape.iter().skip(1).product::<usize>().max(1);
    let names = output_columns(&spec.name, width);
    let floats: Option<Vec<f64>> = match &tensor.data {
        TensorData::F32(values) => Some(values.iter().map(|&v| f64::from(v)).collect()),
        TensorData::F64(values) => Some(values.clone()),
        _ => None,
    };
    match floats {
        Some(values) => {
            for (index, value) in values.into_iter().enumerate() {
                scores
                    .entry(names[index % width].clone())
                    .or_default()
                    .push(value);
            }
        }
        None => {
            let texts: Vec<String> = match &tensor.data {
                TensorData::I64(values) => values.iter().map(i64::to_string).collect(),
                TensorData::I32(values) => values.iter().map(i32::to_string).collect(),
                TensorData::Bool(values) => values.iter().map(|&v| u8::from(v).to_string()).collect(),
                _ => Vec::new(),
            };
            for (index, text) in texts.into_iter().enumerate() {
                classes
                    .entry(names[index % width].clone())
                    .or_default()
                    .push(text);
            }
        }
    }
}
