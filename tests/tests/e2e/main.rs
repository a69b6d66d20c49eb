//! Sluice end to end, in one test binary: each module is a suite over real
//! HTTP on ephemeral ports (a registry and gateways in this process, real
//! SQLite or PostgreSQL, real ONNX models). One binary links once, where a
//! binary per suite linked the whole data and control planes two dozen
//! times. Run one suite with `cargo test -p sluice-tests --test e2e -- drift::`.
//!
//! The suites share the process: metrics they read are the process's, so
//! they check their own model's series or a lower bound, never a total.

mod awkward;
mod bad_input;
mod batching;
mod binary;
mod console;
mod contracts;
mod drift;
mod endpoints;
mod engines;
mod faults;
mod feedback;
mod fuzz_regressions;
mod grpc;
mod hot_swap;
mod monitoring;
mod openapi;
mod postgres;
mod postgres_tls;
mod predlog;
mod profile;
mod quality;
mod reference;
mod registry_api;
mod registry_gateway;
mod reliability;
mod rollout;
mod security;
mod traffic;
mod triggers;
