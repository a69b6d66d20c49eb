//! A count held against a bound, taken and given back with one atomic
//! operation each: admission only ever tries, it never waits, so it needs
//! no queue of waiters and no lock (a semaphore's release takes one).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Units (requests, bytes) held at once, at most `max`.
#[derive(Debug)]
pub struct Slots {
    held: AtomicUsize,
    max: usize,
}

impl Slots {
    pub fn new(max: usize) -> Arc<Slots> {
        Arc::new(Slots {
            held: AtomicUsize::new(0),
            max,
        })
    }

    /// `units` more, or `None` when they would pass the bound.
    pub fn try_take(self: &Arc<Self>, units: usize) -> Option<Held> {
        self.add(units).then(|| Held {
            slots: self.clone(),
            units,
        })
    }

    /// Nothing yet, to grow with [`Held::grow_to`].
    pub fn empty(self: &Arc<Self>) -> Held {
        Held {
            slots: self.clone(),
            units: 0,
        }
    }

    pub fn held(&self) -> usize {
        self.held.load(Ordering::Acquire)
    }

    pub fn max(&self) -> usize {
        self.max
    }

    fn add(&self, units: usize) -> bool {
        self.held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                held.checked_add(units).filter(|total| *total <= self.max)
            })
            .is_ok()
    }
}

/// Units held until this is dropped.
#[derive(Debug)]
pub struct Held {
    slots: Arc<Slots>,
    units: usize,
}

impl Held {
    /// Holds at least `units` in all, or says the bound would pass (and
    /// keeps what it held).
    pub fn grow_to(&mut self, units: usize) -> bool {
        if units <= self.units {
            return true;
        }
        if !self.slots.add(units - self.units) {
            return false;
        }
        self.units = units;
        true
    }

    /// Holds exactly `units`, past the bound if it must: for what exists
    /// already (an answer built), which refusing would not free.
    pub fn set(&mut self, units: usize) {
        if units >= self.units {
            self.slots.held.fetch_add(units - self.units, Ordering::AcqRel);
        } else {
            self.slots.held.fetch_sub(self.units - units, Ordering::AcqRel);
        }
        self.units = units;
    }

    pub fn units(&self) -> usize {
        self.units
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.slots.held.fetch_sub(self.units, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taken_within_the_bound_and_given_back() {
        let slots = Slots::new(10);
        let first = slots.try_take(6).unwrap();
        assert!(slots.try_take(5).is_none());
        let mut second = slots.empty();
        assert!(second.grow_to(4));
        assert!(!second.grow_to(5));
        assert_eq!(second.units(), 4);
        drop(first);
        assert!(second.grow_to(10));
        second.set(12);
        assert_eq!(slots.held(), 12);
        drop(second);
        assert_eq!(slots.held(), 0);
    }
}
