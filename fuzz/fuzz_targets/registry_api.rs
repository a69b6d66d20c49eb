//! The registry API's JSON bodies (fuzz/common/registry_api.rs): any bytes
//! are a body or an error, never a panic.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;

#[path = "../common/registry_api.rs"]
mod registry_api;

static ACTIONS: LazyLock<sluice_registry::actions::Actions> = LazyLock::new(registry_api::actions);

fuzz_target!(|data: &[u8]| {
    if let Some((&kind, body)) = data.split_first() {
        let _ = registry_api::check(kind, body, &ACTIONS);
    }
});
