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

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::Deserialize;
use serde_json::value::RawValue;
use sluice_common::objects::{Location, Traffic};
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

    /// Stores one segment of `lines` ([`segment`]) for `model`, written at
    /// `at`, within this gateway's hourly budget; returns once it is stored.
    pub async fn write(&self, model: &str, lines: Vec<u8>, at: SystemTime) -> Result<()> {
        let size = lines.len() as u64;
        if let Err(spent) = self.budget.take(size, at) {
            metrics::counter!(crate::metrics::FEEDBACK_REFUSED, "model" => model.to_string()).increment(1);
            return Err(spent);
        }
        let stamp = humantime::format_rfc3339_millis(at).to_string();
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

/// One label of a request body, borrowed from it: its label is kept as
/// the client wrote it (checked, never turned into a document: a label of
/// 65,536 rows would take 2 MB as one).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Label<'a> {
    #[serde(borrow)]
    pub request_id: Cow<'a, str>,
    #[serde(borrow)]
    pub label: &'a RawValue,
}

/// The JSON Lines segment the registry reads, one line per label.
pub fn segment(model: &str, labels: &[Label<'_>], at: SystemTime) -> Vec<u8> {
    /// One line of a feedback segment.
    #[derive(serde::Serialize)]
    struct Line<'a> {
        time: &'a str,
        request_id: &'a str,
        model: &'a str,
        label: &'a RawValue,
    }
    let stamp = humantime::format_rfc3339_millis(at).to_string();
    let size: usize = labels.iter().map(|label| label.label.get().len() + 128).sum();
    let mut lines = Vec::with_capacity(size);
    for label in labels {
        let line = Line {
            time: &stamp,
            request_id: &label.request_id,
            model,
            label: label.label,
        };
        // Serializing strings and raw JSON cannot fail.
        let _ = serde_json::to_writer(&mut lines, &line);
        lines.push(b'\n');
    }
    lines
}

/// The labels of a request body: one `{"request_id", "label"}` object, or a
/// JSON array of them. Each is parsed from its own slice of the body (no
/// document of the whole body is built), so a failure names its index.
pub fn parse(body: &[u8]) -> Result<Vec<Label<'_>>> {
    let invalid = |err: serde_json::Error| Error::bad_request(format!("invalid JSON body: {err}"));
    let first = body.iter().find(|byte| !byte.is_ascii_whitespace());
    let items: Vec<&RawValue> = match first {
        Some(b'[') => serde_json::from_slice(body).map_err(invalid)?,
        Some(b'{') => vec![serde_json::from_slice(body).map_err(invalid)?],
        _ => {
            // Not JSON at all says so; JSON of another shape says what was expected.
            serde_json::from_slice::<serde::de::IgnoredAny>(body).map_err(invalid)?;
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
            let label: Label<'_> = serde_json::from_str(item.get()).map_err(|err| {
                Error::bad_request(format!(
                    "feedback {index}: {err} (expected {{\"request_id\": \"...\", \"label\": ...}})"
                ))
            })?;
            if label.request_id.is_empty() {
                return Err(Error::bad_request(format!(
                    "feedback {index}: request_id is empty"
                )));
            }
            check_request_id(&label.request_id, &format!("feedback {index}: request_id"))
                .map_err(Error::BadRequest)?;
            check_label(label.label)
                .map_err(|problem| Error::bad_request(format!("feedback {index}: label {problem}")))?;
            Ok(label)
        })
        .collect()
}

/// A label's shape, read without building it: a number, string or boolean,
/// or a list of them, one per row, within the bounds.
fn check_label(label: &RawValue) -> std::result::Result<(), String> {
    let mut reader = serde_json::Deserializer::from_str(label.get());
    serde::Deserializer::deserialize_any(&mut reader, LabelShape).map_err(|err| {
        err.to_string()
            .split(" at line ")
            .next()
            .unwrap_or_default()
            .to_string()
    })
}

/// What a label may be, checked as it is read.
struct LabelShape;

/// One row of a list label.
struct RowShape;

const EXPECTED: &str = "a number, string or boolean (or a list, one per row)";

fn text_bound<E: serde::de::Error>(text: &str) -> std::result::Result<(), E> {
    match text.len() > MAX_LABEL_TEXT_BYTES {
        true => Err(E::custom(format!(
            "is a text of {} bytes: a class name is at most {MAX_LABEL_TEXT_BYTES}",
            text.len()
        ))),
        false => Ok(()),
    }
}

/// The scalars a label, or one of its rows, may be.
macro_rules! scalars {
    () => {
        fn visit_bool<E: serde::de::Error>(self, _: bool) -> std::result::Result<(), E> {
            Ok(())
        }
        fn visit_i64<E: serde::de::Error>(self, _: i64) -> std::result::Result<(), E> {
            Ok(())
        }
        fn visit_u64<E: serde::de::Error>(self, _: u64) -> std::result::Result<(), E> {
            Ok(())
        }
        fn visit_f64<E: serde::de::Error>(self, _: f64) -> std::result::Result<(), E> {
            Ok(())
        }
        fn visit_str<E: serde::de::Error>(self, text: &str) -> std::result::Result<(), E> {
            text_bound(text)
        }
    };
}

impl<'de> serde::de::Visitor<'de> for LabelShape {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(EXPECTED)
    }

    scalars!();

    fn visit_unit<E: serde::de::Error>(self) -> std::result::Result<(), E> {
        Err(E::custom(format!("is null: expected {EXPECTED}")))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, _: A) -> std::result::Result<(), A::Error> {
        Err(serde::de::Error::custom(format!(
            "is an object: expected {EXPECTED}"
        )))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut rows: A) -> std::result::Result<(), A::Error> {
        let mut count = 0usize;
        while rows.next_element_seed(RowShape)?.is_some() {
            count += 1;
            if count > MAX_LABEL_ROWS {
                return Err(serde::de::Error::custom(format!(
                    "has more than {MAX_LABEL_ROWS} rows: at most {MAX_LABEL_ROWS}"
                )));
            }
        }
        match count {
            0 => Err(serde::de::Error::custom("is an empty list")),
            _ => Ok(()),
        }
    }
}

impl<'de> serde::de::DeserializeSeed<'de> for RowShape {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, row: D) -> std::result::Result<(), D::Error> {
        row.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for RowShape {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("rows that are numbers, strings or booleans")
    }

    scalars!();

    fn visit_unit<E: serde::de::Error>(self) -> std::result::Result<(), E> {
        Err(E::custom("rows must be numbers, strings or booleans"))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, _: A) -> std::result::Result<(), A::Error> {
        Err(serde::de::Error::custom(
            "rows must be numbers, strings or booleans",
        ))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, _: A) -> std::result::Result<(), A::Error> {
        Err(serde::de::Error::custom(
            "rows must be numbers, strings or booleans",
        ))
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
            parse(br#"[{"request_id": "a", "label": true}, {"request_id": "b\u0041", "label": [1, 0]}]"#)
                .unwrap();
        assert_eq!(many[1].label.get(), "[1, 0]");
        assert_eq!(many[1].request_id, "bA");
        // Written as the registry reads them: the labels as they came.
        let lines = segment("m", &many, SystemTime::UNIX_EPOCH);
        let text = String::from_utf8(lines).unwrap();
        assert_eq!(
            text,
            "{\"time\":\"1970-01-01T00:00:00.000Z\",\"request_id\":\"a\",\"model\":\"m\",\"label\":true}\n\
             {\"time\":\"1970-01-01T00:00:00.000Z\",\"request_id\":\"bA\",\"model\":\"m\",\"label\":[1, 0]}\n"
        );
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
