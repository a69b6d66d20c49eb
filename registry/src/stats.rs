//! The windows of per-version statistics gateways report, kept in memory
//! for the rollout controller and `GET /api/v1/stats`.
//!
//! Each report is stamped when it arrives; a question is "what did every
//! gateway report about this version since then", answered by adding the
//! windows up (their latency buckets are the same everywhere). Nothing here
//! is persisted: after a restart the first interval of a rollout is simply
//! inconclusive.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use sluice_registry_client::rollout::{StatsReport, VersionWindow};

/// How long windows are kept, in milliseconds: longer than any interval
/// worth judging.
pub const RETENTION_MS: u64 = 30 * 60 * 1000;

/// A version's windows, each stamped (Unix milliseconds) when it arrived.
type Stamped = VecDeque<(u64, VersionWindow)>;

/// Windows by (model, version).
#[derive(Default)]
pub struct Stats {
    windows: Mutex<HashMap<(String, u64), Stamped>>,
}

impl Stats {
    /// Keeps `report`'s windows, stamped `now` (Unix milliseconds).
    pub fn record(&self, report: StatsReport, now: u64) {
        let mut windows = self
            .windows
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for window in report.versions {
            let queue = windows.entry((window.model.clone(), window.version)).or_default();
            queue.push_back((now, window));
            while queue
                .front()
                .is_some_and(|(at, _)| now.saturating_sub(*at) > RETENTION_MS)
            {
                queue.pop_front();
            }
        }
    }

    /// Everything reported about one version after `since_ms`, added up: the
    /// windows the gateways began counting at or after it (a window that
    /// straddles it holds earlier traffic, perhaps at another weight), or,
    /// from a gateway that does not say, those that arrived after it.
    pub fn since(&self, model: &str, version: u64, since_ms: u64) -> VersionWindow {
        let windows = self
            .windows
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut total = VersionWindow {
            model: model.to_string(),
            version,
            ..Default::default()
        };
        if let Some(queue) = windows.get(&(model.to_string(), version)) {
            let counts = |(arrived, window): &&(u64, VersionWindow)| match window.started_ms {
                0 => *arrived > since_ms,
                started => started >= since_ms,
            };
            for (_, window) in queue.iter().filter(counts) {
                total.merge(window);
            }
        }
        total
    }

    /// Every version of `model` reported after `since_ms`, each added up.
    pub fn model_since(&self, model: &str, since_ms: u64) -> Vec<VersionWindow> {
        let mut versions: Vec<u64> = {
            let windows = self
                .windows
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            windows
                .keys()
                .filter(|(name, _)| name == model)
                .map(|(_, version)| *version)
                .collect()
        };
        versions.sort_unstable();
        versions
            .into_iter()
            .map(|version| self.since(model, version, since_ms))
            .filter(|window| !window.is_empty())
            .collect()
    }
}
