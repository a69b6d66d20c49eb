//! A loaded model version: its signature, its session, and the checks that
//! stand between a decoded request and the engine.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::backend::{BackendKind, Session};
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

/// A model version ready to serve: immutable, shared by every request that
/// routed to it, dropped when the last of them finishes after a swap.
pub struct LoadedModel {
    pub name: String,
    pub version: u64,
    /// `version` as text, kept to answer `model_version` without formatting.
    pub version_label: String,
    pub backend: BackendKind,
    pub signature: Signature,
    pub session: Arc<dyn Session>,
    /// Where requests queue to be run together, when the model is batched.
    pub batcher_opt: Option<crate::batcher::Batcher>,
    /// Fast enough to run on the thread that read the request: the hand-off
    /// to a compute thread and back would cost more than the run. Cleared
    /// for good once a run takes longer than [`crate::watchdog::INLINE_LIMIT`].
    runs_inline: AtomicBool,
    /// Its runs in flight, for the watchdog (shared with `session`).
    pub watch: Arc<crate::watchdog::RunWatch>,
    pub metrics: crate::metrics::ModelMetrics,
    /// Counts since the last report to the registry.
    pub stats: crate::stats::VersionStats,
    /// This version's last answers, while it is a canary.
    pub guard: crate::guard::Guard,
    /// Its features' counts in its reference profile's bins, once the
    /// profile is known (a registry version that has one).
    pub drift: std::sync::OnceLock<crate::drift::DriftCounter>,
    /// Its data contract, once known (a registry version that has one).
    pub contract: std::sync::OnceLock<crate::contract::ContractChecker>,
    /// Its card's slice feature, read for the prediction log.
    pub slicer: std::sync::OnceLock<crate::predlog::Slicer>,
    /// Registered the first time this version shadows, so that versions
    /// that never do add no series.
    shadow_metrics: std::sync::OnceLock<crate::shadow::ShadowMetrics>,
}

impl LoadedModel {
    pub fn new(name: &str, version: u64, backend: BackendKind, session: Box<dyn Session>) -> Arc<Self> {
        let watch = Arc::new(crate::watchdog::RunWatch::default());
        let session = Arc::new(crate::watchdog::WatchedSession::new(session, watch.clone()));
        LoadedModel::new_with(name, version, backend, session, watch, None, false)
    }

    /// `session` must report its runs to `watch` (a
    /// [`crate::watchdog::WatchedSession`] on it).
    pub fn new_with(
        name: &str,
        version: u64,
        backend: BackendKind,
        session: Arc<dyn Session>,
        watch: Arc<crate::watchdog::RunWatch>,
        batcher_opt: Option<crate::batcher::Batcher>,
        runs_inline: bool,
    ) -> Arc<Self> {
        let version_label = version.to_string();
        Arc::new(LoadedModel {
            name: name.to_string(),
            version,
            metrics: crate::metrics::ModelMetrics::new(name, &version_label),
            version_label,
            backend,
            signature: session.signature().clone(),
            session,
            batcher_opt,
            runs_inline: AtomicBool::new(runs_inline),
            watch,
            shadow_metrics: std::sync::OnceLock::new(),
            stats: crate::stats::VersionStats::default(),
            guard: crate::guard::Guard::default(),
            drift: std::sync::OnceLock::new(),
            contract: std::sync::OnceLock::new(),
            slicer: std::sync::OnceLock::new(),
        })
    }

    pub fn shadow_metrics(&self) -> &crate::shadow::ShadowMetrics {
        self.shadow_metrics
            .get_or_init(|| crate::shadow::ShadowMetrics::new(&self.name, &self.version_label))
    }

    /// Whether a request runs on the thread that read it (see `runs_inline`).
    pub fn runs_inline(&self) -> bool {
        self.runs_inline.load(Ordering::Relaxed)
    }

    /// From now on, requests run on the compute pool: a run took too long
    /// for the thread that reads requests.
    pub fn stop_inline(&self) {
        if self.runs_inline.swap(false, Ordering::Relaxed) {
            tracing::info!(
                model = %self.name,
                version = self.version,
                limit_ms = crate::watchdog::INLINE_LIMIT.as_millis() as u64,
                "a run took longer than an inline run may: this version runs on the compute pool from now on"
            );
        }
    }

    /// Runs inputs given in signature order; outputs come back in signature order.
    pub fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        self.session.run(inputs)
    }

    /// [`LoadedModel::run`] unless it would wait for a busy engine; then the
    /// inputs come back.
    pub fn try_run(&self, inputs: Vec<Tensor>) -> std::result::Result<Result<Vec<Tensor>>, Vec<Tensor>> {
        self.session.try_run(inputs)
    }
}

impl std::fmt::Debug for LoadedModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedModel")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
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
