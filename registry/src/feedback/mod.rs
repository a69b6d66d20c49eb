//! The feedback join: ground-truth labels matched with the predictions they
//! are for, on `request_id`, into realized accuracy, AUC or MAE per version.
//!
//! Both sides are read from the store the gateways write (the prediction log
//! and the feedback segments), so the join sees every replica and is rebuilt
//! from the store after a restart: nothing here is the only copy.
//!
//! Memory is bounded. A prediction waits for its label for the horizon, and
//! at most `max_pending` wait at once (oldest let go first); what was let go
//! or labelled is remembered as a 64-bit hash, to tell a late or duplicate
//! label from an unknown one. A label whose prediction is not in the log
//! yet waits for the grace period, and labels waiting hold at most
//! `max_waiting_bytes` (the oldest are let go first and counted
//! `dropped`): a flood of labels for ids nobody logged costs that much at
//! most. Feedback is joined one segment at a time, so a restart that reads
//! a day of it holds one segment's labels at once. Joined rows are kept as buckets (a minute by
//! default) of counts (and, for AUC, score histograms in hundredths), by
//! when the label arrived: a window is "the labels that came in during it",
//! which does not change once it is over, and a window shorter than a
//! bucket sees nothing.
//!
//! A prediction logged with the slice of each row (the card's slice
//! feature, named by the gateway) is also counted per slice, for the
//! per-slice report and the slice gates: in hourly buckets, since a slice
//! gap is judged over hours of labels, and a version has at most
//! [`MAX_CATEGORIES`] slices (the rest count as one), so that slices cost
//! a few megabytes per version at most.

mod memory;
mod scoring;

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

use memory::{JoinState, Logged, SLICE_BUCKET_MS, Waiting, hash, intern};
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt};
use scoring::{Bucket, Predicted, auc, predicted_rows, ratio, score_rows};
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;
use sluice_common::layout;
use sluice_common::objects::Traffic;
use sluice_registry_client::feedback::{Performance, Task, Unmatched};
use sluice_registry_client::limits::MAX_REQUEST_ID_BYTES;
use sluice_registry_client::slices::{SliceMetrics, SliceReport};

use crate::config::MonitorConfig;
use sluice_common::clock::Clock;

pub struct Joiner {
    clock: Clock,
    predictions: Arc<dyn ObjectStore>,
    feedback: Arc<dyn ObjectStore>,
    horizon_ms: u64,
    max_pending: usize,
    max_waiting_bytes: usize,
    grace_ms: u64,
    bucket_ms: u64,
    state: Mutex<JoinState>,
}

#[derive(Deserialize)]
struct PredictionLine {
    request_id: String,
    model: String,
    version: u64,
    time: String,
    #[serde(default)]
    outputs: serde_json::Map<String, Value>,
    #[serde(default)]
    slice: Vec<String>,
}

#[derive(Deserialize)]
struct FeedbackLine {
    request_id: String,
    model: String,
    time: String,
    label: Box<RawValue>,
}

impl Joiner {
    /// Joins the logs `config` names; `clock` says how old a line is.
    pub fn open(config: &MonitorConfig, clock: Clock) -> std::io::Result<Joiner> {
        Ok(Joiner {
            clock,
            predictions: config.logs.predictions.open(Traffic::Logs)?,
            feedback: config.logs.feedback.open(Traffic::Logs)?,
            horizon_ms: config.horizon_ms,
            max_pending: config.max_pending,
            max_waiting_bytes: config.max_waiting_bytes,
            grace_ms: config.grace_ms,
            bucket_ms: config.bucket_ms.max(1),
            state: Mutex::new(JoinState::default()),
        })
    }

    /// Reads the segments written since the last scan and joins what it can.
    pub async fn scan(&self) -> Result<(), object_store::Error> {
        let now = self.clock.now_ms();
        let oldest = now.saturating_sub(self.horizon_ms);
        // One segment in memory at a time, each remembered once it is read.
        for location in self
            .new_segments("predictions", self.predictions.as_ref(), oldest)
            .await?
        {
            let Some(bytes) = read(self.predictions.as_ref(), &location).await else {
                continue;
            };
            let mut state = self.lock();
            for line in bytes.split(|&byte| byte == b'\n').filter(|line| !line.is_empty()) {
                match serde_json::from_slice::<PredictionLine>(line) {
                    Ok(line) => self.remember(&mut state, line, oldest),
                    Err(err) => tracing::warn!(%location, error = %err, "skipping a prediction log line"),
                }
            }
            self.let_go(&mut state, oldest);
            state
                .seen
                .entry("predictions")
                .or_default()
                .insert(location.to_string());
        }
        // Labels that waited join first, then each new segment's, one
        // segment in memory at a time.
        {
            let mut state = self.lock();
            self.let_go(&mut state, oldest);
            let retry = std::mem::take(&mut state.waiting);
            state.waiting_bytes = 0;
            for waiting in retry {
                self.join(&mut state, waiting, now);
            }
        }
        for location in self
            .new_segments("feedback", self.feedback.as_ref(), oldest)
            .await?
        {
            let Some(bytes) = read(self.feedback.as_ref(), &location).await else {
                continue;
            };
            let mut state = self.lock();
            for line in bytes.split(|&byte| byte == b'\n').filter(|line| !line.is_empty()) {
                match serde_json::from_slice::<FeedbackLine>(line) {
                    // The gateway refuses longer ids; a line that has one
                    // was not written by a gateway, and is not kept.
                    Ok(line) if line.request_id.len() > MAX_REQUEST_ID_BYTES => {
                        state.unmatched.entry(line.model).or_default().unknown += 1;
                    }
                    Ok(line) => {
                        let waiting = Waiting {
                            at_ms: parse_ms(&line.time).unwrap_or(now),
                            model: line.model,
                            request_id: line.request_id,
                            label: line.label,
                        };
                        self.join(&mut state, waiting, now);
                    }
                    Err(err) => tracing::warn!(%location, error = %err, "skipping a feedback line"),
                }
            }
            self.bound_waiting(&mut state);
            state
                .seen
                .entry("feedback")
                .or_default()
                .insert(location.to_string());
        }
        let mut state = self.lock();
        let keep_from_ms = now.saturating_sub(self.retained_ms());
        for buckets in state.buckets.values_mut() {
            while buckets
                .front()
                .is_some_and(|bucket| bucket.slot < keep_from_ms / self.bucket_ms)
            {
                buckets.pop_front();
            }
        }
        for buckets in state.slice_buckets.values_mut() {
            while buckets
                .front()
                .is_some_and(|(hour, _)| *hour < keep_from_ms / SLICE_BUCKET_MS)
            {
                buckets.pop_front();
            }
        }
        Ok(())
    }

    /// One version's joined rows whose labels arrived in `[from_ms, to_ms)`.
    pub fn performance(&self, model: &str, version: u64, from_ms: u64, to_ms: u64) -> Performance {
        // One guard for the totals and the unmatched counts: a join pass
        // between two would show its labels in neither or both.
        let state = self.lock();
        let total = self.total(&state, model, version, from_ms, to_ms);
        Performance {
            model: model.to_string(),
            version,
            window_ms: to_ms.saturating_sub(from_ms),
            task: state.tasks.get(&(model.to_string(), version)).copied(),
            joined: total.joined,
            accuracy: total.accuracy(),
            auc: auc(&total.positives, &total.negatives),
            mae: total.mae(),
            recorded: Default::default(),
            compared: Vec::new(),
            unmatched: Unmatched {
                pending: state
                    .waiting
                    .iter()
                    .filter(|waiting| waiting.model == model)
                    .count() as u64,
                ..state.unmatched.get(model).copied().unwrap_or_default()
            },
        }
    }

    /// One version's joined rows per slice, labels arrived in `[from_ms,
    /// to_ms)` with `from_ms` rounded down to the hour (slices are counted
    /// in hourly buckets).
    pub fn slices(&self, model: &str, version: u64, from_ms: u64, to_ms: u64, min_rows: u64) -> SliceReport {
        let mut total: BTreeMap<Arc<str>, Bucket> = BTreeMap::new();
        if let Some(buckets) = self.lock().slice_buckets.get(&(model.to_string(), version)) {
            let (first, end) = (from_ms / SLICE_BUCKET_MS, to_ms.div_ceil(SLICE_BUCKET_MS));
            for (_, slices) in buckets.iter().filter(|(hour, _)| *hour >= first && *hour < end) {
                for (slice, bucket) in slices {
                    total.entry(slice.clone()).or_default().merge(bucket);
                }
            }
        }
        SliceReport {
            model: model.to_string(),
            version,
            window_ms: to_ms.saturating_sub(from_ms),
            spec: None,
            min_rows,
            slices: total
                .iter()
                .map(|(slice, bucket)| SliceMetrics {
                    slice: slice.to_string(),
                    rows: bucket.joined,
                    counted: false,
                    accuracy: bucket.accuracy(),
                    auc: auc(&bucket.positives, &bucket.negatives),
                    false_positive_rate: ratio(bucket.false_positive, bucket.labelled_negative),
                    false_negative_rate: ratio(bucket.false_negative, bucket.labelled_positive),
                    mae: bucket.mae(),
                })
                .collect(),
            gaps: Vec::new(),
        }
        .with_gaps()
    }

    /// How far back joined rows are kept: what a slice gate can look at.
    pub fn retained_ms(&self) -> u64 {
        self.horizon_ms.max(3600 * 1000)
    }

    /// The resolution of realized-performance windows.
    pub fn bucket_ms(&self) -> u64 {
        self.bucket_ms
    }

    /// How long a label waits for its prediction's segment.
    pub fn grace_ms(&self) -> u64 {
        self.grace_ms
    }

    /// One version's buckets whose labels arrived in `[from_ms, to_ms)`, merged.
    fn total(&self, state: &JoinState, model: &str, version: u64, from_ms: u64, to_ms: u64) -> Bucket {
        let mut total = Bucket::default();
        if let Some(buckets) = state.buckets.get(&(model.to_string(), version)) {
            for bucket in buckets.iter().filter(|bucket| {
                bucket.slot * self.bucket_ms >= from_ms && bucket.slot * self.bucket_ms < to_ms
            }) {
                total.merge(bucket);
            }
        }
        total
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, JoinState> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Segments not read yet, whose hour is within the horizon. Only the
    /// `date=` partitions within it are listed, so the listing does not grow
    /// with the log's history; what fell out of the horizon is forgotten.
    async fn new_segments(
        &self,
        kind: &'static str,
        store: &dyn ObjectStore,
        oldest_ms: u64,
    ) -> Result<Vec<StorePath>, object_store::Error> {
        let mut prefixes = vec![None::<StorePath>];
        let mut current = HashSet::new();
        let mut fresh = Vec::new();
        while let Some(prefix) = prefixes.pop() {
            let listing = store.list_with_delimiter(prefix.as_ref()).await?;
            for directory in listing.common_prefixes {
                let old_day = directory
                    .filename()
                    .and_then(layout::date_directory_end_ms)
                    .is_some_and(|end| end < oldest_ms);
                if !old_day {
                    prefixes.push(Some(directory));
                }
            }
            for object in listing.objects {
                let path = object.location.to_string();
                // An hour that ended before the horizon holds nothing to join.
                if !path.ends_with(".jsonl")
                    || layout::hour_start_ms(&path).is_some_and(|start| start + 3600 * 1000 < oldest_ms)
                {
                    continue;
                }
                current.insert(path);
                fresh.push(object.location);
            }
        }
        let mut state = self.lock();
        let seen = state.seen.entry(kind).or_default();
        seen.retain(|path| current.contains(path));
        fresh.retain(|location| !seen.contains(location.as_ref()));
        // Oldest hour first, so that predictions are let go in the order they came.
        fresh.sort_by_cached_key(|location| (layout::hour_start_ms(location.as_ref()), location.to_string()));
        Ok(fresh)
    }

    fn remember(&self, state: &mut JoinState, line: PredictionLine, oldest_ms: u64) {
        let Some(at_ms) = parse_ms(&line.time) else {
            return;
        };
        if at_ms < oldest_ms {
            state.expired.insert(hash(&line.request_id), self.max_pending);
            return;
        }
        let rows = predicted_rows(&line.outputs);
        if let Some(task) = rows.first().map(|row| match row {
            Predicted::Class { .. } => Task::Classifier,
            Predicted::Value(_) => Task::Regressor,
        }) {
            state.tasks.insert((line.model.clone(), line.version), task);
        }
        let slices = match line.slice.is_empty() {
            true => Vec::new(),
            false => {
                let names = state
                    .slice_names
                    .entry((line.model.clone(), line.version))
                    .or_default();
                line.slice.iter().map(|slice| intern(names, slice)).collect()
            }
        };
        state.order.push_back((at_ms, line.request_id.clone()));
        state.index.insert(
            line.request_id,
            Logged {
                model: line.model,
                version: line.version,
                at_ms,
                rows,
                slices,
            },
        );
    }

    /// Lets go of predictions older than the horizon, or beyond the cap.
    fn let_go(&self, state: &mut JoinState, oldest_ms: u64) {
        while let Some((at_ms, _)) = state.order.front() {
            if *at_ms >= oldest_ms && state.index.len() <= self.max_pending {
                break;
            }
            let Some((at_ms, id)) = state.order.pop_front() else {
                break;
            };
            // Only if the entry is still that prediction (not joined, not relogged).
            if state.index.get(&id).is_some_and(|logged| logged.at_ms == at_ms) {
                state.index.remove(&id);
                state.expired.insert(hash(&id), self.max_pending);
            }
        }
        // Joined predictions leave `order` behind: drop them once they are
        // half of it, so that it stays within twice the cap.
        let JoinState { order, index, .. } = state;
        if order.len() > 2 * index.len() + 1024 {
            order.retain(|(at_ms, id)| index.get(id).is_some_and(|logged| logged.at_ms == *at_ms));
        }
    }

    /// Lets go of the oldest waiting labels past `max_waiting_bytes`.
    fn bound_waiting(&self, state: &mut JoinState) {
        while state.waiting_bytes > self.max_waiting_bytes {
            let Some(oldest) = state.waiting.pop_front() else {
                break;
            };
            state.waiting_bytes = state.waiting_bytes.saturating_sub(oldest.size());
            state.unmatched.entry(oldest.model).or_default().dropped += 1;
        }
    }

    fn join(&self, state: &mut JoinState, waiting: Waiting, now: u64) {
        let id_hash = hash(&waiting.request_id);
        let found = state
            .index
            .get(&waiting.request_id)
            .is_some_and(|logged| logged.model == waiting.model);
        if !found {
            let unmatched = state.unmatched.entry(waiting.model.clone()).or_default();
            if state.labelled.set.contains(&id_hash) {
                unmatched.duplicate += 1;
            } else if state.expired.set.contains(&id_hash) {
                unmatched.late += 1;
            } else if now.saturating_sub(waiting.at_ms) < self.grace_ms {
                // Its prediction's segment may not be written yet.
                state.waiting_bytes += waiting.size();
                state.waiting.push_back(waiting);
            } else {
                unmatched.unknown += 1;
            }
            return;
        }
        let Some(logged) = state.index.remove(&waiting.request_id) else {
            return;
        };
        state.labelled.insert(id_hash, self.max_pending);
        let Ok(label) = serde_json::from_str::<Value>(waiting.label.get()) else {
            state.unmatched.entry(logged.model).or_default().mismatched += 1;
            return;
        };
        let labels: Vec<&Value> = match &label {
            Value::Array(rows) => rows.iter().collect(),
            single => vec![single],
        };
        let slot = waiting.at_ms / self.bucket_ms;
        let mut bucket = Bucket {
            slot,
            ..Default::default()
        };
        if labels.len() != logged.rows.len() || !score_rows(&mut bucket, &logged.rows, &labels) {
            state.unmatched.entry(logged.model).or_default().mismatched += 1;
            return;
        }
        if logged.slices.len() == logged.rows.len() {
            let hour = waiting.at_ms / SLICE_BUCKET_MS;
            let buckets = state
                .slice_buckets
                .entry((logged.model.clone(), logged.version))
                .or_default();
            let at = match buckets.iter().rposition(|(existing, _)| *existing <= hour) {
                Some(index) if buckets[index].0 == hour => index,
                found => {
                    let index = found.map_or(0, |index| index + 1);
                    buckets.insert(index, (hour, BTreeMap::new()));
                    index
                }
            };
            for ((row, label), slice) in logged.rows.iter().zip(&labels).zip(&logged.slices) {
                let sliced = buckets[at].1.entry(slice.clone()).or_default();
                score_rows(sliced, std::slice::from_ref(row), &[label]);
            }
        }
        let buckets = state.buckets.entry((logged.model, logged.version)).or_default();
        // Labels arrive roughly in order; a late segment lands in its minute.
        match buckets.iter_mut().rev().find(|existing| existing.slot == slot) {
            Some(existing) => existing.merge(&bucket),
            None => {
                let at = buckets.iter().rposition(|existing| existing.slot < slot);
                buckets.insert(at.map_or(0, |index| index + 1), bucket);
            }
        }
    }
}

/// A segment's bytes; `None` (logged) when it cannot be read, so that one
/// bad file does not stop the join (it is tried again at the next scan).
async fn read(store: &dyn ObjectStore, location: &StorePath) -> Option<bytes::Bytes> {
    let bytes = match store.get(location).await {
        Ok(result) => result.bytes().await,
        Err(err) => Err(err),
    };
    bytes
        .map_err(|err| tracing::warn!(%location, error = %err, "cannot read a log segment"))
        .ok()
}

fn parse_ms(stamp: &str) -> Option<u64> {
    let at = humantime::parse_rfc3339(stamp).ok()?;
    Some(at.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn test_config(name: &str, max_pending: usize) -> (std::path::PathBuf, MonitorConfig) {
        let root = std::env::temp_dir().join(format!(
            "sluice-{name}-{}-{}",
            std::process::id(),
            Clock::System.now_ms()
        ));
        let config = MonitorConfig {
            logs: sluice_common::objects::LogDirs {
                predictions: sluice_common::objects::Location::Dir(root.join("predictions")),
                feedback: sluice_common::objects::Location::Dir(root.join("feedback")),
            },
            tick: std::time::Duration::from_secs(1),
            horizon_ms: 3600 * 1000,
            max_pending,
            max_waiting_bytes: crate::config::DEFAULT_MAX_WAITING_BYTES,
            grace_ms: 0,
            bucket_ms: 60_000,
        };
        (root, config)
    }

    /// Labels for ids nobody logged wait within their memory bound: the
    /// oldest are let go and counted, whatever their number.
    #[tokio::test]
    async fn labels_waiting_for_their_prediction_hold_a_bounded_memory() {
        let (root, mut config) = test_config("waiting", 100);
        config.grace_ms = 3600 * 1000;
        config.max_waiting_bytes = 64 * 1024;
        let joiner = Joiner::open(&config, Clock::System).unwrap();
        let stamp = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
        let dir = config.logs.feedback.dir().unwrap().join(format!(
            "model=m/date={}/hour={}",
            &stamp[..10],
            &stamp[11..13]
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let label = json!(vec![1; 200]);
        for segment in 0..10 {
            let lines: Vec<String> = (0..100)
                .map(|index| {
                    json!({"request_id": format!("nobody-{segment}-{index}"), "model": "m", "time": stamp, "label": label})
                        .to_string()
                })
                .collect();
            std::fs::write(dir.join(format!("{segment}.jsonl")), lines.join("\n")).unwrap();
        }
        joiner.scan().await.unwrap();
        let unmatched = joiner.performance("m", 1, 0, u64::MAX).unmatched;
        assert_eq!(unmatched.pending + unmatched.dropped, 1000, "{unmatched:?}");
        assert!(unmatched.dropped > 800, "{unmatched:?}");
        assert!(joiner.lock().waiting_bytes <= config.max_waiting_bytes);
        std::fs::remove_dir_all(&root).unwrap();
    }

    /// Late (beyond the horizon, or let go over the cap), duplicate and
    /// unknown labels are told apart; the rest join.
    #[tokio::test]
    async fn unmatched_labels_are_told_apart() {
        let (root, config) = test_config("join", 2);
        let joiner = Joiner::open(&config, Clock::System).unwrap();
        let stamp = |ms: u64| {
            humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms))
                .to_string()
        };
        let now = Clock::System.now_ms();
        let partition = |dir: &std::path::Path| {
            let at = stamp(now);
            let path = dir.join(format!(
                "model=m/version=1/date={}/hour={}",
                &at[..10],
                &at[11..13]
            ));
            std::fs::create_dir_all(&path).unwrap();
            path
        };
        let prediction = |id: &str, at: u64, label: i64| {
            json!({"request_id": id, "model": "m", "version": 1, "time": stamp(at), "outputs": {"label": [label]}})
                .to_string()
        };
        let lines = [
            prediction("old", now - 2 * 3600 * 1000, 1),
            prediction("p1", now - 3000, 1),
            prediction("p2", now - 2000, 0),
            prediction("p3", now - 1000, 1),
        ];
        std::fs::write(
            partition(config.logs.predictions.dir().unwrap()).join("a.jsonl"),
            lines.join("\n"),
        )
        .unwrap();
        let feedback = |id: &str, label: i64| {
            json!({"request_id": id, "model": "m", "time": stamp(now), "label": label}).to_string()
        };
        let labels = [
            feedback("old", 1),
            feedback("p1", 1),
            feedback("p2", 0),
            feedback("p2", 0),
            feedback("p3", 0),
            feedback("nobody", 1),
        ];
        std::fs::write(
            partition(config.logs.feedback.dir().unwrap()).join("b.jsonl"),
            labels.join("\n"),
        )
        .unwrap();
        joiner.scan().await.unwrap();
        // A second scan reads nothing twice.
        joiner.scan().await.unwrap();
        let performance = joiner.performance("m", 1, 0, u64::MAX);
        assert_eq!(performance.joined, 2, "{performance:?}");
        assert_eq!(performance.accuracy, Some(0.5));
        assert_eq!(
            performance.unmatched,
            Unmatched {
                unknown: 1,
                late: 2,
                duplicate: 1,
                mismatched: 0,
                pending: 0,
                dropped: 0,
            }
        );
        std::fs::remove_dir_all(&root).unwrap();
    }

    /// Per-slice accuracy, AUC, false positive and false negative rates and
    /// their gaps equal scikit-learn's on `models/fixtures/slices.json`
    /// (written by `models/slice_fixtures.py`).
    #[tokio::test]
    async fn slice_metrics_match_the_fixture() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../models/fixtures/slices.json");
        let fixture: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let (root, config) = test_config("slices", 1_000_000);
        let joiner = Joiner::open(&config, Clock::System).unwrap();
        // The fixture's times are placeholders: the join looks at the last hour.
        let now = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
        let write = |dir: &std::path::Path, lines: &Value| {
            let partition = dir.join(format!(
                "model=credit_risk/version=1/date={}/hour={}",
                &now[..10],
                &now[11..13]
            ));
            std::fs::create_dir_all(&partition).unwrap();
            let text: Vec<String> = lines
                .as_array()
                .unwrap()
                .iter()
                .map(|line| {
                    let mut line = line.clone();
                    line["time"] = json!(now);
                    line.to_string()
                })
                .collect();
            std::fs::write(partition.join("fixture.jsonl"), text.join("\n")).unwrap();
        };
        write(config.logs.predictions.dir().unwrap(), &fixture["predictions"]);
        write(config.logs.feedback.dir().unwrap(), &fixture["feedback"]);
        joiner.scan().await.unwrap();
        let min_rows = fixture["min_rows"].as_u64().unwrap();
        let report = joiner.slices("credit_risk", 1, 0, u64::MAX, min_rows);
        let expected = fixture["expected"]["slices"].as_array().unwrap();
        assert_eq!(report.slices.len(), expected.len(), "{report:?}");
        let close = |actual: Option<f64>, expected: &Value, what: &str| match (actual, expected.as_f64()) {
            (Some(actual), Some(expected)) => assert!(
                (actual - expected).abs() < 1e-12,
                "{what}: {actual} vs {expected}"
            ),
            (None, None) => {}
            (actual, _) => panic!("{what}: {actual:?} vs {expected}"),
        };
        for (slice, expected) in report.slices.iter().zip(expected) {
            assert_eq!(slice.slice, expected["slice"].as_str().unwrap());
            assert_eq!(slice.rows, expected["rows"].as_u64().unwrap(), "{}", slice.slice);
            for metric in ["accuracy", "auc", "false_positive_rate", "false_negative_rate"] {
                close(
                    slice.metric(metric),
                    &expected[metric],
                    &format!("{} {metric}", slice.slice),
                );
            }
        }
        let gaps = fixture["expected"]["gaps"].as_object().unwrap();
        for (metric, expected) in gaps {
            close(
                report.gap(metric).map(|gap| gap.gap),
                expected,
                &format!("{metric} gap"),
            );
        }
        assert_eq!(
            report.gaps.len(),
            gaps.len(),
            "no gap for a metric the fixture has none of"
        );
        std::fs::remove_dir_all(&root).unwrap();
    }
}
