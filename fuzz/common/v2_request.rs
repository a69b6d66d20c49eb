//! What the `v2_request` fuzz target and its regression test share: the
//! model signature requests are decoded against, and how an input's bytes
//! become a body and a binary header length. Included by path from both
//! (`fuzz/` is its own workspace, without the test crate).

use sluice_gateway::signature::{Signature, TensorSpec};
use sluice_gateway::tensor::DataType;

fn spec(name: &str, datatype: DataType, shape: &[i64]) -> TensorSpec {
    TensorSpec {
        name: name.into(),
        datatype,
        shape: shape.to_vec(),
        dim_symbols: shape
            .iter()
            .map(|&dim| (dim < 0).then(|| "N".to_string()))
            .collect(),
        labels: Vec::new(),
    }
}

/// A model taking one input of most kinds: fixed and dynamic dims, floats,
/// integers, half floats and booleans.
pub fn signature() -> Signature {
    Signature {
        inputs: vec![
            spec("x", DataType::F32, &[-1, 4]),
            spec("ids", DataType::I64, &[-1]),
            spec("h", DataType::F16, &[-1, 2]),
            spec("mask", DataType::Bool, &[-1, 2]),
            spec("pixels", DataType::U8, &[2, 2]),
        ],
        outputs: vec![
            spec("y", DataType::F32, &[-1, 1]),
            spec("label", DataType::I64, &[-1]),
        ],
    }
}

/// The body and the `Inference-Header-Content-Length`: the first byte says
/// whether a header length follows (two bytes, little-endian).
pub fn split(data: &[u8]) -> Option<(Option<usize>, &[u8])> {
    let (&flag, rest) = data.split_first()?;
    match (flag & 1, rest) {
        (1, [low, high, body @ ..]) => Some((Some(usize::from(u16::from_le_bytes([*low, *high]))), body)),
        (1, _) => None,
        _ => Some((None, rest)),
    }
}
