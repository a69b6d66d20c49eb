//! What one routed inference counts, once it ends: Prometheus series, the
//! version's window for the registry, and the local guard, which sees only
//! canaries picked by the split.
//!
//! Held for the whole request: when the client hangs up and the handler is
//! dropped, it still counts the request (as 499), so a canary that hangs is
//! seen as failing instead of showing only its fast successes.

use std::sync::Arc;
use std::time::Instant;

use super::AppState;
use crate::error::CLIENT_CLOSED;
use crate::fast_rollback::Trip;
use crate::model::LoadedModel;

pub struct Accounting<'a> {
    state: &'a AppState,
    model: Arc<LoadedModel>,
    canary: bool,
    pinned: bool,
    started: Instant,
    done: bool,
}

impl<'a> Accounting<'a> {
    pub fn new(
        state: &'a AppState,
        model: Arc<LoadedModel>,
        canary: bool,
        pinned: bool,
        started: Instant,
    ) -> Self {
        Accounting {
            state,
            model,
            canary,
            pinned,
            started,
            done: false,
        }
    }

    /// The request was answered with `code`.
    pub fn finish(mut self, code: u16) {
        self.record(code, crate::stats::version_failed(code));
        self.done = true;
    }

    /// The request was refused with `code` for the version's own fault (a
    /// hung run): it counts against the version whatever the code, so a
    /// hung canary fails its guard and its rollout checks.
    pub fn finish_version_fault(mut self, code: u16) {
        self.record(code, true);
        self.done = true;
    }

    fn record(&self, code: u16, failed: bool) {
        let elapsed = self.started.elapsed();
        let model = &self.model;
        model.metrics.count(code);
        model.metrics.request_duration.record(elapsed.as_secs_f64());
        // Pinned requests are tests and debugging: not the traffic a rollout judges.
        if self.pinned {
            return;
        }
        model.stats.record(code, failed, elapsed);
        let limits = self.state.guard_limits;
        if self.canary && model.guard.record(failed, limits) {
            // Off the request path: the guard task swaps the table.
            let _ = self.state.trips.try_send(Trip {
                model: model.name.clone(),
                version: model.version,
                errors: limits.errors as u64,
                window: limits.window as u64,
            });
        }
    }
}

impl Drop for Accounting<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.record(CLIENT_CLOSED, true);
        }
    }
}
