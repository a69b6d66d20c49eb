//! A model repository's `config.toml`: any text is a config or an error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_gateway::repository::ModelConfig;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = ModelConfig::parse(text);
    }
});
