//! Encodes an inference response: JSON, or a JSON header followed by raw
//! little-endian tensors for outputs asked for as binary.

use serde::Serialize;
use serde::ser::Serializer;

use super::request::RequestedOutput;
use crate::model::LoadedModel;
use crate::tensor::{Tensor, TensorData};

/// A response body and, when any output is binary, the JSON header's length
/// for `Inference-Header-Content-Length`.
pub struct EncodedResponse {
    pub body: Vec<u8>,
    pub header_length_opt: Option<usize>,
}

#[derive(Serialize)]
struct ResponseWire<'a> {
    model_name: &'a str,
    model_version: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    outputs: Vec<OutputWire<'a>>,
}

#[derive(Serialize)]
struct OutputWire<'a> {
    name: &'a str,
    datatype: &'static str,
    shape: &'a [usize],
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<BinaryParameters>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<DataWire<'a>>,
}

#[derive(Serialize)]
struct BinaryParameters {
    binary_data_size: usize,
}

/// Serializes tensor data as a flat JSON array without an intermediate copy.
struct DataWire<'a>(&'a TensorData);

impl Serialize for DataWire<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            // JSON has no half floats: FP16 values go out as their exact f32.
            TensorData::F16(values) => serializer.collect_seq(values.iter().map(|value| value.to_f32())),
            TensorData::Bool(values) => serializer.collect_seq(values),
            TensorData::U8(values) => serializer.collect_seq(values),
            TensorData::U16(values) => serializer.collect_seq(values),
            TensorData::U32(values) => serializer.collect_seq(values),
            TensorData::U64(values) => serializer.collect_seq(values),
            TensorData::I8(values) => serializer.collect_seq(values),
            TensorData::I16(values) => serializer.collect_seq(values),
            TensorData::I32(values) => serializer.collect_seq(values),
            TensorData::I64(values) => serializer.collect_seq(values),
            TensorData::F32(values) => serializer.collect_seq(values),
            TensorData::F64(values) => serializer.collect_seq(values),
        }
    }
}

/// `tensors` are every output of the model, in signature order.
pub fn encode(
    model: &LoadedModel,
    id: Option<&str>,
    wanted: &[RequestedOutput],
    tensors: &[Tensor],
) -> EncodedResponse {
    let mut binary_tail = Vec::new();
    let outputs = wanted
        .iter()
        .map(|output| {
            let tensor = &tensors[output.index];
            let mut wire = OutputWire {
                name: &model.signature.outputs[output.index].name,
                datatype: tensor.datatype().wire_name(),
                shape: &tensor.shape,
                parameters: None,
                data: None,
            };
            if output.binary {
                let before = binary_tail.len();
                tensor.data.write_le_bytes(&mut binary_tail);
                wire.parameters = Some(BinaryParameters {
                    binary_data_size: binary_tail.len() - before,
                });
            } else {
                wire.data = Some(DataWire(&tensor.data));
            }
            wire
        })
        .collect();
    let response = ResponseWire {
        model_name: &model.name,
        model_version: &model.version_label,
        id,
        outputs,
    };
    let mut body = serde_json::to_vec(&response).expect("response wire types always serialize");
    let header_length_opt = wanted.iter().any(|output| output.binary).then_some(body.len());
    body.extend_from_slice(&binary_tail);
    EncodedResponse {
        body,
        header_length_opt,
    }
}
