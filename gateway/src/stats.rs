//! Per-version statistics in windows of a few seconds, which
//! `crate::report` sends to the registry, where windows from every replica
//! add up (the rollout controller judges canaries on them).
//!
//! The request path only increments atomics of the version it picked; the
//! reporter swaps them to zero once per window, so windows never overlap.
//! Windows begin and end by the reporter's clock: a version's first when
//! it is loaded (`begin`), each next one when the last was taken.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sluice_registry_client::rollout::{LATENCY_BUCKETS_MS, ShadowWindow, VersionWindow};

use crate::comparison::Comparison;

/// The counters of one version since the last report.
pub struct VersionStats {
    /// When the current window began (Unix milliseconds); 0 until `begin`.
    window_started_ms: AtomicU64,
    requests: AtomicU64,
    client_errors: AtomicU64,
    server_errors: AtomicU64,
    engine_refused: AtomicU64,
    timeouts: AtomicU64,
    /// Rows answered, and those with a NaN or an infinity in an output.
    output_rows: AtomicU64,
    nonfinite_rows: AtomicU64,
    /// One per bound of `LATENCY_BUCKETS_MS`, plus one above the last.
    latency: Box<[AtomicU64]>,
    shadow_requests: AtomicU64,
    shadow_errors: AtomicU64,
    shadow_rows: AtomicU64,
    shadow_agreements: AtomicU64,
    shadow_values: AtomicU64,
    /// f64 bits: added with a compare-and-swap loop (shadow threads only).
    shadow_sum_abs_diff: AtomicU64,
    shadow_max_abs_diff: AtomicU64,
}

impl Default for VersionStats {
    fn default() -> Self {
        VersionStats {
            window_started_ms: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            client_errors: AtomicU64::new(0),
            server_errors: AtomicU64::new(0),
            engine_refused: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
            output_rows: AtomicU64::new(0),
            nonfinite_rows: AtomicU64::new(0),
            latency: (0..=LATENCY_BUCKETS_MS.len())
                .map(|_| AtomicU64::new(0))
                .collect(),
            shadow_requests: AtomicU64::new(0),
            shadow_errors: AtomicU64::new(0),
            shadow_rows: AtomicU64::new(0),
            shadow_agreements: AtomicU64::new(0),
            shadow_values: AtomicU64::new(0),
            shadow_sum_abs_diff: AtomicU64::new(0f64.to_bits()),
            shadow_max_abs_diff: AtomicU64::new(0f64.to_bits()),
        }
    }
}

impl VersionStats {
    /// One answer, as it counts for the version, and how long it took.
    pub fn record(&self, outcome: Outcome, elapsed: Duration) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let class = match outcome {
            // Its rows are counted apart (`record_rows`).
            Outcome::Answered | Outcome::NonFinite => None,
            Outcome::ClientError => Some(&self.client_errors),
            Outcome::EngineRefused => Some(&self.engine_refused),
            Outcome::TimedOut => Some(&self.timeouts),
            Outcome::Failed => Some(&self.server_errors),
        };
        if let Some(counter) = class {
            counter.fetch_add(1, Ordering::Relaxed);
        }
        let millis = elapsed.as_secs_f64() * 1000.0;
        let bucket = LATENCY_BUCKETS_MS.partition_point(|&bound| bound < millis);
        self.latency[bucket].fetch_add(1, Ordering::Relaxed);
    }

    /// One answer's rows, and how many held a NaN or an infinity.
    pub fn record_rows(&self, rows: u64, nonfinite: u64) {
        self.output_rows.fetch_add(rows, Ordering::Relaxed);
        if nonfinite > 0 {
            self.nonfinite_rows.fetch_add(nonfinite, Ordering::Relaxed);
        }
    }

    /// One mirrored request this version ran as a shadow: its comparison, or
    /// `None` when it failed.
    pub fn record_shadow(&self, comparison_opt: Option<&Comparison>) {
        self.shadow_requests.fetch_add(1, Ordering::Relaxed);
        let Some(comparison) = comparison_opt else {
            self.shadow_errors.fetch_add(1, Ordering::Relaxed);
            return;
        };
        self.shadow_rows.fetch_add(comparison.rows, Ordering::Relaxed);
        self.shadow_agreements
            .fetch_add(comparison.agreements, Ordering::Relaxed);
        self.shadow_values.fetch_add(comparison.values, Ordering::Relaxed);
        update_f64(&self.shadow_sum_abs_diff, |sum| sum + comparison.sum_abs_diff);
        update_f64(&self.shadow_max_abs_diff, |max| max.max(comparison.max_abs_diff));
    }

    /// The first window begins at `at_ms` (Unix milliseconds), when the
    /// version was loaded.
    pub fn begin(&self, at_ms: u64) {
        self.window_started_ms.store(at_ms, Ordering::Relaxed);
    }

    /// The counts since the last take, zeroed as they are read, as the
    /// window that ends at `ended_ms`. A version nobody began counts from
    /// `fallback_started_ms` (the reporter's previous take): no later than
    /// its first count, so no interval that began after takes a count
    /// from before.
    pub fn take(&self, model: &str, version: u64, ended_ms: u64, fallback_started_ms: u64) -> VersionWindow {
        let take = |counter: &AtomicU64| counter.swap(0, Ordering::Relaxed);
        let take_f64 = |counter: &AtomicU64| f64::from_bits(counter.swap(0f64.to_bits(), Ordering::Relaxed));
        let started_ms = match self.window_started_ms.swap(ended_ms, Ordering::Relaxed) {
            0 => fallback_started_ms,
            started => started,
        };
        VersionWindow {
            model: model.to_string(),
            version,
            started_ms,
            ended_ms,
            requests: take(&self.requests),
            client_errors: take(&self.client_errors),
            server_errors: take(&self.server_errors),
            engine_refused: take(&self.engine_refused),
            timeouts: take(&self.timeouts),
            output_rows: take(&self.output_rows),
            nonfinite_rows: take(&self.nonfinite_rows),
            latency_buckets: self.latency.iter().map(take).collect(),
            shadow: ShadowWindow {
                requests: take(&self.shadow_requests),
                errors: take(&self.shadow_errors),
                rows: take(&self.shadow_rows),
                agreements: take(&self.shadow_agreements),
                values: take(&self.shadow_values),
                sum_abs_diff: take_f64(&self.shadow_sum_abs_diff),
                max_abs_diff: take_f64(&self.shadow_max_abs_diff),
            },
            features: std::collections::BTreeMap::new(),
            outputs: std::collections::BTreeMap::new(),
            contract_rows: 0,
            contract_violations: std::collections::BTreeMap::new(),
        }
    }
}

/// How one answer counts for the version that gave it, in its statistics
/// and its local guard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Answered, or refused for something that is nobody's fault here (a
    /// full gateway).
    Answered,
    /// A 4xx the gateway gave: the client's mistake.
    ClientError,
    /// The engine refused input the gateway's validation passed (answered
    /// 400): the caller's problem if the stable version refuses it too, the
    /// version's if only it does. Rollouts judge the difference.
    EngineRefused,
    /// Answered, with a NaN or an infinity in an output: the version's
    /// failure for its guard (its rows are counted apart for rollouts).
    NonFinite,
    /// 504: the caller's `timeout` passed before the answer. A slow version
    /// makes more of them than the stable one; rollouts judge the excess.
    TimedOut,
    /// The version's own failure: a 5xx but 503 (the gateway being full)
    /// and 504 (`TimedOut`), a
    /// client hanging up (a canary that hangs must not look healthy), or a
    /// refusal for a hung run.
    Failed,
}

impl Outcome {
    /// What an answer with `code` counts as, the engine's refusals aside.
    pub fn of(code: u16) -> Outcome {
        match code {
            crate::error::CLIENT_CLOSED => Outcome::Failed,
            503 => Outcome::Answered,
            504 => Outcome::TimedOut,
            500..=599 => Outcome::Failed,
            400..=499 => Outcome::ClientError,
            _ => Outcome::Answered,
        }
    }
}

fn update_f64(cell: &AtomicU64, update: impl Fn(f64) -> f64) {
    let _ = cell.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
        Some(update(f64::from_bits(bits)).to_bits())
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_versions_own_failures_count() {
        for code in [500, 502, crate::error::CLIENT_CLOSED] {
            assert_eq!(Outcome::of(code), Outcome::Failed, "{code}");
        }
        // A full gateway (503) is not the version's fault; an expired
        // timeout (504) is a class of its own.
        for code in [200, 503] {
            assert_eq!(Outcome::of(code), Outcome::Answered, "{code}");
        }
        assert_eq!(Outcome::of(504), Outcome::TimedOut);
        for code in [400, 404, 422] {
            assert_eq!(Outcome::of(code), Outcome::ClientError, "{code}");
        }
    }

    #[test]
    fn windows_count_codes_and_latency_and_reset_when_taken() {
        let stats = VersionStats::default();
        stats.record(Outcome::of(200), Duration::from_micros(400));
        stats.record(Outcome::of(200), Duration::from_millis(40));
        stats.record(Outcome::of(400), Duration::from_micros(90));
        stats.record(Outcome::of(500), Duration::from_secs(20));
        stats.record(Outcome::of(503), Duration::from_micros(50));
        stats.record(Outcome::EngineRefused, Duration::from_micros(50));
        stats.record(
            Outcome::of(crate::error::CLIENT_CLOSED),
            Duration::from_micros(50),
        );
        let window = stats.take("m", 3, 20, 10);
        // 503 is the gateway being full; a client hanging up counts against
        // the version; the engine's refusal is a class of its own.
        assert_eq!(
            (
                window.requests,
                window.client_errors,
                window.server_errors,
                window.engine_refused
            ),
            (7, 1, 2, 1)
        );
        assert_eq!(window.latency_buckets.len(), LATENCY_BUCKETS_MS.len() + 1);
        assert_eq!(window.latency_buckets[1], 1, "90 µs is in the 0.1 ms bucket");
        assert_eq!(window.latency_buckets[4], 1, "400 µs is in the 0.5 ms bucket");
        assert_eq!(
            *window.latency_buckets.last().unwrap(),
            1,
            "20 s is above every bound"
        );
        assert_eq!(
            (window.started_ms, window.ended_ms),
            (10, 20),
            "never begun: from the last take"
        );
        let next = stats.take("m", 3, 30, 20);
        assert_eq!(next.requests, 0, "taking resets");
        assert_eq!(
            (next.started_ms, next.ended_ms),
            (20, 30),
            "the next window begins where it ended"
        );
    }

    #[test]
    fn shadow_comparisons_add_up() {
        let stats = VersionStats::default();
        let comparison = Comparison {
            rows: 4,
            agreements: 3,
            values: 8,
            sum_abs_diff: 0.5,
            max_abs_diff: 0.25,
            mismatched_outputs: 0,
        };
        stats.record_shadow(Some(&comparison));
        stats.record_shadow(Some(&comparison));
        stats.record_shadow(None);
        let shadow = stats.take("m", 1, 2, 1).shadow;
        assert_eq!(
            (shadow.requests, shadow.errors, shadow.rows, shadow.agreements),
            (3, 1, 8, 6)
        );
        assert_eq!((shadow.sum_abs_diff, shadow.max_abs_diff), (1.0, 0.25));
    }
}
