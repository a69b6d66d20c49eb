//! gRPC through the path HTTP takes: one port for HTTP/1.1, h2c and gRPC
//! (and a second address when asked), the same checks with the same
//! messages, the same admission, tokens and deadlines, each failure its
//! gRPC code.

use std::time::Duration;

use serde_json::{Value, json};
use sluice_gateway::Server;
use sluice_gateway::config::{ServeConfig, ServerLimits};
use sluice_proto::inference::model_infer_request::InferInputTensor;
use sluice_proto::inference::{InferTensorContents, ModelInferRequest, ModelReadyRequest};
use sluice_tests::{Options, TestGateway, TestRepository, error_message, example_model, ort_library};
use tonic::Code;

use super::{client, credit_request};

fn repository() -> TestRepository {
    TestRepository::new()
        .with_model("credit_risk", 1, &example_model("credit_risk"))
        .with_model("digits", 1, &example_model("digits"))
}

/// The credit request of `credit_request`, as V2 JSON.
fn as_json(request: &ModelInferRequest) -> Value {
    let inputs: Vec<Value> = request
        .inputs
        .iter()
        .map(|input| {
            let values = &input.contents.as_ref().unwrap().fp32_contents;
            json!({"name": input.name, "shape": input.shape, "datatype": input.datatype, "data": values})
        })
        .collect();
    json!({ "inputs": inputs })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_h2c_and_grpc_share_the_port_and_a_second_address_serves_the_same() {
    let repository = repository();
    let mut config = ServeConfig::for_repository(repository.path());
    config.settings.poll_interval = Duration::from_millis(50);
    config.settings.engines.ort_library_opt = Some(ort_library());
    config.settings.grpc_listen_opt = Some("127.0.0.1:0".parse().unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = Server::start(config, listener).await.unwrap();
    let second = server.grpc_addr_opt.expect("a second address");
    let request = credit_request("credit_risk", 3);
    let body = as_json(&request);
    let http1 = reqwest::Client::builder()
        .no_proxy()
        .http1_only()
        .build()
        .unwrap();
    let h2c = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !server.health.is_ready() {
        assert!(std::time::Instant::now() < deadline, "never ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut answers = Vec::new();
    for addr in [server.addr, second] {
        let url = format!("http://{addr}/v2/models/credit_risk/infer");
        for (client, version) in [
            (&http1, reqwest::Version::HTTP_11),
            (&h2c, reqwest::Version::HTTP_2),
        ] {
            let response = client.post(&url).json(&body).send().await.unwrap();
            assert_eq!((response.status().as_u16(), response.version()), (200, version));
            let answer: Value = response.json().await.unwrap();
            answers.push(answer["outputs"][1]["data"].clone());
        }
        let mut grpc = client(addr).await;
        let answer = grpc.model_infer(request.clone()).await.unwrap();
        assert_eq!(answer.metadata().get("x-model-version").unwrap(), "1");
        let answer = answer.into_inner();
        let probabilities = answer
            .outputs
            .iter()
            .position(|output| output.name == "probabilities")
            .unwrap();
        assert_eq!(answer.outputs[probabilities].shape, vec![3, 2]);
        let values: Vec<Value> = answer.raw_output_contents[probabilities]
            .chunks_exact(4)
            .map(|bytes| json!(f32::from_le_bytes(bytes.try_into().unwrap())))
            .collect();
        answers.push(Value::Array(values));
    }
    let flat: Vec<Value> = answers
        .iter()
        .map(|answer| Value::Array(sluice_tests::flatten(answer)))
        .collect();
    assert!(flat.iter().all(|answer| answer == &flat[0]), "{flat:?}");
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_grpc_codes_with_the_messages_http_gives() {
    // A name of its own: the test reads the process's metrics.
    const MODEL: &str = "credit_grpc_refusals";
    let repository = TestRepository::new().with_model(MODEL, 1, &example_model("credit_risk"));
    let gateway = TestGateway::start(&repository).await;
    let mut grpc = client(gateway.server.addr).await;
    let infer = format!("/v2/models/{MODEL}/infer");
    // Each bad request, by gRPC and by HTTP: the same message.
    let mut missing = credit_request(MODEL, 1);
    missing.inputs.truncate(3);
    let mut wrong_shape = credit_request(MODEL, 2);
    wrong_shape.inputs[0].shape = vec![3, 1];
    let mut unknown_input = credit_request(MODEL, 1);
    unknown_input.inputs[0].name = "salary".into();
    let mut wrong_type = credit_request(MODEL, 1);
    wrong_type.inputs[0].datatype = "FP64".into();
    for (what, request) in [
        ("a missing input", missing),
        ("a wrong shape", wrong_shape),
        ("an unknown input", unknown_input),
        ("a wrong datatype", wrong_type),
    ] {
        let (code, body) = gateway.post_json(&infer, &as_json(&request)).await;
        assert_eq!(code, 400, "{what}: {body}");
        let status = grpc.model_infer(request).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{what}");
        // Where the values sit is said once more.
        let message = status.message().trim_end_matches(" (in contents.fp32_contents)");
        assert_eq!(message, error_message(&body), "{what}");
        // The version that judged it, as HTTP's x-model-version.
        assert_eq!(status.metadata().get("x-model-version").unwrap(), "1", "{what}");
    }
    let status = grpc.model_infer(credit_request("nope", 1)).await.unwrap_err();
    assert_eq!(
        (status.code(), status.message()),
        (Code::NotFound, "unknown model 'nope'")
    );
    let mut pinned = credit_request(MODEL, 1);
    pinned.model_version = "9".into();
    let status = grpc.model_infer(pinned).await.unwrap_err();
    assert_eq!(
        (status.code(), status.message()),
        (
            Code::NotFound,
            "unknown version 9 of model 'credit_grpc_refusals'"
        )
    );
    let ready = grpc
        .model_ready(ModelReadyRequest {
            name: "nope".into(),
            version: String::new(),
        })
        .await
        .unwrap();
    assert!(
        !ready.into_inner().ready,
        "an unknown model is not ready, as in Triton"
    );
    // Counted as HTTP counts them: under the version, by HTTP status.
    let metrics = gateway.metrics().await;
    assert!(
        metrics.lines().any(|line| line.starts_with(
            "sluice_requests_total{model=\"credit_grpc_refusals\",version=\"1\",code=\"400\"} "
        ) && line.ends_with(" 8")),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_past_the_body_limit_are_refused_before_they_are_decoded() {
    let repository = repository();
    let options = Options {
        max_request_bytes: 4096,
        ..Options::default()
    };
    let gateway = TestGateway::start_with(&repository, options).await;
    let mut grpc = client(gateway.server.addr).await;
    assert!(grpc.model_infer(credit_request("credit_risk", 10)).await.is_ok());
    let status = grpc
        .model_infer(credit_request("credit_risk", 1000))
        .await
        .unwrap_err();
    // tonic's code for a message over its limit.
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    assert!(status.message().contains("4096"), "{status:?}");
}

/// An HTTP/2 connection to `addr` with no gRPC client in the way: no
/// timer of its own, bodies sent and read as the test chooses.
async fn raw_http2<B>(addr: std::net::SocketAddr) -> hyper::client::conn::http2::SendRequest<B>
where
    B: hyper::body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    // HTTP/2's own first windows (hyper's client asks for megabytes): an
    // answer the test does not read stays on the server.
    let (sender, connection) = hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
        .initial_stream_window_size(65_535)
        .initial_connection_window_size(65_535)
        .handshake(hyper_util::rt::TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    sender
}

/// A whole `ModelInfer` call to `addr` as a bare HTTP/2 request: the
/// message framed as gRPC frames it (not compressed, its length, itself).
fn model_infer(
    addr: std::net::SocketAddr,
    message: &ModelInferRequest,
) -> hyper::Request<http_body_util::Full<bytes::Bytes>> {
    let message = prost::Message::encode_to_vec(message);
    let mut framed = vec![0u8];
    framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
    framed.extend_from_slice(&message);
    hyper::Request::post(format!("http://{addr}/inference.GRPCInferenceService/ModelInfer"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(http_body_util::Full::new(bytes::Bytes::from(framed)))
        .unwrap()
}

/// A `ModelInfer` call whose message declares a megabyte and stops after
/// `sent` bytes, its stream left open: the answer, if the server gives one
/// within 5 s (it must not wait for the rest to refuse it).
async fn stalled_call(addr: std::net::SocketAddr, sent: usize) -> hyper::Response<hyper::body::Incoming> {
    let mut sender = raw_http2(addr).await;
    let (frames, mut body) =
        tokio::sync::mpsc::channel::<Result<hyper::body::Frame<bytes::Bytes>, std::convert::Infallible>>(4);
    let mut start = vec![0u8];
    start.extend_from_slice(&1_000_000u32.to_be_bytes());
    start.extend(std::iter::repeat_n(0u8, sent));
    frames
        .send(Ok(hyper::body::Frame::data(start.into())))
        .await
        .unwrap();
    let request = hyper::Request::post(format!("http://{addr}/inference.GRPCInferenceService/ModelInfer"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(http_body_util::StreamBody::new(futures_util::stream::poll_fn(
            move |cx| body.poll_recv(cx),
        )))
        .unwrap();
    let response = tokio::time::timeout(Duration::from_secs(5), sender.send_request(request))
        .await
        .expect("refused while the message was still arriving")
        .unwrap();
    drop(frames);
    response
}

/// A request to `models/test/slow` (the outer product of `size` zeros,
/// multiplied by itself 24 times): a few hundred make it take a while.
fn slow_request(size: usize) -> ModelInferRequest {
    ModelInferRequest {
        model_name: "slow".into(),
        inputs: vec![InferInputTensor {
            name: "x".into(),
            datatype: "FP32".into(),
            shape: vec![1, size as i64],
            contents: Some(InferTensorContents {
                fp32_contents: vec![0.0; size],
                ..Default::default()
            }),
            ..Default::default()
        }],
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_callers_deadline_bounds_the_wait_and_overload_is_unavailable() {
    let repository = TestRepository::new().with_model("slow", 1, &example_model("slow"));
    let mut limits = ServerLimits::for_pool(2, 64);
    limits.max_in_flight = 1;
    limits.max_in_flight_per_model = 1;
    limits.hung_run_after_opt = None;
    let options = Options {
        limits_opt: Some(limits),
        inline_below: Duration::ZERO,
        ..Options::default()
    };
    let gateway = TestGateway::start_with(&repository, options).await;
    let mut grpc = client(gateway.server.addr).await;
    assert!(grpc.model_infer(slow_request(1)).await.is_ok());
    // grpc-timeout: 100 ms, for a run of a second or more, from a client
    // that keeps no timer of its own (tonic's would race the server's):
    // the server answers DEADLINE_EXCEEDED by itself.
    let mut sender = raw_http2(gateway.server.addr).await;
    let mut request = model_infer(gateway.server.addr, &slow_request(1200));
    request
        .headers_mut()
        .insert("grpc-timeout", "100m".parse().unwrap());
    let started = std::time::Instant::now();
    let response = sender.send_request(request).await.unwrap();
    let answered_in = started.elapsed();
    let (parts, body) = response.into_parts();
    let trailers = http_body_util::BodyExt::collect(body)
        .await
        .unwrap()
        .trailers()
        .cloned();
    let status = parts
        .headers
        .get("grpc-status")
        .or_else(|| trailers.as_ref().and_then(|trailers| trailers.get("grpc-status")))
        .map(|value| value.to_str().unwrap().to_string());
    assert_eq!(
        status.as_deref(),
        Some("4"),
        "DEADLINE_EXCEEDED: {parts:?} {trailers:?}"
    );
    assert!(
        (Duration::from_millis(100)..Duration::from_secs(1)).contains(&answered_in),
        "answered in {answered_in:?}"
    );
    // Its run still holds the one slot: the next call is refused at once,
    // retryable, with when to retry.
    let status = grpc.model_infer(slow_request(1)).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(status.metadata().get("retry-after").unwrap(), "1");
    assert!(status.message().contains("in flight"), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_are_held_against_the_memory_budget_as_they_arrive() {
    let mut limits = ServerLimits::for_pool(2, 64);
    limits.max_body_bytes_in_flight = 100_000;
    let options = Options {
        limits_opt: Some(limits),
        ..Options::default()
    };
    let gateway = TestGateway::start_with(&repository(), options).await;
    let mut grpc = client(gateway.server.addr).await;
    // A message that declares a megabyte and stops after 200 kB: refused
    // once its bytes pass the budget, not read whole first.
    let response = stalled_call(gateway.server.addr, 200_000).await;
    let status = response
        .headers()
        .get("grpc-status")
        .map(|value| value.to_str().unwrap().to_string());
    let message = response
        .headers()
        .get("grpc-message")
        .map(|value| value.to_str().unwrap().to_string());
    assert_eq!(
        status.as_deref(),
        Some("14"),
        "UNAVAILABLE: {:?}",
        response.headers()
    );
    assert!(
        message.unwrap_or_default().contains("memory%20budget"),
        "{:?}",
        response.headers()
    );
    assert!(grpc.model_infer(credit_request("credit_risk", 100)).await.is_ok());
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while gateway.server.body_bytes_held() != 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "{} bytes still held",
            gateway.server.body_bytes_held()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_holds_its_slot_until_the_client_reads_it() {
    let gateway = TestGateway::start(&repository()).await;
    // 10,000 rows: an answer of 160 kB, past HTTP/2's first window of 64 kB.
    let mut sender = raw_http2(gateway.server.addr).await;
    let request = model_infer(gateway.server.addr, &credit_request("credit_risk", 10_000));
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.headers().get("x-model-version").unwrap(), "1");
    // Unread, the answer holds its admission slot and its bytes.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(gateway.server.admitted(), 1);
    assert!(
        gateway.server.body_bytes_held() > 100_000,
        "{}",
        gateway.server.body_bytes_held()
    );
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap();
    assert_eq!(body.trailers().unwrap().get("grpc-status").unwrap(), "0");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while gateway.server.admitted() != 0 || gateway.server.body_bytes_held() != 0 {
        assert!(std::time::Instant::now() < deadline, "still held once written");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_connection_carries_at_most_max_concurrent_streams() {
    let repository = TestRepository::new().with_model("slow", 1, &example_model("slow"));
    let mut limits = ServerLimits::for_pool(2, 64);
    limits.connections.http2_opt = Some(sluice_common::listen::Http2Limits {
        max_concurrent_streams: 2,
        ..Default::default()
    });
    let options = Options {
        limits_opt: Some(limits),
        inline_below: Duration::ZERO,
        ..Options::default()
    };
    let gateway = TestGateway::start_with(&repository, options).await;
    // Three slow calls on one connection (a tonic channel is one): the
    // third waits for a stream, not for an admission slot.
    let mut grpc = client(gateway.server.addr).await;
    // One call first: the client has the server's SETTINGS before it opens
    // three streams (before them, a stream past the bound is refused,
    // REFUSED_STREAM, which tonic does not retry).
    grpc.model_infer(slow_request(1)).await.unwrap();
    let calls: Vec<_> = (0..3)
        .map(|_| {
            let mut grpc = grpc.clone();
            tokio::spawn(async move { grpc.model_infer(slow_request(800)).await.map(|_| ()) })
        })
        .collect();
    let mut most = 0;
    while calls.iter().any(|call| !call.is_finished()) {
        most = most.max(gateway.server.admitted());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for call in calls {
        call.await.unwrap().unwrap();
    }
    assert_eq!(most, 2, "requests in flight on the one connection");
}

/// Where every model needs a token, an anonymous gRPC message is refused
/// before it is read (its model is inside it): it holds no memory.
/// (Called by the token suite, which counts the refusals exactly.)
pub(crate) async fn an_anonymous_message_is_not_read_where_every_model_needs_a_token() {
    let dir = sluice_tests::TempDir::new().unwrap();
    let tokens = dir.path().join("predict-tokens.toml");
    let every = sluice_gateway::server::access::add_token(&tokens, "all", &["*".into()], None, None).unwrap();
    let options = Options {
        predict_tokens_opt: Some(tokens),
        ..Options::default()
    };
    let repository = TestRepository::new().with_model("credit_risk", 1, &example_model("credit_risk"));
    let gateway = TestGateway::start_with(&repository, options).await;
    // A message that declares a megabyte and stops after 100 kB, with no
    // token: refused at once, not read until the body timeout.
    let response = stalled_call(gateway.server.addr, 100_000).await;
    assert_eq!(
        response.headers().get("grpc-status").unwrap(),
        "16",
        "UNAUTHENTICATED"
    );
    assert_eq!(gateway.server.body_bytes_held(), 0);
    // With the token, the same model answers.
    let mut grpc = client(gateway.server.addr).await;
    let mut call = tonic::Request::new(credit_request("credit_risk", 1));
    call.metadata_mut()
        .insert("authorization", format!("Bearer {every}").parse().unwrap());
    assert!(grpc.model_infer(call).await.is_ok());
}
