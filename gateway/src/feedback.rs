//! Ground-truth feedback: `POST /v2/models/{m}/feedback` takes labels for
//! predictions already answered and writes them, next to the prediction log,
//! as JSON Lines the registry joins on `request_id`:
//!
//! `{dir}/model=M/date=YYYY-MM-DD/hour=HH/{replica}-{seq}.jsonl`
//!
//! (`{dir}` is `DATA_DIR/feedback` by default.) Unlike predictions, feedback
//! is not sampled or dropped: the answer comes after the labels are in the
//! store, so a 200 means they are kept. The join itself happens in the
//! control plane, which sees every replica's predictions; whether a request
//! id is known is therefore not checked here (an unknown one is counted
//! there, not refused).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde_json::{Value, json};
use sluice_registry::objects::{Location, Traffic};
use sluice_registry_client::feedback::Feedback;
use sluice_registry_client::limits::check_request_id;

use crate::error::{Error, Result};

/// Most labels one request may carry.
pub const MAX_BATCH: usize = 10_000;

/// Most rows one label may hold (a label per row of its prediction).
pub const MAX_LABEL_ROWS: usize = 65_536;

/// Longest class name a label may give, in bytes.
pub const MAX_LABEL_TEXT_BYTES: usize = 256;

pub struct FeedbackLog {
    store: Arc<dyn ObjectStore>,
    replica: String,
    sequence: AtomicU64,
    budget: HourlyBudget,
}

/// Bytes written in the current clock hour, against a bound: a flood of
/// labels (for request ids nobody logged, say) fills the store this fast at
/// most, whatever the clients send.
struct HourlyBudget {
    /// 0: no bound.
    limit: u64,
    /// The hour (since the epoch) and the bytes written in it.
    used: Mutex<(u64, u64)>,
}

impl HourlyBudget {
    fn take(&self, bytes: u64, now: SystemTime) -> Result<()> {
        if self.limit == 0 {
            return Ok(());
        }
        let seconds = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        let hour = seconds / 3600;
        let mut used = self.used.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if used.0 != hour {
            *used = (hour, 0);
        }
        if used.1.saturating_add(bytes) > self.limit {
            return Err(Error::FeedbackBudget {
                limit: self.limit,
                retry_after_s: 3600 - seconds % 3600,
            });
        }
        used.1 += bytes;
        Ok(())
    }

    fn give_back(&self, bytes: u64) {
        let mut used = self.used.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        used.1 = used.1.saturating_sub(bytes);
    }
}

impl FeedbackLog {
    /// The feedback of replica `replica` at `location`, writing at most
    /// `bytes_per_hour` of labels in a clock hour (0: no bound).
    pub fn open(location: &Location, replica: &str, bytes_per_hour: u64) -> std::io::Result<FeedbackLog> {
        Ok(FeedbackLog {
            store: location.open(Traffic::Logs)?,
            replica: crate::predlog::sanitize(replica),
            sequence: AtomicU64::new(0),
            budget: HourlyBudget {
                limit: bytes_per_hour,
                used: Mutex::new((0, 0)),
            },
        })
    }

    /// Writes one segment holding `labels`; returns once it is stored.
    pub async fn write(&self, model: &str, labels: &[Feedback]) -> Result<()> {
        let at = SystemTime::now();
        let stamp = humantime::format_rfc3339_millis(at).to_string();
        let mut lines = Vec::with_capacity(labels.len() * 64);
        for label in labels {
            let line = json!({
                "time": stamp,
                "request_id": label.request_id,
                "model": model,
                "label": label.label,
            });
            // Serializing a Value cannot fail: its keys are strings.
            let _ = serde_json::to_writer(&mut lines, &line);
            lines.push(b'\n');
        }
        let size = lines.len() as u64;
        if let Err(spent) = self.budget.take(size, at) {
            metrics::counter!(crate::metrics::FEEDBACK_REFUSED, "model" => model.to_string()).increment(1);
            return Err(spent);
        }
        let sequence = self.sequence.fetch_add(1, Ordering::Relaxed) + 1;
        let location = StorePath::from(format!(
            "model={model}/date={}/hour={}/{}-{sequence:06}.jsonl",
            &stamp[..10],
            &stamp[11..13],
            self.replica
        ));
        self.store
            .put(&location, PutPayload::from(lines))
            .await
            .map(|_| ())
            .map_err(|err| {
                self.budget.give_back(size);
                Error::Unavailable(format!("cannot store the feedback, retry later: {err}"))
            })
    }
}

/// The labels of a request body: one `{"request_id", "label"}` object, or a
/// JSON array of them.
pub fn parse(body: &[u8]) -> Result<Vec<Feedback>> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|err| Error::bad_request(format!("invalid JSON body: {err}")))?;
    let items = match value {
        Value::Array(items) => items,
        object @ Value::Object(_) => vec![object],
        _ => {
            return Err(Error::bad_request(
                "expected {\"request_id\": \"...\", \"label\": ...} or a JSON array of them",
            ));
        }
    };
    if items.is_empty() {
        return Err(Error::bad_request("the feedback array is empty"));
    }
    if items.len() > MAX_BATCH {
        return Err(Error::bad_request(format!(
            "{} labels in one request: at most {MAX_BATCH}",
            items.len()
        )));
    }
    items
        .into_iter()
        .enumerate()
        .map(|(index, item)| {
            let feedback: Feedback = serde_json::from_value(item).map_err(|err| {
                Error::bad_request(format!(
                    "feedback {index}: {err} (expected {{\"request_id\": \"...\", \"label\": ...}})"
                ))
            })?;
            if feedback.request_id.is_empty() {
                return Err(Error::bad_request(format!(
                    "feedback {index}: request_id is empty"
                )));
            }
            check_request_id(&feedback.request_id, &format!("feedback {index}: request_id"))
                .map_err(Error::BadRequest)?;
            check_label(&feedback.label)
                .map_err(|problem| Error::bad_request(format!("feedback {index}: label {problem}")))?;
            Ok(feedback)
        })
        .collect()
}

fn check_label(label: &Value) -> std::result::Result<(), String> {
    let scalar = |value: &Value| match value {
        Value::String(text) if text.len() > MAX_LABEL_TEXT_BYTES => Err(format!(
            "is a text of {} bytes: a class name is at most {MAX_LABEL_TEXT_BYTES}",
            text.len()
        )),
        Value::Number(_) | Value::String(_) | Value::Bool(_) => Ok(()),
        _ => Err("rows must be numbers, strings or booleans".to_string()),
    };
    match label {
        Value::Number(_) | Value::String(_) | Value::Bool(_) => scalar(label),
        Value::Array(rows) if rows.is_empty() => Err("is an empty list".into()),
        Value::Array(rows) if rows.len() > MAX_LABEL_ROWS => {
            Err(format!("has {} rows: at most {MAX_LABEL_ROWS}", rows.len()))
        }
        Value::Array(rows) => rows.iter().try_for_each(scalar),
        Value::Null => Err("is null: expected a number, string or boolean (or a list, one per row)".into()),
        Value::Object(_) => {
            Err("is an object: expected a number, string or boolean (or a list, one per row)".into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hourly_budget_starts_again_each_hour() {
        let budget = HourlyBudget {
            limit: 100,
            used: Mutex::new((0, 0)),
        };
        let at = |seconds: u64| SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(seconds);
        budget.take(60, at(7200)).unwrap();
        let spent = budget.take(60, at(7300)).unwrap_err();
        assert!(
            matches!(
                spent,
                Error::FeedbackBudget {
                    retry_after_s: 3500,
                    ..
                }
            ),
            "{spent:?}"
        );
        budget.give_back(60);
        budget.take(60, at(7300)).unwrap();
        // The next hour has the whole budget again.
        budget.take(100, at(10_800)).unwrap();
    }

    #[test]
    fn one_object_or_an_array() {
        let one = parse(br#"{"request_id": "a", "label": 1}"#).unwrap();
        assert_eq!(one.len(), 1);
        let many =
            parse(br#"[{"request_id": "a", "label": true}, {"request_id": "b", "label": [1, 0]}]"#).unwrap();
        assert_eq!(many[1].label, json!([1, 0]));
    }

    #[test]
    fn mistakes_say_what_was_expected() {
        let message = |body: &[u8]| parse(body).unwrap_err().to_string();
        assert!(message(b"[]").contains("empty"));
        assert!(message(b"3").contains("request_id"));
        assert!(message(br#"{"label": 1}"#).contains("request_id"));
        assert!(message(br#"{"request_id": "a", "label": null}"#).contains("null"));
        assert!(message(br#"{"request_id": "", "label": 1}"#).contains("empty"));
        let long_id = format!(r#"{{"request_id": "{}", "label": 1}}"#, "a".repeat(300));
        assert!(
            message(long_id.as_bytes()).contains("at most 256"),
            "{}",
            message(long_id.as_bytes())
        );
        let long_text = format!(r#"{{"request_id": "a", "label": "{}"}}"#, "a".repeat(300));
        assert!(message(long_text.as_bytes()).contains("at most 256"));
        let rows = format!(
            r#"{{"request_id": "a", "label": [{}1]}}"#,
            "1,".repeat(MAX_LABEL_ROWS)
        );
        assert!(message(rows.as_bytes()).contains("at most 65536"));
        assert!(message(br#"{"request_id": "a", "label": 1, "extra": 2}"#).contains("unknown field"));
        assert!(
            message(br#"[{"request_id": "a", "label": 1}, {"request_id": "b", "label": {}}]"#)
                .starts_with("feedback 1")
        );
    }
}
