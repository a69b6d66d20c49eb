//! `sluice-loadtest`, the load generator for predict endpoints.
//!
//! Empty on purpose: the load generator issue fills it. Until then the
//! benchmarks drive Sluice with `wrk`.
