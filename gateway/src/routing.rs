//! The routing table: what each endpoint serves, swapped whole, never mutated.
//!
//! A request does one `ArcSwap::load` and keeps the `Arc<LoadedModel>` it
//! picked until it answers, so a swap never cuts a request off: the old
//! version is dropped when its last request finishes.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use tokio::sync::broadcast;

use crate::error::{Error, Result};
use crate::model::LoadedModel;

/// One endpoint (a model name) and the versions it serves.
#[derive(Debug)]
pub struct Route {
    /// Every live version, for pinned requests (`/versions/{v}/infer`) and metadata.
    pub versions: BTreeMap<u64, Arc<LoadedModel>>,
    /// What an unpinned request gets: the highest live version of a
    /// repository, the heaviest target of a registry deployment.
    pub default: Arc<LoadedModel>,
}

impl Route {
    /// `None` when `versions` is empty: an endpoint with nothing to serve has no route.
    pub fn new(versions: BTreeMap<u64, Arc<LoadedModel>>) -> Option<Route> {
        let default = versions.values().next_back()?.clone();
        Some(Route { versions, default })
    }

    /// A route whose unpinned requests go to `default`; `None` unless it is one of `versions`.
    pub fn with_default(versions: BTreeMap<u64, Arc<LoadedModel>>, default: u64) -> Option<Route> {
        let default = versions.get(&default)?.clone();
        Some(Route { versions, default })
    }

    pub fn version_labels(&self) -> Vec<String> {
        self.versions
            .values()
            .map(|model| model.version_label.clone())
            .collect()
    }
}

#[derive(Debug, Default)]
pub struct RoutingTable {
    pub routes: HashMap<String, Arc<Route>>,
}

impl RoutingTable {
    /// The model an unpinned request, or one pinned to `version`, goes to.
    pub fn resolve(&self, model: &str, version_opt: Option<&str>) -> Result<&Arc<LoadedModel>> {
        let route = self
            .routes
            .get(model)
            .ok_or_else(|| Error::ModelNotFound(model.to_string()))?;
        let Some(version) = version_opt else {
            return Ok(&route.default);
        };
        let not_found = || Error::VersionNotFound {
            model: model.to_string(),
            version: version.to_string(),
        };
        let number: u64 = version.parse().map_err(|_| not_found())?;
        route.versions.get(&number).ok_or_else(not_found)
    }

    /// `(model, version)` for every live version, sorted: what a swap changed.
    pub fn live_versions(&self) -> Vec<(String, u64)> {
        let mut live: Vec<(String, u64)> = self
            .routes
            .iter()
            .flat_map(|(name, route)| route.versions.keys().map(move |&version| (name.clone(), version)))
            .collect();
        live.sort();
        live
    }
}

/// A swap as observers see it: when it was stored and what it holds.
#[derive(Debug, Clone)]
pub struct Swap {
    /// Taken just before the store: no request saw `table` before this.
    pub at: Instant,
    pub table: Arc<RoutingTable>,
}

/// The live table behind one atomic pointer, plus a feed of swaps for
/// observers off the request path (tests, future status reporting).
pub struct Routes {
    current: ArcSwap<RoutingTable>,
    swaps: broadcast::Sender<Swap>,
}

impl Default for Routes {
    fn default() -> Self {
        Routes {
            current: ArcSwap::from_pointee(RoutingTable::default()),
            swaps: broadcast::channel(256).0,
        }
    }
}

impl Routes {
    /// The request path's one load.
    pub fn load(&self) -> arc_swap::Guard<Arc<RoutingTable>> {
        self.current.load()
    }

    pub fn snapshot(&self) -> Arc<RoutingTable> {
        self.current.load_full()
    }

    /// Replaces the whole table in one store.
    pub fn store(&self, table: RoutingTable) {
        let table = Arc::new(table);
        let at = Instant::now();
        self.current.store(table.clone());
        // No subscriber is the normal case; a lagging one loses old swaps.
        let _ = self.swaps.send(Swap { at, table });
    }

    /// Stores `table` unless it serves exactly what is live (the same
    /// loaded versions, the same defaults), and keeps the per-model gauge of
    /// live versions in step. Both sources of tables publish through here.
    pub fn publish(&self, table: RoutingTable) {
        let current = self.snapshot();
        let same_route = |old: &Route, new: &Route| {
            Arc::ptr_eq(&old.default, &new.default)
                && old.versions.len() == new.versions.len()
                && old
                    .versions
                    .iter()
                    .zip(&new.versions)
                    .all(|((a, old), (b, new))| a == b && Arc::ptr_eq(old, new))
        };
        let unchanged = current.routes.len() == table.routes.len()
            && table
                .routes
                .iter()
                .all(|(name, route)| current.routes.get(name).is_some_and(|old| same_route(old, route)));
        if unchanged {
            return;
        }
        for name in current
            .routes
            .keys()
            .filter(|name| !table.routes.contains_key(*name))
        {
            metrics::gauge!(crate::metrics::MODEL_VERSIONS_LIVE, "model" => name.clone()).set(0.0);
        }
        for (name, route) in &table.routes {
            metrics::gauge!(crate::metrics::MODEL_VERSIONS_LIVE, "model" => name.clone())
                .set(route.versions.len() as f64);
        }
        tracing::info!(live = ?table.live_versions(), "routing table swapped");
        self.store(table);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Swap> {
        self.swaps.subscribe()
    }
}
