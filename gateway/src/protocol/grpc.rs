//! The Open Inference Protocol's gRPC messages (`sluice_proto::inference`)
//! to and from the gateway's tensors. A `ModelInferRequest` goes through
//! the same checks as a JSON body ([`request::place`], [`request::gathered`],
//! the same output and timeout parameters): only where its values sit
//! differs, in `raw_input_contents` (what tritonclient sends) or in the
//! typed `contents`. Answers carry every output in `raw_output_contents`,
//! as Triton's do.

use std::collections::HashMap;

use sluice_proto::inference::infer_parameter::ParameterChoice;
use sluice_proto::inference::model_infer_request::InferInputTensor;
use sluice_proto::inference::model_infer_response::InferOutputTensor;
use sluice_proto::inference::model_metadata_response::TensorMetadata;
use sluice_proto::inference::{
    self as wire, InferParameter, InferTensorContents, ModelInferRequest, ModelInferResponse,
    ModelMetadataResponse,
};

use super::request::{self, InferRequest, OutputWire, Parameters, Placed, RequestedOutput};
use crate::error::{Error, Result};
use crate::model::LoadedModel;
use crate::signature::{Signature, TensorSpec};
use crate::tensor::{DataType, Tensor, TensorData};

/// Checks `message` against `signature`: the request ready to run, its
/// inputs in signature order.
pub fn decode(message: ModelInferRequest, signature: &Signature) -> Result<InferRequest> {
    let ModelInferRequest {
        id,
        parameters,
        inputs,
        outputs,
        raw_input_contents,
        ..
    } = message;
    // Triton's rule: raw contents are all or nothing, one per input, in order.
    if !raw_input_contents.is_empty() && raw_input_contents.len() != inputs.len() {
        return Err(Error::bad_request(format!(
            "raw_input_contents holds {} tensors for {} inputs: give one per input, in the order of 'inputs', or none",
            raw_input_contents.len(),
            inputs.len()
        )));
    }
    let mut raws = raw_input_contents.into_iter();
    let mut slots: Vec<Option<Tensor>> = vec![None; signature.inputs.len()];
    for input in inputs {
        let InferInputTensor {
            name,
            datatype,
            shape,
            contents,
            ..
        } = input;
        let Placed {
            index,
            datatype,
            shape,
            count,
        } = request::place(signature, &slots, &name, &datatype, &shape)?;
        let data = match (raws.next(), contents) {
            (Some(_), Some(contents)) if !is_empty(&contents) => {
                return Err(Error::bad_request(format!(
                    "input '{name}': give its values in raw_input_contents or in contents, not both"
                )));
            }
            (Some(raw), _) => from_raw(&raw, datatype, count, &name)?,
            (None, Some(contents)) => from_contents(contents, datatype, count, &name)?,
            (None, None) if count == 0 => TensorData::zeros(datatype, 0),
            (None, None) => {
                return Err(Error::bad_request(format!(
                    "input '{name}': expected its values in raw_input_contents or contents"
                )));
            }
        };
        slots[index] = Some(Tensor { shape, data });
    }
    let inputs = request::gathered(signature, slots)?;
    let parameters = json_parameters(&parameters, "request")?;
    let asked: Vec<OutputWire> = outputs
        .into_iter()
        .map(|output| {
            let owner = format!("output '{}'", output.name);
            Ok(OutputWire {
                parameters: Some(json_parameters(&output.parameters, &owner)?),
                name: output.name,
            })
        })
        .collect::<Result<_>>()?;
    let mut outputs = request::requested_outputs(Some(&parameters), Some(asked), signature)?;
    // Every output travels raw: this bounds the answer's size by its bytes.
    for output in &mut outputs {
        output.binary = true;
    }
    Ok(InferRequest {
        id: Some(id).filter(|id| !id.is_empty()),
        timeout_opt: request::timeout(Some(&parameters))?,
        inputs,
        outputs,
    })
}

/// The answer to `wanted` of `tensors` (every output of the model, in
/// signature order), each output's values in `raw_output_contents`.
pub fn encode(
    model: &LoadedModel,
    id: Option<&str>,
    wanted: &[RequestedOutput],
    tensors: &[Tensor],
) -> ModelInferResponse {
    let mut outputs = Vec::with_capacity(wanted.len());
    let mut raw = Vec::with_capacity(wanted.len());
    for output in wanted {
        let spec = &model.signature.outputs[output.index];
        let classified_opt = output
            .classes_opt
            .map(|count| super::response::classify(&tensors[output.index], count, &spec.labels));
        let tensor = classified_opt.as_ref().unwrap_or(&tensors[output.index]);
        let mut bytes = Vec::with_capacity(tensor.data.wire_size());
        tensor.data.write_le_bytes(&mut bytes);
        raw.push(bytes.into());
        outputs.push(InferOutputTensor {
            name: spec.name.clone(),
            datatype: tensor.datatype().wire_name().to_string(),
            shape: tensor.shape.iter().map(|&dim| dim as i64).collect(),
            parameters: HashMap::new(),
            contents: None,
        });
    }
    ModelInferResponse {
        model_name: model.name.clone(),
        model_version: model.version_label.clone(),
        id: id.unwrap_or_default().to_string(),
        parameters: HashMap::new(),
        outputs,
        raw_output_contents: raw,
    }
}

/// The model's metadata, listing every live version of its endpoint.
pub fn metadata(model: &LoadedModel, versions: Vec<String>) -> ModelMetadataResponse {
    let describe = |spec: &TensorSpec| TensorMetadata {
        name: spec.name.clone(),
        datatype: spec.datatype.wire_name().to_string(),
        shape: spec.shape.clone(),
    };
    ModelMetadataResponse {
        name: model.name.clone(),
        versions,
        platform: "onnx".to_string(),
        inputs: model.signature.inputs.iter().map(describe).collect(),
        outputs: model.signature.outputs.iter().map(describe).collect(),
    }
}

/// Triton's model configuration, as far as an ONNX signature tells it:
/// what `perf_analyzer` and tritonclient read at start-up. Shapes are
/// whole (`max_batch_size` 0), dynamic dims -1, as Triton writes a model
/// that does not batch on its own.
pub fn config(model: &LoadedModel) -> wire::ModelConfig {
    wire::ModelConfig {
        name: model.name.clone(),
        platform: "onnxruntime_onnx".to_string(),
        backend: model.backend.name().to_string(),
        max_batch_size: 0,
        input: model
            .signature
            .inputs
            .iter()
            .map(|spec| wire::ModelInput {
                name: spec.name.clone(),
                data_type: config_type(spec.datatype) as i32,
                dims: spec.shape.clone(),
                ..Default::default()
            })
            .collect(),
        output: model
            .signature
            .outputs
            .iter()
            .map(|spec| wire::ModelOutput {
                name: spec.name.clone(),
                data_type: config_type(spec.datatype) as i32,
                dims: spec.shape.clone(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

fn config_type(datatype: DataType) -> wire::DataType {
    match datatype {
        DataType::Bool => wire::DataType::TypeBool,
        DataType::U8 => wire::DataType::TypeUint8,
        DataType::U16 => wire::DataType::TypeUint16,
        DataType::U32 => wire::DataType::TypeUint32,
        DataType::U64 => wire::DataType::TypeUint64,
        DataType::I8 => wire::DataType::TypeInt8,
        DataType::I16 => wire::DataType::TypeInt16,
        DataType::I32 => wire::DataType::TypeInt32,
        DataType::I64 => wire::DataType::TypeInt64,
        DataType::F16 => wire::DataType::TypeFp16,
        DataType::F32 => wire::DataType::TypeFp32,
        DataType::F64 => wire::DataType::TypeFp64,
        DataType::Bytes => wire::DataType::TypeString,
    }
}

/// `count` elements of `datatype` from little-endian bytes (`BYTES`: each
/// a 4-byte length and its bytes, as tritonclient serializes them).
fn from_raw(raw: &[u8], datatype: DataType, count: usize, name: &str) -> Result<TensorData> {
    if datatype == DataType::Bytes {
        return TensorData::bytes_from_wire(raw, count).map_err(|err| {
            Error::bad_request(format!("input '{name}': BYTES in raw_input_contents: {err}"))
        });
    }
    let expected = count.checked_mul(datatype.size_of());
    if expected != Some(raw.len()) {
        return Err(Error::bad_request(format!(
            "input '{name}': raw_input_contents holds {} bytes but its shape takes {count} {datatype} elements ({})",
            raw.len(),
            expected.map_or_else(
                || "more than can be addressed".to_string(),
                |bytes| format!("{bytes} bytes")
            )
        )));
    }
    Ok(TensorData::from_le_bytes(datatype, raw))
}

/// `count` elements from the typed field `datatype` uses (FP16 has none:
/// it travels raw).
fn from_contents(
    contents: InferTensorContents,
    datatype: DataType,
    count: usize,
    name: &str,
) -> Result<TensorData> {
    fn narrow<T: TryFrom<W>, W: Copy + std::fmt::Display>(
        values: Vec<W>,
        name: &str,
        datatype: DataType,
    ) -> Result<Vec<T>> {
        values
            .into_iter()
            .map(|value| {
                T::try_from(value).map_err(|_| {
                    Error::bad_request(format!("input '{name}': {value} does not fit in {datatype}"))
                })
            })
            .collect()
    }
    let (data, field) = match datatype {
        DataType::Bool => (TensorData::Bool(contents.bool_contents), "bool_contents"),
        DataType::I8 => (
            TensorData::I8(narrow(contents.int_contents, name, datatype)?),
            "int_contents",
        ),
        DataType::I16 => (
            TensorData::I16(narrow(contents.int_contents, name, datatype)?),
            "int_contents",
        ),
        DataType::I32 => (TensorData::I32(contents.int_contents), "int_contents"),
        DataType::I64 => (TensorData::I64(contents.int64_contents), "int64_contents"),
        DataType::U8 => (
            TensorData::U8(narrow(contents.uint_contents, name, datatype)?),
            "uint_contents",
        ),
        DataType::U16 => (
            TensorData::U16(narrow(contents.uint_contents, name, datatype)?),
            "uint_contents",
        ),
        DataType::U32 => (TensorData::U32(contents.uint_contents), "uint_contents"),
        DataType::U64 => (TensorData::U64(contents.uint64_contents), "uint64_contents"),
        DataType::F32 => (TensorData::F32(contents.fp32_contents), "fp32_contents"),
        DataType::F64 => (TensorData::F64(contents.fp64_contents), "fp64_contents"),
        DataType::Bytes => (TensorData::Bytes(contents.bytes_contents), "bytes_contents"),
        DataType::F16 => {
            return Err(Error::bad_request(format!(
                "input '{name}': FP16 has no typed contents: send it in raw_input_contents"
            )));
        }
    };
    if data.len() != count {
        // JSON's words: the same mistake reads the same in both protocols.
        return Err(Error::bad_request(format!(
            "input '{name}': shape needs {count} elements, data has {} (in contents.{field})",
            data.len()
        )));
    }
    Ok(data)
}

fn is_empty(contents: &InferTensorContents) -> bool {
    contents == &InferTensorContents::default()
}

/// gRPC parameters as the JSON parameters the HTTP form has, so both are
/// read by the same code.
fn json_parameters(parameters: &HashMap<String, InferParameter>, owner: &str) -> Result<Parameters> {
    parameters
        .iter()
        .map(|(key, parameter)| {
            let value = match &parameter.parameter_choice {
                Some(ParameterChoice::BoolParam(flag)) => serde_json::Value::Bool(*flag),
                Some(ParameterChoice::Int64Param(number)) => (*number).into(),
                Some(ParameterChoice::Uint64Param(number)) => (*number).into(),
                Some(ParameterChoice::DoubleParam(number)) => serde_json::Number::from_f64(*number)
                    .map(serde_json::Value::Number)
                    .ok_or_else(|| {
                        Error::bad_request(format!("{owner}: parameters.{key} is {number}, not a number"))
                    })?,
                Some(ParameterChoice::StringParam(text)) => text.clone().into(),
                None => serde_json::Value::Null,
            };
            Ok((key.clone(), value))
        })
        .collect()
}

#[cfg(test)]
mod tests;
