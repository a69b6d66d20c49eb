//! The split, stickiness and monotonicity properties, measured over many
//! draws and keys with fixed seeds.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use super::*;
use crate::backend::{BackendKind, Session};
use crate::signature::Signature;
use crate::tensor::Tensor;

struct NoSession(Signature);

impl Session for NoSession {
    fn signature(&self) -> &Signature {
        &self.0
    }

    fn run(&self, inputs: Vec<Tensor>) -> crate::Result<Vec<Tensor>> {
        Ok(inputs)
    }
}

fn versions(numbers: &[u64]) -> BTreeMap<u64, Arc<LoadedModel>> {
    numbers
        .iter()
        .map(|&version| {
            let session = Box::new(NoSession(Signature {
                inputs: vec![],
                outputs: vec![],
            }));
            (
                version,
                LoadedModel::new("m", version, BackendKind::Tract, session),
            )
        })
        .collect()
}

fn route(weights: &[(u64, u32)], sticky: bool) -> Route {
    let numbers: Vec<u64> = weights.iter().map(|(version, _)| *version).collect();
    let header = sticky.then(|| HeaderName::from_static("x-user-id"));
    Route::split(versions(&numbers), weights, header, None).expect("a route")
}

/// Share of each version over `draws` points from a seeded generator.
fn shares(route: &Route, draws: u32, seed: u64) -> BTreeMap<u64, f64> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut counts: BTreeMap<u64, u32> = BTreeMap::new();
    for _ in 0..draws {
        let point = rng.random_range(0..route.total());
        *counts.entry(route.at(point).version).or_default() += 1;
    }
    counts
        .into_iter()
        .map(|(version, count)| (version, f64::from(count) / f64::from(draws)))
        .collect()
}

#[test]
fn observed_shares_are_within_a_point_of_the_weights() {
    for weights in [
        &[(1, 90), (2, 10)][..],
        &[(1, 50), (2, 30), (3, 20)],
        &[(4, 99), (5, 1)],
    ] {
        let route = route(weights, false);
        let observed = shares(&route, 100_000, 20261126);
        for &(version, weight) in weights {
            let share = observed.get(&version).copied().unwrap_or(0.0);
            assert!(
                (share - f64::from(weight) / 100.0).abs() < 0.01,
                "version {version}: weight {weight}%, observed {:.2}%",
                share * 100.0
            );
        }
    }
}

#[test]
fn the_request_path_draw_splits_too() {
    let route = route(&[(1, 80), (2, 20)], false);
    let headers = HeaderMap::new();
    let canary = (0..100_000).filter(|_| route.pick(&headers).version == 2).count();
    assert!(
        (canary as f64 / 100_000.0 - 0.2).abs() < 0.01,
        "{canary} of 100000 to the canary"
    );
}

#[test]
fn a_sticky_key_keeps_its_version_and_keys_split_by_weight() {
    let route = route(&[(1, 70), (2, 30)], true);
    let mut canary = 0;
    for user in 0..100_000 {
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-user-id",
            HeaderValue::from_str(&format!("user-{user}")).unwrap(),
        );
        let first = route.pick(&headers).version;
        assert!(
            (0..3).all(|_| route.pick(&headers).version == first),
            "user-{user} moved"
        );
        canary += usize::from(first == 2);
    }
    assert!(
        (canary as f64 / 100_000.0 - 0.3).abs() < 0.01,
        "{canary} keys on the canary"
    );
}

#[test]
fn sticky_points_are_fixed_across_processes_and_releases() {
    // Replicas and future releases must agree: these values may never change.
    let golden: Vec<u32> = ["user-1", "user-2", "alice", ""]
        .iter()
        .map(|key| sticky_point(key.as_bytes(), 100))
        .collect();
    assert_eq!(golden, GOLDEN_POINTS);
}

/// FNV-1a and splitmix64 computed independently (Python) for these keys.
const GOLDEN_POINTS: [u32; 4] = [76, 31, 77, 95];

#[test]
fn raising_the_canary_only_moves_keys_from_stable_to_canary() {
    let keys: Vec<String> = (0..20_000).map(|user| format!("user-{user}")).collect();
    let mut previous: Vec<u64> = vec![1; keys.len()];
    for canary_weight in (0..=100).step_by(10) {
        let weights = [(1, 100 - canary_weight), (2, canary_weight)];
        let route = route(&weights, true);
        for (index, key) in keys.iter().enumerate() {
            let point = sticky_point(key.as_bytes(), route.total());
            let version = route.at(point).version;
            assert!(
                !(previous[index] == 2 && version == 1),
                "{key} went back from the canary to stable at {canary_weight}%"
            );
            previous[index] = version;
        }
    }
    assert!(previous.iter().all(|&version| version == 2));
}

#[test]
fn pinned_requests_bypass_the_split_and_the_shadow() {
    let loaded = versions(&[1, 2, 3]);
    let shadow = ShadowRoute {
        model: loaded[&3].clone(),
        sample_rate: 1.0,
    };
    let route = Route::split(loaded, &[(1, 100)], None, Some(shadow)).unwrap();
    let mut table = RoutingTable::default();
    table.routes.insert("m".into(), Arc::new(route));
    let headers = HeaderMap::new();
    let pinned = table.pick("m", Some("2"), &headers).unwrap();
    assert_eq!((pinned.model.version, pinned.shadow_opt.is_none()), (2, true));
    let unpinned = table.pick("m", None, &headers).unwrap();
    assert_eq!(unpinned.model.version, 1);
    assert_eq!(unpinned.shadow_opt.map(|model| model.version), Some(3));
    assert!(table.pick("m", Some("9"), &headers).is_err());
    assert!(table.pick("other", None, &headers).is_err());
}

#[test]
fn weights_of_unloaded_versions_are_dropped_and_zero_weights_take_nothing() {
    let route = Route::split(versions(&[1, 2]), &[(1, 50), (2, 0), (7, 50)], None, None).unwrap();
    assert_eq!(route.total(), 50);
    assert!((0..50).all(|point| route.at(point).version == 1));
    assert_eq!(route.versions.len(), 2, "a zero-weight version stays pinnable");
    assert!(Route::split(versions(&[1]), &[(1, 0)], None, None).is_none());
}
