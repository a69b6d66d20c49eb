//! Encodes an inference response: JSON, or a JSON header followed by raw
//! little-endian tensors for outputs asked for as binary.

use serde::Serialize;
use serde::ser::Serializer;

use super::request::RequestedOutput;
use crate::model::LoadedModel;
use crate::tensor::{DataType, Tensor, TensorData};

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
    #[serde(skip_serializing_if = "OutputParameters::is_empty")]
    parameters: OutputParameters<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<DataWire<'a>>,
}

#[derive(Serialize, Default)]
struct OutputParameters<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    binary_data_size: Option<usize>,
    /// The class of each column of a score output (a ZipMap's labels):
    /// V2's model metadata has no place for them.
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    labels: &'a [String],
}

impl OutputParameters<'_> {
    fn is_empty(&self) -> bool {
        self.binary_data_size.is_none() && self.labels.is_empty()
    }
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
            // JSON strings are text: bytes that are not UTF-8 come out with
            // U+FFFD in their place; ask for binary outputs to get them whole.
            TensorData::Bytes(values) => {
                serializer.collect_seq(values.iter().map(|value| String::from_utf8_lossy(value)))
            }
        }
    }
}

/// The most bytes the response to `wanted` of `tensors` can take, found
/// before it is built: each value at its longest JSON text (or its size,
/// for binary outputs), plus each output's name, shape and punctuation,
/// and the echoed `id` at its most escaped.
pub fn size_bound(
    model: &LoadedModel,
    id_opt: Option<&str>,
    wanted: &[RequestedOutput],
    tensors: &[Tensor],
) -> usize {
    let per_output = |output: &RequestedOutput| {
        let tensor = &tensors[output.index];
        let labels = &model.signature.outputs[output.index].labels;
        if let Some(count) = output.classes_opt {
            // "score:index:label" strings: a float, an index, a label
            // escaped at its longest, quotes and separators.
            let longest_label = labels.iter().map(String::len).max().unwrap_or(0);
            let each = 24 + 20 + 6 * longest_label + 8;
            let rows = tensor
                .shape
                .first()
                .copied()
                .filter(|_| tensor.shape.len() == 2)
                .unwrap_or(1);
            return rows
                .saturating_mul(count)
                .saturating_mul(each)
                .saturating_add(21 * 2 + 256);
        }
        let label_text: usize = labels.iter().map(|label| 6 * label.len() + 3).sum();
        let values = tensor.data.len();
        let data = match (output.binary, &tensor.data) {
            (true, data) => data.wire_size(),
            // Each byte escaped at its longest (\u00XX, or U+FFFD's three
            // bytes for an invalid one), its quotes and its comma.
            (false, TensorData::Bytes(strings)) => strings
                .iter()
                .map(|value| value.len().saturating_mul(6).saturating_add(3))
                .fold(0, usize::saturating_add),
            // The longest text of each type, and its comma.
            (false, data) => values.saturating_mul(longest_json_value(data.datatype()) + 1),
        };
        let name = model.signature.outputs[output.index].name.len();
        data.saturating_add(name + 21 * tensor.shape.len() + 128 + label_text)
    };
    wanted.iter().map(per_output).fold(
        256 + model.name.len() + model.version_label.len() + 6 * id_opt.map_or(0, str::len),
        usize::saturating_add,
    )
}

/// The longest JSON text of one value of `datatype` (serde_json writes
/// floats as ryu's shortest round-trip text, at most 24 characters).
fn longest_json_value(datatype: DataType) -> usize {
    match datatype {
        DataType::Bool => 5,
        DataType::U8 => 3,
        DataType::I8 => 4,
        DataType::U16 => 5,
        DataType::I16 => 6,
        DataType::U32 => 10,
        DataType::I32 => 11,
        DataType::U64 | DataType::I64 => 20,
        DataType::F16 | DataType::F32 => 15,
        DataType::F64 => 24,
        // Unused: strings are bounded by their own lengths (above).
        DataType::Bytes => 0,
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
    // Classified outputs are new tensors; the answer borrows from them.
    let classified: Vec<Option<Tensor>> = wanted
        .iter()
        .map(|output| {
            let labels = &model.signature.outputs[output.index].labels;
            output
                .classes_opt
                .map(|count| classify(&tensors[output.index], count, labels))
        })
        .collect();
    let outputs = wanted
        .iter()
        .zip(&classified)
        .map(|(output, classified_opt)| {
            let spec = &model.signature.outputs[output.index];
            let tensor = classified_opt.as_ref().unwrap_or(&tensors[output.index]);
            let mut wire = OutputWire {
                name: &spec.name,
                datatype: tensor.datatype().wire_name(),
                shape: &tensor.shape,
                parameters: OutputParameters {
                    binary_data_size: None,
                    labels: match classified_opt {
                        Some(_) => &[],
                        None => &spec.labels,
                    },
                },
                data: None,
            };
            if output.binary {
                let before = binary_tail.len();
                tensor.data.write_le_bytes(&mut binary_tail);
                wire.parameters.binary_data_size = Some(binary_tail.len() - before);
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

/// Triton's classification extension: the top `count` classes of each row
/// of `scores` (`[N, K]`, or `[K]` for one row), best first (ties: the lower
/// index), as `BYTES` `"score:index"`, with `":label"` where the model names
/// its classes.
pub(super) fn classify(scores: &Tensor, count: usize, labels: &[String]) -> Tensor {
    let classes = scores.shape.last().copied().unwrap_or(0);
    let rows = match scores.shape.len() {
        2 => scores.shape[0],
        _ => 1,
    };
    let kept = count.min(classes);
    let mut texts = Vec::with_capacity(rows * kept);
    for row in 0..rows {
        let mut ranked: Vec<(usize, f64)> = (0..classes)
            .map(|class| (class, scores.f64_at(row * classes + class).unwrap_or(f64::NAN)))
            .collect();
        // NaN ranks last: it is no score.
        ranked.sort_by(|a, b| {
            b.1.partial_cmp(&a.1)
                .unwrap_or_else(|| a.1.is_nan().cmp(&b.1.is_nan()))
                .then(a.0.cmp(&b.0))
        });
        for (class, score) in ranked.into_iter().take(kept) {
            // The shortest text of the output's own precision, with an
            // exponent where it is long (`1.4595696e-8`): at most 24 characters.
            let score = match scores.datatype() {
                DataType::F64 => format!("{score:?}"),
                _ => format!("{:?}", score as f32),
            };
            let text = match labels.get(class) {
                Some(label) => format!("{score}:{class}:{label}"),
                None => format!("{score}:{class}"),
            };
            texts.push(text.into_bytes());
        }
    }
    let shape = match scores.shape.len() {
        2 => vec![rows, kept],
        _ => vec![kept],
    };
    Tensor {
        shape,
        data: TensorData::Bytes(texts),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{BackendKind, Session};
    use crate::signature::{Signature, TensorSpec};

    struct Outputs(Signature);

    impl Session for Outputs {
        fn signature(&self) -> &Signature {
            &self.0
        }

        fn run(&self, inputs: Vec<Tensor>) -> crate::Result<Vec<Tensor>> {
            Ok(inputs)
        }
    }

    /// The bound is never below what is built, whatever the values: the
    /// longest texts of every type, an id that escapes to six bytes a
    /// character, binary and JSON outputs.
    #[test]
    fn the_bound_holds_what_is_built() {
        let data = [
            TensorData::F32(vec![-1.1754944e-38, f32::MAX, f32::MIN_POSITIVE, -0.1, f32::NAN]),
            TensorData::F64(vec![-2.2250738585072014e-308, f64::MIN, 1e-300]),
            TensorData::I64(vec![i64::MIN, i64::MAX]),
            TensorData::U64(vec![u64::MAX]),
            TensorData::Bool(vec![false, true]),
            TensorData::I8(vec![i8::MIN]),
            TensorData::U16(vec![u16::MAX]),
            TensorData::Bytes(vec![b"\x01\"\\".to_vec(), vec![0xff, 0xfe], Vec::new()]),
        ];
        let tensors: Vec<Tensor> = data
            .into_iter()
            .map(|data| Tensor {
                shape: vec![data.len()],
                data,
            })
            .collect();
        let outputs = tensors
            .iter()
            .enumerate()
            .map(|(index, tensor)| TensorSpec {
                name: format!("output_{index}"),
                datatype: tensor.datatype(),
                shape: vec![-1],
                dim_symbols: vec![None],
                labels: Vec::new(),
            })
            .collect();
        let session = Box::new(Outputs(Signature {
            inputs: vec![],
            outputs,
        }));
        let model = LoadedModel::new("m", 7, BackendKind::Tract, session);
        let id = "\u{1}".repeat(40);
        for binary in [false, true] {
            let wanted: Vec<RequestedOutput> = (0..tensors.len())
                .map(|index| RequestedOutput {
                    index,
                    binary,
                    classes_opt: None,
                })
                .collect();
            let built = encode(&model, Some(&id), &wanted, &tensors).body.len();
            let bound = size_bound(&model, Some(&id), &wanted, &tensors);
            assert!(built <= bound, "built {built} > bound {bound} (binary: {binary})");
        }
        // Top classes of the float outputs, tiny scores included.
        let wanted: Vec<RequestedOutput> = [0, 1]
            .into_iter()
            .map(|index| RequestedOutput {
                index,
                binary: false,
                classes_opt: Some(3),
            })
            .collect();
        let built = encode(&model, Some(&id), &wanted, &tensors);
        let bound = size_bound(&model, Some(&id), &wanted, &tensors);
        assert!(
            built.body.len() <= bound,
            "built {} > bound {bound} (classified)",
            built.body.len()
        );
        let text = String::from_utf8(built.body).unwrap();
        assert!(text.contains("\"3.4028235e38:1\""), "{text}");
        assert!(
            text.contains("[\"1e-300:2\",\"-2.2250738585072014e-308:0\",\"-1.7976931348623157e308:1\"]"),
            "f64 scores in their own precision, best first: {text}"
        );
    }
}
