//! Hung engines: every run of a version is timed from start to end, and a
//! watchdog thread looks at the versions being served every tick.
//!
//! A run still going past `--hung-run-ms` (by default the server's request
//! timeout, when nobody can still be waiting for it) marks its version
//! unhealthy: its readiness turns false and its requests are refused at once
//! with 503 and `Retry-After`, so they neither pile up behind it nor take
//! the compute threads every other model needs, and they count against the
//! version (`Accounting::finish_version_fault`), so a hung canary fails its
//! guard and its rollout checks. The engine is asked to stop the run: ONNX Runtime terminates
//! it at its next node; tract has no way to stop a run, so its thread stays
//! busy until the run ends. The version is healthy again once no run of it
//! is past the bound.
//!
//! A run pays a clock read, a counter increment and a compare-and-swap to
//! enter and one store to leave: no lock, no allocation. (ONNX Runtime runs
//! also create their own `RunOptions`, the handle that stops them.) The
//! watchdog is a thread of its own, so reactor threads held by inline runs
//! cannot hold it up too.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::backend::Session;
use crate::error::Result;
use crate::model::{LoadedModel, Signature};
use crate::routing::Routes;
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

/// How often the versions are looked at: a fraction of the bound, so a hang
/// is seen soon after it passes the bound, and not more than 10 times a second.
pub fn tick_for(hung_after: Duration) -> Duration {
    (hung_after / 4).clamp(Duration::from_millis(10), Duration::from_millis(100))
}

/// Starts the watchdog thread: it looks at every version being served
/// (weighted or shadow) each tick, until `shutdown` turns true or its
/// sender is dropped. Versions swapped out are no longer watched.
pub fn spawn(routes: Arc<Routes>, hung_after: Duration, shutdown: watch::Receiver<bool>) {
    let tick = tick_for(hung_after);
    let spawned = std::thread::Builder::new()
        .name("sluice-watchdog".into())
        .spawn(move || {
            // Ends at shutdown, or when the server is gone without one.
            while shutdown.has_changed().is_ok() && !*shutdown.borrow() {
                std::thread::sleep(tick);
                let table = routes.snapshot();
                for route in table.routes.values() {
                    let shadow_opt = route.shadow.as_ref().map(|shadow| &shadow.model);
                    for model in route.versions.values().chain(shadow_opt) {
                        look_at(model, hung_after);
                    }
                }
            }
        });
    if let Err(err) = spawned {
        tracing::error!(%err, "cannot start the watchdog thread: hung runs will not be seen");
    }
}

/// One version's verdict for this tick; logs and counts only the changes.
fn look_at(model: &LoadedModel, hung_after: Duration) {
    let oldest_opt = model.watch.oldest_run();
    let hung = oldest_opt.is_some_and(|oldest| oldest > hung_after);
    let was_hung = model.watch.hung.swap(hung, Ordering::AcqRel);
    if hung {
        let asked = model.session.interrupt(hung_after);
        if !was_hung {
            metrics::counter!(crate::metrics::HUNG_RUNS, "model" => model.name.clone(), "backend" => model.backend.name())
                .increment(1);
            tracing::error!(
                model = %model.name,
                version = model.version,
                backend = model.backend.name(),
                running_ms = oldest_opt.unwrap_or_default().as_millis() as u64,
                asked_to_stop = asked,
                "a run is past the hang bound: version marked unhealthy, its requests refused until the run ends"
            );
        }
    } else if was_hung {
        tracing::warn!(model = %model.name, version = model.version, "the hung run ended: version healthy again");
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

    #[test]
    fn the_tick_is_a_quarter_of_the_bound_within_limits() {
        assert_eq!(tick_for(Duration::from_millis(200)), Duration::from_millis(50));
        assert_eq!(tick_for(Duration::from_secs(30)), Duration::from_millis(100));
        assert_eq!(tick_for(Duration::from_millis(1)), Duration::from_millis(10));
    }
}
