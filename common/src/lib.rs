//! Plumbing both planes use, and no domain type: what the gateway and the
//! registry would otherwise take from each other.
//!
//! - [`clock`]: the wall clock control loops read, a test's to move.
//! - [`listen`]: the accept loop of both listeners (timeouts, bounds on
//!   connections and request heads, drain at shutdown).
//! - [`tls`]: rustls configs, reloaded from disk while serving; mutual TLS.
//! - [`objects`]: where bytes live (a directory or an S3 prefix), opened as
//!   one `object_store`.
//! - [`layout`]: the prediction-log and feedback partitions
//!   (`model=…/version=…/date=…/hour=…`), built and parsed in one place.
//! - [`files`]: owner-only files and directories.
//! - [`documents`]: policy files, TOML or JSON, read one way.
//! - [`secrets`]: tokens, their hashes, sha256 digests.
//! - [`exposition`]: `/metrics` text without retired versions' series.
//! - [`openapi`]: the error answer and the path both OpenAPI documents share.
//!
//! Modules point one way: `listen` uses `tls`; the rest stand alone.

pub mod clock;
pub mod documents;
pub mod exposition;
pub mod files;
pub mod layout;
pub mod listen;
pub mod objects;
pub mod openapi;
pub mod secrets;
pub mod tls;
