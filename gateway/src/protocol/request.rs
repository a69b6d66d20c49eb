//! Decodes an inference request, JSON or JSON + binary tensors, and checks it
//! against the model's signature before anything reaches an engine.

use serde::Deserialize;
use serde_json::value::RawValue;

use super::json;
use crate::error::{Error, Result};
use crate::signature::{Signature, TensorSpec};
use crate::tensor::{DataType, Tensor, TensorData};
use sluice_registry_client::limits::quote;

pub(super) type Parameters = serde_json::Map<String, serde_json::Value>;

#[derive(Deserialize)]
struct RequestWire<'a> {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    parameters: Option<Parameters>,
    #[serde(borrow)]
    inputs: Vec<InputWire<'a>>,
    #[serde(default)]
    outputs: Option<Vec<OutputWire>>,
}

#[derive(Deserialize)]
struct InputWire<'a> {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    #[serde(default)]
    parameters: Option<Parameters>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
}

#[derive(Deserialize)]
pub(super) struct OutputWire {
    pub name: String,
    #[serde(default)]
    pub parameters: Option<Parameters>,
}

/// A request that passed every check: inputs in signature order.
#[derive(Debug)]
pub struct InferRequest {
    pub id: Option<String>,
    /// `parameters.timeout`: how long the request may wait before it runs
    /// (Triton's, in microseconds; 0 or absent: no limit).
    pub timeout_opt: Option<std::time::Duration>,
    pub inputs: Vec<Tensor>,
    pub outputs: Vec<RequestedOutput>,
}

/// One output to answer with, by index into the signature's outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestedOutput {
    pub index: usize,
    /// Answer as raw bytes after the JSON header (binary tensor extension).
    pub binary: bool,
    /// Triton's classification extension (`"classification": k`): the top
    /// `k` classes of each row as `BYTES` `"score:index[:label]"`.
    pub classes_opt: Option<usize>,
}

/// `header_length` is `Inference-Header-Content-Length`: when present the body
/// is that many bytes of JSON followed by binary tensor data.
pub fn decode(body: &[u8], header_length: Option<usize>, signature: &Signature) -> Result<InferRequest> {
    let (header, mut binary) = match header_length {
        None => (body, &[][..]),
        Some(length) if length > body.len() => {
            return Err(Error::bad_request(format!(
                "Inference-Header-Content-Length is {length} but the body has only {} bytes",
                body.len()
            )));
        }
        Some(length) => body.split_at(length),
    };
    let wire: RequestWire<'_> = serde_json::from_slice(header)
        .map_err(|err| Error::bad_request(format!("invalid inference request: {err}")))?;

    let mut slots: Vec<Option<Tensor>> = vec![None; signature.inputs.len()];
    for input in wire.inputs {
        let name = input.name.as_str();
        let Placed {
            index,
            datatype,
            shape,
            count,
        } = place(signature, &slots, name, &input.datatype, &input.shape)?;
        let binary_size = binary_data_size(input.parameters.as_ref(), name)?;
        let data = match (input.data, binary_size) {
            (Some(_), Some(_)) => {
                return Err(Error::bad_request(format!(
                    "input '{name}': give either 'data' or parameters.binary_data_size, not both"
                )));
            }
            (Some(raw), None) => json::parse_data(raw, datatype, count, name)?,
            (None, Some(size)) => {
                if header_length.is_none() {
                    return Err(Error::bad_request(format!(
                        "input '{name}': binary_data_size needs the Inference-Header-Content-Length header"
                    )));
                }
                let (chunk, rest) = take_binary(binary, size, datatype, count, name)?;
                binary = rest;
                match datatype {
                    DataType::Bytes => TensorData::bytes_from_wire(chunk, count)
                        .map_err(|err| Error::bad_request(format!("input '{name}': BYTES data: {err}")))?,
                    _ => TensorData::from_le_bytes(datatype, chunk),
                }
            }
            (None, None) => {
                return Err(Error::bad_request(format!(
                    "input '{name}': expected 'data' or parameters.binary_data_size"
                )));
            }
        };
        slots[index] = Some(Tensor { shape, data });
    }
    if !binary.is_empty() {
        return Err(Error::bad_request(format!(
            "{} bytes of binary data follow the JSON header that no input's binary_data_size claims",
            binary.len()
        )));
    }
    let inputs = gathered(signature, slots)?;
    let outputs = requested_outputs(wire.parameters.as_ref(), wire.outputs, signature)?;
    let timeout_opt = timeout(wire.parameters.as_ref())?;
    Ok(InferRequest {
        id: wire.id,
        timeout_opt,
        inputs,
        outputs,
    })
}

/// Where an input goes in the signature's order, once its name, datatype
/// and shape are checked against it: what every wire form shares.
pub(super) struct Placed {
    pub index: usize,
    pub datatype: DataType,
    pub shape: Vec<usize>,
    /// Elements its values must hold.
    pub count: usize,
}

/// Checks one input's head against `signature`, given the inputs placed
/// so far (`slots`, in signature order).
pub(super) fn place(
    signature: &Signature,
    slots: &[Option<Tensor>],
    name: &str,
    datatype: &str,
    shape: &[i64],
) -> Result<Placed> {
    let index = signature.input_index(name).ok_or_else(|| {
        Error::bad_request(format!(
            "unknown input '{}': the model takes {}",
            quote(name),
            names(signature.inputs.iter().map(|spec| spec.name.as_str()))
        ))
    })?;
    if slots[index].is_some() {
        return Err(Error::bad_request(format!(
            "input '{name}' is given more than once"
        )));
    }
    let spec = &signature.inputs[index];
    let datatype = DataType::from_wire_name(datatype).ok_or_else(|| {
        Error::bad_request(format!(
            "input '{name}': model expects datatype {}, got unsupported datatype '{}'",
            spec.datatype,
            quote(datatype)
        ))
    })?;
    let (shape, count) = spec.check_request(datatype, shape)?;
    Ok(Placed {
        index,
        datatype,
        shape,
        count,
    })
}

/// The inputs in signature order, once every one is there and the dims
/// they share agree.
pub(super) fn gathered(signature: &Signature, slots: Vec<Option<Tensor>>) -> Result<Vec<Tensor>> {
    let missing: Vec<&str> = slots
        .iter()
        .zip(&signature.inputs)
        .filter(|(slot, _)| slot.is_none())
        .map(|(_, spec)| spec.name.as_str())
        .collect();
    if !missing.is_empty() {
        return Err(Error::bad_request(format!(
            "missing input {}",
            names(missing.into_iter())
        )));
    }
    let inputs: Vec<Tensor> = slots.into_iter().flatten().collect();
    let shapes: Vec<&[usize]> = inputs.iter().map(|tensor| tensor.shape.as_slice()).collect();
    signature.check_shared_dims(&shapes)?;
    Ok(inputs)
}

fn take_binary<'a>(
    binary: &'a [u8],
    size: usize,
    datatype: DataType,
    count: usize,
    name: &str,
) -> Result<(&'a [u8], &'a [u8])> {
    // A BYTES element is its length and its bytes: at least 4 bytes each,
    // checked element by element once split off.
    let expected = count.checked_mul(datatype.size_of());
    let fits = match datatype {
        DataType::Bytes => expected.is_some_and(|least| size >= least),
        _ => expected == Some(size),
    };
    if !fits {
        return Err(Error::bad_request(format!(
            "input '{name}': binary_data_size is {size} bytes but {count} {datatype} elements take {}",
            expected.map_or_else(
                || "more than can be addressed".to_string(),
                |bytes| match datatype {
                    DataType::Bytes => format!("at least {bytes} bytes (a 4-byte length each)"),
                    _ => format!("{bytes} bytes"),
                }
            )
        )));
    }
    if size > binary.len() {
        return Err(Error::bad_request(format!(
            "input '{name}': binary_data_size is {size} bytes but only {} bytes of binary data remain",
            binary.len()
        )));
    }
    Ok(binary.split_at(size))
}

pub(super) fn requested_outputs(
    parameters: Option<&Parameters>,
    outputs: Option<Vec<OutputWire>>,
    signature: &Signature,
) -> Result<Vec<RequestedOutput>> {
    let binary_default = bool_parameter(parameters, "binary_data_output", "request")?.unwrap_or(false);
    let Some(wanted) = outputs.filter(|list| !list.is_empty()) else {
        return Ok((0..signature.outputs.len())
            .map(|index| RequestedOutput {
                index,
                binary: binary_default,
                classes_opt: None,
            })
            .collect());
    };
    // Each output once: a list naming one many times would otherwise
    // multiply the answer, built whole in memory, by its length.
    let mut named = vec![false; signature.outputs.len()];
    wanted
        .into_iter()
        .map(|output| {
            let name = output.name.as_str();
            let index = signature.output_index(name).ok_or_else(|| {
                Error::bad_request(format!(
                    "unknown output '{}': the model gives {}",
                    quote(name),
                    names(signature.outputs.iter().map(|spec| spec.name.as_str()))
                ))
            })?;
            if std::mem::replace(&mut named[index], true) {
                return Err(Error::bad_request(format!(
                    "output '{name}' is named more than once in 'outputs': name each output at most once"
                )));
            }
            let parameters = output.parameters.as_ref();
            let classes_opt = classification(parameters, &signature.outputs[index])?;
            let binary = bool_parameter(parameters, "binary_data", &format!("output '{name}'"))?
                .unwrap_or(binary_default);
            Ok(RequestedOutput {
                index,
                binary,
                classes_opt,
            })
        })
        .collect()
}

/// `"classification": k` on an output of scores, `[N, K]` or `[K]`, of a
/// numeric datatype; `0` asks for no classification, as in Triton.
fn classification(parameters: Option<&Parameters>, spec: &TensorSpec) -> Result<Option<usize>> {
    let Some(value) = parameters.and_then(|p| p.get("classification")) else {
        return Ok(None);
    };
    let name = &spec.name;
    let count = value
        .as_u64()
        .and_then(|count| usize::try_from(count).ok())
        .ok_or_else(|| {
            Error::bad_request(format!(
                "output '{name}': classification must be a count of classes (a whole number), got {value}"
            ))
        })?;
    if count == 0 {
        return Ok(None);
    }
    if spec.datatype == DataType::Bytes
        || spec.datatype == DataType::Bool
        || !(1..=2).contains(&spec.shape.len())
    {
        return Err(Error::bad_request(format!(
            "output '{name}' is {} {}: classification takes scores shaped [N, K] or [K]",
            spec.datatype,
            crate::signature::format_shape(&spec.shape)
        )));
    }
    Ok(Some(count))
}

fn binary_data_size(parameters: Option<&Parameters>, name: &str) -> Result<Option<usize>> {
    let Some(value) = parameters.and_then(|p| p.get("binary_data_size")) else {
        return Ok(None);
    };
    value
        .as_u64()
        .and_then(|size| usize::try_from(size).ok())
        .map(Some)
        .ok_or_else(|| {
            Error::bad_request(format!(
                "input '{name}': parameters.binary_data_size must be a non-negative integer, got {value}"
            ))
        })
}

pub(super) fn timeout(parameters: Option<&Parameters>) -> Result<Option<std::time::Duration>> {
    let Some(value) = parameters.and_then(|p| p.get("timeout")) else {
        return Ok(None);
    };
    match value.as_u64() {
        Some(0) => Ok(None),
        Some(micros) => Ok(Some(std::time::Duration::from_micros(micros))),
        None => Err(Error::bad_request(format!(
            "request: parameters.timeout must be a non-negative integer of microseconds, got {value}"
        ))),
    }
}

fn bool_parameter(parameters: Option<&Parameters>, key: &str, owner: &str) -> Result<Option<bool>> {
    match parameters.and_then(|p| p.get(key)) {
        None => Ok(None),
        Some(serde_json::Value::Bool(flag)) => Ok(Some(*flag)),
        Some(other) => Err(Error::bad_request(format!(
            "{owner}: parameters.{key} must be true or false, got {other}"
        ))),
    }
}

fn names<'a>(list: impl Iterator<Item = &'a str>) -> String {
    list.map(|name| format!("'{name}'"))
        .collect::<Vec<_>>()
        .join(", ")
}
