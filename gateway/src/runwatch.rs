//! The runs in flight on one version, each timed from start to end, for the
//! watchdog (`crate::watchdog`) to see a hung one.
//!
//! A run pays a clock read, a counter increment and a compare-and-swap to
//! enter and one store to leave: no lock, no allocation. (ONNX Runtime runs
//! also create their own `RunOptions`, the handle that stops them.)

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::backend::Session;
use crate::error::Result;
use crate::signature::Signature;
use crate::tensor::Tensor;

/// Runs of one version tracked at once. More concurrent runs than this
/// (compute, batch and shadow threads together) go untracked, and one of
/// them that hangs is not seen.
const SLOTS: usize = 64;

/// A run on the request's own thread (an inline model) longer than this
/// held a reactor thread too long: the version runs on the pool from then
/// on (`server::inference`). Well above a scheduler's hiccup, so noise
/// alone does not demote a fast model.
pub const INLINE_LIMIT: Duration = Duration::from_millis(20);

/// The runs in flight on one version, each by when it started.
pub struct RunWatch {
    epoch: Instant,
    /// Nanoseconds since `epoch` plus one when the run started; 0 when free.
    slots: [AtomicU64; SLOTS],
    next: AtomicUsize,
    hung: AtomicBool,
}

impl Default for RunWatch {
    fn default() -> Self {
        RunWatch {
            epoch: Instant::now(),
            slots: std::array::from_fn(|_| AtomicU64::new(0)),
            next: AtomicUsize::new(0),
            hung: AtomicBool::new(false),
        }
    }
}

/// Frees its slot when the run ends, however it ends (a panic included).
pub struct Ticket<'a> {
    slot_opt: Option<&'a AtomicU64>,
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if let Some(slot) = self.slot_opt {
            slot.store(0, Ordering::Release);
        }
    }
}

impl RunWatch {
    /// Records a run starting now, in the first free slot from a rotating start.
    pub fn enter(&self) -> Ticket<'_> {
        let stamp = u64::try_from(self.epoch.elapsed().as_nanos())
            .unwrap_or(u64::MAX - 1)
            .saturating_add(1);
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let slot_opt = (0..SLOTS)
            .map(|offset| &self.slots[(start + offset) % SLOTS])
            .find(|slot| {
                slot.compare_exchange(0, stamp, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
            });
        Ticket { slot_opt }
    }

    /// How long the oldest run in flight has been running.
    pub fn oldest_run(&self) -> Option<Duration> {
        let now = self.epoch.elapsed();
        self.slots
            .iter()
            .map(|slot| slot.load(Ordering::Acquire))
            .filter(|&stamp| stamp != 0)
            .min()
            .map(|stamp| now.saturating_sub(Duration::from_nanos(stamp - 1)))
    }

    /// Whether a run of this version is past the hang bound.
    pub fn is_hung(&self) -> bool {
        self.hung.load(Ordering::Acquire)
    }

    /// The watchdog's verdict for this tick; returns the one before it.
    pub fn set_hung(&self, hung: bool) -> bool {
        self.hung.swap(hung, Ordering::AcqRel)
    }
}

/// An engine session whose runs are tracked by a [`RunWatch`].
pub struct WatchedSession {
    inner: Box<dyn Session>,
    watch: Arc<RunWatch>,
}

impl WatchedSession {
    pub fn new(inner: Box<dyn Session>, watch: Arc<RunWatch>) -> WatchedSession {
        WatchedSession { inner, watch }
    }
}

impl Session for WatchedSession {
    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        let _ticket = self.watch.enter();
        self.inner.run(inputs)
    }

    fn try_run(&self, inputs: Vec<Tensor>) -> std::result::Result<Result<Vec<Tensor>>, Vec<Tensor>> {
        let _ticket = self.watch.enter();
        self.inner.try_run(inputs)
    }

    fn interrupt(&self, running_for: Duration) -> usize {
        self.inner.interrupt(running_for)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ticket_holds_its_slot_until_dropped() {
        let watch = RunWatch::default();
        assert_eq!(watch.oldest_run(), None);
        let first = watch.enter();
        std::thread::sleep(Duration::from_millis(200));
        let second = watch.enter();
        let oldest = watch.oldest_run().unwrap();
        assert!(oldest >= Duration::from_millis(200), "{oldest:?}");
        drop(first);
        assert!(watch.oldest_run().unwrap() < oldest);
        drop(second);
        assert_eq!(watch.oldest_run(), None);
    }

    #[test]
    fn runs_past_the_slots_go_untracked_without_harm() {
        let watch = RunWatch::default();
        let tickets: Vec<_> = (0..SLOTS + 3).map(|_| watch.enter()).collect();
        assert_eq!(tickets.iter().filter(|t| t.slot_opt.is_some()).count(), SLOTS);
        drop(tickets);
        assert_eq!(watch.oldest_run(), None);
        assert!(watch.enter().slot_opt.is_some());
    }
}
