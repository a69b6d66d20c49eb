//! The feedback endpoint's body (`POST /v2/models/{m}/feedback`): any bytes
//! are labels within their bounds or an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(labels) = sluice_gateway::feedback::parse(data) {
        assert!(labels.len() <= sluice_gateway::feedback::MAX_BATCH);
        for label in labels {
            assert!(label.request_id.len() <= sluice_registry_client::limits::MAX_REQUEST_ID_BYTES);
        }
    }
});
