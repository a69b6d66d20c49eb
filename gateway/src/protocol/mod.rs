//! The Open Inference Protocol (KServe V2) on the wire: request decoding,
//! response encoding, and the metadata documents.
//!
//! - [`request`] splits JSON from binary tensors and checks every input
//!   against the model's signature;
//! - [`json`] parses tensor data straight into typed buffers;
//! - [`response`] writes outputs as JSON or as binary after a JSON header;
//! - [`grpc`] reads and writes the same requests and answers as gRPC messages.

pub mod grpc;
pub mod json;
pub mod request;
pub mod response;

use serde::Serialize;

use crate::model::LoadedModel;
use crate::signature::TensorSpec;
use crate::warmup::Warmth;

/// The header that splits a body into a JSON part and binary tensors.
pub const HEADER_CONTENT_LENGTH: &str = "inference-header-content-length";

/// Extensions this server implements, as `GET /v2` lists them.
pub const EXTENSIONS: &[&str] = &["binary_tensor_data"];

#[derive(Serialize, utoipa::ToSchema)]
pub struct ServerMetadata {
    pub name: &'static str,
    pub version: &'static str,
    pub extensions: &'static [&'static str],
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ModelMetadata<'a> {
    pub name: &'a str,
    pub versions: Vec<String>,
    pub platform: &'static str,
    pub inputs: Vec<TensorMetadata<'a>>,
    pub outputs: Vec<TensorMetadata<'a>>,
    /// What V2's document has no place for: the engine, and whether the
    /// version ran its warm-up (and with what, or why not).
    pub parameters: ModelParameters<'a>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ModelParameters<'a> {
    pub backend: &'static str,
    pub warm: bool,
    /// The warm-up's inputs when warm; why none ran when cold.
    pub warmup: &'a str,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct TensorMetadata<'a> {
    pub name: &'a str,
    pub datatype: &'static str,
    pub shape: &'a [i64],
}

impl<'a> ModelMetadata<'a> {
    /// Metadata of `model`, listing every live version of its endpoint.
    pub fn of(model: &'a LoadedModel, versions: Vec<String>) -> Self {
        let describe = |spec: &'a TensorSpec| TensorMetadata {
            name: &spec.name,
            datatype: spec.datatype.wire_name(),
            shape: &spec.shape,
        };
        ModelMetadata {
            name: &model.name,
            versions,
            platform: "onnx",
            inputs: model.signature.inputs.iter().map(describe).collect(),
            outputs: model.signature.outputs.iter().map(describe).collect(),
            parameters: ModelParameters {
                backend: model.backend.name(),
                warm: model.warmth.is_warm(),
                warmup: match &model.warmth {
                    Warmth::Warm { inputs } => inputs,
                    Warmth::Cold { reason } => reason,
                },
            },
        }
    }
}
