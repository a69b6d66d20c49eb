//! What a model takes and gives: each input's and output's name, datatype
//! and shape (with the names of its symbolic dims), and the checks a
//! decoded request must pass against them before it reaches an engine.

use crate::error::{Error, Result};
use crate::tensor::{DataType, Tensor};

/// Name, datatype and shape of one input or output; `-1` marks a dynamic dim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSpec {
    pub name: String,
    pub datatype: DataType,
    pub shape: Vec<i64>,
    /// The symbol of each dynamic dim, where dims of several inputs must
    /// agree: the ONNX `dim_param` name, or `N` for an unnamed leading dim
    /// (the batch). `None` for fixed and unnamed inner dims.
    pub dim_symbols: Vec<Option<String>>,
    /// The class of each column of a score output, where the graph names
    /// them (skl2onnx's `ZipMap`); empty otherwise.
    pub labels: Vec<String>,
}

/// What a model takes and gives, read from the ONNX graph.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
}

impl Signature {
    pub fn input_index(&self, name: &str) -> Option<usize> {
        self.inputs.iter().position(|spec| spec.name == name)
    }

    pub fn output_index(&self, name: &str) -> Option<usize> {
        self.outputs.iter().position(|spec| spec.name == name)
    }

    /// Checks that dynamic dims sharing a symbol got the same size in every
    /// input (a batch of 2 ages and 3 incomes is the client's mistake, not
    /// an engine failure).
    pub fn check_shared_dims(&self, shapes: &[&[usize]]) -> Result<()> {
        let mut seen: Vec<(&str, usize, &str)> = Vec::new();
        for (spec, shape) in self.inputs.iter().zip(shapes) {
            for (axis, symbol) in spec.dim_symbols.iter().enumerate() {
                let (Some(symbol), Some(&size)) = (symbol, shape.get(axis)) else {
                    continue;
                };
                match seen.iter().find(|(s, _, _)| s == symbol) {
                    Some((_, first, other)) if *first != size => {
                        return Err(Error::bad_request(format!(
                            "input '{}': dimension {axis} ({symbol}) is {size} but input '{other}' has {first}; \
                             they must agree",
                            spec.name
                        )));
                    }
                    Some(_) => {}
                    None => seen.push((symbol, size, &spec.name)),
                }
            }
        }
        Ok(())
    }

    /// One tensor of zeros per input, dynamic dims set to 1: the warm-up batch.
    pub fn zero_inputs(&self) -> Vec<Tensor> {
        self.inputs
            .iter()
            .map(|spec| {
                let shape: Vec<usize> = spec
                    .shape
                    .iter()
                    .map(|&dim| usize::try_from(dim).unwrap_or(1))
                    .collect();
                let len = shape.iter().product();
                Tensor {
                    shape,
                    data: crate::tensor::TensorData::zeros(spec.datatype, len),
                }
            })
            .collect()
    }
}

impl TensorSpec {
    /// Checks a request's datatype and shape against this spec and returns the
    /// element count the data must have.
    pub fn check_request(&self, datatype: DataType, shape: &[i64]) -> Result<(Vec<usize>, usize)> {
        let name = &self.name;
        if datatype != self.datatype {
            return Err(Error::bad_request(format!(
                "input '{name}': model expects datatype {}, got {datatype}",
                self.datatype
            )));
        }
        if shape.len() != self.shape.len() {
            return Err(Error::bad_request(format!(
                "input '{name}': expected rank {} (model shape {}), got shape {}",
                self.shape.len(),
                format_shape(&self.shape),
                format_shape(shape)
            )));
        }
        let mut dims = Vec::with_capacity(shape.len());
        let mut count: usize = 1;
        for (axis, (&got, &want)) in shape.iter().zip(&self.shape).enumerate() {
            let Ok(dim) = usize::try_from(got) else {
                return Err(Error::bad_request(format!(
                    "input '{name}': dimension {axis} is negative in shape {}",
                    format_shape(shape)
                )));
            };
            if want >= 0 && got != want {
                return Err(Error::bad_request(format!(
                    "input '{name}': dimension {axis} must be {want} (model shape {}), got {got}",
                    format_shape(&self.shape)
                )));
            }
            // An empty batch asks nothing, and engines differ on it (some
            // fail). Other axes may be empty on purpose (a KV cache's
            // first step, an empty history).
            if axis == 0 && dim == 0 && want < 0 {
                return Err(Error::bad_request(format!(
                    "input '{name}': dimension {axis} is 0 in shape {}: a request needs at least one element",
                    format_shape(shape)
                )));
            }
            count = count.checked_mul(dim).ok_or_else(|| {
                Error::bad_request(format!(
                    "input '{name}': shape {} has more elements than this server can address",
                    format_shape(shape)
                ))
            })?;
            dims.push(dim);
        }
        Ok((dims, count))
    }
}

pub fn format_shape(shape: &[i64]) -> String {
    let dims: Vec<String> = shape.iter().map(i64::to_string).collect();
    format!("[{}]", dims.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> TensorSpec {
        TensorSpec {
            name: "x".into(),
            datatype: DataType::F32,
            shape: vec![-1, 4],
            dim_symbols: vec![Some("N".into()), None],
            labels: Vec::new(),
        }
    }

    #[test]
    fn shared_batch_dims_must_agree() {
        let mut other = spec();
        other.name = "y".into();
        let signature = Signature {
            inputs: vec![spec(), other],
            outputs: vec![],
        };
        assert!(signature.check_shared_dims(&[&[2, 4], &[2, 4]]).is_ok());
        let err = signature
            .check_shared_dims(&[&[2, 4], &[3, 4]])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("input 'y': dimension 0 (N) is 3 but input 'x' has 2"),
            "{err}"
        );
    }

    #[test]
    fn accepts_dynamic_batch_and_counts_elements() {
        let (dims, count) = spec().check_request(DataType::F32, &[3, 4]).unwrap();
        assert_eq!(dims, vec![3, 4]);
        assert_eq!(count, 12);
    }

    #[test]
    fn rejects_each_mismatch_with_a_message_naming_the_input() {
        let cases: [(DataType, &[i64], &str); 5] = [
            (DataType::I64, &[1, 4], "model expects datatype FP32, got INT64"),
            (DataType::F32, &[4], "expected rank 2"),
            (DataType::F32, &[1, 5], "dimension 1 must be 4"),
            (DataType::F32, &[-1, 4], "dimension 0 is negative"),
            (DataType::F32, &[i64::MAX, 4], "more elements than"),
        ];
        for (datatype, shape, expected) in cases {
            let err = spec().check_request(datatype, shape).unwrap_err().to_string();
            assert!(err.contains("input 'x'"), "{err}");
            assert!(err.contains(expected), "{err} should contain {expected}");
        }
    }
}
