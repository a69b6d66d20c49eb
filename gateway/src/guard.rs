//! The local guard's record of one canary: its last answers in a lock-free
//! ring (one atomic swap and at most one add per answer), and whether they
//! hold too many failures. What a trip does is `crate::fast_rollback`'s.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

/// The most requests a guard window may span.
pub const MAX_WINDOW: usize = 1024;

/// When a canary is stopped: `errors` server errors among its last `window` requests.
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

/// The outcomes of a version's last requests.
pub struct Guard {
    ring: Box<[AtomicBool]>,
    next: AtomicU64,
    /// Signed: under concurrency a slot's decrement may land before the
    /// increment that put the failure there.
    errors: AtomicI64,
    tripped: AtomicBool,
}

impl Default for Guard {
    fn default() -> Self {
        Guard {
            ring: (0..MAX_WINDOW).map(|_| AtomicBool::new(false)).collect(),
            next: AtomicU64::new(0),
            errors: AtomicI64::new(0),
            tripped: AtomicBool::new(false),
        }
    }
}

impl Guard {
    /// Records one answer; true for the one call that trips the guard.
    pub fn record(&self, failed: bool, limits: GuardLimits) -> bool {
        if limits.window == 0 {
            return false;
        }
        let window = limits.window.min(MAX_WINDOW);
        let seen = self.next.fetch_add(1, Ordering::Relaxed);
        let slot = (seen % window as u64) as usize;
        let was_failed = self.ring[slot].swap(failed, Ordering::Relaxed);
        let errors = match (was_failed, failed) {
            (false, true) => self.errors.fetch_add(1, Ordering::Relaxed) + 1,
            (true, false) => self.errors.fetch_sub(1, Ordering::Relaxed) - 1,
            _ => self.errors.load(Ordering::Relaxed),
        };
        let full = seen + 1 >= window as u64;
        full && errors >= limits.errors as i64 && !self.tripped.swap(true, Ordering::Relaxed)
    }

    /// Forgets the window, once the registry has taken the version out.
    pub fn reset(&self) {
        for slot in self.ring.iter() {
            slot.store(false, Ordering::Relaxed);
        }
        self.errors.store(0, Ordering::Relaxed);
        self.next.store(0, Ordering::Relaxed);
        self.tripped.store(false, Ordering::Relaxed);
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
            assert!(!guard.record(index % 2 == 0 && index < 18, limits));
        }
        // The window slides: old failures leave as new ones come.
        assert!(!guard.record(false, limits));
        let trips: Vec<bool> = (0..12).map(|_| guard.record(true, limits)).collect();
        assert_eq!(
            trips.iter().filter(|tripped| **tripped).count(),
            1,
            "trips exactly once"
        );
        guard.reset();
        assert!(
            !(0..9).any(|_| guard.record(true, limits)),
            "a reset window starts empty"
        );
    }
}
