//! The binary tensor extension both ways, and gzip both ways, as tritonclient
//! uses them.

use std::io::{Read, Write};

use serde_json::{Value, json};
use sluice_tests::{TestGateway, TestRepository, assert_outputs_match, example_model, fixture};

fn digits_pixels() -> Vec<f32> {
    let reference = fixture("digits");
    let data = &reference["request"]["inputs"][0]["data"];
    data.as_array()
        .unwrap()
        .iter()
        .flat_map(|row| row.as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32))
        .collect()
}

/// Splits a binary-extension response into its JSON header and binary tail.
fn split(headers: &reqwest::header::HeaderMap, body: &[u8]) -> (Value, Vec<u8>) {
    let length: usize = headers["inference-header-content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    (
        serde_json::from_slice(&body[..length]).unwrap(),
        body[length..].to_vec(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_inputs_and_outputs_round_trip() {
    let repository = TestRepository::new().with_model("digits", 1, &example_model("digits"));
    let gateway = TestGateway::start(&repository).await;
    let pixels = digits_pixels();
    let rows = pixels.len() / 64;
    let header = serde_json::to_vec(&json!({
        "inputs": [{ "name": "pixels", "shape": [rows, 64], "datatype": "FP32",
                     "parameters": { "binary_data_size": pixels.len() * 4 } }],
        "parameters": { "binary_data_output": true }
    }))
    .unwrap();
    let mut body = header.clone();
    for value in &pixels {
        body.extend_from_slice(&value.to_le_bytes());
    }
    let response = gateway
        .post_raw(
            "/v2/models/digits/infer",
            &[("inference-header-content-length", header.len().to_string())],
            body,
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/octet-stream");
    let headers = response.headers().clone();
    let bytes = response.bytes().await.unwrap();
    let (json_header, tail) = split(&headers, &bytes);

    let outputs = json_header["outputs"].as_array().unwrap();
    assert_eq!(outputs[0]["name"], "label");
    assert_eq!(outputs[0]["parameters"]["binary_data_size"], rows * 8);
    assert!(outputs[0].get("data").is_none());
    assert_eq!(outputs[1]["parameters"]["binary_data_size"], rows * 10 * 4);
    assert_eq!(tail.len(), rows * 8 + rows * 40);

    // Decode the binary outputs and hold them to the ONNX Runtime reference.
    let labels: Vec<Value> = tail[..rows * 8]
        .chunks_exact(8)
        .map(|c| json!(i64::from_le_bytes(c.try_into().unwrap())))
        .collect();
    let probabilities: Vec<Value> = tail[rows * 8..]
        .chunks_exact(4)
        .map(|c| json!(f32::from_le_bytes(c.try_into().unwrap())))
        .collect();
    let decoded = json!([
        { "name": "label", "datatype": outputs[0]["datatype"], "shape": outputs[0]["shape"], "data": labels },
        { "name": "probabilities", "datatype": outputs[1]["datatype"], "shape": outputs[1]["shape"], "data": probabilities },
    ]);
    assert_outputs_match(&decoded, &fixture("digits")["outputs"], 1e-5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_output_binary_flag_mixes_json_and_binary() {
    let repository = TestRepository::new().with_model("digits", 1, &example_model("digits"));
    let gateway = TestGateway::start(&repository).await;
    let mut request = fixture("digits")["request"].clone();
    request["outputs"] = json!([
        { "name": "label", "parameters": { "binary_data": false } },
        { "name": "probabilities", "parameters": { "binary_data": true } }
    ]);
    let response = gateway
        .post_raw(
            "/v2/models/digits/infer",
            &[],
            serde_json::to_vec(&request).unwrap(),
        )
        .await;
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    let bytes = response.bytes().await.unwrap();
    let (json_header, tail) = split(&headers, &bytes);
    assert_eq!(json_header["outputs"][0]["data"].as_array().unwrap().len(), 6);
    assert_eq!(
        json_header["outputs"][1]["parameters"]["binary_data_size"],
        6 * 10 * 4
    );
    assert_eq!(tail.len(), 240);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_requests_and_responses() {
    let repository = TestRepository::new().with_model("digits", 1, &example_model("digits"));
    let gateway = TestGateway::start(&repository).await;
    let reference = fixture("digits");
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder
        .write_all(&serde_json::to_vec(&reference["request"]).unwrap())
        .unwrap();
    let compressed = encoder.finish().unwrap();
    let response = gateway
        .post_raw(
            "/v2/models/digits/infer",
            &[
                ("content-encoding", "gzip".to_string()),
                ("accept-encoding", "gzip".to_string()),
            ],
            compressed,
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-encoding"], "gzip");
    let bytes = response.bytes().await.unwrap();
    let mut text = String::new();
    flate2::read::GzDecoder::new(&bytes[..])
        .read_to_string(&mut text)
        .unwrap();
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_outputs_match(&body["outputs"], &reference["outputs"], 1e-5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fp16_binary_round_trip_on_both_engines() {
    for backend in ["tract", "ort"] {
        let repository = TestRepository::new()
            .with_model("all_types", 1, &example_model("all_types"))
            .with_config("all_types", &format!("backend = \"{backend}\""));
        let gateway = TestGateway::start(&repository).await;
        let reference = fixture("all_types");
        let mut request = reference["request"].clone();
        // Send FP16 and BOOL as binary, the rest as JSON; ask for binary outputs.
        let fp16: [u16; 6] = [0x3800, 0xBD00, 0x7BFF, 0x0000, 0x4200, 0xC000]; // 0.5 -1.25 65504 0 3 -2
        let bools: [u8; 6] = [1, 0, 1, 0, 0, 1];
        let mut tail = Vec::new();
        for input in request["inputs"].as_array_mut().unwrap() {
            match input["datatype"].as_str().unwrap() {
                "FP16" => {
                    input.as_object_mut().unwrap().remove("data");
                    input["parameters"] = json!({ "binary_data_size": 12 });
                    fp16.iter()
                        .for_each(|bits| tail.extend_from_slice(&bits.to_le_bytes()));
                }
                "BOOL" => {
                    input.as_object_mut().unwrap().remove("data");
                    input["parameters"] = json!({ "binary_data_size": 6 });
                    tail.extend_from_slice(&bools);
                }
                _ => {}
            }
        }
        request["outputs"] = json!([
            { "name": "out_fp16", "parameters": { "binary_data": true } },
            { "name": "out_bool", "parameters": { "binary_data": true } },
            { "name": "out_int64" }
        ]);
        let mut body = serde_json::to_vec(&request).unwrap();
        let header_length = body.len();
        body.extend_from_slice(&tail);
        let response = gateway
            .post_raw(
                "/v2/models/all_types/infer",
                &[("inference-header-content-length", header_length.to_string())],
                body,
            )
            .await;
        assert_eq!(response.status(), 200, "{backend}");
        let headers = response.headers().clone();
        let bytes = response.bytes().await.unwrap();
        let (json_header, binary) = split(&headers, &bytes);
        assert_eq!(json_header["outputs"][0]["datatype"], "FP16");
        // BOOL and the FP16 tail come back byte for byte (FP16 first, as asked).
        let mut expected = Vec::new();
        fp16.iter()
            .for_each(|bits| expected.extend_from_slice(&bits.to_le_bytes()));
        expected.extend_from_slice(&bools);
        assert_eq!(binary, expected, "{backend}");
        assert_eq!(
            json_header["outputs"][2]["data"],
            json!([-9223372036854775808_i64, 0, 9223372036854775807_i64, -1, 2, -3]),
            "{backend}"
        );
    }
}
