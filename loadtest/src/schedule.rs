//! When each request is meant to start, in the open model.
//!
//! The schedule, not the server, decides when a request is due: latency is
//! measured from that intended start, so a server that stalls cannot hide
//! the requests it kept waiting (coordinated omission, as wrk2 corrects it).
//! Each connection runs its own share of the rate; shares of a Poisson
//! process add up to a Poisson process, shares of a constant rate are
//! staggered so that their sum is even.

use std::time::Duration;

/// Requests per second over the run.
#[derive(Debug, Clone, PartialEq)]
pub enum RateProfile {
    Constant(f64),
    /// `(from, rate)` pairs: the rate from each offset on, sorted by offset.
    Steps(Vec<(Duration, f64)>),
    /// Linear from one rate to another over a duration, then flat.
    Ramp {
        from: f64,
        to: f64,
        over: Duration,
    },
}

impl RateProfile {
    pub fn rate_at(&self, offset: Duration) -> f64 {
        match self {
            RateProfile::Constant(rate) => *rate,
            RateProfile::Steps(steps) => steps
                .iter()
                .take_while(|(from, _)| *from <= offset)
                .last()
                .map_or(0.0, |(_, rate)| *rate),
            RateProfile::Ramp { from, to, over } => {
                let progress = (offset.as_secs_f64() / over.as_secs_f64().max(f64::EPSILON)).min(1.0);
                from + (to - from) * progress
            }
        }
    }

    /// The mean rate over `duration`: the target throughput.
    pub fn mean_rate(&self, duration: Duration) -> f64 {
        let steps = 1000;
        let total: f64 = (0..steps)
            .map(|i| self.rate_at(duration.mul_f64((i as f64 + 0.5) / steps as f64)))
            .sum();
        total / steps as f64
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrivals {
    /// Evenly spaced.
    Uniform,
    /// Exponential gaps: the arrivals of many independent clients.
    Poisson,
}

/// One connection's share of the schedule.
pub struct ConnectionSchedule {
    profile: RateProfile,
    arrivals: Arrivals,
    /// This connection's share of the total rate.
    share: f64,
    next: Duration,
    random: SplitMix,
}

impl ConnectionSchedule {
    pub fn new(
        profile: RateProfile,
        arrivals: Arrivals,
        connections: usize,
        index: usize,
        seed: u64,
    ) -> Self {
        let connections = connections.max(1);
        let share = 1.0 / connections as f64;
        let mut random = SplitMix::new(crate::runner::derive_seed(seed, index));
        // Uniform connections are staggered across one gap so their sum is
        // even; Poisson ones start after an exponential gap of their own.
        let first_credit = match arrivals {
            Arrivals::Uniform => (index as f64 + 0.5) / connections as f64,
            Arrivals::Poisson => random.exponential(1.0),
        };
        let mut schedule = ConnectionSchedule {
            profile,
            arrivals,
            share,
            next: Duration::ZERO,
            random,
        };
        schedule.next = schedule.advance(Duration::ZERO, first_credit, Duration::MAX);
        schedule
    }

    /// The next intended start, as an offset from the run's start; `None`
    /// once past `end`.
    pub fn next_due(&mut self, end: Duration) -> Option<Duration> {
        let due = self.next;
        if due >= end {
            return None;
        }
        let credit = match self.arrivals {
            Arrivals::Uniform => 1.0,
            Arrivals::Poisson => self.random.exponential(1.0),
        };
        self.next = self.advance(due, credit, end);
        Some(due)
    }

    /// The time after `from` by which this connection's share of the rate
    /// adds up to `credit` requests (time rescaling: it makes a varying rate
    /// exact, and keeps Poisson arrivals Poisson). Stops at `end`.
    fn advance(&self, from: Duration, credit: f64, end: Duration) -> Duration {
        if let RateProfile::Constant(rate) = self.profile {
            return from + Duration::from_secs_f64(credit / (rate * self.share));
        }
        const STEP: Duration = Duration::from_micros(500);
        let step = STEP.as_secs_f64();
        let (mut at, mut gathered) = (from, 0.0);
        // A profile that stays at zero would never add up: give up at the
        // end, or an hour on; no request is due then.
        let limit = end.min(from.saturating_add(Duration::from_secs(3600)));
        while at < limit {
            let rate = self.profile.rate_at(at) * self.share;
            if rate > 0.0 {
                let needed = (credit - gathered) / rate;
                if needed <= step {
                    return at + Duration::from_secs_f64(needed);
                }
                gathered += rate * step;
            }
            at += STEP;
        }
        Duration::MAX
    }
}

/// A small, fast, seedable generator (SplitMix64): schedules and random
/// tensors need reproducibility, not cryptography.
#[derive(Debug, Clone)]
pub struct SplitMix(u64);

impl SplitMix {
    pub fn new(seed: u64) -> Self {
        SplitMix(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// An exponential gap for a Poisson process of `rate` per second.
    pub fn exponential(&mut self, rate: f64) -> f64 {
        -(1.0 - self.unit()).ln() / rate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(profile: RateProfile, arrivals: Arrivals, connections: usize, seconds: u64) -> usize {
        (0..connections)
            .map(|index| {
                let mut schedule = ConnectionSchedule::new(profile.clone(), arrivals, connections, index, 7);
                std::iter::from_fn(|| schedule.next_due(Duration::from_secs(seconds))).count()
            })
            .sum()
    }

    #[test]
    fn constant_rate_is_split_across_connections() {
        assert_eq!(
            count(RateProfile::Constant(100.0), Arrivals::Uniform, 4, 10),
            1000
        );
    }

    #[test]
    fn poisson_arrivals_average_the_rate() {
        let total = count(RateProfile::Constant(1000.0), Arrivals::Poisson, 8, 10);
        assert!((9_500..10_500).contains(&total), "{total}");
    }

    #[test]
    fn poisson_connections_draw_independent_gaps() {
        let gaps = |index| {
            let mut schedule =
                ConnectionSchedule::new(RateProfile::Constant(100.0), Arrivals::Poisson, 4, index, 1);
            (0..20)
                .map(|_| schedule.next_due(Duration::from_secs(60)).unwrap())
                .collect::<Vec<_>>()
        };
        let streams: Vec<_> = (0..4).map(gaps).collect();
        for a in 0..4 {
            for b in a + 1..4 {
                let differences: std::collections::BTreeSet<_> = streams[a]
                    .iter()
                    .zip(&streams[b])
                    .map(|(x, y)| x.abs_diff(*y))
                    .collect();
                assert!(
                    differences.len() > 15,
                    "connections {a} and {b} replay each other's gaps"
                );
            }
        }
    }

    #[test]
    fn steps_and_ramps_follow_the_profile() {
        let steps = RateProfile::Steps(vec![(Duration::ZERO, 0.0), (Duration::from_secs(2), 100.0)]);
        assert_eq!(count(steps.clone(), Arrivals::Uniform, 2, 4), 200);
        assert_eq!(steps.rate_at(Duration::from_secs(1)), 0.0);
        let ramp = RateProfile::Ramp {
            from: 0.0,
            to: 200.0,
            over: Duration::from_secs(10),
        };
        assert!((ramp.mean_rate(Duration::from_secs(10)) - 100.0).abs() < 0.5);
        let total = count(ramp, Arrivals::Uniform, 1, 10);
        assert!((990..1010).contains(&total), "{total}");
    }
}
