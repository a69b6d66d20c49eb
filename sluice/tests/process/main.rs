//! The real `sluice` binary, driven as a process the way users and
//! orchestrators drive it: the CLI against a standalone registry, `serve
//! --demo`, S3 storage, several gateways on PostgreSQL, floods, the release
//! walkthrough of docs/releasing.md as printed. One test
//! binary (one link); run a suite with `cargo test -p sluice --test process
//! -- demo::`.

mod cli;
mod common;
mod demo;
mod s3;
mod scale_out;
mod walkthrough;
