//! Sluice's data plane: an Open Inference Protocol (KServe V2) server that runs
//! ONNX models in-process and hot-swaps versions without failing a request.
//!
//! Modules point one way, bottom up (`scripts/check-layers.py` holds it):
//!
//! 1. foundations: [`error`] (the one place errors become statuses),
//!    [`metrics`], [`tensor`] (the typed tensor codecs and engines share),
//!    [`signature`] (what a model takes and gives, and the checks a request
//!    passes against it), [`slots`] (counts held against a bound);
//! 2. engines: [`backend`] (tract, ONNX Runtime) turns an artifact into a
//!    session;
//! 3. what one served version owns: its [`batcher`], its [`runwatch`] (runs
//!    in flight, for the watchdog), its [`stats`] window, its [`guard`]
//!    record, its [`contract`] checker, its [`drift`] counter, its shadow
//!    [`comparison`] counters, its [`slicer`], its [`warmup`] (configured
//!    requests, or synthetic inputs searched for); and [`model`], the
//!    `LoadedModel` that holds them, loaded and warmed by `LoadedModel::load`;
//! 4. what is served: the [`routing`] table (one `ArcSwap` load picks a
//!    version by weight or sticky key, and a shadow), and the [`protocol`]
//!    codecs (JSON and binary tensors);
//! 5. loops and sources, off the request path: the statistics [`report`]er,
//!    [`fast_rollback`] (a tripped guard takes its canary out at once),
//!    the [`watchdog`] (a hung run marks its version unhealthy), [`shadow`]
//!    workers, the [`predlog`] writer, [`feedback`] storage, the bounded
//!    [`compute`] pool; [`reconcile`] follows a registry's deployments
//!    (artifacts verified and kept in the [`cache`], so a gateway serves
//!    while the registry is down), [`repository`] polls a model directory;
//!    [`config`] is the validated configuration they start from;
//! 6. [`server`]: the routes, admission (the gateway's and the model's
//!    slots, the memory budget), bodies under a size limit, and the
//!    inference path (`server::inference`: decode, run inline or on the
//!    pool or in a batch, encode; then shadow and prediction log, both off
//!    the response path).
//!
//! This crate is the data plane alone: it links neither the registry nor
//! its databases nor a command-line parser (`scripts/check-crates.sh`); the
//! `sluice` crate builds its configuration from flags.

pub mod backend;
pub mod batcher;
pub mod cache;
pub mod comparison;
pub mod compute;
pub mod config;
pub mod contract;
pub mod drift;
pub mod error;
pub mod fast_rollback;
pub mod feedback;
pub mod guard;
pub mod metrics;
pub mod model;
pub mod predlog;
pub mod protocol;
pub mod reconcile;
pub mod report;
pub mod repository;
pub mod routing;
pub mod runwatch;
pub mod server;
pub mod shadow;
pub mod signature;
pub mod slicer;
pub mod slots;
pub mod stats;
pub mod tensor;
pub mod warmup;
pub mod watchdog;

pub use config::ServeConfig;
pub use error::{Error, Result};
pub use server::Server;
