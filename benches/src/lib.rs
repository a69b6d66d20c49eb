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
//! `peers.sh` runs Sluice side by side with the engine alone and the Python
//! servers (`peers/`), with helper programs of this crate: `fixed_body`, the
//! hyper ceiling; `floor`, each model in-process; `engine_alone`, ONNX
//! Runtime with nothing of Sluice; `copies` and `ort_options`, the memory
//! of many copies of a model. Their shared measuring is below.
//!
//! Run with `ORT_DYLIB_PATH="$(scripts/fetch-onnxruntime.sh)" cargo bench -p sluice-benches`.
//! They reuse the end-to-end tests' harness (`sluice-tests`) for models and servers.

use std::time::{Duration, Instant};

/// The median of `samples` timings of `work`, after a tenth as many
/// untimed runs to warm caches and allocators.
pub fn median(samples: usize, mut work: impl FnMut()) -> Duration {
    for _ in 0..samples / 10 + 1 {
        work();
    }
    let mut times: Vec<Duration> = (0..samples)
        .map(|_| {
            let started = Instant::now();
            work();
            started.elapsed()
        })
        .collect();
    times.sort();
    times[times.len() / 2]
}

/// This process's resident memory, in bytes (`VmRSS`).
pub fn resident_bytes() -> Result<f64, Box<dyn std::error::Error>> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .ok_or("no VmRSS in /proc/self/status")?
        .parse::<f64>()?;
    Ok(kib * 1024.0)
}
