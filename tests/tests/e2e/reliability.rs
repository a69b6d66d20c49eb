//! Reliability at the edge of the predict API, over real sockets: a
//! graceful shutdown under load fails no request in flight; slow clients
//! (headers or body trickled) are cut off in bounded time; admission
//! refuses past `max_in_flight` without keeping a body; the server's
//! default deadline answers 504 without running the request; hostile
//! shapes and paths get the right 4xx. [`bounds`]: a bound on every
//! per-request quantity, as an attacker would try it.

mod bounds;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sluice_gateway::config::ServerLimits;
use sluice_tests::{Options, TestGateway, TestRepository, error_message, example_model, read_json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn digits_request(rows: usize) -> Value {
    json!({"inputs": [{"name": "pixels", "shape": [rows, 64], "datatype": "FP32", "data": vec![1.0; rows * 64]}]})
}

fn limits(change: impl FnOnce(&mut ServerLimits)) -> Option<ServerLimits> {
    let mut limits = ServerLimits::for_pool(1, 64);
    change(&mut limits);
    Some(limits)
}

/// A gateway serving the digits model on one compute thread; the
/// repository must outlive it (the gateway polls it).
async fn digits_gateway(limits_opt: Option<ServerLimits>) -> (TestRepository, TestGateway) {
    let repository = TestRepository::new().with_model("digits", 1, &example_model("digits"));
    let options = Options {
        compute_threads: 1,
        compute_queue: 64,
        limits_opt,
        ..Options::default()
    };
    let gateway = TestGateway::start_with(&repository, options).await;
    (repository, gateway)
}

/// Reads what the server sends until it closes the connection (or 5 s).
/// What arrives until the server closes, and how long since `started`
/// (taken before the connect: the server's timeouts run from its accept, and
/// a client stalled after its writes must not make them look early).
async fn read_until_closed(stream: &mut TcpStream, started: Instant) -> (String, Duration) {
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    (String::from_utf8_lossy(&answer).into_owned(), started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_under_load_fails_no_request_in_flight() {
    let delay = Duration::from_millis(800);
    let drain = Duration::from_secs(20);
    let (_repository, gateway) = digits_gateway(limits(|limits| {
        limits.shutdown_delay = delay;
        limits.drain_timeout = drain;
    }))
    .await;
    let TestGateway { server, base, client } = gateway;
    let addr = server.addr;
    // Load: 24 requests of 4,000 rows on one compute thread.
    let body = serde_json::to_vec(&digits_request(4000)).unwrap();
    let requests: Vec<_> = (0..24)
        .map(|_| {
            let (client, url, body) = (
                client.clone(),
                format!("{base}/v2/models/digits/infer"),
                body.clone(),
            );
            tokio::spawn(async move {
                client
                    .post(url)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .map(|response| response.status().as_u16())
            })
        })
        .collect();
    // And three requests whose bodies are still arriving when the listener
    // closes: they must be read, run and answered during the drain.
    let small = serde_json::to_vec(&digits_request(1)).unwrap();
    let mut trickling = Vec::new();
    for _ in 0..3 {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let head = format!(
            "POST /v2/models/digits/infer HTTP/1.1\r\nHost: sluice\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            small.len()
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(&small[..10]).await.unwrap();
        trickling.push(stream);
    }
    let health = server.health.clone();
    let shutdown_started = Instant::now();
    let stopping = tokio::spawn(server.shutdown());
    // During the shutdown delay the gateway is not ready, and still serves
    // (the shutdown task is looked for, not assumed, to have started).
    let deadline = Instant::now() + Duration::from_millis(600);
    while health.is_ready() {
        assert!(Instant::now() < deadline, "readiness never went off");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let ready = client
        .get(format!("{base}/v2/health/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    // Past the delay the listener is closed (looked for until a few
    // seconds past it: a loaded machine wakes the closing task late); the
    // trickled bodies end now.
    tokio::time::sleep(delay).await;
    let closed_by = Instant::now() + Duration::from_secs(3);
    while TcpStream::connect(addr).await.is_ok() {
        assert!(Instant::now() < closed_by, "still accepting well after the delay");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for mut stream in trickling {
        stream.write_all(&small[10..]).await.unwrap();
        let mut status = vec![0; 12];
        stream.read_exact(&mut status).await.unwrap();
        assert_eq!(
            &status, b"HTTP/1.1 200",
            "a request in flight at the close failed"
        );
    }
    for request in requests {
        let status = request.await.unwrap().expect("an in-flight request failed");
        assert_eq!(status, 200);
    }
    stopping.await.unwrap().unwrap();
    // Idle keep-alive connections were closed, not waited for to the timeout.
    assert!(
        shutdown_started.elapsed() < delay + drain / 2,
        "the drain ran into its timeout: {:?}",
        shutdown_started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off_in_bounded_time() {
    let (_repository, gateway) = digits_gateway(limits(|limits| {
        limits.connections.header_read_timeout = Duration::from_millis(300);
        limits.body_read_timeout = Duration::from_millis(300);
    }))
    .await;

    // Headers that never end: the connection is closed at the header timeout.
    let started = Instant::now();
    let mut stream = TcpStream::connect(gateway.server.addr).await.unwrap();
    stream
        .write_all(b"POST /v2/models/digits/infer HTTP/1.1\r\nHost: sluice\r\n")
        .await
        .unwrap();
    let (_, took) = read_until_closed(&mut stream, started).await;
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(3),
        "a slow-loris connection lived {took:?}, its timeout is 300 ms"
    );

    // A body that stops short: 408 with a JSON error at the body timeout.
    let started = Instant::now();
    let mut stream = TcpStream::connect(gateway.server.addr).await.unwrap();
    stream
        .write_all(b"POST /v2/models/digits/infer HTTP/1.1\r\nHost: sluice\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"inputs\":")
        .await
        .unwrap();
    let (answer, took) = read_until_closed(&mut stream, started).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.contains(r#"{"error":"the request body did not arrive within 300 ms"}"#),
        "{answer}"
    );
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(3),
        "{took:?}"
    );
}

/// The listener reads a connection's first bytes to tell HTTP/1.1 from
/// HTTP/2 (gRPC): that read and the first request's head share one header
/// read timeout, counted from the connection's start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_first_bytes_do_not_earn_a_second_header_timeout() {
    let timeout = Duration::from_millis(1000);
    let (_repository, gateway) = digits_gateway(limits(|limits| {
        limits.connections.header_read_timeout = timeout;
    }))
    .await;
    // First bytes at 0.9 s, then a head that never ends: cut at 1 s, not at 1.9 s.
    let started = Instant::now();
    let mut stream = TcpStream::connect(gateway.server.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(900)).await;
    stream
        .write_all(b"POST /v2/models/digits/infer HTTP/1.1\r\n")
        .await
        .unwrap();
    let (_, took) = read_until_closed(&mut stream, started).await;
    assert!(
        took >= Duration::from_millis(950) && took < Duration::from_millis(1600),
        "the connection lived {took:?}; its header read timeout is {timeout:?}"
    );
    // A whole request at 0.9 s is served, and its connection kept.
    let mut stream = TcpStream::connect(gateway.server.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(900)).await;
    stream
        .write_all(b"GET /v2/health/live HTTP/1.1\r\nHost: sluice\r\n\r\n")
        .await
        .unwrap();
    let mut answer = vec![0u8; 512];
    let read = stream.read(&mut answer).await.unwrap();
    assert!(
        answer[..read].starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer[..read])
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    stream
        .write_all(b"GET /v2/health/live HTTP/1.1\r\nHost: sluice\r\n\r\n")
        .await
        .unwrap();
    let read = stream.read(&mut answer).await.unwrap();
    assert!(
        answer[..read].starts_with(b"HTTP/1.1 200"),
        "kept alive past the first head's bound"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admission_refuses_past_max_in_flight() {
    // Its own model name: the metric it reads is the process's, and other
    // suites in this binary overload `digits`.
    const MODEL: &str = "digits_in_flight";
    let repository = TestRepository::new().with_model(MODEL, 1, &example_model("digits"));
    let options = Options {
        compute_threads: 1,
        compute_queue: 64,
        limits_opt: limits(|limits| limits.max_in_flight = 1),
        ..Options::default()
    };
    let gateway = TestGateway::start_with(&repository, options).await;
    // One request holds the only slot while its body trickles in.
    let mut holder = TcpStream::connect(gateway.server.addr).await.unwrap();
    let body = serde_json::to_vec(&digits_request(1)).unwrap();
    let head = format!(
        "POST /v2/models/{MODEL}/infer HTTP/1.1\r\nHost: sluice\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    holder.write_all(head.as_bytes()).await.unwrap();
    holder.write_all(&body[..10]).await.unwrap();
    let admitted = Instant::now();
    while gateway.server.admitted() < 1 {
        assert!(
            admitted.elapsed() < Duration::from_secs(10),
            "the first request never got its slot"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let response = gateway
        .post_raw(&format!("/v2/models/{MODEL}/infer"), &[], body.clone())
        .await;
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    let (_, answer) = read_json(response).await;
    assert!(
        error_message(&answer).contains("1 requests are in flight"),
        "{answer}"
    );
    let metrics = gateway.metrics().await;
    let refused = format!(r#"sluice_admission_rejected_total{{model="{MODEL}",reason="in_flight"}} "#);
    assert_eq!(
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(refused.as_str())),
        Some("1"),
        "{metrics}"
    );

    // The slot frees once the first request is answered.
    holder.write_all(&body[10..]).await.unwrap();
    let mut answer = vec![0; 12];
    holder.read_exact(&mut answer).await.unwrap();
    assert_eq!(&answer, b"HTTP/1.1 200");
    let (status, _) = gateway
        .post_json(&format!("/v2/models/{MODEL}/infer"), &digits_request(1))
        .await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_deadline_answers_504_without_running() {
    let (_repository, gateway) = digits_gateway(limits(|limits| {
        limits.request_timeout_opt = Some(Duration::from_secs(1));
    }))
    .await;
    // The body takes longer than the deadline to arrive: the request is
    // answered 504 and never reaches the engine.
    let body = serde_json::to_vec(&digits_request(1)).unwrap();
    let mut stream = TcpStream::connect(gateway.server.addr).await.unwrap();
    let head = format!(
        "POST /v2/models/digits/infer HTTP/1.1\r\nHost: sluice\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&body[..10]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stream.write_all(&body[10..]).await.unwrap();
    let (answer, _) = read_until_closed(&mut stream, Instant::now()).await;
    assert!(answer.starts_with("HTTP/1.1 504"), "{answer}");
    assert!(
        answer.contains("passed while the body was read; it was not run"),
        "{answer}"
    );
    // A request whose body arrives at once is served within the same deadline.
    let (status, answer) = gateway
        .post_json("/v2/models/digits/infer", &digits_request(1))
        .await;
    assert_eq!(status, 200, "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_shapes_and_paths_get_the_right_4xx() {
    let (_repository, gateway) = digits_gateway(None).await;
    let gateway = Arc::new(gateway);
    let post = |path: &'static str, body: Value| {
        let gateway = gateway.clone();
        async move { gateway.post_json(path, &body).await }
    };
    // No rows at all.
    let (status, answer) = post(
        "/v2/models/digits/infer",
        json!({"inputs": [{"name": "pixels", "shape": [0, 64], "datatype": "FP32", "data": []}]}),
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    assert!(error_message(&answer).contains("dimension 0 is 0"), "{answer}");
    // A binary size no body can hold.
    let header = json!({"inputs": [{"name": "pixels", "shape": [1, 64], "datatype": "FP32",
        "parameters": {"binary_data_size": u64::MAX}}]});
    let header = serde_json::to_vec(&header).unwrap();
    let length = header.len().to_string();
    let response = gateway
        .post_raw(
            "/v2/models/digits/infer",
            &[("inference-header-content-length", length)],
            header,
        )
        .await;
    assert_eq!(response.status(), 400);
    // Traversal in a model name is just an unknown model.
    let (status, answer) = post("/v2/models/..%2F..%2Fetc%2Fpasswd/infer", digits_request(1)).await;
    assert_eq!(status, 404, "{answer}");
    assert!(
        error_message(&answer).contains("unknown model '../../etc/passwd'"),
        "{answer}"
    );
}
