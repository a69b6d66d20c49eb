//! What a run measured: HDR histograms (1 µs to 1 h, 3 significant digits),
//! error classes, and a per-second timeline; kept per worker thread without
//! locks and merged once at the end.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use hdrhistogram::Histogram;

/// Histogram bounds in microseconds: 1 µs to 1 h.
const LOWEST_US: u64 = 1;
const HIGHEST_US: u64 = 3_600_000_000;
/// The timeline keeps one small histogram per second: 2 digits are enough
/// to draw p50 and p99, and keep it light.
const TIMELINE_DIGITS: u8 = 2;

pub fn new_histogram(digits: u8) -> Histogram<u64> {
    Histogram::new_with_bounds(LOWEST_US, HIGHEST_US, digits).expect("static histogram bounds are valid")
}

pub fn micros(duration: Duration) -> u64 {
    (duration.as_micros() as u64).clamp(LOWEST_US, HIGHEST_US)
}

/// Latency and errors of one group of responses (all, or one version).
/// Latency histograms hold successful responses only: a fast 503 or a
/// refused connection must not make p99 look better.
#[derive(Debug, Clone)]
pub struct Stats {
    /// From the intended start to the end of the response: what a user waits.
    pub corrected: Histogram<u64>,
    /// From the actual send to the end of the response.
    pub service: Histogram<u64>,
    /// From the intended start to the actual send: how late the generator was.
    pub lag: Histogram<u64>,
    pub ok: u64,
    /// Successful responses that ended inside the scheduled window: the
    /// throughput the server actually delivered.
    pub ok_in_window: u64,
    /// Error class (`connect`, `timeout`, `io`, `status 503`, `not sent`) → count.
    pub errors: BTreeMap<String, u64>,
    /// Open Inference Protocol error messages (`{"error": "..."}`) → count.
    pub messages: BTreeMap<String, u64>,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            corrected: new_histogram(3),
            service: new_histogram(3),
            lag: new_histogram(3),
            ok: 0,
            ok_in_window: 0,
            errors: BTreeMap::new(),
            messages: BTreeMap::new(),
        }
    }
}

impl Stats {
    pub fn requests(&self) -> u64 {
        self.ok + self.error_count()
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    pub fn error_rate(&self) -> f64 {
        let total = self.requests();
        if total == 0 {
            0.0
        } else {
            self.error_count() as f64 / total as f64
        }
    }

    fn add(&mut self, corrected: u64, service: u64, lag: u64, outcome: &Outcome, in_window: bool) {
        self.lag.saturating_record(lag);
        match outcome {
            Outcome::Ok => {
                self.corrected.saturating_record(corrected);
                self.service.saturating_record(service);
                self.ok += 1;
                self.ok_in_window += u64::from(in_window);
            }
            Outcome::Error { class, message_opt } => {
                *self.errors.entry(class.clone()).or_default() += 1;
                if let Some(message) = message_opt {
                    *self.messages.entry(message.clone()).or_default() += 1;
                }
            }
        }
    }

    pub fn merge(&mut self, other: &Stats) {
        self.corrected.add(&other.corrected).expect("same bounds");
        self.service.add(&other.service).expect("same bounds");
        self.lag.add(&other.lag).expect("same bounds");
        self.ok += other.ok;
        self.ok_in_window += other.ok_in_window;
        for (class, count) in &other.errors {
            *self.errors.entry(class.clone()).or_default() += count;
        }
        for (message, count) in &other.messages {
            *self.messages.entry(message.clone()).or_default() += count;
        }
    }
}

/// One second of the run, for plots and for spotting hot swaps.
#[derive(Debug, Clone)]
pub struct Second {
    pub completed: u64,
    pub errors: u64,
    pub corrected: Histogram<u64>,
    /// Values of the split header seen in this second.
    pub versions: BTreeSet<String>,
}

impl Default for Second {
    fn default() -> Self {
        Second {
            completed: 0,
            errors: 0,
            corrected: new_histogram(TIMELINE_DIGITS),
            versions: BTreeSet::new(),
        }
    }
}

/// One outcome as a connection saw it.
pub struct Sample<'a> {
    /// Seconds since the run started, when the response ended.
    pub at_second: usize,
    pub corrected: Duration,
    pub service: Duration,
    pub lag: Duration,
    /// The split header's value (`None` when not splitting or absent).
    pub version: Option<&'a str>,
    pub outcome: Outcome,
    /// The response ended before the scheduled window closed.
    pub in_window: bool,
    /// The connection was free at the intended start, so any lag was the
    /// generator's own (not a wait behind the server's previous answer).
    pub connection_was_free: bool,
}

pub enum Outcome {
    Ok,
    Error {
        class: String,
        message_opt: Option<String>,
    },
}

/// Everything one worker thread measured.
#[derive(Debug, Clone, Default)]
pub struct Recorder {
    pub total: Stats,
    /// Split header value → its stats; `(none)` when a response lacked it.
    pub by_version: BTreeMap<String, Stats>,
    pub timeline: Vec<Second>,
    /// Sends more than 1 ms after their intended start while their
    /// connection was free: the generator's own lateness.
    pub late: u64,
    /// Sends that waited for their connection's previous response: the
    /// server's slowness, which corrected latency charges to it.
    pub queued_behind_server: u64,
    /// Connections opened, first ones and reconnections.
    pub connections_opened: u64,
}

pub const NO_VERSION: &str = "(none)";
/// The error class of scheduled requests the run ended before sending.
pub const NOT_SENT: &str = "not sent";
const LATE: Duration = Duration::from_millis(1);

impl Recorder {
    pub fn record(&mut self, sample: Sample<'_>, splitting: bool) {
        let corrected = micros(sample.corrected);
        let service = micros(sample.service);
        let lag = micros(sample.lag);
        if !sample.connection_was_free {
            self.queued_behind_server += 1;
        } else if sample.lag > LATE {
            self.late += 1;
        }
        if self.timeline.len() <= sample.at_second {
            self.timeline.resize_with(sample.at_second + 1, Second::default);
        }
        let second = &mut self.timeline[sample.at_second];
        second.completed += 1;
        if matches!(sample.outcome, Outcome::Ok) {
            second.corrected.saturating_record(corrected);
        }
        let failed = matches!(sample.outcome, Outcome::Error { .. });
        if failed {
            second.errors += 1;
        }
        if splitting {
            let version = sample.version.unwrap_or(NO_VERSION);
            if !second.versions.contains(version) {
                second.versions.insert(version.to_string());
            }
            if !self.by_version.contains_key(version) {
                self.by_version.insert(version.to_string(), Stats::default());
            }
            let stats = self.by_version.get_mut(version).expect("inserted above");
            stats.add(corrected, service, lag, &sample.outcome, sample.in_window);
        }
        self.total
            .add(corrected, service, lag, &sample.outcome, sample.in_window);
    }

    pub fn merge(&mut self, other: &Recorder) {
        self.total.merge(&other.total);
        for (version, stats) in &other.by_version {
            self.by_version.entry(version.clone()).or_default().merge(stats);
        }
        if self.timeline.len() < other.timeline.len() {
            self.timeline.resize_with(other.timeline.len(), Second::default);
        }
        for (mine, theirs) in self.timeline.iter_mut().zip(&other.timeline) {
            mine.completed += theirs.completed;
            mine.errors += theirs.errors;
            mine.corrected.add(&theirs.corrected).expect("same bounds");
            mine.versions.extend(theirs.versions.iter().cloned());
        }
        self.late += other.late;
        self.queued_behind_server += other.queued_behind_server;
        self.connections_opened += other.connections_opened;
    }

    /// Scheduled requests never sent because the run hit its hard stop.
    pub fn not_sent(&mut self, count: u64) {
        if count > 0 {
            *self.total.errors.entry(NOT_SENT.to_string()).or_default() += count;
        }
    }

    /// Seconds at which the set of versions answering changed: hot swaps.
    pub fn version_changes(&self) -> Vec<(usize, BTreeSet<String>)> {
        let mut changes = Vec::new();
        let mut previous: Option<&BTreeSet<String>> = None;
        for (second, bucket) in self.timeline.iter().enumerate() {
            if bucket.versions.is_empty() {
                continue;
            }
            if previous.is_some_and(|p| p != &bucket.versions) {
                changes.push((second, bucket.versions.clone()));
            }
            previous = Some(&bucket.versions);
        }
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at_second: usize, millis: u64, version: Option<&str>, ok: bool) -> Sample<'_> {
        Sample {
            at_second,
            corrected: Duration::from_millis(millis),
            service: Duration::from_millis(millis),
            lag: Duration::ZERO,
            version,
            in_window: true,
            connection_was_free: true,
            outcome: if ok {
                Outcome::Ok
            } else {
                Outcome::Error {
                    class: "status 500".into(),
                    message_opt: Some("boom".into()),
                }
            },
        }
    }

    #[test]
    fn records_split_and_merge() {
        let mut a = Recorder::default();
        a.record(sample(0, 10, Some("1"), true), true);
        a.record(sample(1, 20, Some("2"), false), true);
        let mut b = Recorder::default();
        b.record(sample(2, 30, Some("2"), true), true);
        a.merge(&b);
        assert_eq!(a.total.requests(), 3);
        assert_eq!(a.total.errors["status 500"], 1);
        assert_eq!(a.by_version["1"].ok, 1);
        assert_eq!(a.by_version["2"].requests(), 2);
        assert_eq!(a.by_version["2"].messages["boom"], 1);
        assert_eq!(a.timeline.len(), 3);
        let changes = a.version_changes();
        assert_eq!(changes, vec![(1, ["2".to_string()].into())]);
    }

    #[test]
    fn histograms_keep_three_digits_up_to_an_hour() {
        let mut stats = Stats::default();
        stats.corrected.record(micros(Duration::from_secs(3000))).unwrap();
        stats
            .corrected
            .record(micros(Duration::from_micros(1234)))
            .unwrap();
        let low = stats.corrected.value_at_quantile(0.0);
        assert!((1233..=1235).contains(&low), "{low}");
        assert!(stats.corrected.max() >= 2_990_000_000);
    }
}
