//! The local guard's record of one canary: its last answers in lock-free
//! rings (one atomic swap and at most one add per answer), and whether they
//! hold too many failures, too many engine refusals beyond the stable
//! version's (whose refusals every version records, for its canaries), or
//! too many slow answers beyond the stable version's: slower than
//! [`SLOW_RATIO`] times the stable version's p99 and [`SLOW_FLOOR_MS`]
//! beyond it (the p99 of its last statistics window, set by the reporter
//! off the request path; the stable version's own answers are held to the
//! same line, so a load spike slowing both trips nothing); and, during a
//! rollout that checks disagreement, too many of its answers compared with
//! the stable version's disagreeing (`crate::shadow` records those, off the
//! request path). What a trip does is `crate::fast_rollback`'s.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// The most requests a guard window may span.
pub const MAX_WINDOW: usize = 1024;

/// When a canary is stopped: `errors` server errors among its last
/// `window` requests, as many engine refusals beyond the stable version's,
/// or as many slow answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuardLimits {
    pub window: usize,
    pub errors: usize,
}

/// The last answers a canary's guard watches (`--guard-window`).
pub const DEFAULT_GUARD_WINDOW: usize = 20;

/// Failures among them that stop routing to it (`--guard-errors`): half.
pub const DEFAULT_GUARD_ERRORS: usize = 10;

impl Default for GuardLimits {
    fn default() -> Self {
        GuardLimits {
            window: DEFAULT_GUARD_WINDOW,
            errors: DEFAULT_GUARD_ERRORS,
        }
    }
}

/// A canary's answer is slow past this many times the stable version's
/// p99...
pub const SLOW_RATIO: f64 = 2.0;

/// ...and this many milliseconds beyond it: a rollout's "bad latency"
/// (`max_p99_ratio` 2, `p99_floor_ms` 1), so 0.2 ms against 0.1 ms is not.
pub const SLOW_FLOOR_MS: f64 = 1.0;

/// A version's last answers as far as its guard is concerned: which
/// failed, which its engine refused, which were slow; and, for its
/// canaries, its own recent p99.
pub struct Guard {
    failures: Ring,
    refusals: Ring,
    slow: Ring,
    /// Comparisons with the stable version's answers (during a rollout that
    /// checks disagreement): which disagreed.
    disagreements: Ring,
    /// Microseconds; 0 before any window was taken.
    p99_us: AtomicU64,
    tripped: AtomicBool,
}

impl Default for Guard {
    fn default() -> Self {
        Guard {
            failures: Ring::default(),
            refusals: Ring::default(),
            slow: Ring::default(),
            disagreements: Ring::default(),
            p99_us: AtomicU64::new(0),
            tripped: AtomicBool::new(false),
        }
    }
}

/// A tripped guard, from the request path (or a comparison) to the guard
/// task, `crate::fast_rollback`.
pub struct Trip {
    pub model: String,
    pub version: u64,
    pub errors: u64,
    pub window: u64,
}

/// One canary answer as its guard weighs it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Answer {
    pub failed: bool,
    pub refused: bool,
    pub elapsed: Duration,
}

/// What the guard compares a canary's answer with: the stable version's.
#[derive(Debug, Clone, Copy, Default)]
pub struct Baseline {
    /// Shares of its last answers its engine refused, and that were slow
    /// by its own line.
    pub refused_share: f64,
    pub slow_share: f64,
    /// Its recent p99; 0 when not known yet (nothing is slow then).
    pub p99_us: u64,
}

impl Guard {
    /// Records one answer of a canary; true for the one call that trips
    /// the guard: `limits.errors` failures among its last `limits.window`
    /// answers, as many engine refusals beyond what the stable version
    /// would have refused of as many (inputs both refuse are the
    /// callers'), or as many answers slower than the stable version's line.
    pub fn record(&self, answer: Answer, stable: Baseline, limits: GuardLimits) -> bool {
        if limits.window == 0 {
            return false;
        }
        let window = limits.window.min(MAX_WINDOW);
        let (seen, failures) = self.failures.push(answer.failed, window);
        let (_, refusals) = self.refusals.push(answer.refused, window);
        let (_, slow) = self.slow.push(is_slow(answer.elapsed, stable.p99_us), window);
        let full = seen >= window as u64;
        let excess = |count: i64, share: f64| count as f64 - share * window as f64;
        let errors = limits.errors as f64;
        let bad = failures as f64 >= errors
            || excess(refusals, stable.refused_share) >= errors
            || excess(slow, stable.slow_share) >= errors;
        full && bad && !self.tripped.swap(true, Ordering::Relaxed)
    }

    /// Records one comparison of a canary's answer with the stable
    /// version's (off the request path); true for the one call that trips
    /// the guard: `limits.errors` disagreeing among its last `limits.window`
    /// comparisons.
    pub fn record_comparison(&self, disagreed: bool, limits: GuardLimits) -> bool {
        if limits.window == 0 {
            return false;
        }
        let window = limits.window.min(MAX_WINDOW);
        let (seen, disagreements) = self.disagreements.push(disagreed, window);
        seen >= window as u64
            && disagreements >= limits.errors as i64
            && !self.tripped.swap(true, Ordering::Relaxed)
    }

    /// What a canary of this version is compared with.
    pub fn baseline(&self, limits: GuardLimits) -> Baseline {
        let window = limits.window.clamp(1, MAX_WINDOW);
        Baseline {
            refused_share: self.refusals.share(window),
            slow_share: self.slow.share(window),
            p99_us: self.p99_us.load(Ordering::Relaxed),
        }
    }

    /// The p99 of this version's last statistics window; a window without
    /// answers (`None`) keeps the last. Even a few answers will do: the
    /// line is twice it and a millisecond more.
    pub fn note_p99(&self, p99_ms: Option<f64>) {
        if let Some(p99_ms) = p99_ms {
            self.p99_us
                .store((p99_ms * 1000.0).round() as u64, Ordering::Relaxed);
        }
    }

    /// Records one answer of a version that is no canary (a stable
    /// version): whether its engine refused it, and whether it was slow by
    /// its own line, for its canaries' guards to weigh theirs against.
    pub fn note(&self, refused: bool, elapsed: Duration, limits: GuardLimits) {
        if limits.window > 0 {
            let window = limits.window.min(MAX_WINDOW);
            self.refusals.push(refused, window);
            self.slow
                .push(is_slow(elapsed, self.p99_us.load(Ordering::Relaxed)), window);
        }
    }

    /// Forgets the window, once the registry has taken the version out.
    pub fn reset(&self) {
        self.failures.reset();
        self.refusals.reset();
        self.slow.reset();
        self.disagreements.reset();
        self.tripped.store(false, Ordering::Relaxed);
    }
}

/// Whether an answer after `elapsed` is past the line of a p99 of
/// `p99_us`; nothing is, before the p99 is known.
fn is_slow(elapsed: Duration, p99_us: u64) -> bool {
    p99_us > 0 && {
        let p99_ms = p99_us as f64 / 1000.0;
        let line_ms = (p99_ms * SLOW_RATIO).max(p99_ms + SLOW_FLOOR_MS);
        elapsed.as_secs_f64() * 1000.0 > line_ms
    }
}

/// The last answers' flags in a lock-free ring (one atomic swap and at most
/// one add per answer), and how many are set.
struct Ring {
    slots: Box<[AtomicBool]>,
    next: AtomicU64,
    /// Signed: under concurrency a slot's decrement may land before the
    /// increment that put the flag there.
    set: AtomicI64,
}

impl Default for Ring {
    fn default() -> Self {
        Ring {
            slots: (0..MAX_WINDOW).map(|_| AtomicBool::new(false)).collect(),
            next: AtomicU64::new(0),
            set: AtomicI64::new(0),
        }
    }
}

impl Ring {
    /// Pushes one flag into a window of `window`; how many answers were
    /// pushed in all, and how many of the window's are set.
    fn push(&self, flag: bool, window: usize) -> (u64, i64) {
        let seen = self.next.fetch_add(1, Ordering::Relaxed);
        let slot = (seen % window as u64) as usize;
        let was = self.slots[slot].swap(flag, Ordering::Relaxed);
        let set = match (was, flag) {
            (false, true) => self.set.fetch_add(1, Ordering::Relaxed) + 1,
            (true, false) => self.set.fetch_sub(1, Ordering::Relaxed) - 1,
            _ => self.set.load(Ordering::Relaxed),
        };
        (seen + 1, set)
    }

    fn share(&self, window: usize) -> f64 {
        let seen = self.next.load(Ordering::Relaxed).min(window as u64);
        match seen {
            0 => 0.0,
            seen => self.set.load(Ordering::Relaxed).max(0) as f64 / seen as f64,
        }
    }

    fn reset(&self) {
        for slot in self.slots.iter() {
            slot.store(false, Ordering::Relaxed);
        }
        self.set.store(0, Ordering::Relaxed);
        self.next.store(0, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(failed: bool) -> Answer {
        Answer {
            failed,
            ..Answer::default()
        }
    }

    fn refused(refused: bool) -> Answer {
        Answer {
            refused,
            ..Answer::default()
        }
    }

    /// Comparisons trip it once half of the last twenty disagree.
    #[test]
    fn disagreeing_comparisons_trip_it() {
        let limits = GuardLimits::default();
        let guard = Guard::default();
        assert!(!(0..100).any(|index| guard.record_comparison(index % 4 == 0, limits)));
        let trips = (0..40).filter(|_| guard.record_comparison(true, limits)).count();
        assert_eq!(trips, 1);
    }

    /// Slow is twice the stable version's p99 and a millisecond beyond it.
    #[test]
    fn slow_answers_trip_it_past_the_ratio_and_the_floor() {
        let limits = GuardLimits::default();
        let stable = Guard::default();
        stable.note_p99(Some(0.1));
        stable.note_p99(None);
        assert_eq!(
            stable.baseline(limits).p99_us,
            100,
            "a window without answers keeps the last"
        );
        let after = |ms: f64| Answer {
            elapsed: Duration::from_secs_f64(ms / 1000.0),
            ..Answer::default()
        };
        // 0.5 ms against 0.1 ms: five times, but not a millisecond more.
        let quick = Guard::default();
        assert!(!(0..100).any(|_| quick.record(after(0.5), stable.baseline(limits), limits)));
        // 20 ms: slow; trips once its window of 20 holds 10.
        let slow = Guard::default();
        let trips: Vec<bool> = (0..20)
            .map(|index| {
                slow.record(
                    after(if index % 2 == 0 { 20.0 } else { 0.1 }),
                    stable.baseline(limits),
                    limits,
                )
            })
            .collect();
        assert_eq!(trips, [vec![false; 19], vec![true]].concat());
        // A load spike slowing the stable version as much trips nothing.
        let spiked = Guard::default();
        spiked.note_p99(Some(0.1));
        for _ in 0..20 {
            spiked.note(false, Duration::from_millis(20), limits);
        }
        let canary = Guard::default();
        assert!(!(0..100).any(|_| canary.record(after(20.0), spiked.baseline(limits), limits)));
        // Before the stable version's p99 is known nothing is slow.
        let early = Guard::default();
        assert!(!(0..100).any(|_| early.record(after(20.0), Baseline::default(), limits)));
    }

    #[test]
    fn trips_once_on_half_of_the_last_twenty() {
        let guard = Guard::default();
        let limits = GuardLimits::default();
        // Nine failures in a full window: not yet.
        for index in 0..20 {
            assert!(!guard.record(failed(index % 2 == 0 && index < 18), Baseline::default(), limits));
        }
        // The window slides: old failures leave as new ones come.
        assert!(!guard.record(Answer::default(), Baseline::default(), limits));
        let trips: Vec<bool> = (0..12)
            .map(|_| guard.record(failed(true), Baseline::default(), limits))
            .collect();
        assert_eq!(
            trips.iter().filter(|tripped| **tripped).count(),
            1,
            "trips exactly once"
        );
        guard.reset();
        assert!(
            !(0..9).any(|_| guard.record(failed(true), Baseline::default(), limits)),
            "a reset window starts empty"
        );
    }

    /// Refusals trip the guard only beyond what the stable version refuses.
    #[test]
    fn refusals_count_beyond_the_stable_versions() {
        let limits = GuardLimits::default();
        let stable = Guard::default();
        for index in 0..20 {
            stable.note(index % 2 == 0, Duration::ZERO, limits);
        }
        assert_eq!(stable.baseline(limits).refused_share, 0.5);
        // The canary refuses as often: never trips.
        let canary = Guard::default();
        let share = stable.baseline(limits);
        assert!(!(0..100).any(|index| canary.record(refused(index % 2 == 0), share, limits)));
        // Refusing everything, ten beyond the stable version's ten: trips.
        let refusing = Guard::default();
        let trips: Vec<bool> = (0..20)
            .map(|_| refusing.record(refused(true), share, limits))
            .collect();
        assert_eq!(trips, [vec![false; 19], vec![true]].concat());
        // Against a stable version that refuses nothing, ten refusals do.
        let alone = Guard::default();
        let trips = (0..20)
            .filter(|index| alone.record(refused(index % 2 == 0), Baseline::default(), limits))
            .count();
        assert_eq!(trips, 1);
    }
}
