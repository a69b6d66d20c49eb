//! The control-plane API of Sluice's registry, as Rust types and a client.
//!
//! - [`types`] holds every request and response body of `/api/v1`: models,
//!   versions and their lineage card, stages and transition requests, aliases,
//!   deployments (the desired traffic of each endpoint) and audit events. The
//!   registry serves them, the gateway and the CLI read them; there is no
//!   second copy of these types anywhere.
//! - [`client`] is a typed async client over HTTP (bearer token auth), used by
//!   the gateway's reconciler, the `sluice` CLI and the tests alike.
//! - [`profile`] builds and describes reference profiles (the training data's
//!   distribution per feature) that drift is measured against;
//! - [`rollout`] holds the traffic feedback: the per-version windows gateways
//!   report (they merge across replicas) and progressive rollouts.
//! - [`contract`] holds data contracts: per-feature ranges, categories and
//!   missing values, and linear cross-field rules, derived from a profile;
//! - [`feedback`] holds ground truth: the labels applications send back and
//!   the realized performance joined from them;
//! - [`suite`] holds behavioural test suites (golden, invariance,
//!   directional and minimum-functionality cases) and their reports;
//! - [`slices`] holds the slice feature of a model card and the realized
//!   performance per slice, with the gaps between slices;
//! - [`trigger`] holds training triggers: per-model policies (drift,
//!   performance, data-contract violations, schedule), their actions
//!   (webhook, command) and runs.
//! - [`warmup`] holds the requests a version runs before it takes traffic;
//! - [`limits`] holds the bounds both planes keep (a request id's length)
//!   and how error messages quote client input;
//! - [`error`] is the client's error: a refusal from the registry keeps its
//!   status and `{"error": ...}` message, so a CLI can print it and pick an
//!   exit code.

pub mod client;
pub mod contract;
pub mod error;
pub mod feedback;
pub mod limits;
pub mod profile;
pub mod rollout;
pub mod slices;
pub mod suite;
pub mod trigger;
pub mod types;
pub mod warmup;

pub use client::{ClientTls, RegistryClient};
pub use error::ClientError;
