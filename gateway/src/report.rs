//! The statistics reporter: every live version's window
//! (`crate::stats::VersionStats`, with its drift and contract counts) sent
//! to the registry every interval, with what the gateway serves (its
//! revision and loaded versions: the registry's fleet view). A report goes
//! out each interval even without traffic, as the gateway's heartbeat.

use std::sync::Arc;
use std::time::Duration;

use sluice_common::clock::Clock;
use sluice_registry_client::RegistryClient;
use sluice_registry_client::rollout::{GatewayServing, StatsReport};
use tokio::sync::watch;

use crate::routing::Routes;

/// Reports every live version's window to the registry every `interval`,
/// until `shutdown`; windows begin and end by `clock`. A window the
/// registry does not take is dropped: these are rates for judging
/// canaries, not a ledger.
pub async fn report(
    client: RegistryClient,
    routes: Arc<Routes>,
    gateway: String,
    interval: Duration,
    clock: Clock,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut last_take_ms = clock.now_ms();
    let started_at = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.wait_for(|stopped| *stopped) => return,
        }
        let ended_ms = clock.now_ms();
        let previous_ms = std::mem::replace(&mut last_take_ms, ended_ms);
        let table = routes.snapshot();
        let mut versions = Vec::new();
        for (name, route) in &table.routes {
            let shadow = route.shadow.iter().map(|shadow| &shadow.model);
            for model in route.versions.values().chain(shadow) {
                let mut window = model.stats.take(name, model.version, ended_ms, previous_ms);
                // Its canaries' guards compare their answers with this.
                model.guard.note_p99(window.latency_quantile_ms(0.99));
                if let Some(drift) = model.drift.get() {
                    (window.features, window.outputs) = drift.take();
                }
                if let Some(contract) = model.contract.get() {
                    (window.contract_rows, window.contract_violations) = contract.take();
                }
                // Not `requests > 0`: a window can hold only the drift rows
                // of a request whose answer is counted in the next one, and
                // dropping it would lose those rows for good.
                if !window.is_empty() {
                    versions.push(window);
                }
            }
        }
        let serving = GatewayServing {
            revision: table.revision,
            models: table
                .routes
                .iter()
                .map(|(name, route)| (name.clone(), route.versions.keys().copied().collect()))
                .collect(),
            started_at: started_at.clone(),
            build: env!("CARGO_PKG_VERSION").to_string(),
        };
        let report = StatsReport {
            gateway: gateway.clone(),
            interval_ms: interval.as_millis() as u64,
            versions,
            serving: Some(serving),
        };
        if let Err(err) = client.report_stats(&report).await {
            tracing::debug!(error = %err, "cannot report statistics to the registry; dropping this window");
        }
    }
}
