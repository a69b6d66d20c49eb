//! The local guard's record of one canary: its last answers in lock-free
//! rings (one atomic swap and at most one add per answer), and whether they
//! hold too many failures, or too many engine refusals beyond the stable
//! version's (whose refusals every version records, for its canaries).
//! What a trip does is `crate::fast_rollback`'s.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

/// The most requests a guard window may span.
pub const MAX_WINDOW: usize = 1024;

/// When a canary is stopped: `errors` server errors among its last
/// `window` requests, or as many engine refusals beyond the stable version's.
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

/// A version's last answers as far as its guard is concerned: which
/// failed, and which its engine refused.
pub struct Guard {
    failures: Ring,
    refusals: Ring,
    tripped: AtomicBool,
}

impl Default for Guard {
    fn default() -> Self {
        Guard {
            failures: Ring::default(),
            refusals: Ring::default(),
            tripped: AtomicBool::new(false),
        }
    }
}

impl Guard {
    /// Records one answer of a canary; true for the one call that trips
    /// the guard: `limits.errors` failures among its last `limits.window`
    /// answers, or as many engine refusals beyond what the stable version,
    /// refusing `stable_refused` of its own last answers, would have
    /// refused of as many (inputs both refuse are the callers').
    pub fn record(&self, failed: bool, refused: bool, stable_refused: f64, limits: GuardLimits) -> bool {
        if limits.window == 0 {
            return false;
        }
        let window = limits.window.min(MAX_WINDOW);
        let (seen, failures) = self.failures.push(failed, window);
        let (_, refusals) = self.refusals.push(refused, window);
        let full = seen >= window as u64;
        let excess_refusals = refusals as f64 - stable_refused * window as f64;
        let bad = failures >= limits.errors as i64 || excess_refusals >= limits.errors as f64;
        full && bad && !self.tripped.swap(true, Ordering::Relaxed)
    }

    /// Records whether the stable version's engine refused one answer, for
    /// its canaries' guards to weigh theirs against.
    pub fn note_refusal(&self, refused: bool, limits: GuardLimits) {
        if limits.window > 0 {
            self.refusals.push(refused, limits.window.min(MAX_WINDOW));
        }
    }

    /// The share of its last answers (up to `limits.window`) the engine
    /// refused; 0 before any.
    pub fn refused_share(&self, limits: GuardLimits) -> f64 {
        self.refusals.share(limits.window.clamp(1, MAX_WINDOW))
    }

    /// Forgets the window, once the registry has taken the version out.
    pub fn reset(&self) {
        self.failures.reset();
        self.refusals.reset();
        self.tripped.store(false, Ordering::Relaxed);
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

    #[test]
    fn trips_once_on_half_of_the_last_twenty() {
        let guard = Guard::default();
        let limits = GuardLimits::default();
        // Nine failures in a full window: not yet.
        for index in 0..20 {
            assert!(!guard.record(index % 2 == 0 && index < 18, false, 0.0, limits));
        }
        // The window slides: old failures leave as new ones come.
        assert!(!guard.record(false, false, 0.0, limits));
        let trips: Vec<bool> = (0..12).map(|_| guard.record(true, false, 0.0, limits)).collect();
        assert_eq!(
            trips.iter().filter(|tripped| **tripped).count(),
            1,
            "trips exactly once"
        );
        guard.reset();
        assert!(
            !(0..9).any(|_| guard.record(true, false, 0.0, limits)),
            "a reset window starts empty"
        );
    }

    /// Refusals trip the guard only beyond what the stable version refuses.
    #[test]
    fn refusals_count_beyond_the_stable_versions() {
        let limits = GuardLimits::default();
        let stable = Guard::default();
        for index in 0..20 {
            stable.note_refusal(index % 2 == 0, limits);
        }
        assert_eq!(stable.refused_share(limits), 0.5);
        // The canary refuses as often: never trips.
        let canary = Guard::default();
        let share = stable.refused_share(limits);
        assert!(!(0..100).any(|index| canary.record(false, index % 2 == 0, share, limits)));
        // Refusing everything, ten beyond the stable version's ten: trips.
        let refusing = Guard::default();
        let trips: Vec<bool> = (0..20)
            .map(|_| refusing.record(false, true, share, limits))
            .collect();
        assert_eq!(trips, [vec![false; 19], vec![true]].concat());
        // Against a stable version that refuses nothing, ten refusals do.
        let alone = Guard::default();
        let trips = (0..20)
            .filter(|index| alone.record(false, index % 2 == 0, 0.0, limits))
            .count();
        assert_eq!(trips, 1);
    }
}
