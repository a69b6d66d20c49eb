//! A bound on every per-request quantity, tried as an attacker would send
//! it, over raw sockets where a client library would refuse: outputs named
//! many times, long request ids, oversized heads and framing hyper answers
//! itself, messages quoting huge input, requests held in flight against one
//! model, bodies against the memory budget, connections against the
//! listener's bound and one address's, labels against their bounds. Each
//! answer is JSON with a status that says whose fault it was.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sluice_gateway::config::ServerLimits;
use sluice_tests::{
    Options, TestGateway, TestRegistry, TestRepository, credit_applicants, error_message, example_model,
    read_json,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

fn digits_request(rows: usize) -> Value {
    json!({"inputs": [{"name": "pixels", "shape": [rows, 64], "datatype": "FP32", "data": vec![1.0; rows * 64]}]})
}

/// A gateway serving digits and credit_risk with `change` made to `sluice
/// serve`'s limits for two compute threads; the repository must outlive it.
async fn gateway(change: impl FnOnce(&mut ServerLimits)) -> (TestRepository, TestGateway) {
    let repository = TestRepository::new()
        .with_model("digits", 1, &example_model("digits"))
        .with_model("credit_risk", 1, &example_model("credit_risk"));
    let mut limits = ServerLimits::for_pool(2, 64);
    change(&mut limits);
    let options = Options {
        compute_threads: 2,
        compute_queue: 64,
        limits_opt: Some(limits),
        ..Options::default()
    };
    let gateway = TestGateway::start_with(&repository, options).await;
    (repository, gateway)
}

/// Writes `request` on a new connection from `source` (an address of
/// 127.0.0.0/8) and reads the answer until the server closes or 5 s pass.
async fn exchange(addr: std::net::SocketAddr, source: [u8; 4], request: &[u8]) -> String {
    let mut stream = connect_from(addr, source).await;
    let _ = stream.write_all(request).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

async fn connect_from(addr: std::net::SocketAddr, source: [u8; 4]) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind((source, 0).into()).unwrap();
    socket.connect(addr).await.unwrap()
}

/// The JSON body of a raw HTTP answer.
fn body_of(answer: &str) -> Value {
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    serde_json::from_str(body).unwrap_or_else(|err| panic!("not JSON ({err}): {answer}"))
}

/// A request head that holds a slot: its body (of `length` bytes) never comes.
fn held_request(model: &str, length: usize) -> String {
    format!(
        "POST /v2/models/{model}/infer HTTP/1.1\r\nHost: sluice\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n{{"
    )
}

/// Opens `count` connections, each a request to `model` whose body (of
/// `length` bytes) never comes, and waits until the server admitted them.
async fn hold(gateway: &TestGateway, model: &str, length: usize, count: usize) -> Vec<TcpStream> {
    let mut held = Vec::new();
    for _ in 0..count {
        let mut stream = TcpStream::connect(gateway.server.addr).await.unwrap();
        stream
            .write_all(held_request(model, length).as_bytes())
            .await
            .unwrap();
        held.push(stream);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while gateway.server.admitted() < count {
        assert!(Instant::now() < deadline, "the held requests never got in");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    held
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_output_is_named_once_and_an_answer_has_a_bound() {
    let (_repository, gateway) = gateway(|limits| limits.max_response_bytes = 64 * 1024).await;
    // 20,000 copies of one output: 525 KB that once made a 461 MB answer.
    let mut request = digits_request(1);
    request["outputs"] = Value::Array(vec![json!({"name": "probabilities"}); 20_000]);
    let started = Instant::now();
    let (code, body) = gateway.post_json("/v2/models/digits/infer", &request).await;
    assert_eq!(code, 400, "{body}");
    assert!(
        error_message(&body).contains("output 'probabilities' is named more than once"),
        "{body}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));

    // An answer that could pass the bound is refused before it is built.
    let (code, body) = gateway
        .post_json("/v2/models/digits/infer", &digits_request(1000))
        .await;
    assert_eq!(code, 413, "{body}");
    assert!(
        error_message(&body).contains("over the limit of 65536: ask for fewer rows or outputs"),
        "{body}"
    );
    let (code, body) = gateway
        .post_json("/v2/models/digits/infer", &digits_request(100))
        .await;
    assert_eq!(code, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logged_request_id_is_bounded_and_a_length_is_given_once() {
    // A logged prediction keeps its id (the registry joins labels on it):
    // one of 8 MiB, in the body or in x-request-id, is refused.
    let registry = TestRegistry::start().await;
    registry
        .release("credit_risk", &example_model("credit_risk"))
        .await;
    registry.deploy_logged("credit_risk", &[(1, 100)], 0.0).await;
    let cache = tempfile::tempdir().unwrap();
    let logged = TestGateway::follow_logging(&registry, cache.path(), "credit_risk", &[1]).await;
    let url = "/v2/models/credit_risk/infer";
    let mut request = credit_applicants(1, 0.0).remove(0);
    request["id"] = json!("x".repeat(8 << 20));
    let (code, body) = logged.post_json(url, &request).await;
    assert_eq!(code, 400, "{body}");
    assert!(
        error_message(&body).contains("the request's id is 8388608 bytes long: a request id is at most 256"),
        "{body}"
    );
    request["id"] = json!("x".repeat(256));
    let (code, body) = logged.post_json(url, &request).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["id"].as_str().unwrap().len(), 256);
    let long_header = logged
        .post_raw(
            url,
            &[("x-request-id", "y".repeat(300))],
            serde_json::to_vec(&request).unwrap(),
        )
        .await;
    let (code, body) = read_json(long_header).await;
    assert_eq!(code, 400, "{body}");
    assert!(
        error_message(&body).starts_with("x-request-id is 300 bytes long"),
        "{body}"
    );

    // Not logged, an id is only echoed in the answer's body, as Triton does.
    let (_repository, gateway) = gateway(|_| {}).await;
    let mut request = digits_request(1);
    request["id"] = json!("x".repeat(1024));
    let (code, body) = gateway.post_json("/v2/models/digits/infer", &request).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["id"].as_str().unwrap().len(), 1024);

    let twice = gateway
        .post_raw(
            "/v2/models/digits/infer",
            &[
                ("inference-header-content-length", "10".into()),
                ("inference-header-content-length", "20".into()),
            ],
            serde_json::to_vec(&digits_request(1)).unwrap(),
        )
        .await;
    let (code, body) = read_json(twice).await;
    assert_eq!(code, 400, "{body}");
    assert!(error_message(&body).contains("more than once"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_hyper_answers_itself_is_json_too() {
    let (_repository, gateway) = gateway(|limits| limits.connections.max_header_bytes = 4096).await;
    let addr = gateway.server.addr;
    let localhost = [127, 0, 0, 1];
    // A head past the bound, and one with more fields than 100.
    let big = format!(
        "GET /v2/health/ready HTTP/1.1\r\nHost: x\r\nx-big: {}\r\n\r\n",
        "a".repeat(8000)
    );
    let many: String = (0..150).map(|index| format!("x-{index}: 1\r\n")).collect();
    let many = format!("GET /v2/health/ready HTTP/1.1\r\nHost: x\r\n{many}\r\n");
    for request in [big, many] {
        let answer = exchange(addr, localhost, request.as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 431 "), "{answer}");
        assert!(answer.contains("content-type: application/json"), "{answer}");
        let message = body_of(&answer)["error"].as_str().unwrap().to_string();
        assert!(message.contains("at most 4096 bytes"), "{message}");
    }
    // Framing that cannot be parsed.
    let framing = "POST /v2/models/digits/infer HTTP/1.1\r\nHost: x\r\nContent-Length: ten\r\n\r\n";
    let answer = exchange(addr, localhost, framing.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
    assert!(
        body_of(&answer)["error"]
            .as_str()
            .unwrap()
            .contains("not valid HTTP/1.1")
    );
    // Nothing else is touched: the server still answers.
    assert_eq!(gateway.get("/v2/health/live").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_messages_quote_client_input_up_to_a_bound() {
    let (_repository, gateway) = gateway(|_| {}).await;
    let name = "n".repeat(10_000);
    let (code, body) = gateway
        .post_json(&format!("/v2/models/{name}/infer"), &digits_request(1))
        .await;
    assert_eq!(code, 404);
    assert!(error_message(&body).len() < 300, "{body}");
    assert!(error_message(&body).contains("(10000 bytes in all)"), "{body}");
    let mut request = digits_request(1);
    request["inputs"][0]["name"] = json!("p".repeat(1 << 20));
    let (code, body) = gateway.post_json("/v2/models/digits/infer", &request).await;
    assert_eq!(code, 400);
    assert!(error_message(&body).len() < 400, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_model_cannot_take_every_slot_from_the_others() {
    let (_repository, gateway) = gateway(|limits| {
        limits.max_in_flight = 4;
        limits.max_in_flight_per_model = 2;
    })
    .await;
    // Two requests to digits held in flight (bodies that never come).
    let held = hold(&gateway, "digits", 100, 2).await;
    // A third to digits is refused at once; credit_risk is served.
    let (code, body) = gateway
        .post_json("/v2/models/digits/infer", &digits_request(1))
        .await;
    assert_eq!(code, 503, "{body}");
    assert!(
        error_message(&body).contains("model 'digits' is overloaded"),
        "{body}"
    );
    let applicant = credit_applicants(1, 0.0).remove(0);
    let (code, body) = gateway
        .post_json("/v2/models/credit_risk/infer", &applicant)
        .await;
    assert_eq!(code, 200, "{body}");
    assert!(
        gateway
            .metrics()
            .await
            .contains(r#"sluice_admission_rejected_total{model="digits",reason="model"}"#)
    );
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (code, _) = gateway
            .post_json("/v2/models/digits/infer", &digits_request(1))
            .await;
        if code == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "digits never got its slots back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_in_flight_hold_a_memory_budget() {
    let (_repository, gateway) = gateway(|limits| limits.max_body_bytes_in_flight = 256 * 1024).await;
    let addr = gateway.server.addr;
    // A body declared large but not sent holds nothing...
    let _declared = hold(&gateway, "digits", 64 << 20, 1).await;
    let (code, _) = gateway
        .post_json("/v2/models/digits/infer", &digits_request(300))
        .await;
    assert_eq!(code, 200);
    // ...one that sent 200 KiB holds them: most of the budget.
    let mut holder = TcpStream::connect(addr).await.unwrap();
    holder
        .write_all(held_request("digits", 300 * 1024).as_bytes())
        .await
        .unwrap();
    holder.write_all(&vec![b' '; 200 * 1024]).await.unwrap();
    // Once the server has read the holder's bytes...
    let deadline = Instant::now() + Duration::from_secs(30);
    while gateway.server.body_bytes_held() < 200 * 1024 {
        assert!(
            Instant::now() < deadline,
            "the holder's bytes never counted: {} held",
            gateway.server.body_bytes_held()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // ...75 KiB more does not fit, declared or sent in chunks.
    let request = serde_json::to_vec(&digits_request(300)).unwrap();
    assert!(request.len() > 60 * 1024, "{}", request.len());
    let declared = gateway
        .post_raw("/v2/models/digits/infer", &[], request.clone())
        .await;
    let (code, body) = read_json(declared).await;
    assert_eq!(code, 503, "{body}");
    assert!(error_message(&body).contains("memory budget"), "{body}");
    let mut chunked =
        b"POST /v2/models/digits/infer HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for chunk in request.chunks(8192) {
        chunked.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        chunked.extend_from_slice(chunk);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let answer = exchange(addr, [127, 0, 0, 1], &chunked).await;
    assert!(
        answer.starts_with("HTTP/1.1 503 "),
        "{}",
        &answer[..answer.len().min(300)]
    );
    assert!(
        body_of(&answer)["error"]
            .as_str()
            .unwrap()
            .contains("memory budget")
    );
    // A small one still fits.
    let (code, _) = gateway
        .post_json("/v2/models/digits/infer", &digits_request(1))
        .await;
    assert_eq!(code, 200);
    assert!(
        gateway
            .metrics()
            .await
            .contains(r#"sluice_admission_rejected_total{model="digits",reason="bytes"}"#)
    );
    drop(holder);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_make_room_and_one_address_holds_its_share() {
    let (_repository, gateway) = gateway(|limits| {
        limits.connections.max_connections = 8;
        limits.connections.max_per_address = 6;
    })
    .await;
    let addr = gateway.server.addr;
    let health = b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    // Six idle connections from 127.0.0.2, its share: a seventh is refused
    // at once with JSON, and another address is served.
    let mut idle = Vec::new();
    for _ in 0..6 {
        idle.push(connect_from(addr, [127, 0, 0, 2]).await);
    }
    // The oldest has sent part of a head and stalls: asked to close, it is
    // cut within the grace all the same.
    idle[0].write_all(b"GET /v2/hea").await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let answer = exchange(addr, [127, 0, 0, 2], health).await;
    assert!(answer.starts_with("HTTP/1.1 503 "), "{answer}");
    assert!(answer.contains("retry-after: 1"), "{answer}");
    assert!(
        body_of(&answer)["error"]
            .as_str()
            .unwrap()
            .contains("this client address holds"),
        "{answer}"
    );
    // Two more idle ones from 127.0.0.3 fill the listener; the next client
    // is served all the same: the oldest idle connection makes room.
    for _ in 0..2 {
        idle.push(connect_from(addr, [127, 0, 0, 3]).await);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let answer = exchange(addr, [127, 0, 0, 4], health).await;
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(2));
    // The oldest connection was the one closed, within the grace.
    let mut first = idle.remove(0);
    let mut byte = [0u8; 1];
    let closed = tokio::time::timeout(Duration::from_secs(5), first.read(&mut byte)).await;
    assert!(matches!(closed, Ok(Ok(0) | Err(_))), "{closed:?}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    let metrics = gateway.metrics().await;
    assert!(
        metrics.contains(r#"sluice_connections_refused_total{listener="predict",reason="address"}"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"sluice_connections_evicted_total{listener="predict"}"#),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_connections_are_not_closed_and_the_next_one_is_refused_at_once() {
    let (_repository, gateway) = gateway(|limits| limits.connections.max_connections = 2).await;
    let addr = gateway.server.addr;
    let busy = hold(&gateway, "digits", 100, 2).await;
    let started = Instant::now();
    let answer = exchange(
        addr,
        [127, 0, 0, 1],
        b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 503 "), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(
        body_of(&answer)["error"].as_str().unwrap().contains("all busy"),
        "{answer}"
    );
    drop(busy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labels_are_bounded_by_size_by_count_and_by_the_hour() {
    let registry = TestRegistry::start().await;
    registry
        .release("credit_risk", &example_model("credit_risk"))
        .await;
    registry.deploy_logged("credit_risk", &[(1, 100)], 0.0).await;
    let cache = tempfile::tempdir().unwrap();
    let mut limits = ServerLimits::for_pool(2, 64);
    limits.max_feedback_bytes = 64 * 1024;
    limits.feedback_bytes_per_hour = 4096;
    let options = Options {
        limits_opt: Some(limits),
        segment_max_age: Duration::from_millis(100),
        ..Options::default()
    };
    let gateway = TestGateway::follow(&registry, cache.path(), options).await;
    gateway.wait_versions("credit_risk", &[1]).await;
    let url = "/v2/models/credit_risk/feedback";
    let refusals = [
        (
            json!({"request_id": "a".repeat(300), "label": 1}),
            400,
            "at most 256",
        ),
        (
            json!({"request_id": "a", "label": "c".repeat(300)}),
            400,
            "a class name is at most 256",
        ),
        (
            json!({"request_id": "a", "label": vec![1; 70_000]}),
            413,
            "larger than the limit of 65536",
        ),
    ];
    for (body, status, says) in refusals {
        let (code, answer) = gateway.post_json(url, &body).await;
        assert_eq!(code, status, "{answer}");
        assert!(error_message(&answer).contains(says), "{answer}");
    }
    // 4096 bytes an hour: a few labels go in, then 429 with Retry-After.
    let label = json!({"request_id": "nobody-logged-this", "label": 1});
    let mut accepted = 0;
    let refused = loop {
        let response = gateway
            .post_raw(url, &[], serde_json::to_vec(&label).unwrap())
            .await;
        if response.status() == 429 {
            break response;
        }
        assert_eq!(response.status(), 200);
        accepted += 1;
        assert!(accepted < 100, "the hourly budget never held");
    };
    assert!(accepted >= 10, "{accepted}");
    let retry_after: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=3600).contains(&retry_after), "{retry_after}");
    let (_, body) = read_json(refused).await;
    assert!(
        error_message(&body).contains("4096 bytes of feedback for this hour"),
        "{body}"
    );
    assert!(
        gateway
            .metrics()
            .await
            .contains(r#"sluice_feedback_refused_total{model="credit_risk"}"#)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_body_that_trickles_is_cut_off() {
    let registry = TestRegistry::start_with(sluice_tests::RegistryOptions {
        upload_idle_timeout: Some(Duration::from_millis(300)),
        ..Default::default()
    })
    .await;
    let started = Instant::now();
    let request = format!(
        "POST /api/v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"name\":",
        registry.token("dora")
    );
    let answer = exchange(registry.addr, [127, 0, 0, 1], request.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
    assert_eq!(
        body_of(&answer)["error"],
        "the request body did not arrive within 300 ms"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}
