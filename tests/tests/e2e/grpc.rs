//! The gRPC form of the Open Inference Protocol on the predict listener:
//! the clients users run (tritonclient.grpc and KServe's
//! InferenceGRPCClient, in Python, `tests/grpc/clients.py`) over h2c and
//! TLS, HTTP/1.1, h2c and gRPC on one port, the error codes and their
//! messages, and a canary, a shadow and the prediction log driven by gRPC
//! traffic alone.

mod clients;
pub(crate) mod core_path;
mod sides;

use std::net::SocketAddr;

use sluice_proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use sluice_proto::inference::model_infer_request::InferInputTensor;
use sluice_proto::inference::{InferTensorContents, ModelInferRequest};
use tonic::transport::Channel;

type Client = GrpcInferenceServiceClient<Channel>;

/// A gRPC client of `addr`, over h2c.
async fn client(addr: SocketAddr) -> Client {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    GrpcInferenceServiceClient::new(channel)
}

/// `rows` made-up applicants for a credit model named `model`, in typed contents.
fn credit_request(model: &str, rows: usize) -> ModelInferRequest {
    let inputs: Vec<serde_json::Value> = sluice_tests::CREDIT_FEATURES
        .iter()
        .enumerate()
        .map(|(index, name)| {
            let values: Vec<f32> = (0..rows).map(|row| (30 + index * 3 + row) as f32).collect();
            serde_json::json!({"name": name, "datatype": "FP32", "shape": [rows, 1], "data": values})
        })
        .collect();
    from_json(model, &serde_json::json!({ "inputs": inputs }))
}

/// A V2 JSON body of FP32 inputs as a gRPC request to `model`, in typed contents.
pub(crate) fn from_json(model: &str, body: &serde_json::Value) -> ModelInferRequest {
    let inputs = body["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|input| InferInputTensor {
            name: input["name"].as_str().unwrap().into(),
            datatype: input["datatype"].as_str().unwrap().into(),
            shape: input["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|dim| dim.as_i64().unwrap())
                .collect(),
            contents: Some(InferTensorContents {
                fp32_contents: sluice_tests::flatten(&input["data"])
                    .iter()
                    .map(|value| value.as_f64().unwrap() as f32)
                    .collect(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .collect();
    ModelInferRequest {
        model_name: model.into(),
        inputs,
        ..Default::default()
    }
}

/// A gRPC client of a test gateway.
pub(crate) async fn client_of(gateway: &sluice_tests::TestGateway) -> Client {
    client(gateway.server.addr).await
}
