//! Criterion benchmarks of Sluice's hot path; the code is in `benches/`:
//!
//! - `inference`: in-process inference per engine (tract, ONNX Runtime), no HTTP;
//! - `codec`: decoding a 784-float tensor from JSON and from binary;
//! - `end_to_end`: one request over loopback to an in-process server;
//! - `routing`: the routing decision (one `ArcSwap` load and a pick);
//! - `monitoring`: drift accounting, the per-request cost of counting
//!   features into their reference bins.
//!
//! `shadow.sh` and `logging.sh` measure throughput through a real `sluice
//! serve` with a shadow, and with the prediction log at several rates.
//! `peers.sh` runs Sluice side by side with a FastAPI baseline
//! (`peers/`), with two helper programs of this crate: `fixed_body`, the
//! hyper ceiling, and `floor`, each model in-process.
//!
//! Run with `ORT_DYLIB_PATH="$(scripts/fetch-onnxruntime.sh)" cargo bench -p sluice-benches`.
//! They reuse the end-to-end tests' harness (`sluice-tests`) for models and servers.
