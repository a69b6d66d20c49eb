//! Warm-up: the requests a version runs before it takes traffic, as
//! Triton's `model_warmup` (shapes with values), set per endpoint in the
//! deployment's traffic spec or in a repository model's `config.toml`.
//!
//! Without requests the gateway warms a version on synthetic inputs it
//! searches for (see `sluice_gateway::warmup`); a model that runs none of
//! them still serves, reported as not warmed, unless `strict` asks that it
//! fail to load instead.

use serde::{Deserialize, Serialize};

/// How a version is warmed before it takes traffic.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Warmup {
    /// A synthetic warm-up that finds no input the model runs fails the
    /// load, instead of serving the version unwarmed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub strict: bool,
    /// Run in order before the version takes traffic, instead of the
    /// synthetic warm-up; one that fails fails the load, with the engine's
    /// message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requests: Vec<WarmupRequest>,
}

/// One warm-up run: a value for every input of the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WarmupRequest {
    pub inputs: Vec<WarmupInput>,
}

/// One input of a warm-up run: its shape, and its values listed in `data`
/// (row-major) or made by `fill`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WarmupInput {
    pub name: String,
    pub shape: Vec<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Vec<f64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fill: Option<Fill>,
}

/// Values made for a warm-up input (Triton's `zero_data` and `random_data`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Fill {
    Zero,
    /// Uniform in [0, 1) for floats, 0 or 1 for integers and booleans: a
    /// value every input takes, seeded so each load runs the same inputs.
    Random,
}

impl Warmup {
    /// Warm-up requests at most: each runs before the version serves.
    pub const MAX_REQUESTS: usize = 16;
    /// Elements of one warm-up input at most (64 MiB of FP32).
    pub const MAX_ELEMENTS: u64 = 1 << 24;

    /// Why these requests cannot run, in words a user can act on.
    pub fn validate(&self) -> Result<(), String> {
        if self.requests.len() > Warmup::MAX_REQUESTS {
            return Err(format!(
                "warmup has {} requests: expected at most {}",
                self.requests.len(),
                Warmup::MAX_REQUESTS
            ));
        }
        for (index, request) in self.requests.iter().enumerate() {
            let at = |input: &WarmupInput| format!("warmup request {index}, input '{}'", input.name);
            if request.inputs.is_empty() {
                return Err(format!("warmup request {index} has no inputs"));
            }
            for (position, input) in request.inputs.iter().enumerate() {
                if request.inputs[..position]
                    .iter()
                    .any(|other| other.name == input.name)
                {
                    return Err(format!("{}: named twice", at(input)));
                }
                let elements = input
                    .shape
                    .iter()
                    .try_fold(1u64, |count, &dim| count.checked_mul(dim))
                    .filter(|&count| count <= Warmup::MAX_ELEMENTS)
                    .ok_or_else(|| {
                        format!(
                            "{}: shape {:?} has more than {} elements",
                            at(input),
                            input.shape,
                            Warmup::MAX_ELEMENTS
                        )
                    })?;
                match (&input.data, input.fill) {
                    (Some(_), Some(_)) => return Err(format!("{}: give data or fill, not both", at(input))),
                    (None, None) => {
                        return Err(format!(
                            "{}: expected data (values, row-major) or fill (\"zero\" or \"random\")",
                            at(input)
                        ));
                    }
                    (Some(data), None) if data.len() as u64 != elements => {
                        return Err(format!(
                            "{}: shape {:?} holds {elements} values but data has {}",
                            at(input),
                            input.shape,
                            data.len()
                        ));
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(name: &str, shape: Vec<u64>, data: Option<Vec<f64>>, fill: Option<Fill>) -> WarmupInput {
        WarmupInput {
            name: name.into(),
            shape,
            data,
            fill,
        }
    }

    fn warmup(inputs: Vec<WarmupInput>) -> Warmup {
        Warmup {
            strict: false,
            requests: vec![WarmupRequest { inputs }],
        }
    }

    #[test]
    fn each_mistake_is_named() {
        let cases = [
            (warmup(vec![]), "has no inputs"),
            (
                warmup(vec![input("x", vec![2], Some(vec![1.0]), None)]),
                "holds 2 values but data has 1",
            ),
            (warmup(vec![input("x", vec![2], None, None)]), "expected data"),
            (
                warmup(vec![input("x", vec![1], Some(vec![1.0]), Some(Fill::Zero))]),
                "not both",
            ),
            (
                warmup(vec![input("x", vec![1 << 20, 1 << 20], None, Some(Fill::Zero))]),
                "more than",
            ),
            (
                warmup(vec![
                    input("x", vec![1], None, Some(Fill::Zero)),
                    input("x", vec![1], None, Some(Fill::Zero)),
                ]),
                "named twice",
            ),
        ];
        for (warmup, expected) in cases {
            let err = warmup.validate().unwrap_err();
            assert!(err.contains(expected), "{err} should say {expected}");
        }
        let scalar = warmup(vec![input("sr", vec![], Some(vec![16000.0]), None)]);
        assert_eq!(scalar.validate(), Ok(()));
    }

    #[test]
    fn reads_as_users_write_it() {
        let text = r#"{"strict": true, "requests": [{"inputs": [
            {"name": "audio", "shape": [1, 512], "fill": "random"},
            {"name": "sr", "shape": [], "data": [16000]}]}]}"#;
        let warmup: Warmup = serde_json::from_str(text).unwrap();
        assert!(warmup.strict);
        assert_eq!(warmup.requests[0].inputs[1].data, Some(vec![16000.0]));
        assert_eq!(warmup.requests[0].inputs[0].fill, Some(Fill::Random));
    }
}
