//! The prediction log: every prediction of a deployment that asks for it,
//! as JSON Lines segments in an object store, hive-partitioned so that
//! DuckDB, Spark or pandas read them without our code:
//!
//! `{dir}/model=M/version=V/date=YYYY-MM-DD/hour=HH/{replica}-{seq}.jsonl`
//!
//! (`{replica}` is the gateway's address, pid and start time, so that no two
//! processes, nor one restarted, write the same name.)
//!
//! (`{dir}` is `DATA_DIR/predictions` by default: the layout DESIGN.md gives
//! under an object store's `predictions/` prefix.)
//!
//! Each record holds the time, request id, model, version, route, latency,
//! replica and outputs; a sampled share also holds the inputs, by feature
//! name. Every prediction is logged (its request id is what ground-truth
//! feedback joins on); only the inputs are sampled. A version whose card
//! declares a slice feature also logs each row's slice (`age < 30`), so
//! that realized performance can be told per slice.
//!
//! The request path only hands a record to a bounded channel (`try_send`):
//! when the writer falls behind, or the store stalls or fails, records are
//! dropped and counted, never waited for. A writer thread batches them per
//! partition and writes a segment when it reaches its size or age, and all
//! of them at shutdown.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde_json::{Value, json};
use sluice_common::clock::Clock;
use sluice_common::objects::{Location, Traffic};

use crate::model::LoadedModel;
use crate::tensor::{Tensor, TensorData};

/// How a request reached its version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteKind {
    /// The stable version of the split (or the only one).
    Primary,
    Canary,
    /// Asked for by path.
    Pinned,
}

impl RouteKind {
    fn as_str(self) -> &'static str {
        match self {
            RouteKind::Primary => "primary",
            RouteKind::Canary => "canary",
            RouteKind::Pinned => "pinned",
        }
    }
}

/// One prediction, as the request path hands it over (serialized later, on
/// the writer thread).
pub struct PredictionRecord {
    pub at: SystemTime,
    pub request_id: String,
    pub model: Arc<LoadedModel>,
    pub route: RouteKind,
    pub latency: Duration,
    /// The inputs in signature order, when this request is in the sample.
    pub inputs_opt: Option<Vec<Tensor>>,
    /// Each row's value of the slice feature, when the version has one
    /// (named on the writer thread, off the request path).
    pub slice_values: Vec<f64>,
    pub outputs: Vec<Tensor>,
}

/// Segment limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentLimits {
    pub max_bytes: usize,
    pub max_age: Duration,
}

/// A segment is written once it holds this many bytes (`--segment-max-bytes`)...
pub const DEFAULT_SEGMENT_MAX_BYTES: usize = 8 * 1024 * 1024;

/// ... or once it is this old (`--segment-max-age-ms`).
pub const DEFAULT_SEGMENT_MAX_AGE: Duration = Duration::from_secs(60);

impl Default for SegmentLimits {
    fn default() -> Self {
        SegmentLimits {
            max_bytes: DEFAULT_SEGMENT_MAX_BYTES,
            max_age: DEFAULT_SEGMENT_MAX_AGE,
        }
    }
}

enum Message {
    Record(Box<PredictionRecord>),
    /// Write every open segment, then stop.
    Close,
}

/// The request path's handle on the log.
pub struct PredictionLog {
    /// What a record's `at` reads (the registry's join reads the same).
    clock: Clock,
    sender: Sender<Message>,
    writer: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl PredictionLog {
    /// A log writing under `dir` (created if missing) as `replica`, its
    /// records stamped by `clock`.
    pub fn start(
        location: &Location,
        replica: &str,
        queue: usize,
        limits: SegmentLimits,
        clock: Clock,
    ) -> std::io::Result<PredictionLog> {
        let store = location.open(Traffic::Logs)?;
        let (sender, receiver) = crossbeam_channel::bounded(queue.max(1));
        let replica = sanitize(replica);
        let writer = std::thread::Builder::new()
            .name("sluice-predlog".into())
            .spawn(move || Writer::new(store, replica, limits).run(receiver))?;
        Ok(PredictionLog {
            clock,
            sender,
            writer: std::sync::Mutex::new(Some(writer)),
        })
    }

    /// Hands a record to the writer, or drops and counts it when it is behind.
    /// When a prediction answered now is stamped as answered.
    pub fn now(&self) -> SystemTime {
        self.clock.now()
    }

    pub fn submit(&self, record: PredictionRecord) {
        let model = record.model.name.clone();
        match self.sender.try_send(Message::Record(Box::new(record))) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                metrics::counter!(crate::metrics::PREDLOG_DROPPED, "model" => model).increment(1);
            }
        }
    }

    /// Writes what is buffered and stops the writer; blocks until it has.
    pub fn close(&self) {
        let handle_opt = self
            .writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        let Some(handle) = handle_opt else {
            return;
        };
        // Blocking send: shutdown waits for the queue, never the request path.
        let _ = self.sender.send(Message::Close);
        let _ = handle.join();
    }
}

/// A partition's open segment.
struct Segment {
    lines: Vec<u8>,
    opened: Instant,
    /// Whose records it holds (a partition is one model's), and how many:
    /// counted as logged once written, as dropped if the write fails.
    model: String,
    records: u64,
}

struct Writer {
    store: Arc<dyn ObjectStore>,
    replica: String,
    limits: SegmentLimits,
    segments: HashMap<String, Segment>,
    sequence: u64,
    runtime: tokio::runtime::Runtime,
    /// Set at close: segments not written by then are dropped and counted,
    /// so a store that is down cannot hold the process past its grace period.
    close_deadline_opt: Option<Instant>,
}

/// How long the log may take to write out at shutdown, after the drain.
const CLOSE_BUDGET: Duration = Duration::from_secs(4);

impl Writer {
    fn new(store: Arc<dyn ObjectStore>, replica: String, limits: SegmentLimits) -> Writer {
        Writer {
            store,
            replica,
            limits,
            segments: HashMap::new(),
            sequence: 0,
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a current-thread runtime for the prediction log"),
            close_deadline_opt: None,
        }
    }

    fn run(mut self, receiver: Receiver<Message>) {
        let tick = self.limits.max_age.min(Duration::from_secs(1));
        loop {
            match receiver.recv_timeout(tick) {
                Ok(Message::Record(record)) => self.append(&record),
                Ok(Message::Close) | Err(RecvTimeoutError::Disconnected) => {
                    // What was queued before the close is written too.
                    while let Ok(Message::Record(record)) = receiver.try_recv() {
                        self.append(&record);
                    }
                    self.close_deadline_opt = Some(Instant::now() + CLOSE_BUDGET);
                    let partitions: Vec<String> = self.segments.keys().cloned().collect();
                    for partition in partitions {
                        self.flush(&partition);
                    }
                    return;
                }
                Err(RecvTimeoutError::Timeout) => {}
            }
            let stale: Vec<String> = self
                .segments
                .iter()
                .filter(|(_, segment)| segment.opened.elapsed() >= self.limits.max_age)
                .map(|(partition, _)| partition.clone())
                .collect();
            for partition in stale {
                self.flush(&partition);
            }
        }
    }

    fn append(&mut self, record: &PredictionRecord) {
        let stamp = humantime::format_rfc3339_millis(record.at).to_string();
        // `2026-11-26T14:05:09.123Z`: the date and the hour are its slices.
        let partition = format!(
            "model={}/version={}/date={}/hour={}",
            record.model.name,
            record.model.version,
            &stamp[..10],
            &stamp[11..13]
        );
        let mut line = json!({
            "time": stamp,
            "request_id": record.request_id,
            "model": record.model.name,
            "version": record.model.version,
            "route": record.route.as_str(),
            "latency_ms": record.latency.as_secs_f64() * 1000.0,
            "replica": self.replica,
            "outputs": named(&record.model.signature.outputs, &record.outputs),
        });
        if let Some(inputs) = &record.inputs_opt {
            line["inputs"] = named(&record.model.signature.inputs, inputs);
        }
        if let Some(slicer) = record.model.slicer.get()
            && !record.slice_values.is_empty()
        {
            let names: Vec<String> = record
                .slice_values
                .iter()
                .map(|&value| slicer.spec.name_of(value))
                .collect();
            line["slice"] = json!(names);
        }
        let segment = self.segments.entry(partition.clone()).or_insert_with(|| Segment {
            lines: Vec::new(),
            opened: Instant::now(),
            model: record.model.name.clone(),
            records: 0,
        });
        // Serializing a Value cannot fail: its keys are strings.
        let _ = serde_json::to_writer(&mut segment.lines, &line);
        segment.lines.push(b'\n');
        segment.records += 1;
        if segment.lines.len() >= self.limits.max_bytes {
            self.flush(&partition);
        }
    }

    fn flush(&mut self, partition: &str) {
        let Some(segment) = self.segments.remove(partition) else {
            return;
        };
        if segment.lines.is_empty() {
            return;
        }
        self.sequence += 1;
        let location = StorePath::from(format!("{partition}/{}-{:06}.jsonl", self.replica, self.sequence));
        let store = self.store.clone();
        let Segment {
            lines,
            model,
            records,
            ..
        } = segment;
        let payload = PutPayload::from(lines);
        let budget = self
            .close_deadline_opt
            .map(|deadline| deadline.saturating_duration_since(Instant::now()));
        let written = self.runtime.block_on(async move {
            let put = store.put(&location, payload);
            match budget {
                Some(budget) => tokio::time::timeout(budget, put)
                    .await
                    .map_err(|_| "the shutdown's time for the log ran out".to_string())?
                    .map_err(|err| err.to_string()),
                None => put.await.map_err(|err| err.to_string()),
            }
        });
        match written {
            Ok(_) => {
                metrics::counter!(crate::metrics::PREDLOG_SEGMENTS).increment(1);
                metrics::counter!(crate::metrics::PREDLOG_RECORDS, "model" => model).increment(records);
            }
            Err(err) => {
                // The store failed (a full disk, a bucket down): this
                // segment's records are lost, counted as dropped, and the
                // log goes on with the next one.
                metrics::counter!(crate::metrics::PREDLOG_WRITE_FAILURES).increment(1);
                metrics::counter!(crate::metrics::PREDLOG_DROPPED, "model" => model).increment(records);
                tracing::warn!(partition, error = %err, "cannot write a prediction log segment; it is dropped");
            }
        }
    }
}

/// Tensors by name: a `[N]` or `[N, 1]` tensor as a list of N values, a
/// wider one as a list of rows.
fn named(specs: &[crate::signature::TensorSpec], tensors: &[Tensor]) -> Value {
    let mut object = serde_json::Map::new();
    for (spec, tensor) in specs.iter().zip(tensors) {
        object.insert(spec.name.clone(), by_row(tensor));
    }
    Value::Object(object)
}

fn by_row(tensor: &Tensor) -> Value {
    let values = values(&tensor.data);
    let row = tensor.shape.iter().skip(1).product::<usize>().max(1);
    if tensor.shape.len() <= 1 || row == 1 {
        return Value::Array(values);
    }
    Value::Array(
        values
            .chunks(row)
            .map(|chunk| Value::Array(chunk.to_vec()))
            .collect(),
    )
}

fn values(data: &TensorData) -> Vec<Value> {
    // NaN and infinities are not JSON: they become null, as in responses.
    let float = |value: f64| serde_json::Number::from_f64(value).map_or(Value::Null, Value::Number);
    match data {
        TensorData::Bool(v) => v.iter().map(|&x| Value::Bool(x)).collect(),
        TensorData::U8(v) => v.iter().map(|&x| json!(x)).collect(),
        TensorData::U16(v) => v.iter().map(|&x| json!(x)).collect(),
        TensorData::U32(v) => v.iter().map(|&x| json!(x)).collect(),
        TensorData::U64(v) => v.iter().map(|&x| json!(x)).collect(),
        TensorData::I8(v) => v.iter().map(|&x| json!(x)).collect(),
        TensorData::I16(v) => v.iter().map(|&x| json!(x)).collect(),
        TensorData::I32(v) => v.iter().map(|&x| json!(x)).collect(),
        TensorData::I64(v) => v.iter().map(|&x| json!(x)).collect(),
        TensorData::F16(v) => v.iter().map(|&x| float(f64::from(x))).collect(),
        TensorData::F32(v) => v.iter().map(|&x| float(f64::from(x))).collect(),
        TensorData::F64(v) => v.iter().map(|&x| float(x)).collect(),
        TensorData::Bytes(v) => v
            .iter()
            .map(|x| Value::String(String::from_utf8_lossy(x).into_owned()))
            .collect(),
    }
}

/// A replica name safe in a file name (`127.0.0.1:8080/42` → `127.0.0.1-8080-42`).
pub(crate) fn sanitize(replica: &str) -> String {
    replica
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_are_lists_and_wide_tensors_rows() {
        let column = Tensor {
            shape: vec![3, 1],
            data: TensorData::F32(vec![1.0, 2.5, f32::NAN]),
        };
        assert_eq!(by_row(&column), json!([1.0, 2.5, null]));
        let rows = Tensor {
            shape: vec![2, 2],
            data: TensorData::I64(vec![1, 2, 3, 4]),
        };
        assert_eq!(by_row(&rows), json!([[1, 2], [3, 4]]));
        assert_eq!(sanitize("127.0.0.1:8080/42"), "127.0.0.1-8080-42");
    }
}
