//! The tract engine: pure Rust, always built. A plan is immutable and runs
//! from many threads at once, each run with its own state.

use std::sync::Arc;

use tract_onnx::prelude::*;

use super::{Backend, Session, onnx};
use crate::error::{Error, Result};
use crate::signature::Signature;
use crate::tensor::{DataType, Tensor as SluiceTensor, TensorData};

pub struct TractBackend;

type Plan = Arc<TypedRunnableModel>;

struct TractSession {
    plan: Plan,
    signature: Signature,
}

impl Backend for TractBackend {
    fn load(&self, artifact: &[u8], signature: &Signature) -> Result<Box<dyn Session>> {
        let proto = onnx::decode(artifact)?;
        let refused = |err: TractError| Error::Load(format!("{err:#}"));
        let mut model = tract_onnx::onnx()
            .model_for_proto_model(&proto)
            .map_err(refused)?;
        let input_names: Vec<String> = model
            .input_outlets()
            .map_err(refused)?
            .iter()
            .map(|outlet| model.node(outlet.node).name.clone())
            .collect();
        for (index, name) in input_names.iter().enumerate() {
            let Some(spec) = signature.inputs.iter().find(|spec| &spec.name == name) else {
                return Err(Error::Load(format!(
                    "tract sees an input '{name}' the graph does not declare"
                )));
            };
            // Every dynamic dim becomes a symbol, so one plan takes every batch
            // size; the signature names the symbols inputs share.
            let dims: TVec<TDim> = spec
                .shape
                .iter()
                .zip(&spec.dim_symbols)
                .enumerate()
                .map(|(axis, (&dim, symbol))| match (usize::try_from(dim), symbol) {
                    (Ok(fixed), _) => fixed.to_dim(),
                    (Err(_), Some(symbol)) => model.sym(symbol).to_dim(),
                    (Err(_), None) => model.sym(&format!("{name}_dim{axis}")).to_dim(),
                })
                .collect();
            model
                .set_input_fact(index, InferenceFact::dt_shape(datum_type(spec.datatype), dims))
                .map_err(refused)?;
        }
        let plan = model
            .into_optimized()
            .and_then(|optimized| optimized.into_runnable())
            .map_err(refused)?;
        Ok(Box::new(TractSession {
            plan,
            signature: signature.clone(),
        }))
    }
}

impl Session for TractSession {
    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn run(&self, inputs: Vec<SluiceTensor>) -> Result<Vec<SluiceTensor>> {
        let values: TVec<TValue> = inputs.iter().map(to_tract).collect::<Result<_>>()?;
        let outputs = self
            .plan
            .run(values)
            .map_err(|err| Error::Inference(format!("{err:#}")))?;
        outputs
            .iter()
            .zip(&self.signature.outputs)
            .map(|(value, spec)| from_tract(value, spec.datatype))
            .collect()
    }
}

fn datum_type(datatype: DataType) -> DatumType {
    match datatype {
        DataType::Bool => DatumType::Bool,
        DataType::U8 => DatumType::U8,
        DataType::U16 => DatumType::U16,
        DataType::U32 => DatumType::U32,
        DataType::U64 => DatumType::U64,
        DataType::I8 => DatumType::I8,
        DataType::I16 => DatumType::I16,
        DataType::I32 => DatumType::I32,
        DataType::I64 => DatumType::I64,
        DataType::F16 => DatumType::F16,
        DataType::F32 => DatumType::F32,
        DataType::F64 => DatumType::F64,
        DataType::Bytes => DatumType::String,
    }
}

fn to_tract(tensor: &SluiceTensor) -> Result<TValue> {
    let shape = &tensor.shape;
    let built = crate::with_tensor_data!(&tensor.data, v => Tensor::from_shape(shape, v), b => {
        let texts = b.iter().map(|value| utf8(value)).collect::<Result<Vec<String>>>()?;
        tract_ndarray::ArrayD::from_shape_vec(tract_ndarray::IxDyn(shape), texts)
            .map(|array| array.into_tensor())
            .map_err(TractError::from)
    });
    built
        .map(TValue::from)
        .map_err(|err| Error::Internal(format!("building a tract tensor: {err:#}")))
}

/// A `BYTES` element as an engine's string: UTF-8, or the client's mistake.
pub(super) fn utf8(value: &[u8]) -> Result<String> {
    String::from_utf8(value.to_vec()).map_err(|err| {
        Error::bad_request(format!(
            "a BYTES element for a string tensor must be UTF-8 text: {err}"
        ))
    })
}

fn from_tract(value: &TValue, expected: DataType) -> Result<SluiceTensor> {
    // tract may compute an integer output in its symbolic-dim type (TDim),
    // e.g. a label gathered through shape arithmetic: cast it to what the
    // graph declares.
    let value = value
        .cast_to_dt(datum_type(expected))
        .map_err(|err| Error::Inference(format!("tract output cannot be read as {expected}: {err:#}")))?;
    let view = value
        .try_as_plain_ram()
        .map_err(|err| Error::Inference(format!("reading a tract output: {err:#}")))?;
    let shape = view.shape().to_vec();
    let fail = |err: TractError| Error::Inference(format!("tract output is not {expected}: {err:#}"));
    let data = match expected {
        DataType::Bool => TensorData::Bool(view.as_slice::<bool>().map_err(fail)?.to_vec()),
        DataType::U8 => TensorData::U8(view.as_slice::<u8>().map_err(fail)?.to_vec()),
        DataType::U16 => TensorData::U16(view.as_slice::<u16>().map_err(fail)?.to_vec()),
        DataType::U32 => TensorData::U32(view.as_slice::<u32>().map_err(fail)?.to_vec()),
        DataType::U64 => TensorData::U64(view.as_slice::<u64>().map_err(fail)?.to_vec()),
        DataType::I8 => TensorData::I8(view.as_slice::<i8>().map_err(fail)?.to_vec()),
        DataType::I16 => TensorData::I16(view.as_slice::<i16>().map_err(fail)?.to_vec()),
        DataType::I32 => TensorData::I32(view.as_slice::<i32>().map_err(fail)?.to_vec()),
        DataType::I64 => TensorData::I64(view.as_slice::<i64>().map_err(fail)?.to_vec()),
        DataType::F16 => TensorData::F16(view.as_slice::<f16>().map_err(fail)?.to_vec()),
        DataType::F32 => TensorData::F32(view.as_slice::<f32>().map_err(fail)?.to_vec()),
        DataType::F64 => TensorData::F64(view.as_slice::<f64>().map_err(fail)?.to_vec()),
        DataType::Bytes => TensorData::Bytes(
            view.as_slice::<String>()
                .map_err(fail)?
                .iter()
                .map(|text| text.as_bytes().to_vec())
                .collect(),
        ),
    };
    Ok(SluiceTensor { shape, data })
}
