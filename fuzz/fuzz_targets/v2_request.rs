//! The Open Inference Protocol request decoder, JSON and binary extension:
//! whatever the bytes and the `Inference-Header-Content-Length`, it answers
//! a request or an error, never a panic, and allocates no more than the
//! body describes.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use sluice_gateway::signature::Signature;
use sluice_gateway::protocol::request::decode;

#[path = "../common/v2_request.rs"]
mod v2_request;

static SIGNATURE: LazyLock<Signature> = LazyLock::new(v2_request::signature);

fuzz_target!(|data: &[u8]| {
    if let Some((header_length, body)) = v2_request::split(data) {
        let _ = decode(body, header_length, &SIGNATURE);
    }
});
