//! Hung engines: every run of a version is timed from start to end, and a
//! watchdog thread looks at the versions being served every tick.
//!
//! A run still going past `--hung-run-ms` (by default the server's request
//! timeout, when nobody can still be waiting for it) marks its version
//! unhealthy: its readiness turns false and its requests are refused at once
//! with 503 and `Retry-After`, so they neither pile up behind it nor take
//! the compute threads every other model needs, and they count against the
//! version (`Accounting::finish` with `Outcome::Failed`), so a hung canary fails its
//! guard and its rollout checks. The engine is asked to stop the run: ONNX Runtime terminates
//! it at its next node; tract has no way to stop a run, so its thread stays
//! busy until the run ends. The version is healthy again once no run of it
//! is past the bound.
//!
//! Each version's runs are timed by its [`crate::runwatch::RunWatch`]. The
//! watchdog is a thread of its own, so reactor threads held by inline runs
//! cannot hold it up too.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::model::LoadedModel;
use crate::routing::Routes;

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
    let was_hung = model.watch.set_hung(hung);
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
    fn the_tick_is_a_quarter_of_the_bound_within_limits() {
        assert_eq!(tick_for(Duration::from_millis(200)), Duration::from_millis(50));
        assert_eq!(tick_for(Duration::from_secs(30)), Duration::from_millis(100));
        assert_eq!(tick_for(Duration::from_millis(1)), Duration::from_millis(10));
    }
}
