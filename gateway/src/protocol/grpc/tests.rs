use sluice_proto::inference::model_infer_request::{InferInputTensor, InferRequestedOutputTensor};

use super::*;

fn spec(name: &str, datatype: DataType, shape: &[i64]) -> TensorSpec {
    TensorSpec {
        name: name.into(),
        datatype,
        shape: shape.to_vec(),
        dim_symbols: shape
            .iter()
            .map(|&dim| (dim < 0).then(|| "N".to_string()))
            .collect(),
        labels: Vec::new(),
    }
}

/// Two inputs sharing the batch dim, one score output.
fn signature() -> Signature {
    Signature {
        inputs: vec![
            spec("x", DataType::F32, &[-1, 2]),
            spec("words", DataType::Bytes, &[-1]),
        ],
        outputs: vec![spec("scores", DataType::F32, &[-1, 3])],
    }
}

fn input(name: &str, datatype: &str, shape: &[i64]) -> InferInputTensor {
    InferInputTensor {
        name: name.into(),
        datatype: datatype.into(),
        shape: shape.to_vec(),
        ..Default::default()
    }
}

fn words_wire(words: &[&[u8]]) -> Vec<u8> {
    let mut wire = Vec::new();
    for word in words {
        wire.extend_from_slice(&(word.len() as u32).to_le_bytes());
        wire.extend_from_slice(word);
    }
    wire
}

fn raw_request() -> ModelInferRequest {
    let x: Vec<u8> = [1.0f32, 2.0, 3.0, 4.0]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    ModelInferRequest {
        model_name: "m".into(),
        id: "req-1".into(),
        inputs: vec![input("words", "BYTES", &[2]), input("x", "FP32", &[2, 2])],
        raw_input_contents: vec![words_wire(&[b"cat", b""]).into(), x.into()],
        ..Default::default()
    }
}

fn refusal(message: ModelInferRequest) -> String {
    match decode(message, &signature()) {
        Err(Error::BadRequest(message)) => message,
        other => panic!("expected a bad request, got {other:?}"),
    }
}

#[test]
fn raw_contents_decode_in_signature_order() {
    let request = decode(raw_request(), &signature()).unwrap();
    assert_eq!(request.id.as_deref(), Some("req-1"));
    assert_eq!(request.inputs[0].shape, vec![2, 2]);
    assert_eq!(request.inputs[0].data, TensorData::F32(vec![1.0, 2.0, 3.0, 4.0]));
    assert_eq!(
        request.inputs[1].data,
        TensorData::Bytes(vec![b"cat".to_vec(), Vec::new()])
    );
    // Every output, raw.
    assert_eq!(request.outputs.len(), 1);
    assert!(request.outputs[0].binary);
}

#[test]
fn typed_contents_decode_as_raw_ones_do() {
    let mut message = raw_request();
    message.raw_input_contents.clear();
    message.inputs[0].contents = Some(InferTensorContents {
        bytes_contents: vec![b"cat".to_vec(), Vec::new()],
        ..Default::default()
    });
    message.inputs[1].contents = Some(InferTensorContents {
        fp32_contents: vec![1.0, 2.0, 3.0, 4.0],
        ..Default::default()
    });
    let typed = decode(message, &signature()).unwrap();
    let raw = decode(raw_request(), &signature()).unwrap();
    assert_eq!(typed.inputs, raw.inputs);
}

#[test]
fn values_that_do_not_fit_their_shape_are_refused_with_what_was_expected() {
    let mut short = raw_request();
    short.raw_input_contents[1] = vec![0u8; 12].into();
    assert_eq!(
        refusal(short),
        "input 'x': raw_input_contents holds 12 bytes but its shape takes 4 FP32 elements (16 bytes)"
    );
    let mut typed = raw_request();
    typed.raw_input_contents.clear();
    typed.inputs[1].contents = Some(InferTensorContents {
        fp32_contents: vec![1.0],
        ..Default::default()
    });
    typed.inputs[0].contents = Some(InferTensorContents {
        bytes_contents: vec![b"a".to_vec(), b"b".to_vec()],
        ..Default::default()
    });
    assert_eq!(
        refusal(typed),
        "input 'x': shape needs 4 elements, data has 1 (in contents.fp32_contents)"
    );
    let mut cut = raw_request();
    cut.raw_input_contents[0] = vec![9, 0, 0, 0, b'c'].into();
    assert!(refusal(cut).starts_with("input 'words': BYTES in raw_input_contents: element 0 of 2"));
}

#[test]
fn raw_contents_are_one_per_input_or_none() {
    let mut message = raw_request();
    message.raw_input_contents.pop();
    assert_eq!(
        refusal(message),
        "raw_input_contents holds 1 tensors for 2 inputs: give one per input, in the order of 'inputs', or none"
    );
    let mut both = raw_request();
    both.inputs[1].contents = Some(InferTensorContents {
        fp32_contents: vec![1.0, 2.0, 3.0, 4.0],
        ..Default::default()
    });
    assert_eq!(
        refusal(both),
        "input 'x': give its values in raw_input_contents or in contents, not both"
    );
    let mut none = raw_request();
    none.raw_input_contents.clear();
    assert_eq!(
        refusal(none),
        "input 'words': expected its values in raw_input_contents or contents"
    );
}

#[test]
fn names_datatypes_and_shapes_are_checked_as_for_json() {
    let mut unknown = raw_request();
    unknown.inputs[1].name = "y".into();
    assert_eq!(
        refusal(unknown),
        "unknown input 'y': the model takes 'x', 'words'"
    );
    let mut datatype = raw_request();
    datatype.inputs[1].datatype = "FP99".into();
    assert_eq!(
        refusal(datatype),
        "input 'x': model expects datatype FP32, got unsupported datatype 'FP99'"
    );
    let mut batch = raw_request();
    batch.inputs[0].shape = vec![3];
    batch.raw_input_contents[0] = words_wire(&[b"a", b"b", b"c"]).into();
    assert!(refusal(batch).contains("dim"), "the shared batch dim disagrees");
}

#[test]
fn typed_integers_that_do_not_fit_are_refused() {
    let signature = Signature {
        inputs: vec![spec("small", DataType::I8, &[2])],
        outputs: vec![spec("scores", DataType::F32, &[-1, 3])],
    };
    let mut small = input("small", "INT8", &[2]);
    small.contents = Some(InferTensorContents {
        int_contents: vec![1, 300],
        ..Default::default()
    });
    let message = ModelInferRequest {
        inputs: vec![small],
        ..Default::default()
    };
    match decode(message, &signature) {
        Err(Error::BadRequest(message)) => assert_eq!(message, "input 'small': 300 does not fit in INT8"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn parameters_read_as_their_json_forms() {
    let mut message = raw_request();
    message.parameters.insert(
        "timeout".into(),
        InferParameter {
            parameter_choice: Some(ParameterChoice::Int64Param(2_500)),
        },
    );
    message.outputs = vec![InferRequestedOutputTensor {
        name: "scores".into(),
        parameters: [(
            "classification".to_string(),
            InferParameter {
                parameter_choice: Some(ParameterChoice::Int64Param(2)),
            },
        )]
        .into(),
    }];
    let request = decode(message, &signature()).unwrap();
    assert_eq!(request.timeout_opt, Some(std::time::Duration::from_micros(2_500)));
    assert_eq!(request.outputs[0].classes_opt, Some(2));
    let mut wrong = raw_request();
    wrong.parameters.insert(
        "timeout".into(),
        InferParameter {
            parameter_choice: Some(ParameterChoice::StringParam("soon".into())),
        },
    );
    assert!(refusal(wrong).starts_with("request: parameters.timeout must be a non-negative integer"));
}
