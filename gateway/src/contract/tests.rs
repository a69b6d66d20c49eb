//! The checker on hand-made tensors: each kind of check, its message, what
//! the model does not carry, and that a clean request breaks nothing.

use std::collections::BTreeMap;

use super::*;
use crate::signature::TensorSpec;
use crate::tensor::{DataType, TensorData};

fn spec(name: &str, shape: Vec<i64>) -> TensorSpec {
    TensorSpec {
        name: name.into(),
        datatype: DataType::F32,
        dim_symbols: vec![Some("N".into()); 1]
            .into_iter()
            .chain(std::iter::repeat_n(None, shape.len() - 1))
            .collect(),
        shape,
        labels: Vec::new(),
    }
}

fn signature() -> Signature {
    Signature {
        inputs: vec![
            spec("age", vec![-1, 1]),
            spec("income", vec![-1, 1]),
            spec("loan_amount", vec![-1]),
            spec("region", vec![-1, 1]),
            spec("scores", vec![-1, 2]),
        ],
        outputs: vec![],
    }
}

fn column(values: &[f32]) -> Tensor {
    Tensor {
        shape: vec![values.len(), 1],
        data: TensorData::F32(values.to_vec()),
    }
}

fn contract() -> DataContract {
    let feature =
        |min: Option<f64>, max: Option<f64>, categories: Option<&[&str]>, nullable: bool| FeatureContract {
            min,
            max,
            categories: categories.map(|list| list.iter().map(|c| c.to_string()).collect()),
            nullable,
        };
    DataContract {
        features: BTreeMap::from([
            ("age".into(), feature(Some(18.0), Some(100.0), None, false)),
            ("income".into(), feature(Some(0.0), None, None, true)),
            ("region".into(), feature(None, None, Some(&["1", "2"]), false)),
            ("scores[1]".into(), feature(Some(0.0), Some(1.0), None, false)),
            ("zip".into(), feature(None, None, None, false)),
        ]),
        rules: vec!["loan_amount <= 50 * income".into(), "zip > 0".into()],
    }
}

/// Three rows: clean; age too low and region unknown; loan too large and scores[1] above 1.
fn inputs() -> Vec<Tensor> {
    vec![
        column(&[30.0, 12.0, 40.0]),
        column(&[1000.0, 2000.0, 100.0]),
        Tensor {
            shape: vec![3],
            data: TensorData::F32(vec![5000.0, 1000.0, 9000.0]),
        },
        column(&[1.0, 7.0, 2.0]),
        Tensor {
            shape: vec![3, 2],
            data: TensorData::F32(vec![0.5, 0.5, 0.2, 0.8, 0.0, 1.5]),
        },
    ]
}

#[test]
fn each_check_reports_its_row_and_value() {
    let checker = ContractChecker::new(&contract(), &signature(), "credit", "1");
    assert_eq!(checker.unmatched(), ["zip".to_string(), "zip > 0".to_string()]);
    let violations = checker.check(&inputs());
    assert_eq!(violations.count, 4, "{:?}", violations.shown);
    let text = violations.shown.join("; ");
    assert!(text.contains("row 1: age = 12 is below its minimum 18"), "{text}");
    assert!(
        text.contains("row 1: region = 7 is not one of its categories"),
        "{text}"
    );
    assert!(
        text.contains("row 2: rule 'loan_amount <= 50 * income' fails (9000 <= 5000 is false)"),
        "{text}"
    );
    assert!(
        text.contains("row 2: scores[1] = 1.5 is above its maximum 1"),
        "{text}"
    );
    let err = violations.into_error();
    assert_eq!(err.status(), axum::http::StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        err.to_string()
            .starts_with("the request breaks the model's data contract: row 1"),
        "{err}"
    );
}

#[test]
fn values_at_a_bound_in_fp32_are_within_it() {
    let mut contract = contract();
    contract.features.get_mut("age").unwrap().max = Some(0.1);
    contract.features.get_mut("age").unwrap().min = Some(0.1);
    contract.rules = vec!["loan_amount <= 0.1 * income".into()];
    let checker = ContractChecker::new(&contract, &signature(), "credit", "1");
    let mut request = inputs();
    request[0] = column(&[0.1, 0.1, 0.1]);
    request[1] = column(&[10.0, 10.0, 10.0]);
    request[2] = Tensor {
        shape: vec![3],
        data: TensorData::F32(vec![1.0, 1.0, 1.0]),
    };
    request[3] = column(&[1.0, 2.0, 1.0]);
    request[4] = Tensor {
        shape: vec![3, 2],
        data: TensorData::F32(vec![0.5; 6]),
    };
    let violations = checker.check(&request);
    assert!(violations.is_empty(), "{:?}", violations.shown);
}

#[test]
fn missing_values_break_only_features_that_may_not_be_missing() {
    let checker = ContractChecker::new(&contract(), &signature(), "credit", "1");
    let mut request = inputs();
    request[0] = column(&[30.0, f32::NAN, 40.0]);
    request[1] = column(&[1000.0, f32::NAN, f32::NAN]);
    request[3] = column(&[1.0, 1.0, 2.0]);
    request[4] = Tensor {
        shape: vec![3, 2],
        data: TensorData::F32(vec![0.5, 0.5, 0.2, 0.8, 0.0, 1.0]),
    };
    let violations = checker.check(&request);
    // age may not be missing; income may, and a rule on a missing value is not judged.
    assert_eq!(violations.count, 1, "{:?}", violations.shown);
    assert!(violations.shown[0].contains("row 1: age is missing (NaN) and may not be"));
}

#[test]
fn a_clean_request_breaks_nothing_and_a_long_list_is_cut() {
    let checker = ContractChecker::new(&contract(), &signature(), "credit", "1");
    let clean: Vec<Tensor> = inputs()
        .into_iter()
        .map(|tensor| Tensor {
            shape: {
                let mut shape = tensor.shape.clone();
                shape[0] = 1;
                shape
            },
            data: match tensor.data {
                TensorData::F32(values) => {
                    TensorData::F32(values[..tensor.shape.get(1).copied().unwrap_or(1)].to_vec())
                }
                other => other,
            },
        })
        .collect();
    assert!(checker.check(&clean).is_empty());

    let many: Vec<Tensor> = vec![
        column(&[1.0; 8]),
        column(&[1.0; 8]),
        Tensor {
            shape: vec![8],
            data: TensorData::F32(vec![1.0; 8]),
        },
        column(&[1.0; 8]),
        Tensor {
            shape: vec![8, 2],
            data: TensorData::F32(vec![0.5; 16]),
        },
    ];
    let violations = checker.check(&many);
    assert_eq!(violations.count, 8);
    assert_eq!(violations.shown.len(), SHOWN_VIOLATIONS);
    assert!(violations.into_error().to_string().ends_with("; and 3 more"));
}

#[test]
fn string_features_are_checked_by_their_text() {
    let signature = Signature {
        inputs: vec![TensorSpec {
            name: "color".into(),
            datatype: DataType::Bytes,
            shape: vec![-1],
            dim_symbols: vec![Some("N".into())],
            labels: Vec::new(),
        }],
        outputs: vec![],
    };
    let contract = DataContract {
        features: BTreeMap::from([(
            "color".into(),
            FeatureContract {
                min: None,
                max: None,
                categories: Some(vec!["red".into(), "blue".into()]),
                nullable: false,
            },
        )]),
        rules: vec![],
    };
    let checker = ContractChecker::new(&contract, &signature, "strings", "1");
    let words = Tensor {
        shape: vec![3],
        data: TensorData::Bytes(vec![b"red".to_vec(), b"teal".to_vec(), Vec::new()]),
    };
    let violations = checker.check(&[words]);
    assert_eq!(violations.count, 2, "{:?}", violations.shown);
    assert!(
        violations.shown[0].contains("row 1: color = 'teal' is not one of its categories"),
        "{:?}",
        violations.shown
    );
    assert!(
        violations.shown[1].contains("row 2: color is missing (empty)"),
        "{:?}",
        violations.shown
    );
}
