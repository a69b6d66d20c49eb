//! Where prediction-log and feedback segments go, hive-partitioned so that
//! DuckDB, Spark or pandas read them without our code:
//!
//! - predictions: `model=M/version=V/date=YYYY-MM-DD/hour=HH/{segment}.jsonl`
//! - feedback: `model=M/date=YYYY-MM-DD/hour=HH/{replica}-{sequence}.jsonl`
//!
//! Gateways build these paths and the registry parses them back (to list
//! only the hours it still joins): both sides use this one module, so the
//! two cannot drift apart.

use std::time::{SystemTime, UNIX_EPOCH};

const HOUR_MS: u64 = 3600 * 1000;
const DAY_MS: u64 = 24 * HOUR_MS;

/// `date=…/hour=…` of the hour `at` falls in (UTC).
fn date_and_hour(at: SystemTime) -> String {
    // `2026-11-26T14:05:09Z`: the date and the hour are its slices.
    let stamp = humantime::format_rfc3339_seconds(at).to_string();
    format!("date={}/hour={}", &stamp[..10], &stamp[11..13])
}

/// The partition a prediction of `model` version `version` made at `at` goes to.
pub fn predictions_partition(model: &str, version: u64, at: SystemTime) -> String {
    format!("model={model}/version={version}/{}", date_and_hour(at))
}

/// The path of feedback segment `sequence` of `replica`, written at `at`.
pub fn feedback_segment(model: &str, at: SystemTime, replica: &str, sequence: u64) -> String {
    format!(
        "model={model}/{}/{replica}-{sequence:06}.jsonl",
        date_and_hour(at)
    )
}

/// The start (ms since the epoch) of the hour a segment's path names, or
/// `None` for a path outside the layout.
pub fn hour_start_ms(path: &str) -> Option<u64> {
    let date = path.split('/').find_map(|part| part.strip_prefix("date="))?;
    let hour = path.split('/').find_map(|part| part.strip_prefix("hour="))?;
    let hour: u64 = hour.parse().ok().filter(|hour| *hour < 24)?;
    Some(day_start_ms(date)? + hour * HOUR_MS)
}

/// The end (ms since the epoch) of the day a `date=YYYY-MM-DD` directory
/// holds, or `None` for any other name.
pub fn date_directory_end_ms(name: &str) -> Option<u64> {
    Some(day_start_ms(name.strip_prefix("date=")?)? + DAY_MS)
}

fn day_start_ms(date: &str) -> Option<u64> {
    let at = humantime::parse_rfc3339(&format!("{date}T00:00:00Z")).ok()?;
    Some(at.duration_since(UNIX_EPOCH).ok()?.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn paths_built_are_parsed_back() {
        let at = UNIX_EPOCH + Duration::from_millis(DAY_MS + 5 * HOUR_MS + 1234);
        let partition = predictions_partition("credit_risk", 3, at);
        assert_eq!(partition, "model=credit_risk/version=3/date=1970-01-02/hour=05");
        assert_eq!(
            hour_start_ms(&format!("{partition}/a.jsonl")),
            Some(DAY_MS + 5 * HOUR_MS)
        );
        let segment = feedback_segment("m", at, "gw-1", 7);
        assert_eq!(segment, "model=m/date=1970-01-02/hour=05/gw-1-000007.jsonl");
        assert_eq!(hour_start_ms(&segment), Some(DAY_MS + 5 * HOUR_MS));
        assert_eq!(date_directory_end_ms("date=1970-01-02"), Some(2 * DAY_MS));
    }

    #[test]
    fn other_paths_have_no_hour() {
        assert_eq!(hour_start_ms("model=m/a.jsonl"), None);
        assert_eq!(hour_start_ms("model=m/date=1970-01-01/hour=25/a.jsonl"), None);
        assert_eq!(hour_start_ms("model=m/date=yesterday/hour=01/a.jsonl"), None);
        assert_eq!(date_directory_end_ms("version=1"), None);
    }
}
