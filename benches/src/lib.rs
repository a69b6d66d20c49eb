//! Criterion benchmarks of Sluice's hot path; the code is in `benches/`:
//!
//! - `inference`: in-process inference per engine (tract, ONNX Runtime), no HTTP;
//! - `codec`: decoding a 784-float tensor from JSON and from binary;
//! - `end_to_end`: one request over loopback to an in-process server.
//!
//! Run with `ORT_DYLIB_PATH="$(scripts/fetch-onnxruntime.sh)" cargo bench -p sluice-benches`.
//! They reuse the end-to-end tests' harness (`sluice-tests`) for models and servers.
