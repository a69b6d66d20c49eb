//! `sluice-loadtest`, an honest load generator for Open Inference Protocol
//! predict endpoints.
//!
//! How a run flows:
//!
//! - [`cli`] turns flags into a [`runner::RunSpec`]; [`target`] builds every
//!   request body before the run (files, binary tensors, or random tensors
//!   from the model's metadata);
//! - [`runner`] starts one single-threaded event loop per worker thread, each
//!   owning its connections ([`http`]) and a lock-free [`stats::Recorder`];
//!   in the open model, [`schedule`] says when each request is due and latency
//!   is measured from then (coordinated omission corrected, as wrk2 does);
//! - [`report`] merges the workers' HDR histograms into a text or JSON report,
//!   [`slo`] judges thresholds for CI, [`sweep`] holds levels until stable and
//!   finds the knee, [`plot`] draws SVG plots into the places [`output`]
//!   checked before the run.
//!
//! [`error`] holds the one error type.

pub mod cli;
pub mod error;
pub mod http;
pub mod output;
pub mod plot;
pub mod report;
pub mod runner;
pub mod schedule;
pub mod slo;
pub mod stats;
pub mod sweep;
pub mod target;

/// Exit codes that scripts and CI can trust.
pub mod exit {
    /// The run was valid and every threshold held.
    pub const PASS: i32 = 0;
    /// The tool failed (bad flags give clap's 2).
    pub const ERROR: i32 = 1;
    /// A threshold failed.
    pub const THRESHOLD_FAILED: i32 = 3;
    /// The run cannot be judged: the generator saturated, or a threshold had no samples.
    pub const INVALID_RUN: i32 = 4;
}
