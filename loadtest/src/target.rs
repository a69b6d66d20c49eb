//! Targets and their request bodies, all built once before the run.
//!
//! A target is `[WEIGHT=]URL`; bodies come from files (rotated), optionally
//! re-encoded with the binary tensor extension, or are generated from the
//! model's metadata (random tensors of the declared shapes and datatypes).

use bytes::Bytes;
use hyper::Uri;
use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::http::Protocol;
use crate::schedule::SplitMix;

/// One request body, ready to send.
#[derive(Debug, Clone)]
pub struct Payload {
    pub body: Bytes,
    /// `Inference-Header-Content-Length` for a binary-extension body.
    pub header_length_opt: Option<usize>,
}

#[derive(Debug, Clone)]
pub struct Target {
    pub endpoint: crate::http::Endpoint,
    pub weight: u32,
    pub payloads: Vec<Payload>,
}

impl Target {
    pub fn new(url: Uri, weight: u32, protocol: Protocol, payloads: Vec<Payload>) -> Target {
        Target {
            endpoint: crate::http::Endpoint::new(url, protocol),
            weight,
            payloads,
        }
    }

    pub fn url(&self) -> &Uri {
        &self.endpoint.url
    }
}

/// Parses `[WEIGHT=]URL`; only plain `http://` is spoken.
pub fn parse_target(text: &str) -> Result<(Uri, u32)> {
    let (weight, url) = match text.split_once('=') {
        Some((weight, url)) if !weight.is_empty() && weight.bytes().all(|b| b.is_ascii_digit()) => {
            let weight: u32 = weight
                .parse()
                .map_err(|_| Error::usage(format!("target '{text}': weight too large")))?;
            (weight, url)
        }
        _ => (1, text),
    };
    if !(1..=1_000_000).contains(&weight) {
        return Err(Error::usage(format!(
            "target '{text}': weight must be from 1 to 1000000"
        )));
    }
    let uri: Uri = url
        .parse()
        .map_err(|err| Error::usage(format!("target '{text}': not a URL: {err}")))?;
    if uri.scheme_str() != Some("http") || uri.authority().is_none() {
        return Err(Error::usage(format!(
            "target '{text}': expected http://HOST[:PORT]/PATH (https is not supported)"
        )));
    }
    Ok((uri, weight))
}

/// How a V2 JSON request goes on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Encoding {
    Json,
    /// The binary tensor extension.
    Binary,
    /// A gRPC `ModelInferRequest` to this model and version.
    Grpc((String, String)),
}

/// A JSON body from a file, checked to be a V2 request.
pub fn payload_from_json(text: &[u8], origin: &str, encoding: &Encoding) -> Result<Payload> {
    let request: Value = serde_json::from_slice(text)
        .map_err(|err| Error::usage(format!("body {origin}: not JSON: {err}")))?;
    if !request.get("inputs").is_some_and(Value::is_array) {
        return Err(Error::usage(format!(
            "body {origin}: expected a V2 request with an 'inputs' list"
        )));
    }
    match encoding {
        Encoding::Json => Ok(Payload {
            body: Bytes::copy_from_slice(text),
            header_length_opt: None,
        }),
        Encoding::Binary => to_binary(&request, origin),
        Encoding::Grpc(model) => to_grpc(&request, model, origin),
    }
}

/// Re-encodes a JSON V2 request with every input's data as binary, and asks
/// for binary outputs, as `tritonclient` does by default.
pub fn to_binary(request: &Value, origin: &str) -> Result<Payload> {
    let mut header = request.clone();
    let mut tail = Vec::new();
    let inputs = header["inputs"]
        .as_array_mut()
        .ok_or_else(|| Error::usage(format!("body {origin}: 'inputs' is not a list")))?;
    for input in inputs.iter_mut() {
        let name = input["name"].as_str().unwrap_or("?").to_string();
        let datatype = input["datatype"].as_str().unwrap_or("").to_string();
        let mut values = Vec::new();
        flatten(&input["data"], &mut values);
        let before = tail.len();
        for value in &values {
            encode(value, &datatype, &mut tail)
                .map_err(|why| Error::usage(format!("body {origin}: input '{name}': {why}")))?;
        }
        let object = input
            .as_object_mut()
            .ok_or_else(|| Error::usage(format!("body {origin}: input '{name}' is not an object")))?;
        object.remove("data");
        object.insert(
            "parameters".into(),
            json!({ "binary_data_size": tail.len() - before }),
        );
    }
    header["parameters"] = json!({ "binary_data_output": true });
    let mut body = serde_json::to_vec(&header).expect("a JSON value serializes");
    let header_length = body.len();
    body.extend_from_slice(&tail);
    Ok(Payload {
        body: Bytes::from(body),
        header_length_opt: Some(header_length),
    })
}

/// The model and version an infer URL names:
/// `/v2/models/{m}/infer` or `/v2/models/{m}/versions/{v}/infer`.
pub fn model_of(infer: &Uri) -> Result<(String, String)> {
    let path = infer.path();
    let named = path
        .strip_prefix("/v2/models/")
        .and_then(|rest| rest.strip_suffix("/infer"))
        .filter(|rest| !rest.is_empty())
        .ok_or_else(|| {
            Error::usage(format!(
                "--grpc needs a /v2/models/MODEL[/versions/V]/infer URL, got {infer}"
            ))
        })?;
    Ok(match named.split_once("/versions/") {
        Some((model, version)) => (model.to_string(), version.to_string()),
        None => (named.to_string(), String::new()),
    })
}

/// A JSON V2 request as the gRPC `ModelInferRequest` tritonclient sends
/// (every input in `raw_input_contents`), framed as a gRPC message.
pub fn to_grpc(request: &Value, (model, version): &(String, String), origin: &str) -> Result<Payload> {
    use sluice_proto::inference::ModelInferRequest;
    use sluice_proto::inference::model_infer_request::InferInputTensor;
    let inputs = request["inputs"]
        .as_array()
        .ok_or_else(|| Error::usage(format!("body {origin}: 'inputs' is not a list")))?;
    let mut message = ModelInferRequest {
        model_name: model.clone(),
        model_version: version.clone(),
        id: request["id"].as_str().unwrap_or_default().to_string(),
        ..Default::default()
    };
    for input in inputs {
        let name = input["name"].as_str().unwrap_or("?").to_string();
        let datatype = input["datatype"].as_str().unwrap_or("").to_string();
        let shape = input["shape"]
            .as_array()
            .ok_or_else(|| Error::usage(format!("body {origin}: input '{name}' has no shape")))?
            .iter()
            .map(|dim| dim.as_i64().unwrap_or(-1))
            .collect();
        let mut values = Vec::new();
        flatten(&input["data"], &mut values);
        let mut raw = Vec::new();
        for value in &values {
            encode(value, &datatype, &mut raw)
                .map_err(|why| Error::usage(format!("body {origin}: input '{name}': {why}")))?;
        }
        message.raw_input_contents.push(raw.into());
        message.inputs.push(InferInputTensor {
            name,
            datatype,
            shape,
            ..Default::default()
        });
    }
    let encoded = prost::Message::encode_to_vec(&message);
    let length = u32::try_from(encoded.len())
        .map_err(|_| Error::usage(format!("body {origin}: over 4 GiB, too large for a gRPC message")))?;
    // A gRPC message on the wire: not compressed (0), its length, itself.
    let mut framed = Vec::with_capacity(5 + encoded.len());
    framed.push(0);
    framed.extend_from_slice(&length.to_be_bytes());
    framed.extend_from_slice(&encoded);
    Ok(Payload {
        body: Bytes::from(framed),
        header_length_opt: None,
    })
}

fn flatten(value: &Value, out: &mut Vec<Value>) {
    match value {
        Value::Array(items) => items.iter().for_each(|item| flatten(item, out)),
        other => out.push(other.clone()),
    }
}

fn encode(value: &Value, datatype: &str, out: &mut Vec<u8>) -> std::result::Result<(), String> {
    let bad = || format!("value {value} is not a valid {datatype}");
    let int = || value.as_i64().ok_or_else(bad);
    let uint = || value.as_u64().ok_or_else(bad);
    let float = || value.as_f64().ok_or_else(bad);
    match datatype {
        "BOOL" => out.push(u8::from(value.as_bool().ok_or_else(bad)?)),
        "UINT8" => out.push(u8::try_from(uint()?).map_err(|_| bad())?),
        "UINT16" => out.extend(u16::try_from(uint()?).map_err(|_| bad())?.to_le_bytes()),
        "UINT32" => out.extend(u32::try_from(uint()?).map_err(|_| bad())?.to_le_bytes()),
        "UINT64" => out.extend(uint()?.to_le_bytes()),
        "INT8" => out.extend(i8::try_from(int()?).map_err(|_| bad())?.to_le_bytes()),
        "INT16" => out.extend(i16::try_from(int()?).map_err(|_| bad())?.to_le_bytes()),
        "INT32" => out.extend(i32::try_from(int()?).map_err(|_| bad())?.to_le_bytes()),
        "INT64" => out.extend(int()?.to_le_bytes()),
        "FP32" => out.extend((float()? as f32).to_le_bytes()),
        "FP64" => out.extend(float()?.to_le_bytes()),
        other => return Err(format!("datatype {other} cannot be sent as binary by this tool")),
    }
    Ok(())
}

/// The metadata URL of an infer URL: `.../v2/models/m[/versions/v]`.
pub fn metadata_url(infer: &Uri) -> Result<Uri> {
    let path = infer.path();
    let base = path
        .strip_suffix("/infer")
        .ok_or_else(|| Error::usage(format!("--from-metadata needs an .../infer URL, got {infer}")))?;
    let authority = infer.authority().map_or("", |a| a.as_str());
    format!("http://{authority}{base}")
        .parse()
        .map_err(|err| Error::usage(format!("metadata URL for {infer}: {err}")))
}

/// `count` bodies of random tensors shaped as the metadata declares, with
/// dynamic dims set to `batch`.
pub fn payloads_from_metadata(
    metadata: &Value,
    batch: usize,
    count: usize,
    seed: u64,
    encoding: &Encoding,
) -> Result<Vec<Payload>> {
    let inputs = metadata["inputs"]
        .as_array()
        .ok_or_else(|| Error::Setup(format!("model metadata has no 'inputs' list: {metadata}")))?;
    let mut random = SplitMix::new(seed);
    (0..count.max(1))
        .map(|_| {
            let tensors = inputs
                .iter()
                .map(|input| random_tensor(input, batch, &mut random))
                .collect::<Result<Vec<_>>>()?;
            let request = json!({ "inputs": tensors });
            match encoding {
                Encoding::Json => Ok(Payload {
                    body: Bytes::from(serde_json::to_vec(&request).expect("a JSON value serializes")),
                    header_length_opt: None,
                }),
                Encoding::Binary => to_binary(&request, "from metadata"),
                Encoding::Grpc(model) => to_grpc(&request, model, "from metadata"),
            }
        })
        .collect()
}

/// The most elements a generated tensor may have (a guard against metadata
/// that declares huge fixed dims).
const MAX_GENERATED_ELEMENTS: usize = 16 * 1024 * 1024;

fn random_tensor(input: &Value, batch: usize, random: &mut SplitMix) -> Result<Value> {
    let name = input["name"]
        .as_str()
        .ok_or_else(|| Error::Setup(format!("input without a name: {input}")))?;
    let datatype = input["datatype"].as_str().unwrap_or("");
    let shape: Vec<usize> = input["shape"]
        .as_array()
        .ok_or_else(|| Error::Setup(format!("input '{name}' has no shape")))?
        .iter()
        .map(|dim| match dim.as_i64() {
            Some(fixed) if fixed >= 0 => fixed as usize,
            _ => batch,
        })
        .collect();
    let count = shape
        .iter()
        .try_fold(1usize, |count, &dim| count.checked_mul(dim))
        .filter(|&count| count <= MAX_GENERATED_ELEMENTS)
        .ok_or_else(|| {
            Error::Setup(format!(
                "input '{name}': shape {shape:?} has more than {MAX_GENERATED_ELEMENTS} elements to generate"
            ))
        })?;
    let data: Vec<Value> = (0..count)
        .map(|_| match datatype {
            "BOOL" => Ok(json!(random.unit() < 0.5)),
            "UINT8" | "UINT16" | "UINT32" | "UINT64" => Ok(json!(random.next_u64() % 100)),
            "INT8" | "INT16" | "INT32" | "INT64" => Ok(json!((random.next_u64() % 200) as i64 - 100)),
            "FP16" | "FP32" | "FP64" => Ok(json!(random.unit() * 2.0 - 1.0)),
            other => Err(Error::Setup(format!(
                "input '{name}': cannot generate datatype '{other}'"
            ))),
        })
        .collect::<Result<_>>()?;
    Ok(json!({ "name": name, "shape": shape, "datatype": datatype, "data": data }))
}

/// Picks a target by weight.
pub fn pick<'a>(targets: &'a [Target], total_weight: u64, random: &mut SplitMix) -> &'a Target {
    if targets.len() == 1 || total_weight == 0 {
        return &targets[0];
    }
    let mut point = random.next_u64() % total_weight;
    for target in targets {
        if point < u64::from(target.weight) {
            return target;
        }
        point -= u64::from(target.weight);
    }
    &targets[targets.len() - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_take_an_optional_weight() {
        let (uri, weight) = parse_target("3=http://127.0.0.1:8080/v2/models/m/infer").unwrap();
        assert_eq!((uri.path(), weight), ("/v2/models/m/infer", 3));
        assert_eq!(parse_target("http://h/x").unwrap().1, 1);
        assert!(parse_target("0=http://h/x").is_err());
        assert!(parse_target("https://h/x").is_err());
        assert!(parse_target("not a url").is_err());
    }

    #[test]
    fn binary_bodies_carry_the_same_values() {
        let request = json!({ "inputs": [
            { "name": "x", "shape": [1, 2], "datatype": "FP32", "data": [[1.5, -2.0]] },
            { "name": "k", "shape": [1], "datatype": "INT64", "data": [7] }
        ] });
        let payload = to_binary(&request, "test").unwrap();
        let length = payload.header_length_opt.unwrap();
        let header: Value = serde_json::from_slice(&payload.body[..length]).unwrap();
        assert_eq!(header["inputs"][0]["parameters"]["binary_data_size"], 8);
        assert_eq!(header["inputs"][1]["parameters"]["binary_data_size"], 8);
        assert!(header["inputs"][0].get("data").is_none());
        let tail = &payload.body[length..];
        assert_eq!(&tail[..4], &1.5f32.to_le_bytes());
        assert_eq!(&tail[8..], &7i64.to_le_bytes());
    }

    #[test]
    fn metadata_bodies_follow_the_declared_shapes() {
        let metadata = json!({ "inputs": [{ "name": "pixels", "datatype": "FP32", "shape": [-1, 64] }] });
        let payloads = payloads_from_metadata(&metadata, 2, 3, 1, &Encoding::Json).unwrap();
        assert_eq!(payloads.len(), 3);
        let body: Value = serde_json::from_slice(&payloads[0].body).unwrap();
        assert_eq!(body["inputs"][0]["shape"], json!([2, 64]));
        assert_eq!(body["inputs"][0]["data"].as_array().unwrap().len(), 128);
        assert_ne!(payloads[0].body, payloads[1].body, "rotated bodies differ");
    }

    #[test]
    fn grpc_bodies_are_framed_messages_with_raw_contents() {
        let request = json!({ "id": "r1", "inputs": [
            { "name": "x", "shape": [1, 2], "datatype": "FP32", "data": [[1.5, -2.0]] }
        ] });
        let url: Uri = "http://h:1/v2/models/m/versions/3/infer".parse().unwrap();
        let named = model_of(&url).unwrap();
        assert_eq!(named, ("m".to_string(), "3".to_string()));
        let payload = to_grpc(&request, &named, "test").unwrap();
        assert_eq!(payload.body[0], 0, "not compressed");
        let length = u32::from_be_bytes(payload.body[1..5].try_into().unwrap()) as usize;
        assert_eq!(length, payload.body.len() - 5);
        let message: sluice_proto::inference::ModelInferRequest =
            prost::Message::decode(&payload.body[5..]).unwrap();
        assert_eq!(
            (
                message.model_name.as_str(),
                message.model_version.as_str(),
                message.id.as_str()
            ),
            ("m", "3", "r1")
        );
        assert_eq!(message.inputs[0].shape, vec![1, 2]);
        let raw: Vec<u8> = [1.5f32, -2.0]
            .iter()
            .flat_map(|value| value.to_le_bytes())
            .collect();
        assert_eq!(message.raw_input_contents[0].as_ref(), raw.as_slice());
        assert!(model_of(&"http://h/v2/models//infer".parse().unwrap()).is_err());
        assert!(model_of(&"http://h/v2/health/ready".parse().unwrap()).is_err());
    }

    #[test]
    fn weights_split_the_picks() {
        let make = |weight| Target::new("http://h/x".parse().unwrap(), weight, Protocol::Http1, vec![]);
        let targets = vec![make(3), make(1)];
        let mut random = SplitMix::new(1);
        let first = (0..10_000)
            .filter(|_| std::ptr::eq(pick(&targets, 4, &mut random), &targets[0]))
            .count();
        assert!((7_200..7_800).contains(&first), "{first}");
    }
}
