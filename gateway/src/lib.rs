//! Sluice's data plane: an Open Inference Protocol (KServe V2) server that runs
//! ONNX models in-process and hot-swaps versions without failing a request.
//!
//! How a request flows:
//!
//! - [`server`] routes `POST /v2/models/{m}/infer` (axum on hyper), does the
//!   one [`routing`] table load that picks an `Arc<LoadedModel>` by weight or
//!   sticky key (and, for a sample, a shadow version), admits the request
//!   against the gateway's and the model's [`slots`] and the memory budget,
//!   and reads the body under a size limit;
//! - the CPU work goes to the bounded [`compute`] pool (a model faster than
//!   the hand-off runs inline, on the thread that read the request):
//!   [`protocol`] decodes JSON or binary tensors and checks them against
//!   the [`model`] signature, the [`backend`] (tract or ONNX Runtime) runs
//!   them, alone or, for a version
//!   configured to batch, joined with other requests by its [`batcher`], and
//!   the response is encoded (`server::inference` is this path);
//!   a sampled request is then queued for [`shadow`], which reruns it on the
//!   shadow version and compares the answers, and, where a deployment asks,
//!   for [`predlog`], the prediction log; both off the response path;
//! - [`contract`] checks its inputs against the version's data contract,
//!   where the deployment asks (counting violations, or answering 422);
//! - [`drift`] counts its features in the reference profile's bins;
//! - [`feedback`] takes ground-truth labels for answered predictions
//!   (`POST /v2/models/{m}/feedback`) and stores them for the registry to join;
//! - [`metrics`] counts it, [`stats`] adds it to the version's window for the
//!   registry's rollouts, [`guard`] stops routing to a canary that fails too
//!   often; [`watchdog`] marks a version whose run hangs unhealthy (its
//!   requests refused) and has the engine stop the run where it can;
//!   [`error`] is the one place errors become statuses.
//!
//! Off the request path, what to serve comes from one of two sources, each
//! loading and warming new versions through [`backend`] and swapping the
//! whole table in one store: [`reconcile`] follows a registry's deployments
//! (artifacts verified and kept in the [`cache`], so a gateway starts and
//! serves while the registry is down), [`repository`] polls a model
//! directory.
//!
//! [`config`] is the typed, validated configuration (the `sluice` crate
//! builds it from flags); [`tensor`] is the typed tensor both codecs and
//! engines share. This crate is the data plane alone: it links neither the
//! registry nor its databases nor a command-line parser (CI checks it with
//! `cargo tree`).

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
pub mod watchdog;

pub use config::ServeConfig;
pub use error::{Error, Result};
pub use server::Server;
