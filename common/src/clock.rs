//! The wall clock the control loops read, injected so that a test can move
//! it instead of sleeping.
//!
//! Rollout intervals, statistics windows, trigger windows, the feedback
//! join's horizon and the prediction log's timestamps all read one
//! [`Clock`]. A process runs on [`Clock::system`]; a test builds a
//! [`ManualClock`], hands the same clock to a registry and its gateways,
//! and advances it past an interval the moment the interval's traffic is
//! in, so that what a loop decides depends on what happened, not on how
//! busy the machine was.
//!
//! Only wall-clock readings go through here. How long something took
//! (`Instant`) and how long a loop waits between looks (`tokio::time`) stay
//! real: a manual clock that never moves must not hang anything.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Where "now" comes from: the system's clock, or a test's hand.
#[derive(Clone, Debug, Default)]
pub enum Clock {
    #[default]
    System,
    /// Unix milliseconds, moved only by [`ManualClock::advance`].
    Manual(Arc<AtomicU64>),
}

/// Two clocks are equal when they read the same hand (settings compare).
impl PartialEq for Clock {
    fn eq(&self, other: &Clock) -> bool {
        match (self, other) {
            (Clock::System, Clock::System) => true,
            (Clock::Manual(mine), Clock::Manual(theirs)) => Arc::ptr_eq(mine, theirs),
            _ => false,
        }
    }
}

impl Eq for Clock {}

impl Clock {
    pub fn system() -> Clock {
        Clock::System
    }

    /// Now, in Unix milliseconds.
    pub fn now_ms(&self) -> u64 {
        match self {
            Clock::System => unix_ms(SystemTime::now()),
            Clock::Manual(ms) => ms.load(Ordering::Acquire),
        }
    }

    /// Now, as a `SystemTime` (timestamps written to logs).
    pub fn now(&self) -> SystemTime {
        match self {
            Clock::System => SystemTime::now(),
            Clock::Manual(ms) => UNIX_EPOCH + Duration::from_millis(ms.load(Ordering::Acquire)),
        }
    }
}

/// A clock a test moves by hand. It starts at the real time, so that what it
/// stamps (log partitions by date and hour, audit records beside it) reads
/// as today.
#[derive(Clone, Debug)]
pub struct ManualClock(Arc<AtomicU64>);

impl Default for ManualClock {
    fn default() -> Self {
        ManualClock(Arc::new(AtomicU64::new(unix_ms(SystemTime::now()))))
    }
}

impl ManualClock {
    /// The clock to hand to a registry or a gateway: every one handed out
    /// reads this hand.
    pub fn clock(&self) -> Clock {
        Clock::Manual(self.0.clone())
    }

    pub fn advance(&self, by: Duration) {
        self.0.fetch_add(by.as_millis() as u64, Ordering::AcqRel);
    }

    pub fn now_ms(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }
}

/// A time in Unix milliseconds (0 before 1970).
pub fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_advanced_and_every_copy_sees_it() {
        let hand = ManualClock::default();
        let (first, second) = (hand.clock(), hand.clock());
        let start = first.now_ms();
        let real = unix_ms(SystemTime::now());
        assert!(real.abs_diff(start) < 60_000, "it starts at the real time");
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(first.now_ms(), start);
        hand.advance(Duration::from_secs(3600));
        assert_eq!(second.now_ms(), start + 3_600_000);
        assert_eq!(unix_ms(second.now()), start + 3_600_000);
    }

    #[test]
    fn the_system_clock_is_the_real_time() {
        let clock = Clock::system();
        let before = unix_ms(SystemTime::now());
        let now = clock.now_ms();
        assert!(now >= before && now - before < 60_000);
    }
}
