//! Five-field cron expressions (`minute hour day-of-month month
//! day-of-week`, UTC), as Airflow and crontab write them, parsed and
//! evaluated by croner (Vixie cron's rules: when both day fields are
//! restricted a day matching either runs; names such as `MON` or `JAN`, and
//! croner's `L`, `W` and `#` are accepted too). This module keeps the
//! registry's own terms: five fields exactly, a mistake named by its
//! field, times in Unix milliseconds.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use croner::parser::{CronParser, Seconds, Year};

const MINUTE_MS: u64 = 60_000;

const FIELDS: [&str; 5] = ["minute", "hour", "day-of-month", "month", "day-of-week"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron(croner::Cron);

impl FromStr for Cron {
    type Err = String;

    fn from_str(expression: &str) -> Result<Cron, String> {
        Cron::parse(expression)
    }
}

impl Cron {
    pub fn parse(expression: &str) -> Result<Cron, String> {
        let fields: Vec<&str> = expression.split_whitespace().collect();
        if fields.len() != FIELDS.len() {
            return Err(format!(
                "cron '{expression}' has {} fields: expected five (minute hour day-of-month month day-of-week)",
                fields.len()
            ));
        }
        parser()
            .parse(&fields.join(" "))
            .map(Cron)
            .map_err(|err| match wrong_field(&fields) {
                Some((name, text)) => {
                    format!("cron {name} '{text}': expected *, N, A-B, */S, A-B/S or a list of those ({err})")
                }
                None => format!("cron '{expression}': {err}"),
            })
    }

    /// Whether the minute starting at `minute_ms` (Unix ms) is scheduled.
    pub fn matches(&self, minute_ms: u64) -> bool {
        at(minute_ms - minute_ms % MINUTE_MS)
            .is_some_and(|time| self.0.is_time_matching(&time).unwrap_or(false))
    }

    /// The first scheduled minute in `(after_ms, up_to_ms]`, by its start.
    pub fn due(&self, after_ms: u64, up_to_ms: u64) -> Option<u64> {
        let after = at(after_ms - after_ms % MINUTE_MS)?;
        let next = self.0.find_next_occurrence(&after, false).ok()?;
        let next_ms = u64::try_from(next.timestamp_millis()).ok()?;
        (next_ms <= up_to_ms).then_some(next_ms)
    }
}

/// Five fields, no seconds, no year: crontab's grammar.
fn parser() -> CronParser {
    CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build()
}

/// The first field that fails alone (every other field `*`), to name it.
fn wrong_field<'a>(fields: &[&'a str]) -> Option<(&'static str, &'a str)> {
    (0..fields.len()).find_map(|index| {
        let mut alone = ["*"; 5];
        alone[index] = fields[index];
        parser()
            .parse(&alone.join(" "))
            .is_err()
            .then(|| (FIELDS[index], fields[index]))
    })
}

fn at(ms: u64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_millis(i64::try_from(ms).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unix ms of a UTC time, through humantime (an independent calendar).
    fn at(stamp: &str) -> u64 {
        humantime::parse_rfc3339(stamp)
            .unwrap()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64
    }

    #[test]
    fn nightly_at_three() {
        let cron = Cron::parse("0 3 * * *").unwrap();
        assert!(cron.matches(at("2026-11-26T03:00:00Z")));
        assert!(!cron.matches(at("2026-11-26T03:01:00Z")));
        assert_eq!(
            cron.due(at("2026-11-26T03:00:00Z"), at("2026-11-28T00:00:00Z")),
            Some(at("2026-11-27T03:00:00Z"))
        );
        assert_eq!(
            cron.due(at("2026-11-26T03:00:00Z"), at("2026-11-27T02:59:00Z")),
            None
        );
    }

    #[test]
    fn steps_ranges_lists_and_weekdays() {
        let cron = Cron::parse("*/15 9-17 * * 1-5").unwrap();
        // 2026-11-26 is a Thursday, 2026-11-28 a Saturday.
        assert!(cron.matches(at("2026-11-26T09:45:00Z")));
        assert!(!cron.matches(at("2026-11-26T09:50:00Z")));
        assert!(!cron.matches(at("2026-11-28T10:00:00Z")));
        let sundays = Cron::parse("0 0 * * 7").unwrap();
        assert!(sundays.matches(at("2026-11-29T00:00:00Z")));
        // Either day field, when both are restricted: the 1st, or any Monday.
        let either = Cron::parse("0 0 1 * 1").unwrap();
        assert!(either.matches(at("2026-12-01T00:00:00Z")));
        assert!(either.matches(at("2026-11-30T00:00:00Z")));
        assert!(!either.matches(at("2026-12-02T00:00:00Z")));
        assert!(
            Cron::parse("0 0 29 2 *")
                .unwrap()
                .matches(at("2028-02-29T00:00:00Z"))
        );
    }

    #[test]
    fn mistakes_are_named() {
        assert!(Cron::parse("0 3 * *").unwrap_err().contains("five"));
        assert!(Cron::parse("61 * * * *").unwrap_err().contains("minute"));
        assert!(Cron::parse("*/0 * * * *").unwrap_err().contains("minute"));
        assert!(Cron::parse("* * * 13 *").unwrap_err().contains("month"));
    }

    #[test]
    fn names_and_the_last_day_of_the_month() {
        let weekdays = Cron::parse("0 9 * * MON-FRI").unwrap();
        assert!(weekdays.matches(at("2026-11-27T09:00:00Z")));
        assert!(!weekdays.matches(at("2026-11-28T09:00:00Z")));
        let month_end = Cron::parse("30 23 L * *").unwrap();
        assert_eq!(
            month_end.due(at("2026-02-01T00:00:00Z"), at("2026-03-31T23:59:00Z")),
            Some(at("2026-02-28T23:30:00Z"))
        );
        // Never: the search gives up, and nothing is due.
        assert_eq!(
            Cron::parse("0 0 30 2 *")
                .unwrap()
                .due(at("2026-01-01T00:00:00Z"), at("2030-01-01T00:00:00Z")),
            None
        );
        // Seconds or a year make six fields: crontab has five.
        assert!(Cron::parse("0 0 3 * * *").unwrap_err().contains("five"));
    }
}
