//! One inference request over loopback to an in-process server: HTTP, body
//! read, decode, routing, compute pool, engine, encode, and back.
//!
//! Guards the whole request path; compare with `inference` to see what the
//! server adds around the model.

use criterion::{Criterion, criterion_group, criterion_main};
use sluice_tests::{Options, TestGateway, TestRepository, example_model};

fn end_to_end(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("end_to_end");
    for (label, backend) in [("tract", "tract"), ("ort", "ort")] {
        let repository = TestRepository::new()
            .with_model("digits", 1, &example_model("digits"))
            .with_config("digits", &format!("backend = \"{backend}\""));
        let gateway = runtime.block_on(TestGateway::start_with(&repository, Options::default()));
        let body = std::fs::read(sluice_tests::repo_root().join("models/examples/digits.json")).unwrap();
        let url = gateway.url("/v2/models/digits/infer");
        group.bench_function(format!("digits_b1_json/{label}"), |b| {
            b.iter(|| {
                runtime.block_on(async {
                    let response = gateway.client.post(&url).body(body.clone()).send().await.unwrap();
                    assert_eq!(response.status(), 200);
                    response.bytes().await.unwrap()
                })
            })
        });
        runtime.block_on(gateway.server.shutdown()).unwrap();
    }
    group.finish();
}

criterion_group!(benches, end_to_end);
criterion_main!(benches);
