//! The generator against small servers written here, whose behaviour (a
//! stall, errors, two versions) makes the expected numbers computable.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode};
use hyper_util::rt::TokioIo;
use sluice_loadtest::http::Protocol;
use sluice_loadtest::runner::{Load, Progress, RunResult, RunSpec, run};
use sluice_loadtest::schedule::{Arrivals, RateProfile};
use sluice_loadtest::target::{Payload, Target};

/// What the server answers: (delay, status, x-model-version, body).
type Answer = (Duration, u16, Option<&'static str>, &'static str);

/// Serves on an ephemeral port; `behave` sees the request's index and the
/// time since the first request.
async fn serve(behave: fn(u64, Duration) -> Answer) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let counter = Arc::new(AtomicU64::new(0));
    let first = Arc::new(OnceLock::<Instant>::new());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (counter, first) = (counter.clone(), first.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |_request| {
                    let (counter, first) = (counter.clone(), first.clone());
                    async move {
                        let index = counter.fetch_add(1, Ordering::Relaxed);
                        let since = first.get_or_init(Instant::now).elapsed();
                        let (delay, status, version_opt, body) = behave(index, since);
                        tokio::time::sleep(delay).await;
                        let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
                        *response.status_mut() = StatusCode::from_u16(status).unwrap();
                        if let Some(version) = version_opt {
                            response
                                .headers_mut()
                                .insert("x-model-version", version.parse().unwrap());
                        }
                        Ok::<_, Infallible>(response)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

fn spec(addr: SocketAddr, load: Load, duration: Duration) -> RunSpec {
    RunSpec {
        targets: Arc::new(vec![Target::new(
            format!("http://{addr}/v2/models/m/infer").parse().unwrap(),
            1,
            Protocol::Http1,
            vec![Payload {
                body: Bytes::from_static(br#"{"inputs":[]}"#),
                header_length_opt: None,
            }],
        )]),
        load,
        duration,
        threads: 1,
        timeout: Duration::from_secs(5),
        split_header_opt: Some("x-model-version".into()),
        h2_connections_opt: None,
        seed: 7,
        // No spinning: these tests share two cores with their servers, and a
        // spinning generator would make its own CPU the story. Timer
        // lateness (~1-2 ms) is far below what they measure.
        spin: Duration::ZERO,
    }
}

/// One run at a time: runs measure time, and parallel tests would skew each other.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn run_blocking(spec: RunSpec) -> RunResult {
    let _turn = ONE_AT_A_TIME.lock().await;
    tokio::task::spawn_blocking(move || run(&spec, &Arc::new(Progress::default())).unwrap())
        .await
        .unwrap()
}

fn ms(histogram: &hdrhistogram::Histogram<u64>, quantile: f64) -> f64 {
    histogram.value_at_quantile(quantile) as f64 / 1000.0
}

/// Every response waits until 2 s after the first request if it arrives
/// between 1 s and 2 s: a one-second stall.
fn stall(_: u64, since: Duration) -> Answer {
    let stall = Duration::from_secs(1)..Duration::from_secs(2);
    let delay = if stall.contains(&since) {
        stall.end - since
    } else {
        Duration::ZERO
    };
    (delay, 200, Some("1"), "{}")
}

/// The arithmetic: over a 4 s open run at 200 req/s, the requests meant to
/// start during the 1 s stall are a quarter of all, and each waits until
/// the stall ends: their corrected latencies spread evenly over 0..1 s. So
/// the corrected p90 is the 40th percentile of that spread (~0.6 s) and the
/// p99 its 96th (~0.96 s). Only the 4 requests in flight when it began
/// measure the stall from their actual send: the uncorrected p99 stays
/// small. A closed run on the same server sees the stall just as little.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrected_percentiles_see_a_stall_that_uncorrected_ones_hide() {
    let addr = serve(stall).await;
    let open = Load::Open {
        profile: RateProfile::Constant(200.0),
        arrivals: Arrivals::Uniform,
        connections: 4,
    };
    let result = run_blocking(spec(addr, open, Duration::from_secs(4))).await;
    let total = &result.recorder.total;
    assert_eq!(total.error_count(), 0);
    let (p90, p99) = (ms(&total.corrected, 0.90), ms(&total.corrected, 0.99));
    assert!(
        (400.0..800.0).contains(&p90),
        "corrected p90 {p90} ms, expected ~600"
    );
    assert!(
        (850.0..1100.0).contains(&p99),
        "corrected p99 {p99} ms, expected ~960"
    );
    let service_p99 = ms(&total.service, 0.99);
    assert!(
        service_p99 < 100.0,
        "uncorrected p99 {service_p99} ms should not see the stall"
    );
    assert!(ms(&total.service, 1.0) > 500.0, "the in-flight requests did wait");

    let closed_addr = serve(stall).await;
    let closed = run_blocking(spec(
        closed_addr,
        Load::Closed { connections: 4 },
        Duration::from_secs(4),
    ))
    .await;
    let closed_p99 = ms(&closed.recorder.total.corrected, 0.99);
    assert!(
        closed_p99 < 100.0,
        "closed-model p99 {closed_p99} ms hides the stall"
    );
}

/// Four answers in turn: 500 with a V2 error, 404 with another, a reply too
/// slow for the client's timeout, and a success.
fn errors(index: u64, _: Duration) -> Answer {
    match index % 4 {
        0 => (Duration::ZERO, 500, None, r#"{"error":"boom"}"#),
        1 => (Duration::ZERO, 404, None, r#"{"error":"unknown model 'x'"}"#),
        2 => (Duration::from_secs(2), 200, None, "{}"),
        _ => (Duration::ZERO, 200, None, "{}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_counted_by_class_and_message() {
    let addr = serve(errors).await;
    let mut run_spec = spec(addr, Load::Closed { connections: 2 }, Duration::from_millis(1500));
    run_spec.timeout = Duration::from_millis(200);
    run_spec.split_header_opt = None;
    let result = run_blocking(run_spec).await;
    let total = &result.recorder.total;
    for class in ["status 500", "status 404", "timeout"] {
        assert!(
            total.errors.get(class).is_some_and(|n| *n > 0),
            "no '{class}' in {:?}",
            total.errors
        );
    }
    assert!(total.ok > 0);
    assert_eq!(total.messages.get("boom"), total.errors.get("status 500"));
    assert_eq!(
        total.messages.get("unknown model 'x'"),
        total.errors.get("status 404")
    );

    // Nothing listens on a port just released: every request is a connect error.
    let unused = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let result = run_blocking(spec(
        unused,
        Load::Closed { connections: 1 },
        Duration::from_millis(300),
    ))
    .await;
    let total = &result.recorder.total;
    assert_eq!(total.ok, 0);
    assert!(
        total.errors.get("connect").is_some_and(|n| *n > 0),
        "{:?}",
        total.errors
    );
}

/// Version 1 alone for the first second, then versions 1 and 2 in turn.
fn two_versions(index: u64, since: Duration) -> Answer {
    let version = if since < Duration::from_secs(1) || index.is_multiple_of(2) {
        "1"
    } else {
        "2"
    };
    (Duration::ZERO, 200, Some(version), "{}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_and_errors_split_by_version_with_the_swap_marked() {
    let addr = serve(two_versions).await;
    let result = run_blocking(spec(
        addr,
        Load::Closed { connections: 2 },
        Duration::from_millis(2500),
    ))
    .await;
    let recorder = &result.recorder;
    let (one, two) = (&recorder.by_version["1"], &recorder.by_version["2"]);
    assert_eq!(one.requests() + two.requests(), recorder.total.requests());
    assert!(two.requests() > 0 && one.requests() > two.requests());
    let changes = recorder.version_changes();
    assert_eq!(changes.len(), 1, "{changes:?}");
    let (second, versions) = &changes[0];
    assert!((1..=2).contains(second), "swap seen at second {second}");
    assert_eq!(
        versions.iter().map(String::as_str).collect::<Vec<_>>(),
        ["1", "2"]
    );
}

/// Every answer takes 20 ms: two connections can carry 100 req/s, and the
/// schedule asks for 200.
fn slow(_: u64, _: Duration) -> Answer {
    (Duration::from_millis(20), 200, Some("1"), "{}")
}

/// An overloaded server is the server's fault: its sends queue behind its
/// own slow answers, the corrected latency grows, the threshold fails (3),
/// and the generator is not blamed (which would make the run invalid, 4).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overloaded_server_fails_its_threshold_and_the_generator_is_not_blamed() {
    let addr = serve(slow).await;
    let open = Load::Open {
        profile: RateProfile::Constant(200.0),
        arrivals: Arrivals::Uniform,
        connections: 2,
    };
    let run_spec = spec(addr, open, Duration::from_secs(2));
    let result = run_blocking(run_spec.clone()).await;
    let recorder = &result.recorder;
    assert!(
        recorder.queued_behind_server > recorder.total.requests() / 2,
        "{}",
        recorder.queued_behind_server
    );
    // About 100 answers per second can end inside the window, not 200.
    let achieved = result.achieved_rate();
    assert!((60.0..130.0).contains(&achieved), "achieved {achieved} req/s");
    let slos = [sluice_loadtest::slo::Slo::parse("p99<10ms").unwrap()];
    let report = sluice_loadtest::report::Report::new(&run_spec, &result, &slos);
    assert!(!report.generator.saturated);
    assert_eq!(report.verdict, "fail");
    assert!(
        report.total.latency_ms.corrected.p99 > 500.0,
        "the backlog shows in corrected latency"
    );
}

fn unavailable(_: u64, _: Duration) -> Answer {
    (Duration::ZERO, 503, None, r#"{"error":"server is overloaded"}"#)
}

/// Fast errors do not make latency look good: with no successful answer a
/// latency threshold cannot be judged (invalid), while the error rate fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_only_fails_cannot_pass_a_latency_threshold() {
    let addr = serve(unavailable).await;
    let run_spec = spec(addr, Load::Closed { connections: 2 }, Duration::from_millis(500));
    let result = run_blocking(run_spec.clone()).await;
    assert_eq!(result.recorder.total.ok, 0);
    assert!(result.recorder.total.corrected.is_empty());
    let parse = |text: &str| sluice_loadtest::slo::Slo::parse(text).unwrap();
    let latency = sluice_loadtest::report::Report::new(&run_spec, &result, &[parse("p99<10ms")]);
    assert_eq!(latency.verdict, "invalid");
    let errors = sluice_loadtest::report::Report::new(&run_spec, &result, &[parse("error_rate<1%")]);
    assert_eq!(errors.verdict, "fail");
    assert_eq!(result.achieved_rate(), 0.0);
}

fn hung(_: u64, _: Duration) -> Answer {
    (Duration::from_secs(30), 200, None, "{}")
}

/// A hung server cannot keep a run going past its window plus one timeout;
/// what the schedule still held is counted as not sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_server_cannot_stretch_the_run() {
    let addr = serve(hung).await;
    let open = Load::Open {
        profile: RateProfile::Constant(100.0),
        arrivals: Arrivals::Uniform,
        connections: 1,
    };
    let mut run_spec = spec(addr, open, Duration::from_secs(1));
    run_spec.timeout = Duration::from_millis(300);
    let started = Instant::now();
    let result = run_blocking(run_spec).await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    let errors = &result.recorder.total.errors;
    assert!(errors.get("timeout").is_some_and(|n| *n >= 2), "{errors:?}");
    let not_sent = errors.get(sluice_loadtest::stats::NOT_SENT).copied().unwrap_or(0);
    assert_eq!(
        result.recorder.total.requests(),
        100,
        "every scheduled request is accounted for: {errors:?}"
    );
    assert!(not_sent > 50, "{errors:?}");
}
