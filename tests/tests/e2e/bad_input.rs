//! Every client mistake is a 4xx with `{"error": "..."}` naming the tensor and
//! what was expected; never a 500, never a panic.

use serde_json::{Value, json};
use sluice_tests::{Options, TestGateway, TestRepository, error_message, example_model};

async fn gateway() -> TestGateway {
    let repository = TestRepository::new().with_model("digits", 1, &example_model("digits"));
    TestGateway::start(&repository).await
}

fn pixels(shape: Value, datatype: &str, data: Value) -> Value {
    json!({ "inputs": [{ "name": "pixels", "shape": shape, "datatype": datatype, "data": data }] })
}

fn zeros(count: usize) -> Value {
    Value::Array(vec![json!(0.0); count])
}

async fn expect_error(gateway: &TestGateway, path: &str, body: &Value, status: u16, fragments: &[&str]) {
    let (got, response) = gateway.post_json(path, body).await;
    assert_eq!(got, status, "{response}");
    let message = error_message(&response);
    for fragment in fragments {
        assert!(
            message.contains(fragment),
            "'{message}' should contain '{fragment}'"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_model_or_version_is_404() {
    let gateway = gateway().await;
    let body = pixels(json!([1, 64]), "FP32", zeros(64));
    expect_error(
        &gateway,
        "/v2/models/nope/infer",
        &body,
        404,
        &["unknown model 'nope'"],
    )
    .await;
    expect_error(
        &gateway,
        "/v2/models/digits/versions/3/infer",
        &body,
        404,
        &["unknown version 3"],
    )
    .await;
    expect_error(
        &gateway,
        "/v2/models/digits/versions/latest/infer",
        &body,
        404,
        &["unknown version latest"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tensor_mistakes_are_400_naming_the_tensor() {
    let gateway = gateway().await;
    let path = "/v2/models/digits/infer";
    let cases: Vec<(Value, Vec<&str>)> = vec![
        (
            json!({ "inputs": [{ "name": "image", "shape": [1, 64], "datatype": "FP32", "data": zeros(64) }] }),
            vec!["unknown input 'image'", "'pixels'"],
        ),
        (json!({ "inputs": [] }), vec!["missing input 'pixels'"]),
        (
            pixels(json!([1, 64]), "INT64", zeros(64)),
            vec!["'pixels'", "expects datatype FP32, got INT64"],
        ),
        (
            pixels(json!([1, 64]), "BYTES", zeros(64)),
            vec!["'pixels'", "expects datatype FP32, got BYTES"],
        ),
        (
            pixels(json!([1, 64]), "STRING", zeros(64)),
            vec!["'pixels'", "FP32", "unsupported datatype 'STRING'"],
        ),
        (
            pixels(json!([64]), "FP32", zeros(64)),
            vec!["'pixels'", "expected rank 2", "[-1, 64]"],
        ),
        (
            pixels(json!([1, 63]), "FP32", zeros(63)),
            vec!["'pixels'", "dimension 1 must be 64"],
        ),
        (
            pixels(json!([2, 64]), "FP32", zeros(64)),
            vec!["'pixels'", "needs 128 elements, data has 64"],
        ),
        (
            pixels(json!([1, 64]), "FP32", zeros(65)),
            vec!["'pixels'", "more than the 64 elements"],
        ),
        (
            pixels(json!([-1, 64]), "FP32", zeros(64)),
            vec!["'pixels'", "dimension 0 is negative"],
        ),
        (
            pixels(json!([9_223_372_036_854_775_807_i64, 64]), "FP32", zeros(64)),
            vec!["'pixels'", "more elements than"],
        ),
        (
            pixels(json!([1, 64]), "FP32", json!(["a"])),
            vec!["'pixels'", "FP32 values"],
        ),
        (
            pixels(json!([1, 64]), "FP32", json!(null)),
            vec!["'pixels'", "expected 'data'"],
        ),
        (
            json!({ "inputs": [
                { "name": "pixels", "shape": [1, 64], "datatype": "FP32", "data": zeros(64) },
                { "name": "pixels", "shape": [1, 64], "datatype": "FP32", "data": zeros(64) }
            ] }),
            vec!["'pixels' is given more than once"],
        ),
        (
            json!({ "inputs": [{ "name": "pixels", "shape": [1, 64], "datatype": "FP32", "data": zeros(64) }],
                    "outputs": [{ "name": "logits" }] }),
            vec!["unknown output 'logits'", "'label'", "'probabilities'"],
        ),
        (json!({ "inputs": "pixels" }), vec!["invalid inference request"]),
        (
            json!({ "id": 7, "inputs": [] }),
            vec!["invalid inference request"],
        ),
    ];
    for (body, fragments) in &cases {
        expect_error(&gateway, path, body, 400, fragments).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_deeply_nested_json_is_400() {
    let gateway = gateway().await;
    let response = gateway
        .post_raw("/v2/models/digits/infer", &[], b"{\"inputs\": [".to_vec())
        .await;
    let (status, body) = sluice_tests::read_json(response).await;
    assert_eq!(status, 400);
    assert!(error_message(&body).contains("invalid inference request"));

    let nested = format!("{}0.0{}", "[".repeat(40), "]".repeat(40));
    let text =
        format!(r#"{{"inputs":[{{"name":"pixels","shape":[1,64],"datatype":"FP32","data":{nested}}}]}}"#);
    let response = gateway
        .post_raw("/v2/models/digits/infer", &[], text.into_bytes())
        .await;
    let (status, body) = sluice_tests::read_json(response).await;
    assert_eq!(status, 400);
    assert!(
        error_message(&body).contains("nested deeper than 32 levels"),
        "{body}"
    );

    // Deeper than serde_json's own recursion limit (128), outside `data`.
    let text = format!(
        r#"{{"inputs":[],"parameters":{{"deep":{}1{}}}}}"#,
        "[".repeat(200),
        "]".repeat(200)
    );
    let response = gateway
        .post_raw("/v2/models/digits/infer", &[], text.into_bytes())
        .await;
    let (status, body) = sluice_tests::read_json(response).await;
    assert_eq!(status, 400);
    assert!(error_message(&body).contains("recursion limit"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_bodies_are_413_even_when_compressed() {
    let repository = TestRepository::new().with_model("digits", 1, &example_model("digits"));
    let options = Options {
        max_request_bytes: 4096,
        ..Options::default()
    };
    let gateway = TestGateway::start_with(&repository, options).await;
    let big = serde_json::to_vec(&pixels(json!([20, 64]), "FP32", zeros(20 * 64))).unwrap();
    assert!(big.len() > 4096);
    let response = gateway
        .post_raw("/v2/models/digits/infer", &[], big.clone())
        .await;
    let (status, body) = sluice_tests::read_json(response).await;
    assert_eq!(status, 413);
    assert!(error_message(&body).contains("limit of 4096 bytes"));

    // Small on the wire, too big once inflated: a gzip bomb is refused as well.
    let compressed = sluice_tests_gzip(&big);
    assert!(compressed.len() < 4096);
    let response = gateway
        .post_raw(
            "/v2/models/digits/infer",
            &[("content-encoding", "gzip".to_string())],
            compressed,
        )
        .await;
    let (status, _) = sluice_tests::read_json(response).await;
    assert_eq!(status, 413);

    let response = gateway
        .post_raw(
            "/v2/models/digits/infer",
            &[("content-encoding", "br".to_string())],
            b"{}".to_vec(),
        )
        .await;
    let (status, body) = sluice_tests::read_json(response).await;
    assert_eq!(status, 415);
    assert!(error_message(&body).contains("expected gzip"));

    let response = gateway
        .post_raw(
            "/v2/models/digits/infer",
            &[("content-encoding", "gzip".to_string())],
            b"not gzip".to_vec(),
        )
        .await;
    let (status, body) = sluice_tests::read_json(response).await;
    assert_eq!(status, 400);
    assert!(error_message(&body).contains("not valid Gzip data"), "{body}");
}

fn sluice_tests_gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_sizes_that_do_not_add_up_are_400() {
    let gateway = gateway().await;
    let header = |size: usize| {
        serde_json::to_vec(&json!({ "inputs": [{
            "name": "pixels", "shape": [1, 64], "datatype": "FP32",
            "parameters": { "binary_data_size": size }
        }] }))
        .unwrap()
    };
    // (JSON header, binary tail, declared header length, expected message)
    type Case = (Vec<u8>, Vec<u8>, Option<usize>, &'static str);
    let cases: Vec<Case> = vec![
        (
            header(255),
            vec![0; 255],
            None,
            "binary_data_size is 255 bytes but 64 FP32 elements take 256 bytes",
        ),
        (
            header(256),
            vec![0; 100],
            None,
            "only 100 bytes of binary data remain",
        ),
        (header(256), vec![0; 300], None, "44 bytes of binary data follow"),
        (
            header(256),
            vec![0; 256],
            Some(100_000),
            "Inference-Header-Content-Length is 100000",
        ),
    ];
    for (json, tail, declared, expected) in cases {
        let (status, body) = sluice_tests::read_json(send_split(&gateway, json, tail, declared).await).await;
        assert_eq!(status, 400, "{body}");
        assert!(
            error_message(&body).contains(expected),
            "'{}' should contain '{expected}'",
            error_message(&body)
        );
    }
    let response = gateway
        .post_raw(
            "/v2/models/digits/infer",
            &[("inference-header-content-length", "ten".to_string())],
            b"{}".to_vec(),
        )
        .await;
    let (status, body) = sluice_tests::read_json(response).await;
    assert_eq!(status, 400);
    assert!(error_message(&body).contains("Inference-Header-Content-Length must be"));
    // binary_data_size without the header that splits the body.
    let (status, body) = gateway
        .post_json(
            "/v2/models/digits/infer",
            &serde_json::from_slice(&header(256)).unwrap(),
        )
        .await;
    assert_eq!(status, 400);
    assert!(error_message(&body).contains("needs the Inference-Header-Content-Length header"));
}

/// Sends `json` then `tail`, declaring `declared` (default: the JSON's length)
/// as the header length.
async fn send_split(
    gateway: &TestGateway,
    json: Vec<u8>,
    tail: Vec<u8>,
    declared: Option<usize>,
) -> reqwest::Response {
    let length = declared.unwrap_or(json.len());
    let mut body = json;
    body.extend(tail);
    gateway
        .post_raw(
            "/v2/models/digits/infer",
            &[("inference-header-content-length", length.to_string())],
            body,
        )
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_sizes_that_disagree_across_inputs_are_400() {
    let repository = TestRepository::new().with_model("credit_risk", 1, &example_model("credit_risk"));
    let gateway = TestGateway::start(&repository).await;
    let mut request = sluice_tests::fixture("credit_risk")["request"].clone();
    // Eight rows for every feature but income, which gets seven.
    request["inputs"][1]["shape"] = json!([7, 1]);
    request["inputs"][1]["data"].as_array_mut().unwrap().pop();
    let (status, body) = gateway.post_json("/v2/models/credit_risk/infer", &request).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        error_message(&body).contains("input 'income': dimension 0 (N) is 7 but input 'age' has 8"),
        "{body}"
    );
}

/// A chunked body has no Content-Length to refuse early: the limit holds
/// while it streams in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_bodies_over_the_limit_are_413() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let repository = TestRepository::new().with_model("digits", 1, &example_model("digits"));
    let options = Options {
        max_request_bytes: 4096,
        ..Options::default()
    };
    let gateway = TestGateway::start_with(&repository, options).await;
    let mut stream = tokio::net::TcpStream::connect(gateway.server.addr).await.unwrap();
    let head = "POST /v2/models/digits/infer HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n";
    stream.write_all(head.as_bytes()).await.unwrap();
    let chunk = vec![b' '; 1024];
    for _ in 0..8 {
        // The server may answer and close before every chunk is written.
        if stream
            .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
            .await
            .is_err()
            || stream.write_all(&chunk).await.is_err()
            || stream.write_all(b"\r\n").await.is_err()
        {
            break;
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.read_to_end(&mut answer),
    )
    .await;
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(
        text.contains(r#"{"error":"request body is larger than the limit of 4096 bytes"}"#),
        "{text}"
    );
}

/// A full inference queue answers 503 with Retry-After at once, and the
/// requests it admitted all succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_compute_queue_answers_503_with_retry_after() {
    let repository = TestRepository::new().with_model("digits", 1, &example_model("digits"));
    let options = Options {
        compute_queue: 1,
        compute_threads: 1,
        ..Options::default()
    };
    let gateway = std::sync::Arc::new(TestGateway::start_with(&repository, options).await);
    // Big requests (2,000 rows) so that decoding keeps the one thread busy.
    let body = serde_json::to_vec(&pixels(json!([2000, 64]), "FP32", zeros(2000 * 64))).unwrap();
    let requests: Vec<_> = (0..32)
        .map(|_| {
            let (gateway, body) = (gateway.clone(), body.clone());
            tokio::spawn(async move { gateway.post_raw("/v2/models/digits/infer", &[], body).await })
        })
        .collect();
    let (mut ok, mut refused) = (0, 0);
    for request in requests {
        let response = request.await.unwrap();
        match response.status().as_u16() {
            200 => ok += 1,
            503 => {
                assert_eq!(response.headers()["retry-after"], "1");
                let (_, body) = sluice_tests::read_json(response).await;
                assert!(error_message(&body).contains("overloaded"), "{body}");
                refused += 1;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(ok >= 1, "nothing was admitted");
    assert!(
        refused >= 1,
        "32 concurrent requests never overflowed a queue of one"
    );
}
