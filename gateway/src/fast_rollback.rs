//! The local guard's action: when a canary fails too many of its last
//! requests (`crate::guard`), this gateway stops routing to it at once,
//! without waiting for the control plane, then reports it so the registry
//! rolls it back everywhere.
//!
//! A trip sends the version over a bounded channel to a task that swaps the
//! routing table and reports, retrying until the registry hears it; the
//! follower keeps the version at weight 0 until the registry's deployment
//! does the same.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sluice_registry_client::RegistryClient;
use sluice_registry_client::rollout::GuardReport;
use tokio::sync::mpsc;

use crate::guard::Trip;
use crate::routing::{Route, Routes, RoutingTable};

/// Versions this gateway stopped, with the deployments revision it served
/// when each tripped: kept at weight 0 until a newer revision arrives (the
/// registry's answer, or someone else's decision) or they take no traffic.
pub type Guarded = Arc<Mutex<HashMap<(String, u64), u64>>>;

/// The weights with each `guarded` version's share given to the heaviest
/// target that is not guarded (the stable version).
pub fn without_guarded(weights: &[(u64, u32)], guarded: &HashSet<u64>) -> Vec<(u64, u32)> {
    let freed: u32 = weights
        .iter()
        .filter(|(version, _)| guarded.contains(version))
        .map(|(_, weight)| weight)
        .sum();
    let heir = weights
        .iter()
        .filter(|(version, weight)| !guarded.contains(version) && *weight > 0)
        .max_by_key(|(version, weight)| (*weight, *version))
        .map(|(version, _)| *version);
    let Some(heir) = heir else {
        // Nothing healthy to give the traffic to: leave it as it is.
        return weights.to_vec();
    };
    weights
        .iter()
        .map(|&(version, weight)| match version {
            v if guarded.contains(&v) => (v, 0),
            v if v == heir => (v, weight + freed),
            v => (v, weight),
        })
        .collect()
}

/// Stops routing to tripped versions and reports them, until `trips` closes.
pub async fn run(
    mut trips: mpsc::Receiver<Trip>,
    routes: Arc<Routes>,
    guarded: Guarded,
    client_opt: Option<RegistryClient>,
    gateway: String,
) {
    while let Some(trip) = trips.recv().await {
        let mut revision_opt = None;
        routes.publish_with(|current| {
            let routed = current.routes.get(&trip.model).and_then(|route| {
                route
                    .targets
                    .iter()
                    .find(|target| target.model.version == trip.version)
                    .map(|target| target.model.clone())
            });
            let Some(model) = routed else {
                // Taken out already (the registry rolled it back meanwhile):
                // nothing to stop, and its guard starts afresh.
                if let Some(route) = current.routes.get(&trip.model)
                    && let Some(model) = route.versions.get(&trip.version)
                {
                    model.guard.reset();
                }
                return copy(current);
            };
            lock(&guarded).insert((trip.model.clone(), trip.version), current.revision);
            revision_opt = Some(current.revision);
            tracing::error!(model = %trip.model, version = trip.version, errors = trip.errors, window = trip.window, "local guard: the canary fails too often, routing away from it");
            metrics::counter!(crate::metrics::GUARD_TRIPS, "model" => trip.model.clone()).increment(1);
            drop(model);
            apply_guards(copy(current), &guarded)
        });
        let (Some(revision), Some(client)) = (revision_opt, client_opt.clone()) else {
            continue;
        };
        let report = GuardReport {
            gateway: gateway.clone(),
            revision,
            version: trip.version,
            errors: trip.errors,
            window: trip.window,
        };
        tokio::spawn(report_until_heard(client, trip.model, report));
    }
}

fn lock(guarded: &Guarded) -> std::sync::MutexGuard<'_, HashMap<(String, u64), u64>> {
    guarded.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn copy(table: &RoutingTable) -> RoutingTable {
    let mut copy = RoutingTable::new(table.routes.clone(), table.revision);
    copy.load_failures = table.load_failures.clone();
    copy
}

/// `table` with every guarded version's traffic given to its stable
/// version. Stops older than the table's revision, or of versions it routes
/// nothing to, are forgotten, and those guards start afresh.
pub fn apply_guards(mut table: RoutingTable, guarded: &Guarded) -> RoutingTable {
    let mut stopped = lock(guarded);
    stopped.retain(|(model, version), tripped_at| {
        let route_opt = table.routes.get(model);
        let routed = route_opt.is_some_and(|route| {
            route
                .targets
                .iter()
                .any(|target| target.model.version == *version)
        });
        let keep = routed && *tripped_at >= table.revision;
        if !keep && let Some(loaded) = route_opt.and_then(|route| route.versions.get(version)) {
            loaded.guard.reset();
        }
        keep
    });
    let mut by_model: HashMap<String, HashSet<u64>> = HashMap::new();
    for (model, version) in stopped.keys() {
        by_model.entry(model.clone()).or_default().insert(*version);
    }
    drop(stopped);
    for (model, versions) in by_model {
        let Some(route) = table.routes.get(&model) else {
            continue;
        };
        let weights: Vec<(u64, u32)> = route
            .targets
            .iter()
            .map(|target| (target.model.version, target.weight))
            .collect();
        let weights = without_guarded(&weights, &versions);
        if let Some(rerouted) = Route::split(
            route.versions.clone(),
            &weights,
            route.sticky_header.clone(),
            route.shadow.clone(),
        ) {
            let rerouted = rerouted
                .with_rollout(route.rollout, route.compare_canary)
                .with_logging(route.log_sample_rate)
                .with_contract(route.contract_mode);
            table.routes.insert(model, Arc::new(rerouted));
        }
    }
    table
}

/// The registry must hear of it, even if it is down now: retry with backoff.
async fn report_until_heard(client: RegistryClient, model: String, report: GuardReport) {
    let mut backoff = Duration::from_millis(200);
    loop {
        match client.report_guard(&model, &report).await {
            Ok(()) => return,
            Err(err) => {
                tracing::warn!(model = %model, version = report.version, error = %err, "cannot report the guard's rollback yet; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stopped_canary_gives_its_share_to_the_stable_version() {
        let guarded = HashSet::from([4]);
        assert_eq!(
            without_guarded(&[(3, 90), (4, 10)], &guarded),
            vec![(3, 100), (4, 0)]
        );
        assert_eq!(
            without_guarded(&[(2, 20), (3, 50), (4, 30)], &guarded),
            vec![(2, 20), (3, 80), (4, 0)]
        );
        assert_eq!(
            without_guarded(&[(4, 100)], &guarded),
            vec![(4, 100)],
            "no one to give it to"
        );
    }
}
