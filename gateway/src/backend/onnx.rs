//! Reads a model's signature straight from the ONNX protobuf, so both engines
//! (and the metadata endpoint) agree on names, datatypes and shapes; and
//! unwraps skl2onnx's `ZipMap` outputs ([`prepare`]) so that every engine
//! sees tensors.

use std::borrow::Cow;
use std::collections::HashSet;

use prost::Message;

use tract_onnx::pb::{self, tensor_shape_proto::dimension, type_proto};
use tract_onnx::prelude::Framework;

use crate::error::{Error, Result};
use crate::signature::{Signature, TensorSpec};
use crate::tensor::DataType;

/// The symbol of an unnamed leading dim where every input has a dynamic
/// one: skl2onnx leaves the batch unnamed, and every input's batch must agree.
pub const BATCH_SYMBOL: &str = "N";

/// Decodes the protobuf; a file that is not ONNX fails here with a clear error.
pub fn decode(artifact: &[u8]) -> Result<pb::ModelProto> {
    let proto = tract_onnx::onnx()
        .proto_model_for_read(&mut &artifact[..])
        .map_err(|err| Error::Load(format!("not a valid ONNX model: {err}")))?;
    if proto.graph.is_none() {
        return Err(Error::Load("not a valid ONNX model: it has no graph".to_string()));
    }
    Ok(proto)
}

pub fn read_signature(artifact: &[u8]) -> Result<Signature> {
    Ok(prepare(artifact)?.1)
}

/// The artifact the engines load and its signature. A graph output that
/// skl2onnx's `ZipMap` turns into a sequence of maps (its default for every
/// classifier) is served as the FP32 `[N, K]` tensor ZipMap was given, in
/// class order, with the class labels on its spec: the `ZipMap` node becomes
/// an `Identity`, and the graph is encoded again. Any other graph is
/// loaded as it came.
pub fn prepare(artifact: &[u8]) -> Result<(Cow<'_, [u8]>, Signature)> {
    let mut proto = decode(artifact)?;
    let labels = unwrap_zipmaps(&mut proto)?;
    if labels.is_empty() {
        return Ok((Cow::Borrowed(artifact), signature_of(&proto)?));
    }
    let mut signature = signature_of(&proto)?;
    for (name, classes) in labels {
        if let Some(index) = signature.output_index(&name) {
            signature.outputs[index].labels = classes;
        }
    }
    Ok((Cow::Owned(proto.encode_to_vec()), signature))
}

/// Replaces each `ZipMap` that writes a graph output by an `Identity` of its
/// score tensor, gives the output that tensor's type (FP32 `[N, K]`), and
/// returns each output's class labels (integer labels as their text).
fn unwrap_zipmaps(proto: &mut pb::ModelProto) -> Result<Vec<(String, Vec<String>)>> {
    let Some(graph) = proto.graph.as_mut() else {
        return Ok(Vec::new());
    };
    let mut unwrapped = Vec::new();
    for node in graph.node.iter_mut().filter(|node| node.op_type == "ZipMap") {
        let Some(output) = node.output.first().cloned() else {
            continue;
        };
        let Some(graph_output) = graph.output.iter_mut().find(|info| info.name == output) else {
            continue;
        };
        let classes: Vec<String> = node
            .attribute
            .iter()
            .find_map(|attribute| match attribute.name.as_str() {
                "classlabels_strings" => Some(
                    attribute
                        .strings
                        .iter()
                        .map(|label| String::from_utf8_lossy(label).into_owned())
                        .collect(),
                ),
                "classlabels_int64s" => Some(attribute.ints.iter().map(i64::to_string).collect()),
                _ => None,
            })
            .ok_or_else(|| Error::Load(format!("ZipMap '{output}' names no class labels")))?;
        node.op_type = "Identity".into();
        node.domain = String::new();
        node.attribute.clear();
        let dims = [None, Some(classes.len() as i64)].map(|size| pb::tensor_shape_proto::Dimension {
            value: size.map(dimension::Value::DimValue),
            ..Default::default()
        });
        graph_output.r#type = Some(pb::TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: 1,
                shape: Some(pb::TensorShapeProto { dim: dims.into() }),
            })),
            ..Default::default()
        });
        unwrapped.push((output, classes));
    }
    // Identity is an operator of the default domain, which an ML-only
    // graph may not import.
    if !unwrapped.is_empty() && !proto.opset_import.iter().any(|opset| opset.domain.is_empty()) {
        proto.opset_import.push(pb::OperatorSetIdProto {
            domain: String::new(),
            version: 13,
        });
    }
    Ok(unwrapped)
}

/// Graph inputs that are not initializers, and graph outputs, with `-1` for
/// every dimension that is symbolic or unnamed.
pub fn signature_of(proto: &pb::ModelProto) -> Result<Signature> {
    let graph = proto
        .graph
        .as_ref()
        .ok_or_else(|| Error::Load("model has no graph".into()))?;
    let initializers: HashSet<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let mut inputs = graph
        .input
        .iter()
        .filter(|info| !initializers.contains(info.name.as_str()))
        .map(|info| tensor_spec(info, "input"))
        .collect::<Result<Vec<_>>>()?;
    let mut outputs = graph
        .output
        .iter()
        .map(|info| tensor_spec(info, "output"))
        .collect::<Result<Vec<_>>>()?;
    // The leading dim is the shared batch only where every input has a
    // dynamic one: beside a scalar or a state with its batch on axis 1, an
    // unnamed leading dim is the input's own.
    let shared_batch = inputs
        .iter()
        .all(|spec| spec.shape.first().is_some_and(|&dim| dim < 0));
    if shared_batch {
        for spec in inputs.iter_mut().chain(outputs.iter_mut()) {
            if let Some(symbol @ None) = spec.dim_symbols.first_mut()
                && spec.shape[0] < 0
            {
                *symbol = Some(BATCH_SYMBOL.to_string());
            }
        }
    }
    if inputs.is_empty() {
        return Err(Error::Load("model has no inputs".into()));
    }
    Ok(Signature { inputs, outputs })
}

/// Whether a `dim_param` names a dim that ties inputs together, rather
/// than an exporter's placeholder for "unknown": Paddle2ONNX writes `?` for
/// every unknown dim, ONNX's shape inference `unk__N`, others leave it
/// empty or write an expression (`floor(height/2 - 1/2)`). ONNX Runtime
/// ties none of them together at run time, and neither does Sluice.
pub fn is_real_name(param: &str) -> bool {
    let mut chars = param.chars();
    let starts_well = chars
        .next()
        .is_some_and(|first| first.is_alphabetic() || first == '_');
    let placeholder = param
        .strip_prefix("unk__")
        .is_some_and(|number| !number.is_empty() && number.chars().all(|c| c.is_ascii_digit()));
    starts_well && !placeholder && chars.all(|c| c.is_alphanumeric() || c == '_')
}

fn tensor_spec(info: &pb::ValueInfoProto, role: &str) -> Result<TensorSpec> {
    let name = &info.name;
    let Some(type_proto::Value::TensorType(tensor)) = info.r#type.as_ref().and_then(|t| t.value.as_ref())
    else {
        return Err(Error::Load(format!(
            "{role} '{name}' is not a tensor (a sequence or map, such as skl2onnx's ZipMap); \
             export classifiers with zipmap=False"
        )));
    };
    let datatype = DataType::from_onnx_code(tensor.elem_type).ok_or_else(|| {
        Error::Load(format!(
            "{role} '{name}' has ONNX element type {}, which Sluice does not serve (no BYTES/string tensors)",
            tensor.elem_type
        ))
    })?;
    let dims = &tensor
        .shape
        .as_ref()
        .ok_or_else(|| Error::Load(format!("{role} '{name}' has no declared rank")))?
        .dim;
    let shape = dims
        .iter()
        .map(|dim| match dim.value {
            Some(dimension::Value::DimValue(value)) if value >= 0 => value,
            _ => -1,
        })
        .collect();
    let dim_symbols = dims
        .iter()
        .map(|dim| match &dim.value {
            Some(dimension::Value::DimParam(param)) if is_real_name(param) => Some(param.clone()),
            _ => None,
        })
        .collect();
    Ok(TensorSpec {
        name: name.clone(),
        datatype,
        shape,
        dim_symbols,
        labels: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exporters_placeholders_are_not_names() {
        for real in ["batch", "N", "batch_size", "height", "_t0", "séquence"] {
            assert!(is_real_name(real), "{real}");
        }
        for placeholder in [
            "",
            "?",
            "unk__12",
            "-1",
            "floor(height/2 - 1/2)",
            "batch size",
            "2*N",
        ] {
            assert!(!is_real_name(placeholder), "{placeholder}");
        }
    }
}
