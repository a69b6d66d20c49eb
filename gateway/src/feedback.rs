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

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde_json::{Value, json};
use sluice_registry::objects::{Location, Traffic};
use sluice_registry_client::feedback::Feedback;

use crate::error::{Error, Result};

/// Most labels one request may carry.
pub const MAX_BATCH: usize = 10_000;

pub struct FeedbackLog {
    store: Arc<dyn ObjectStore>,
    replica: String,
    sequence: AtomicU64,
}

impl FeedbackLog {
    pub fn open(location: &Location, replica: &str) -> std::io::Result<FeedbackLog> {
        Ok(FeedbackLog {
            store: location.open(Traffic::Logs)?,
            replica: crate::predlog::sanitize(replica),
            sequence: AtomicU64::new(0),
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
            .map_err(|err| Error::Unavailable(format!("cannot store the feedback, retry later: {err}")))
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
            check_label(&feedback.label)
                .map_err(|problem| Error::bad_request(format!("feedback {index}: label {problem}")))?;
            Ok(feedback)
        })
        .collect()
}

fn check_label(label: &Value) -> std::result::Result<(), &'static str> {
    match label {
        Value::Number(_) | Value::String(_) | Value::Bool(_) => Ok(()),
        Value::Array(rows) if rows.is_empty() => Err("is an empty list"),
        Value::Array(rows) => match rows
            .iter()
            .all(|row| matches!(row, Value::Number(_) | Value::String(_) | Value::Bool(_)))
        {
            true => Ok(()),
            false => Err("rows must be numbers, strings or booleans"),
        },
        Value::Null => Err("is null: expected a number, string or boolean (or a list, one per row)"),
        Value::Object(_) => {
            Err("is an object: expected a number, string or boolean (or a list, one per row)")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(message(br#"{"request_id": "a", "label": 1, "extra": 2}"#).contains("unknown field"));
        assert!(
            message(br#"[{"request_id": "a", "label": 1}, {"request_id": "b", "label": {}}]"#)
                .starts_with("feedback 1")
        );
    }
}
