//! Warming a version before it takes traffic: the requests its deployment
//! or `config.toml` names (Triton's `model_warmup`), or else synthetic
//! inputs searched for.
//!
//! A synthetic input must be one the model accepts, and a graph's dynamic
//! dims say nothing of the sizes it needs: a detector's `Concat` of feature
//! maps wants a few dozen pixels, an audio model's reflect `Pad` more
//! samples than its padding. So the search tries sizes from 1 up, in two
//! shapes each: the batch at 1 and every other dynamic dim at the size, then
//! every dynamic dim at the size (for a batch that is not on axis 0 of every
//! input, as a recurrent state's `[2, N, 128]`). A model that runs none of
//! them still serves, cold, unless the warm-up is strict: a warm-up is an
//! optimisation and a readiness signal, not a gate on a model that ONNX
//! Runtime itself runs. Configured requests are the user's word that the
//! model runs them: one that fails fails the load.

use std::time::{Duration, Instant};

use sluice_registry_client::warmup::{Fill, Warmup, WarmupRequest};

use crate::backend::{Session, contained};
use crate::error::{Error, Result};
use crate::signature::{Signature, TensorSpec};
use crate::tensor::{DataType, Tensor, TensorData};

/// The sizes a synthetic warm-up gives dynamic dims, in the order tried.
const SIZES: &[usize] = &[1, 2, 8, 32, 64, 128, 256, 512, 1024];
/// Synthetic inputs with more elements in all are not tried (16 MiB of
/// FP32): a 3x1024x1024 image fits.
const MAX_SYNTHETIC_ELEMENTS: usize = 1 << 22;
/// The search stops trying sizes after this long: a model that fails
/// slowly at every size serves cold instead of holding its load up.
const SEARCH_LIMIT: Duration = Duration::from_secs(5);

/// How a version's warm-up went: what it serves with, and what its model
/// metadata and metrics say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Warmth {
    /// Ran; `inputs` says with what (`"configured requests"`, or the
    /// synthetic sizes).
    Warm { inputs: String },
    /// No synthetic input ran; the version serves without a warm-up, and
    /// `reason` holds the engine's last refusal.
    Cold { reason: String },
}

impl Warmth {
    pub fn is_warm(&self) -> bool {
        matches!(self, Warmth::Warm { .. })
    }
}

/// Warms `session`; returns how, and the inputs that ran, to time warm
/// runs with. `Err` when a configured request fails, or a strict synthetic
/// warm-up finds nothing.
pub fn warm(session: &dyn Session, warmup: &Warmup) -> Result<(Warmth, Option<Vec<Tensor>>)> {
    let signature = session.signature();
    if !warmup.requests.is_empty() {
        let mut first = None;
        for (index, request) in warmup.requests.iter().enumerate() {
            let inputs = configured(signature, request)
                .map_err(|err| Error::Load(format!("warm-up request {index}: {err}")))?;
            contained(|| session.run(inputs.clone()))
                .map_err(|err| Error::Load(format!("warm-up request {index} failed: {err}")))?;
            first.get_or_insert(inputs);
        }
        let inputs = format!("{} configured request(s)", warmup.requests.len());
        return Ok((Warmth::Warm { inputs }, first));
    }
    let started = Instant::now();
    let mut last_error = String::new();
    let mut tried = Vec::new();
    for (label, inputs) in synthetic(signature) {
        if started.elapsed() > SEARCH_LIMIT {
            last_error = format!("stopped after {} s; {last_error}", SEARCH_LIMIT.as_secs());
            break;
        }
        match contained(|| session.run(inputs.clone())) {
            Ok(_) => return Ok((Warmth::Warm { inputs: label }, Some(inputs))),
            Err(err) => {
                last_error = err.to_string();
                tried.push(label);
            }
        }
    }
    let reason = format!(
        "no synthetic input ran (tried {}); the engine's last error: {last_error}",
        tried.join(", ")
    );
    if warmup.strict {
        return Err(Error::Load(format!("strict warm-up failed: {reason}")));
    }
    Ok((Warmth::Cold { reason }, None))
}

/// The synthetic candidates in the order tried, each with a label saying
/// its sizes: zeros, the batch at 1 and other dynamic dims at a size, then
/// every dynamic dim at that size. Duplicates and oversized ones are left out.
fn synthetic(signature: &Signature) -> Vec<(String, Vec<Tensor>)> {
    let mut seen: Vec<Vec<Vec<usize>>> = Vec::new();
    let mut candidates = Vec::new();
    for &size in SIZES {
        for batch_at_one in [true, false] {
            let shapes: Vec<Vec<usize>> = signature
                .inputs
                .iter()
                .map(|spec| synthetic_shape(spec, size, batch_at_one))
                .collect();
            let elements = shapes.iter().try_fold(0usize, |total, shape| {
                shape
                    .iter()
                    .try_fold(1usize, |n, &d| n.checked_mul(d))?
                    .checked_add(total)
            });
            let too_big = elements.is_none_or(|n| n > MAX_SYNTHETIC_ELEMENTS);
            if too_big || seen.contains(&shapes) {
                continue;
            }
            let label = match batch_at_one {
                true => format!("zeros, batch 1, other dynamic dims {size}"),
                false => format!("zeros, every dynamic dim {size}"),
            };
            let inputs = signature
                .inputs
                .iter()
                .zip(&shapes)
                .map(|(spec, shape)| Tensor {
                    shape: shape.clone(),
                    data: TensorData::zeros(spec.datatype, shape.iter().product()),
                })
                .collect();
            seen.push(shapes);
            candidates.push((label, inputs));
        }
    }
    candidates
}

/// `spec`'s shape with its dynamic dims at `size`, or its leading dynamic
/// dim at 1 when `batch_at_one`.
fn synthetic_shape(spec: &TensorSpec, size: usize, batch_at_one: bool) -> Vec<usize> {
    spec.shape
        .iter()
        .enumerate()
        .map(|(axis, &dim)| match usize::try_from(dim) {
            Ok(fixed) => fixed,
            Err(_) if axis == 0 && batch_at_one => 1,
            Err(_) => size,
        })
        .collect()
}

/// A configured request as inputs in signature order, checked against the
/// signature as a client's request would be.
fn configured(signature: &Signature, request: &WarmupRequest) -> Result<Vec<Tensor>> {
    if let Some(extra) = request
        .inputs
        .iter()
        .find(|input| signature.input_index(&input.name).is_none())
    {
        return Err(Error::Load(format!(
            "input '{}' is not an input of the model",
            extra.name
        )));
    }
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    signature
        .inputs
        .iter()
        .map(|spec| {
            let input = request
                .inputs
                .iter()
                .find(|input| input.name == spec.name)
                .ok_or_else(|| Error::Load(format!("input '{}' has no value", spec.name)))?;
            let shape: Vec<i64> = input.shape.iter().map(|&dim| dim as i64).collect();
            let (dims, count) = spec
                .check_request(spec.datatype, &shape)
                .map_err(|err| Error::Load(err.to_string()))?;
            let data = match (&input.data, input.fill) {
                (Some(values), _) if values.len() == count => TensorData::from_f64s(spec.datatype, values),
                (Some(values), _) => {
                    return Err(Error::Load(format!(
                        "input '{}': shape holds {count} values but data has {}",
                        spec.name,
                        values.len()
                    )));
                }
                (None, Some(Fill::Random)) => random(spec.datatype, count, &mut seed),
                (None, _) => TensorData::zeros(spec.datatype, count),
            };
            Ok(Tensor { shape: dims, data })
        })
        .collect()
}

/// Uniform in [0, 1) for floats, 0 or 1 otherwise, from a fixed seed
/// (xorshift): every load runs the same inputs.
fn random(datatype: DataType, count: usize, seed: &mut u64) -> TensorData {
    let values: Vec<f64> = (0..count)
        .map(|_| {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            let unit = (*seed >> 11) as f64 / (1u64 << 53) as f64;
            match datatype {
                DataType::F16 | DataType::F32 | DataType::F64 => unit,
                _ => unit.round(),
            }
        })
        .collect();
    TensorData::from_f64s(datatype, &values)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, shape: Vec<i64>) -> TensorSpec {
        TensorSpec {
            name: name.into(),
            datatype: DataType::F32,
            dim_symbols: vec![None; shape.len()],
            shape,
            labels: Vec::new(),
        }
    }

    #[test]
    fn synthetic_sizes_grow_and_keep_the_batch_at_one_first() {
        let signature = Signature {
            inputs: vec![spec("images", vec![-1, 3, -1, -1])],
            outputs: vec![],
        };
        let shapes: Vec<Vec<usize>> = synthetic(&signature)
            .into_iter()
            .map(|(_, inputs)| inputs[0].shape.clone())
            .collect();
        assert_eq!(shapes[0], vec![1, 3, 1, 1]);
        assert_eq!(shapes[1], vec![1, 3, 2, 2]);
        assert_eq!(shapes[2], vec![2, 3, 2, 2]);
        assert!(shapes.contains(&vec![1, 3, 32, 32]));
        assert!(shapes.contains(&vec![1, 3, 1024, 1024]));
        assert!(!shapes.contains(&vec![1024, 3, 1024, 1024]), "too large to try");
    }

    #[test]
    fn a_scalar_input_is_a_scalar_in_every_candidate() {
        let signature = Signature {
            inputs: vec![spec("audio", vec![-1, -1]), spec("sr", vec![])],
            outputs: vec![],
        };
        for (_, inputs) in synthetic(&signature) {
            assert!(inputs[1].shape.is_empty());
            assert_eq!(inputs[1].data.len(), 1);
        }
    }

    #[test]
    fn configured_requests_are_checked_against_the_signature() {
        use sluice_registry_client::warmup::WarmupInput;
        let signature = Signature {
            inputs: vec![spec("x", vec![-1, 4])],
            outputs: vec![],
        };
        let request = |name: &str, shape: Vec<u64>| WarmupRequest {
            inputs: vec![WarmupInput {
                name: name.into(),
                shape,
                data: None,
                fill: Some(Fill::Random),
            }],
        };
        let inputs = configured(&signature, &request("x", vec![2, 4])).unwrap();
        assert_eq!(inputs[0].shape, vec![2, 4]);
        let TensorData::F32(values) = &inputs[0].data else {
            panic!()
        };
        assert!(values.iter().all(|value| (0.0..1.0).contains(value)));
        assert!(
            values.iter().any(|&value| value != values[0]),
            "random, not constant"
        );
        let err = configured(&signature, &request("x", vec![2, 5]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("dimension 1 must be 4"), "{err}");
        let err = configured(&signature, &request("y", vec![2, 4]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("'y' is not an input"), "{err}");
    }
}
