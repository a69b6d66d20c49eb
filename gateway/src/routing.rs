//! The routing table: what each endpoint serves and how its traffic splits,
//! swapped whole, never mutated.
//!
//! A request does one `ArcSwap::load`, one pick (a random draw, or the hash
//! of its sticky key) and keeps the `Arc<LoadedModel>` it picked until it
//! answers, so a swap never cuts a request off: the old version is dropped
//! when its last request finishes.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use axum::http::{HeaderMap, HeaderName};
use sluice_registry_client::contract::ContractMode;
use tokio::sync::broadcast;

use crate::slots::Slots;

use crate::error::{Error, Result};
use crate::model::LoadedModel;

/// A version that takes a share of unpinned requests.
#[derive(Debug, Clone)]
pub struct Target {
    pub weight: u32,
    pub model: Arc<LoadedModel>,
}

/// A version mirrored a sample of the traffic, never answering it.
#[derive(Debug, Clone)]
pub struct ShadowRoute {
    pub model: Arc<LoadedModel>,
    pub sample_rate: f64,
}

/// One endpoint (a model name): its versions and how traffic splits.
#[derive(Debug)]
pub struct Route {
    /// Every live version, for pinned requests (`/versions/{v}/infer`) and metadata.
    pub versions: BTreeMap<u64, Arc<LoadedModel>>,
    /// Versions with a positive weight, oldest first: a canary (the newest)
    /// holds the top of the draw range, so raising its weight moves sticky
    /// keys from the stable version to it and never back.
    pub targets: Vec<Target>,
    /// Running sums of the weights: `targets[i]` takes points below `bounds[i]`.
    bounds: Vec<u32>,
    /// The heaviest target (the newest on a tie): the stable version.
    primary: usize,
    /// Header whose value pins a caller to one version.
    pub sticky_header: Option<HeaderName>,
    pub shadow: Option<ShadowRoute>,
    /// A rollout judges the canary's disagreement with the stable version:
    /// each canary answer is compared with the stable's, off the response path.
    pub compare_canary: bool,
    /// The versions of a running rollout: which one is the canary is the
    /// registry's word, not a guess from the weights (at 50/50 and beyond
    /// the canary is the heavier one).
    pub rollout: Option<RolloutRoles>,
    /// Log every prediction, and this share with its inputs; `None`: no log.
    pub log_sample_rate: Option<f64>,
    /// What to do with a request that breaks its version's data contract;
    /// `None`: the contract is not checked.
    pub contract_mode: Option<ContractMode>,
}

/// The two versions of a running rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RolloutRoles {
    pub canary: u64,
    pub stable: u64,
}

impl Route {
    /// All traffic to the highest version (a model repository's `latest`).
    /// `None` when `versions` is empty: an endpoint with nothing to serve has no route.
    pub fn new(versions: BTreeMap<u64, Arc<LoadedModel>>) -> Option<Route> {
        let highest = *versions.keys().next_back()?;
        Route::split(versions, &[(highest, 1)], None, None)
    }

    /// Traffic split by `weights` (`(version, weight)`) among loaded
    /// `versions`; weights of versions not loaded are dropped. `None` when
    /// no loaded version has a positive weight.
    pub fn split(
        versions: BTreeMap<u64, Arc<LoadedModel>>,
        weights: &[(u64, u32)],
        sticky_header: Option<HeaderName>,
        shadow: Option<ShadowRoute>,
    ) -> Option<Route> {
        let mut weighted: Vec<(u64, u32)> = weights
            .iter()
            .copied()
            .filter(|(version, weight)| *weight > 0 && versions.contains_key(version))
            .collect();
        weighted.sort_unstable();
        let mut targets = Vec::with_capacity(weighted.len());
        let mut bounds = Vec::with_capacity(weighted.len());
        let mut total: u32 = 0;
        for (version, weight) in weighted {
            total = total.checked_add(weight)?;
            bounds.push(total);
            targets.push(Target {
                weight,
                model: versions[&version].clone(),
            });
        }
        let primary = (0..targets.len()).max_by_key(|&index| targets[index].weight)?;
        Some(Route {
            versions,
            targets,
            bounds,
            primary,
            sticky_header,
            shadow,
            compare_canary: false,
            rollout: None,
            log_sample_rate: None,
            contract_mode: None,
        })
    }

    /// The same route in a rollout (or not), comparing its canary's answers
    /// with the stable version's (or not).
    pub fn with_rollout(self, rollout: Option<RolloutRoles>, compare_canary: bool) -> Route {
        Route {
            rollout,
            compare_canary: compare_canary && rollout.is_some(),
            ..self
        }
    }

    /// The same route, logging its predictions (or not).
    pub fn with_logging(self, log_sample_rate: Option<f64>) -> Route {
        Route {
            log_sample_rate,
            ..self
        }
    }

    /// The same route, checking data contracts in `mode` (or not).
    pub fn with_contract(self, contract_mode: Option<ContractMode>) -> Route {
        Route {
            contract_mode,
            ..self
        }
    }

    /// `None` when predictions are not logged; else whether this one's
    /// inputs are in the sample.
    fn sample_log(&self) -> Option<bool> {
        let rate = self.log_sample_rate?;
        Some(rate >= 1.0 || (rate > 0.0 && rand::random::<f64>() < rate))
    }

    /// Whether the target at `index` is a canary the local guard watches:
    /// the rollout's canary, or, without a rollout, any target but the heaviest.
    fn is_canary(&self, index: usize) -> bool {
        match self.rollout {
            Some(roles) => self.targets[index].model.version == roles.canary,
            None => self.targets.len() > 1 && index != self.primary,
        }
    }

    /// The stable version a canary answer is compared with, during a rollout
    /// that checks disagreement.
    fn comparison_for(&self, index: usize) -> Option<&Arc<LoadedModel>> {
        let roles = self.rollout.filter(|_| self.compare_canary)?;
        if self.targets[index].model.version != roles.canary {
            return None;
        }
        self.versions.get(&roles.stable)
    }

    /// The sum of the weights: draws fall in `0..total`.
    pub fn total(&self) -> u32 {
        self.bounds.last().copied().unwrap_or(0)
    }

    /// The version a point in `0..total` falls to.
    pub fn at(&self, point: u32) -> &Arc<LoadedModel> {
        &self.targets[self.index_at(point)].model
    }

    fn index_at(&self, point: u32) -> usize {
        let index = self.bounds.partition_point(|&bound| bound <= point);
        index.min(self.targets.len() - 1)
    }

    /// The version for one unpinned request: by its sticky key when the
    /// route has one and the request carries it, else by a random draw.
    pub fn pick(&self, headers: &HeaderMap) -> &Arc<LoadedModel> {
        &self.targets[self.pick_index(headers)].model
    }

    fn pick_index(&self, headers: &HeaderMap) -> usize {
        if self.targets.len() == 1 {
            return 0;
        }
        let key_opt = self
            .sticky_header
            .as_ref()
            .and_then(|name| headers.get(name))
            .map(|value| value.as_bytes());
        let point = match key_opt {
            Some(key) => sticky_point(key, self.total()),
            None => rand::random_range(0..self.total()),
        };
        self.index_at(point)
    }

    /// The heaviest target (the newest on a tie): what metadata describes.
    pub fn primary(&self) -> &Arc<LoadedModel> {
        &self.targets[self.primary].model
    }

    /// The shadow version, when this request is in its sample.
    pub fn sample_shadow(&self) -> Option<&Arc<LoadedModel>> {
        let shadow = self.shadow.as_ref()?;
        (shadow.sample_rate >= 1.0 || rand::random::<f64>() < shadow.sample_rate).then_some(&shadow.model)
    }

    pub fn version_labels(&self) -> Vec<String> {
        self.versions
            .values()
            .map(|model| model.version_label.clone())
            .collect()
    }

    /// Whether `other` routes exactly as this does (the same loaded models,
    /// weights, key and shadow): then a swap would change nothing.
    fn same_as(&self, other: &Route) -> bool {
        let same_models = |a: &BTreeMap<u64, Arc<LoadedModel>>, b: &BTreeMap<u64, Arc<LoadedModel>>| {
            a.len() == b.len()
                && a.iter()
                    .zip(b)
                    .all(|((va, ma), (vb, mb))| va == vb && Arc::ptr_eq(ma, mb))
        };
        let same_shadow = match (&self.shadow, &other.shadow) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(&a.model, &b.model) && a.sample_rate == b.sample_rate,
            _ => false,
        };
        same_models(&self.versions, &other.versions)
            && self.bounds == other.bounds
            && self
                .targets
                .iter()
                .zip(&other.targets)
                .all(|(a, b)| Arc::ptr_eq(&a.model, &b.model))
            && self.sticky_header == other.sticky_header
            && self.compare_canary == other.compare_canary
            && self.rollout == other.rollout
            && self.log_sample_rate == other.log_sample_rate
            && self.contract_mode == other.contract_mode
            && same_shadow
    }
}

/// Where a sticky key falls in `0..total`: the same in every process and
/// release (a fixed hash, not the randomly seeded std one), so a key keeps
/// its version across requests and gateway replicas.
pub fn sticky_point(key: &[u8], total: u32) -> u32 {
    // FNV-1a, then splitmix64's finalizer to spread similar keys (user-1,
    // user-2, ...) over the whole range.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in key {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash = (hash ^ (hash >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash = (hash ^ (hash >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^= hash >> 31;
    // Multiply-shift maps the hash onto the range without modulo bias.
    ((u128::from(hash) * u128::from(total)) >> 64) as u32
}

/// The version a request goes to and, when it is sampled, its shadow.
pub struct Picked {
    pub model: Arc<LoadedModel>,
    pub shadow_opt: Option<Arc<LoadedModel>>,
    /// Picked by the split and not the stable version: the local guard watches it.
    pub canary: bool,
    /// Asked for by path: it bypassed the split and is not counted for rollouts.
    pub pinned: bool,
    /// `None`: not logged; `Some(with_inputs)`: logged, with its inputs or not.
    pub log_opt: Option<bool>,
    /// The stable version to compare this canary answer with, during a
    /// rollout that checks disagreement.
    pub compare_with_opt: Option<Arc<LoadedModel>>,
    /// A canary's stable version, whose engine refusals its guard weighs
    /// its own against.
    pub stable_opt: Option<Arc<LoadedModel>>,
    /// Check the version's data contract, and what to do when it is broken.
    pub contract_opt: Option<ContractMode>,
    /// The model's share of the admission slots.
    pub slots: Arc<Slots>,
}

#[derive(Debug, Default)]
pub struct RoutingTable {
    pub routes: HashMap<String, Arc<Route>>,
    /// The registry's deployments revision this table serves (0 for a repository).
    pub revision: u64,
    /// Versions that failed to load, with the engine's error: listed in the
    /// repository index, and what a model with no version loaded answers.
    pub load_failures: BTreeMap<(String, u64), String>,
    /// Each model's share of the admission slots, the same semaphore from
    /// one table to the next ([`Routes::store`] carries them over).
    slots: HashMap<String, Arc<Slots>>,
}

impl RoutingTable {
    /// A table of `routes` at `revision`; [`Routes::store`] gives each
    /// model its admission slots.
    pub fn new(routes: HashMap<String, Arc<Route>>, revision: u64) -> RoutingTable {
        RoutingTable {
            routes,
            revision,
            load_failures: BTreeMap::new(),
            slots: HashMap::new(),
        }
    }

    /// `model`'s route; a model that failed to load is unavailable, with
    /// its load error, rather than unknown.
    fn route(&self, model: &str) -> Result<&Arc<Route>> {
        self.routes.get(model).ok_or_else(|| {
            match self
                .load_failures
                .iter()
                .rev()
                .find(|((name, _), _)| name == model)
            {
                Some(((_, version), error)) => Error::ModelUnavailable {
                    model: model.to_string(),
                    reason: format!("version {version}: {error}"),
                },
                None => Error::ModelNotFound(model.to_string()),
            }
        })
    }

    fn pinned<'a>(&self, route: &'a Route, model: &str, version: &str) -> Result<&'a Arc<LoadedModel>> {
        let not_found = || Error::VersionNotFound {
            model: model.to_string(),
            version: version.to_string(),
        };
        let number: u64 = version.parse().map_err(|_| not_found())?;
        route.versions.get(&number).ok_or_else(not_found)
    }

    /// The version metadata describes: the pinned one, or the primary.
    /// Whether `model`'s deployment logs its predictions, which is what
    /// feedback joins with.
    pub fn logs_predictions(&self, model: &str) -> Result<bool> {
        Ok(self.route(model)?.log_sample_rate.is_some())
    }

    pub fn resolve(&self, model: &str, version_opt: Option<&str>) -> Result<&Arc<LoadedModel>> {
        let route = self.route(model)?;
        match version_opt {
            Some(version) => self.pinned(route, model, version),
            None => Ok(route.primary()),
        }
    }

    /// The version an inference goes to. A pinned request bypasses the split
    /// and the shadow; any loaded version may be pinned.
    pub fn pick(&self, model: &str, version_opt: Option<&str>, headers: &HeaderMap) -> Result<Picked> {
        let route = self.route(model)?;
        let slots = self.slots(model);
        if let Some(version) = version_opt {
            return Ok(Picked {
                model: self.pinned(route, model, version)?.clone(),
                shadow_opt: None,
                canary: false,
                pinned: true,
                compare_with_opt: None,
                stable_opt: None,
                log_opt: route.sample_log(),
                contract_opt: route.contract_mode,
                slots,
            });
        }
        let index = route.pick_index(headers);
        let canary = route.is_canary(index);
        Ok(Picked {
            model: route.targets[index].model.clone(),
            shadow_opt: route.sample_shadow().cloned(),
            canary,
            pinned: false,
            compare_with_opt: route.comparison_for(index).cloned(),
            stable_opt: canary.then(|| route.primary().clone()),
            log_opt: route.sample_log(),
            contract_opt: route.contract_mode,
            slots,
        })
    }

    /// `model`'s share of the admission slots (every routed model has one
    /// once the table is stored; a table never stored gives an unbounded one).
    pub fn slots(&self, model: &str) -> Arc<Slots> {
        self.slots
            .get(model)
            .cloned()
            .unwrap_or_else(|| Slots::new(usize::MAX))
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

#[cfg(test)]
mod tests;

/// A swap as observers see it: when it was stored and what it holds.
#[derive(Debug, Clone)]
pub struct Swap {
    /// Taken just before the store: no request saw `table` before this.
    pub at: Instant,
    pub table: Arc<RoutingTable>,
}

/// The live table behind one atomic pointer, plus a feed of swaps for
/// observers off the request path (tests, status reporting).
pub struct Routes {
    current: ArcSwap<RoutingTable>,
    swaps: broadcast::Sender<Swap>,
    writers: std::sync::Mutex<()>,
    /// Admission slots each model may hold at once.
    slots_per_model: usize,
}

impl Default for Routes {
    /// No bound per model.
    fn default() -> Self {
        Routes::with_slots_per_model(usize::MAX)
    }
}

impl Routes {
    /// A table where each model may hold `slots_per_model` admission slots.
    pub fn with_slots_per_model(slots_per_model: usize) -> Routes {
        Routes {
            current: ArcSwap::from_pointee(RoutingTable::default()),
            swaps: broadcast::channel(256).0,
            writers: std::sync::Mutex::new(()),
            slots_per_model: slots_per_model.max(1),
        }
    }

    /// The request path's one load.
    pub fn load(&self) -> arc_swap::Guard<Arc<RoutingTable>> {
        self.current.load()
    }

    pub fn snapshot(&self) -> Arc<RoutingTable> {
        self.current.load_full()
    }

    /// Replaces the whole table in one store, each model keeping the
    /// admission slots it had: requests in flight hold permits of them.
    pub fn store(&self, mut table: RoutingTable) {
        let current = self.current.load();
        table.slots = table
            .routes
            .keys()
            .map(|name| {
                let slots = current
                    .slots
                    .get(name)
                    .cloned()
                    .unwrap_or_else(|| Slots::new(self.slots_per_model));
                (name.clone(), slots)
            })
            .collect();
        drop(current);
        let table = Arc::new(table);
        let at = Instant::now();
        self.current.store(table.clone());
        // No subscriber is the normal case; a lagging one loses old swaps.
        let _ = self.swaps.send(Swap { at, table });
    }

    /// Stores `table` unless it routes exactly as the live one does, and
    /// keeps the per-model gauge of live versions in step. Both sources of
    /// tables (repository and registry) publish through here.
    pub fn publish(&self, table: RoutingTable) {
        self.publish_with(|_| table);
    }

    /// Builds the next table from the live one and publishes it, one writer
    /// at a time: the follower and the guard never undo each other's swap.
    /// Only writers take this lock; requests only `load`.
    pub fn publish_with(&self, build: impl FnOnce(&RoutingTable) -> RoutingTable) {
        let _writer = self
            .writers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let current = self.snapshot();
        let table = build(&current);
        let unchanged = current.revision == table.revision
            && current.load_failures == table.load_failures
            && current.routes.len() == table.routes.len()
            && table
                .routes
                .iter()
                .all(|(name, route)| current.routes.get(name).is_some_and(|old| old.same_as(route)));
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
