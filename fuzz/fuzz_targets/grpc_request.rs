//! The gRPC inference request (`ModelInferRequest`): whatever the bytes,
//! prost refuses them or the gateway's decoder answers a request or an
//! error, never a panic, and allocates no more than the message holds.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use prost::Message;
use sluice_gateway::protocol::grpc::decode;
use sluice_gateway::signature::Signature;
use sluice_proto::inference::ModelInferRequest;

// Its signature; `split` is the JSON target's.
#[allow(dead_code)]
#[path = "../common/v2_request.rs"]
mod v2_request;

static SIGNATURE: LazyLock<Signature> = LazyLock::new(v2_request::signature);

fuzz_target!(|data: &[u8]| {
    if let Ok(message) = ModelInferRequest::decode(data) {
        let _ = decode(message, &SIGNATURE);
    }
});
