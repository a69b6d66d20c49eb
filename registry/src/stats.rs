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
        self.between(model, version, since_ms, u64::MAX)
    }

    /// What the windows that began in `[start_ms, end_ms)` counted (or,
    /// from a gateway that does not say, arrived in `(start_ms, end_ms]`):
    /// a trigger's window judged late is still only its own traffic.
    pub fn between(&self, model: &str, version: u64, start_ms: u64, end_ms: u64) -> VersionWindow {
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
                0 => *arrived > start_ms && *arrived <= end_ms,
                started => started >= start_ms && started < end_ms,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn report(version: u64, (started_ms, ended_ms): (u64, u64), requests: u64) -> StatsReport {
        StatsReport {
            gateway: "g".into(),
            versions: vec![VersionWindow {
                model: "m".into(),
                version,
                started_ms,
                ended_ms,
                requests,
                ..Default::default()
            }],
        }
    }

    /// A window belongs to the span it began in: one straddling a span's
    /// start is earlier traffic, one begun after its end is later traffic.
    #[test]
    fn windows_count_in_the_span_they_began_in() {
        let stats = Stats::default();
        stats.record(report(1, (900, 1100), 1), 1100);
        stats.record(report(1, (1100, 1500), 10), 1500);
        stats.record(report(1, (1500, 2100), 100), 2100);
        stats.record(report(1, (2100, 2500), 1000), 2500);
        stats.record(report(2, (1100, 1500), 7), 1500);
        assert_eq!(stats.between("m", 1, 1000, 2000).requests, 110);
        assert_eq!(stats.since("m", 1, 1000).requests, 1110);
        assert_eq!(stats.between("m", 1, 2000, 3000).requests, 1000);
        assert_eq!(stats.between("m", 2, 1000, 2000).requests, 7);
        // A gateway that does not say when it began: by arrival.
        stats.record(report(3, (0, 0), 5), 1800);
        assert_eq!(stats.between("m", 3, 1000, 2000).requests, 5);
        assert_eq!(stats.between("m", 3, 2000, 3000).requests, 0);
    }
}
