//! The windows of per-version statistics gateways report, kept in memory
//! for the rollout controller and `GET /api/v1/stats`.
//!
//! Each report is stamped when it arrives; a question is "what did every
//! gateway count about this version over this span", answered by adding up
//! the windows that ended in it (their latency buckets are the same
//! everywhere). A window belongs to the span it ended in, so every window
//! counts once, in one span, and none is lost at a span's edge. Nothing
//! here is persisted: after a restart the first interval of a rollout is
//! simply inconclusive.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use sluice_registry_client::rollout::{GatewayServing, StatsReport, VersionWindow};
use sluice_registry_client::types::GatewayState;

/// How long windows are kept, in milliseconds: longer than any interval
/// worth judging.
pub const RETENTION_MS: u64 = 30 * 60 * 1000;

/// A version's windows, each stamped (Unix milliseconds) when it arrived.
type Stamped = VecDeque<(u64, VersionWindow)>;

/// The most gateways remembered: a token of role gateway naming a new one
/// in each report must not grow the registry's memory without bound.
pub const MAX_GATEWAYS: usize = 4096;

/// A gateway silent this long, when it did not say its interval, is stale.
const STALE_WITHOUT_INTERVAL_MS: u64 = 30_000;

/// What a gateway's last report said about it.
struct Reporter {
    interval_ms: u64,
    at_ms: u64,
    serving: Option<GatewayServing>,
}

/// Windows by (model, version), and the gateways that sent them.
#[derive(Default)]
pub struct Stats {
    windows: Mutex<HashMap<(String, u64), Stamped>>,
    reporters: Mutex<HashMap<String, Reporter>>,
}

impl Stats {
    /// Keeps `report`'s windows, stamped `now` (Unix milliseconds).
    pub fn record(&self, report: StatsReport, now: u64) {
        {
            let mut reporters = self
                .reporters
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let reporter = Reporter {
                interval_ms: report.interval_ms,
                at_ms: now,
                serving: report.serving.clone(),
            };
            reporters.insert(report.gateway.clone(), reporter);
            reporters.retain(|_, reporter| now.saturating_sub(reporter.at_ms) <= RETENTION_MS);
            if reporters.len() > MAX_GATEWAYS {
                // The one silent longest goes.
                let oldest = reporters
                    .iter()
                    .min_by_key(|(_, reporter)| reporter.at_ms)
                    .map(|(name, _)| name.clone());
                if let Some(name) = oldest {
                    reporters.remove(&name);
                }
            }
        }
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

    /// The longest reporting interval of the gateways heard from in the
    /// last half hour, in milliseconds; `None` when none said.
    pub fn longest_report_interval(&self) -> Option<u64> {
        let reporters = self
            .reporters
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        reporters
            .values()
            .map(|reporter| reporter.interval_ms)
            .filter(|&interval| interval > 0)
            .max()
    }

    /// Every gateway heard from in the last half hour, by name, as of
    /// `now` (Unix milliseconds).
    pub fn gateways(&self, now: u64) -> Vec<GatewayState> {
        let reporters = self
            .reporters
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut gateways: Vec<GatewayState> = reporters
            .iter()
            .map(|(name, reporter)| {
                let silent_ms = now.saturating_sub(reporter.at_ms);
                let stale_after = match reporter.interval_ms {
                    0 => STALE_WITHOUT_INTERVAL_MS,
                    interval => interval.saturating_mul(3),
                };
                let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(reporter.at_ms);
                GatewayState {
                    gateway: name.clone(),
                    serving: reporter.serving.clone(),
                    last_report_at: humantime::format_rfc3339_millis(at).to_string(),
                    seconds_since_report: silent_ms as f64 / 1000.0,
                    interval_ms: reporter.interval_ms,
                    stale: silent_ms > stale_after,
                }
            })
            .collect();
        gateways.sort_by(|a, b| a.gateway.cmp(&b.gateway));
        gateways
    }

    /// What one version's windows that ended at or after `since_ms`
    /// counted, added up.
    pub fn since(&self, model: &str, version: u64, since_ms: u64) -> VersionWindow {
        self.between(model, version, since_ms, u64::MAX)
    }

    /// What the windows that ended in `[start_ms, end_ms)` counted (or,
    /// from a gateway that does not say, arrived in it): a span judged
    /// late is still only its own traffic, and a window that ends as one
    /// span ends belongs to the next.
    pub fn between(&self, model: &str, version: u64, start_ms: u64, end_ms: u64) -> VersionWindow {
        self.add_up(model, version, |arrived, window| match window.started_ms {
            0 => (start_ms..end_ms).contains(&arrived),
            _ => (start_ms..end_ms).contains(&window.ended_ms),
        })
    }

    /// What the windows that reached the registry in `[start_ms, end_ms)`
    /// counted: each window once, whenever it was counted, for tests that
    /// take every window as it comes.
    pub fn arrived_between(&self, model: &str, version: u64, start_ms: u64, end_ms: u64) -> VersionWindow {
        self.add_up(model, version, |arrived, _| (start_ms..end_ms).contains(&arrived))
    }

    /// One version's windows that `counts` (given when each arrived), added up.
    fn add_up(
        &self,
        model: &str,
        version: u64,
        counts: impl Fn(u64, &VersionWindow) -> bool,
    ) -> VersionWindow {
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
            for (_, window) in queue.iter().filter(|(arrived, window)| counts(*arrived, window)) {
                total.merge(window);
            }
        }
        total
    }

    /// Whether any window of `model` arrived at or after `since_ms`.
    pub fn arrived_after(&self, model: &str, since_ms: u64) -> bool {
        let windows = self
            .windows
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        windows
            .iter()
            .filter(|((name, _), _)| name == model)
            .any(|(_, queue)| queue.back().is_some_and(|(arrived, _)| *arrived >= since_ms))
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
            interval_ms: 500,
            versions: vec![VersionWindow {
                model: "m".into(),
                version,
                started_ms,
                ended_ms,
                requests,
                ..Default::default()
            }],
            serving: None,
        }
    }

    /// A window belongs to the span it ended in: each counts once, and one
    /// straddling two spans is not lost.
    #[test]
    fn windows_count_in_the_span_they_ended_in() {
        let stats = Stats::default();
        stats.record(report(1, (900, 1100), 1), 1100);
        stats.record(report(1, (1100, 1500), 10), 1500);
        stats.record(report(1, (1500, 2100), 100), 2100);
        stats.record(report(1, (2100, 2500), 1000), 2500);
        stats.record(report(2, (1100, 1500), 7), 1500);
        assert_eq!(stats.between("m", 1, 1000, 2000).requests, 11);
        assert_eq!(stats.between("m", 1, 2000, 3000).requests, 1100);
        assert_eq!(stats.since("m", 1, 1000).requests, 1111);
        // One that ends as a span ends is the next span's.
        assert_eq!(stats.between("m", 1, 1000, 1500).requests, 1);
        assert_eq!(stats.between("m", 1, 1500, 2000).requests, 10);
        assert_eq!(stats.between("m", 2, 1000, 2000).requests, 7);
        // A gateway that does not say when it began: by arrival.
        stats.record(report(3, (0, 0), 5), 1800);
        assert_eq!(stats.between("m", 3, 1000, 2000).requests, 5);
        assert_eq!(stats.between("m", 3, 2000, 3000).requests, 0);
    }

    #[test]
    fn the_longest_reporting_interval_of_recent_gateways() {
        let stats = Stats::default();
        assert_eq!(stats.longest_report_interval(), None);
        let mut slow = report(1, (0, 5000), 1);
        slow.gateway = "slow".into();
        slow.interval_ms = 5000;
        stats.record(slow, 5000);
        stats.record(report(1, (0, 500), 1), 6000);
        assert_eq!(stats.longest_report_interval(), Some(5000));
        // Half an hour later, the slow one has not been heard from again.
        stats.record(report(1, (0, 500), 1), 5000 + RETENTION_MS + 1);
        assert_eq!(stats.longest_report_interval(), Some(500));
    }

    #[test]
    fn the_fleet_is_every_gateway_heard_from_with_what_it_serves() {
        let stats = Stats::default();
        let serving = GatewayServing {
            revision: 7,
            models: [("m".to_string(), vec![1, 2])].into(),
            started_at: "2026-12-07T00:00:00Z".into(),
            build: "0.1.0".into(),
        };
        let mut fresh = report(1, (0, 500), 3);
        fresh.gateway = "b".into();
        fresh.serving = Some(serving.clone());
        stats.record(fresh, 10_000);
        stats.record(report(1, (0, 500), 3), 8_000);
        let fleet = stats.gateways(10_600);
        let names: Vec<&str> = fleet.iter().map(|gateway| gateway.gateway.as_str()).collect();
        assert_eq!(names, ["b", "g"]);
        assert_eq!(fleet[0].serving.as_ref(), Some(&serving));
        assert!(!fleet[0].stale, "reported 0.6 s ago, every 0.5 s");
        assert!(fleet[1].stale, "silent 2.6 s, more than three intervals");
        assert_eq!(fleet[1].seconds_since_report, 2.6);
        // Bounded: the one silent longest goes first.
        for index in 0..MAX_GATEWAYS {
            let mut flood = report(1, (0, 500), 1);
            flood.gateway = format!("flood-{index}");
            stats.record(flood, 20_000 + index as u64);
        }
        let fleet = stats.gateways(30_000);
        assert_eq!(fleet.len(), MAX_GATEWAYS);
        assert!(fleet.iter().all(|gateway| gateway.gateway != "g"));
    }
}
