//! The cost of a routing decision: the one `ArcSwap` load and the pick of
//! a version (a single target, a weighted random draw, the hash of a sticky
//! key), plus the shadow sample. Guards the hot path's promise that routing
//! is a few tens of nanoseconds, whatever the split.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use criterion::{Criterion, criterion_group, criterion_main};
use sluice_gateway::backend::{BackendChoice, EngineOptions, Engines};
use sluice_gateway::model::LoadedModel;
use sluice_gateway::routing::{Route, Routes, RoutingTable, ShadowRoute};
use sluice_tests::example_model;

fn table(weights: &[(u64, u32)], sticky: bool, shadow_rate_opt: Option<f64>) -> RoutingTable {
    let engines = Engines::new(&EngineOptions::default());
    let artifact = example_model("credit_risk");
    let load = |version| {
        LoadedModel::load(
            &engines,
            "credit_risk",
            version,
            &artifact,
            BackendChoice::Tract,
            None,
        )
        .unwrap()
    };
    let versions: BTreeMap<u64, _> = weights
        .iter()
        .map(|&(version, _)| (version, load(version)))
        .collect();
    let shadow = shadow_rate_opt.map(|sample_rate| ShadowRoute {
        model: load(99),
        sample_rate,
    });
    let header = sticky.then(|| HeaderName::from_static("x-user-id"));
    let route = Route::split(versions, weights, header, shadow).unwrap();
    let mut table = RoutingTable::default();
    table.routes.insert("credit_risk".into(), Arc::new(route));
    table
}

fn routing(c: &mut Criterion) {
    let mut group = c.benchmark_group("routing");
    let mut headers = HeaderMap::new();
    headers.insert("x-user-id", HeaderValue::from_static("user-48213"));
    let cases = [
        ("single_target", table(&[(1, 100)], false, None)),
        ("weighted_90_10", table(&[(1, 90), (2, 10)], false, None)),
        ("sticky_90_10", table(&[(1, 90), (2, 10)], true, None)),
        (
            "weighted_with_shadow_10pct",
            table(&[(1, 90), (2, 10)], false, Some(0.1)),
        ),
    ];
    for (label, table) in cases {
        let routes = Routes::default();
        routes.store(table);
        group.bench_function(label, |b| {
            b.iter(|| {
                let picked = routes
                    .load()
                    .pick(std::hint::black_box("credit_risk"), None, &headers)
                    .unwrap();
                std::hint::black_box(picked.model.version)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, routing);
criterion_main!(benches);
