//! One copy of a model's weights for all of its ONNX Runtime sessions.
//!
//! `ort::Session::run` takes `&mut self`, so a model runs concurrently on a
//! pool of sessions, and ONNX Runtime gives each session its own copy of
//! every initializer (a pre-packed one for GEMM weights). A model on N
//! sessions held N copies of its weights.
//!
//! Here the model's large initializers are decoded once, and each session
//! is handed the same tensor with `AddInitializer`: on the CPU, ONNX Runtime
//! reads such a tensor in place. Pre-packing stays off for these sessions,
//! since a packed buffer is made per session (ONNX Runtime's
//! pre-packed-weights container did not share the benchmark MLP's packed
//! Gemm weights with 1.32), and so does the memory arena, which keeps each
//! session's peak activations for the life of the session.
//! `benches/RESULTS.md` has what each choice saves and costs.

use tract_onnx::pb;

use crate::backend::onnx;
use crate::error::Result;
use crate::tensor::{DataType, Tensor, TensorData};

/// Initializers smaller than this stay in each session: sharing them saves
/// nothing worth the bookkeeping.
const SHARED_MIN_BYTES: usize = 4096;

/// `TensorProto.DataLocation.EXTERNAL`: the data lives in another file.
const EXTERNAL: i32 = 1;

/// The model's initializers worth sharing, by name. One that is not decoded
/// here (stored outside the file, in a type without a plain layout, or with
/// data that does not fit its dims) is left to each session, to load or
/// refuse as ONNX Runtime would without sharing.
pub(super) fn shared_initializers(artifact: &[u8]) -> Result<Vec<(String, Tensor)>> {
    let proto = onnx::decode(artifact)?;
    let Some(graph) = proto.graph.as_ref() else {
        return Ok(Vec::new());
    };
    // An initializer that is also a graph input is a default the caller may
    // override, not a constant.
    let inputs: std::collections::HashSet<&str> =
        graph.input.iter().map(|input| input.name.as_str()).collect();
    Ok(graph
        .initializer
        .iter()
        .filter(|tensor| !inputs.contains(tensor.name.as_str()))
        .filter_map(|tensor| Some((tensor.name.clone(), decode(tensor)?)))
        .collect())
}

/// The initializer as a tensor, when it is large enough to share and its
/// data is inline and fits its dims.
fn decode(tensor: &pb::TensorProto) -> Option<Tensor> {
    if tensor.data_location == Some(EXTERNAL) || tensor.segment.is_some() {
        return None;
    }
    let datatype =
        DataType::from_onnx_code(tensor.data_type).filter(|datatype| *datatype != DataType::Bytes)?;
    let shape = tensor
        .dims
        .iter()
        .map(|&dim| usize::try_from(dim).ok())
        .collect::<Option<Vec<usize>>>()?;
    let count = shape
        .iter()
        .try_fold(1usize, |count, &dim| count.checked_mul(dim))?;
    if count.checked_mul(datatype.size_of())? < SHARED_MIN_BYTES {
        return None;
    }
    let data = if tensor.raw_data.is_empty() {
        typed_field(tensor, datatype)?
    } else if tensor.raw_data.len() == count * datatype.size_of() {
        TensorData::from_le_bytes(datatype, &tensor.raw_data)
    } else {
        return None;
    };
    (data.len() == count).then_some(Tensor { shape, data })
}

/// Data kept in the typed fields (`float_data` and kin) rather than
/// `raw_data`: the common ones; the rest stay with each session.
fn typed_field(tensor: &pb::TensorProto, datatype: DataType) -> Option<TensorData> {
    Some(match datatype {
        DataType::F32 => TensorData::F32(tensor.float_data.clone()),
        DataType::F64 => TensorData::F64(tensor.double_data.clone()),
        DataType::I64 => TensorData::I64(tensor.int64_data.clone()),
        DataType::I32 => TensorData::I32(tensor.int32_data.clone()),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    fn initializer(name: &str, dims: &[i64], data_type: i32) -> pb::TensorProto {
        pb::TensorProto {
            name: name.to_string(),
            dims: dims.to_vec(),
            data_type,
            ..pb::TensorProto::default()
        }
    }

    fn model_with(initializers: Vec<pb::TensorProto>, inputs: &[&str]) -> Vec<u8> {
        pb::ModelProto {
            graph: Some(pb::GraphProto {
                initializer: initializers,
                input: inputs
                    .iter()
                    .map(|name| pb::ValueInfoProto {
                        name: name.to_string(),
                        ..pb::ValueInfoProto::default()
                    })
                    .collect(),
                ..pb::GraphProto::default()
            }),
            ..pb::ModelProto::default()
        }
        .encode_to_vec()
    }

    #[test]
    fn large_inline_initializers_are_shared_as_the_file_holds_them() {
        let mut raw = initializer("raw", &[32, 32], 1);
        raw.raw_data = (0..1024).flat_map(|i| (i as f32).to_le_bytes()).collect();
        let mut typed = initializer("typed", &[1024], 7);
        typed.int64_data = (0..1024).collect();
        let mut small = initializer("small", &[16], 1);
        small.float_data = vec![1.0; 16];
        let mut external = initializer("external", &[2048], 1);
        external.data_location = Some(EXTERNAL);
        let mut short = initializer("short", &[2048], 1);
        short.raw_data = vec![0; 100];
        let mut overridable = initializer("overridable", &[2048], 1);
        overridable.float_data = vec![0.5; 2048];
        let artifact = model_with(
            vec![raw, typed, small, external, short, overridable],
            &["overridable"],
        );

        let shared = shared_initializers(&artifact).unwrap();
        let names: Vec<&str> = shared.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(names, ["raw", "typed"]);
        assert_eq!(shared[0].1.shape, [32, 32]);
        let TensorData::F32(values) = &shared[0].1.data else {
            panic!("FP32 expected")
        };
        assert_eq!(values[1023], 1023.0);
        assert_eq!(shared[1].1.data, TensorData::I64((0..1024).collect()));
    }

    #[test]
    fn the_digits_model_shares_its_weight_matrix() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../models/repository/digits/1/model.onnx"
        );
        let shared = shared_initializers(&std::fs::read(path).unwrap()).unwrap();
        let names: Vec<&str> = shared.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(names, ["coefficient"]);
        assert_eq!(shared[0].1.shape, [64, 64]);
    }
}
