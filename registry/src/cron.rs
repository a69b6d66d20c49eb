//! Five-field cron expressions (`minute hour day-of-month month
//! day-of-week`, UTC), as Airflow and crontab write them: `*`, numbers,
//! ranges `a-b`, steps `*/n` and `a-b/n`, and lists of those. As in
//! crontab, when both day fields are restricted a day matching either runs.

const MINUTE_MS: u64 = 60_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    days_restricted: bool,
    weekdays_restricted: bool,
}

impl Cron {
    pub fn parse(expression: &str) -> Result<Cron, String> {
        let fields: Vec<&str> = expression.split_whitespace().collect();
        let [minutes, hours, days, months, weekdays] = fields[..] else {
            return Err(format!(
                "cron '{expression}' has {} fields: expected five (minute hour day-of-month month day-of-week)",
                fields.len()
            ));
        };
        // Sunday is 0 or 7.
        let mut weekday_bits = field(weekdays, 0, 7, "day-of-week")?;
        if weekday_bits & (1 << 7) != 0 {
            weekday_bits = (weekday_bits | 1) & !(1 << 7);
        }
        Ok(Cron {
            minutes: field(minutes, 0, 59, "minute")?,
            hours: field(hours, 0, 23, "hour")?,
            days: field(days, 1, 31, "day-of-month")?,
            months: field(months, 1, 12, "month")?,
            weekdays: weekday_bits,
            days_restricted: days != "*",
            weekdays_restricted: weekdays != "*",
        })
    }

    /// Whether the minute starting at `minute_ms` (Unix ms) is scheduled.
    pub fn matches(&self, minute_ms: u64) -> bool {
        let minutes = minute_ms / MINUTE_MS;
        let days_since_epoch = minutes / (24 * 60);
        let minute = minutes % 60;
        let hour = (minutes / 60) % 24;
        let (_, month, day) = civil(days_since_epoch);
        // 1970-01-01 was a Thursday (4).
        let weekday = (days_since_epoch + 4) % 7;
        let day_matches = match (self.days_restricted, self.weekdays_restricted) {
            (true, true) => bit(self.days, day) || bit(self.weekdays, weekday),
            _ => bit(self.days, day) && bit(self.weekdays, weekday),
        };
        bit(self.minutes, minute) && bit(self.hours, hour) && bit(self.months, month) && day_matches
    }

    /// The first scheduled minute in `(after_ms, up_to_ms]`, by its start.
    pub fn due(&self, after_ms: u64, up_to_ms: u64) -> Option<u64> {
        let mut minute = (after_ms / MINUTE_MS + 1) * MINUTE_MS;
        while minute <= up_to_ms {
            if self.matches(minute) {
                return Some(minute);
            }
            minute += MINUTE_MS;
        }
        None
    }
}

fn bit(set: u64, value: u64) -> bool {
    set & (1 << value) != 0
}

fn field(text: &str, low: u64, high: u64, name: &str) -> Result<u64, String> {
    let mut set = 0u64;
    for part in text.split(',') {
        let bad =
            || format!("cron {name} '{part}': expected *, N, A-B, */S or A-B/S with values {low}-{high}");
        let (range, step) = match part.split_once('/') {
            Some((range, step)) => (range, step.parse::<u64>().map_err(|_| bad())?),
            None => (part, 1),
        };
        if step == 0 {
            return Err(bad());
        }
        let (from, to) = match range {
            "*" => (low, high),
            _ => match range.split_once('-') {
                Some((a, b)) => (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?),
                None => {
                    let value: u64 = range.parse().map_err(|_| bad())?;
                    (value, value)
                }
            },
        };
        if from < low || to > high || from > to {
            return Err(bad());
        }
        for value in (from..=to).step_by(step as usize) {
            set |= 1 << value;
        }
    }
    Ok(set)
}

/// (year, month 1-12, day 1-31) of a day counted from 1970-01-01, by
/// Howard Hinnant's `civil_from_days`.
fn civil(days: u64) -> (u64, u64, u64) {
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year as u64, month as u64, day as u64)
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
}
