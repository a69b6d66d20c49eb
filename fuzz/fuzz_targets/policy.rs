//! The registry's governance policy file: any text is a policy or an error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_registry::policy::Policy;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Policy::parse(text);
    }
});
