//! Loading an ONNX artifact of arbitrary bytes with tract, as the registry
//! does for every upload and the gateway for every version it serves: a
//! model or an error, never a panic or an unbounded allocation.
//!
//! ONNX Runtime is not fuzzed here: it is a C++ library loaded at run
//! time, which libFuzzer's instrumentation cannot see into, and a fault in
//! it aborts the process rather than unwinding (see SECURITY.md).
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use sluice_gateway::backend::{BackendChoice, EngineOptions, Engines};
use sluice_gateway::model::LoadedModel;

static ENGINES: LazyLock<Engines> = LazyLock::new(|| {
    // libFuzzer's hook aborts at any panic, even one the loader contains
    // (tract panics on some graphs, and `Engines` turns that into an
    // error): back to the default hook, so only a panic that escapes
    // `load_model` (which libfuzzer-sys still aborts on) is a crash.
    let _ = std::panic::take_hook();
    Engines::new(&EngineOptions::default())
});

fuzz_target!(|data: &[u8]| {
    let _ = LoadedModel::load(&ENGINES, "fuzz", 1, data, BackendChoice::Tract, None);
});
