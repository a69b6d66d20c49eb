//! The `sluice` binary's library: the one place where the data plane
//! (`sluice_gateway`) and the control plane (`sluice_registry`) meet.
//!
//! - [`command`] is the clap tree: every flag with its `SLUICE_*` variable,
//!   validated into the gateway's and the registry's typed configurations;
//! - [`cli`] is the registry's command line (`sluice models|versions|...`),
//!   a file per topic;
//! - [`embedded`] runs the registry inside the gateway's process (`sluice
//!   serve` without `--registry`), with the gateway's engines as the
//!   registry's `Inspector`;
//! - [`demo`] registers the example models through the registry's API.

pub mod cli;
pub mod command;
pub mod demo;
pub mod embedded;
pub mod reference;
