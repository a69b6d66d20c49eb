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
use crate::guard::Trip;
use crate::model::LoadedModel;
use crate::stats::Outcome;

pub struct Accounting<'a> {
    state: &'a AppState,
    model: Arc<LoadedModel>,
    /// Picked as a canary, with its stable version: the guard watches it.
    canary_of_opt: Option<Arc<LoadedModel>>,
    pinned: bool,
    started: Instant,
    done: bool,
}

impl<'a> Accounting<'a> {
    pub fn new(
        state: &'a AppState,
        model: Arc<LoadedModel>,
        canary_of_opt: Option<Arc<LoadedModel>>,
        pinned: bool,
        started: Instant,
    ) -> Self {
        Accounting {
            state,
            model,
            canary_of_opt,
            pinned,
            started,
            done: false,
        }
    }

    /// The request was answered with `code`, which counts for the version
    /// as `outcome` (a refusal for a hung run counts against the version
    /// whatever its code, so a hung canary fails its guard and its checks;
    /// an engine's refusal is a 400 of its own class).
    pub fn finish(mut self, code: u16, outcome: Outcome) {
        self.record(code, outcome);
        self.done = true;
    }

    fn record(&self, code: u16, outcome: Outcome) {
        let elapsed = self.started.elapsed();
        let model = &self.model;
        model.metrics.count(code);
        if outcome == Outcome::EngineRefused {
            model.metrics.engine_refused.increment(1);
        }
        model.metrics.request_duration.record(elapsed.as_secs_f64());
        // Pinned requests are tests and debugging: not the traffic a rollout judges.
        if self.pinned {
            return;
        }
        model.stats.record(outcome, elapsed);
        let limits = self.state.guard_limits;
        let refused = outcome == Outcome::EngineRefused;
        let Some(stable) = &self.canary_of_opt else {
            model.guard.note(refused, elapsed, limits);
            return;
        };
        let answer = crate::guard::Answer {
            failed: matches!(outcome, Outcome::Failed | Outcome::NonFinite),
            refused,
            elapsed,
        };
        if model.guard.record(answer, stable.guard.baseline(limits), limits) {
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
            self.record(CLIENT_CLOSED, Outcome::Failed);
        }
    }
}
