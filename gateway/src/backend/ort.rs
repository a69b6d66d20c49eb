//! The ONNX Runtime engine through `ort`, with the library loaded at run time
//! (`load-dynamic`), so nothing is downloaded at build time.
//!
//! `ort::Session::run` takes `&mut self`: each model holds a small pool of
//! sessions and a run takes whichever is free, so concurrent requests do not
//! queue on one lock. Each run has its own `RunOptions`, kept where the
//! watchdog can reach it: a hung run is terminated at its next node. The
//! pool's sessions share one copy of the model's weights ([`weights`]).

mod weights;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use ort::environment::Environment;
use ort::session::{RunOptions, Session as OrtSession};
use ort::value::{DynValue, Tensor as OrtTensor};

use super::{Backend, Session};
use crate::error::{Error, Result};
use crate::signature::Signature;
use crate::tensor::{DataType, Tensor, TensorData};

/// ONNX Runtime allows one environment per process, and the library can be
/// loaded only once: every server in the process shares it.
static ENVIRONMENT: OnceLock<std::result::Result<Environment, String>> = OnceLock::new();

pub struct OrtBackend {
    environment: Environment,
    sessions_per_model: usize,
    intra_threads: usize,
}

impl OrtBackend {
    pub fn new(
        library: &Path,
        sessions_per_model: usize,
        intra_threads: usize,
    ) -> std::result::Result<Self, String> {
        let environment = ENVIRONMENT
            .get_or_init(|| {
                let builder = ort::init_from(library)
                    .map_err(|err| format!("cannot load ONNX Runtime from {}: {err}", library.display()))?;
                builder
                    .with_name("sluice")
                    .build()
                    .map_err(|err| format!("cannot start ONNX Runtime: {err}"))
            })
            .clone()?;
        Ok(OrtBackend {
            environment,
            sessions_per_model: sessions_per_model.max(1),
            intra_threads: intra_threads.max(1),
        })
    }

    /// One session of the pool; `shared` are the weights it reads from
    /// Sluice's copy instead of its own (none for a pool of one).
    fn new_session(&self, artifact: &[u8], shared: &SharedWeights) -> Result<OrtSession> {
        let mut builder = OrtSession::builder(&self.environment)
            .map_err(load_error)?
            .with_intra_threads(self.intra_threads)
            .map_err(load_error)?
            .with_inter_threads(1)
            .map_err(load_error)?;
        if !shared.is_empty() {
            builder = builder
                .with_prepacking(false)
                .map_err(load_error)?
                .with_execution_providers([ort::ep::CPU::default().with_arena_allocator(false).build()])
                .map_err(load_error)?;
            for (name, tensor) in shared {
                builder = builder
                    .with_initializer(name, tensor.clone())
                    .map_err(load_error)?;
            }
        }
        builder.commit_from_memory(artifact).map_err(load_error)
    }

    /// The model's pool of sessions, and the weights they share (each
    /// session holds them for its life: dropping these frees nothing).
    fn pool(&self, artifact: &[u8], signature: &Signature) -> Result<(OrtPool, SharedWeights)> {
        // A lone session owns its weights, pre-packed: ONNX Runtime frees the
        // originals once packed, so that is one copy too, and the faster GEMM.
        let weights = if self.sessions_per_model > 1 {
            weights::shared_initializers(artifact)?
                .into_iter()
                .map(|(name, tensor)| Ok((name, Arc::new(to_ort(tensor)?))))
                .collect::<Result<Vec<_>>>()?
        } else {
            Vec::new()
        };
        let sessions = (0..self.sessions_per_model)
            .map(|_| self.new_session(artifact, &weights).map(Mutex::new))
            .collect::<Result<Vec<_>>>()?;
        let pool = OrtPool {
            running: sessions.iter().map(|_| ArcSwapOption::empty()).collect(),
            sessions,
            next: AtomicUsize::new(0),
            signature: signature.clone(),
        };
        Ok((pool, weights))
    }
}

/// A session that ONNX Runtime (or its builder) refused.
fn load_error(err: impl std::fmt::Display) -> Error {
    Error::Load(err.to_string())
}

/// Initializers by name, as every session of one model reads them.
type SharedWeights = Vec<(String, Arc<DynValue>)>;

impl Backend for OrtBackend {
    fn load(&self, artifact: &[u8], signature: &Signature) -> Result<Box<dyn Session>> {
        let (pool, _shared) = self.pool(artifact, signature)?;
        Ok(Box::new(pool))
    }
}

struct OrtPool {
    sessions: Vec<Mutex<OrtSession>>,
    /// The run on each session, if one is going: what `interrupt` stops.
    running: Vec<ArcSwapOption<Running>>,
    next: AtomicUsize,
    signature: Signature,
}

/// One run in progress, with the options that can terminate it.
struct Running {
    started: Instant,
    options: RunOptions,
    stopped: AtomicBool,
}

/// Clears a session's running slot when its run ends, however it ends.
struct RunningSlot<'a>(&'a ArcSwapOption<Running>);

impl Drop for RunningSlot<'_> {
    fn drop(&mut self) {
        self.0.store(None);
    }
}

impl OrtPool {
    /// A free session if there is one, else waits on the next in turn.
    fn acquire(&self) -> (usize, MutexGuard<'_, OrtSession>) {
        let start = self.next.fetch_add(1, Ordering::Relaxed) % self.sessions.len();
        self.try_acquire_from(start).unwrap_or_else(|| {
            // A panic inside ONNX Runtime cannot leave the session half-mutated
            // from our side, so a poisoned lock is still usable.
            let guard = self.sessions[start]
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            (start, guard)
        })
    }

    /// A free session, starting the search at `start`; `None` when all are busy.
    fn try_acquire_from(&self, start: usize) -> Option<(usize, MutexGuard<'_, OrtSession>)> {
        let count = self.sessions.len();
        (0..count).find_map(|offset| {
            let index = (start + offset) % count;
            match self.sessions[index].try_lock() {
                Ok(guard) => Some((index, guard)),
                Err(std::sync::TryLockError::Poisoned(poisoned)) => Some((index, poisoned.into_inner())),
                Err(std::sync::TryLockError::WouldBlock) => None,
            }
        })
    }

    fn run_on(&self, index: usize, session: &mut OrtSession, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        let values = inputs
            .into_iter()
            .zip(&self.signature.inputs)
            .map(|(tensor, spec)| Ok((spec.name.as_str(), to_ort(tensor)?)))
            .collect::<Result<Vec<_>>>()?;
        let options = RunOptions::new()
            .map_err(|err| Error::Internal(format!("creating onnx runtime run options: {err}")))?;
        let running = Arc::new(Running {
            started: Instant::now(),
            options,
            stopped: AtomicBool::new(false),
        });
        self.running[index].store(Some(running.clone()));
        let _slot = RunningSlot(&self.running[index]);
        let outputs = session
            .run_with_options(values, &running.options)
            .map_err(|err| match err.code() {
                _ if running.stopped.load(Ordering::Acquire) => {
                    metrics::counter!(crate::metrics::RUNS_STOPPED).increment(1);
                    Error::DeadlineExceeded(format!(
                        "the run was stopped after {} ms, past the hang bound (--hung-run-ms)",
                        running.started.elapsed().as_millis()
                    ))
                }
                // ONNX Runtime judged the input itself invalid (an index out of
                // range, say): a 400, as Triton reports it, that a rollout
                // weighs against what the stable version refuses.
                ort::ErrorCode::InvalidArgument => Error::EngineRefused(err.to_string()),
                _ => Error::Inference(err.to_string()),
            })?;
        self.signature
            .outputs
            .iter()
            .map(|spec| {
                let value = outputs.get(&spec.name).ok_or_else(|| {
                    Error::Inference(format!("onnx runtime returned no output '{}'", spec.name))
                })?;
                from_ort(value, spec.datatype)
            })
            .collect()
    }
}

impl Session for OrtPool {
    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        let (index, mut session) = self.acquire();
        self.run_on(index, &mut session, inputs)
    }

    fn try_run(&self, inputs: Vec<Tensor>) -> std::result::Result<Result<Vec<Tensor>>, Vec<Tensor>> {
        let start = self.next.fetch_add(1, Ordering::Relaxed) % self.sessions.len();
        match self.try_acquire_from(start) {
            Some((index, mut session)) => Ok(self.run_on(index, &mut session, inputs)),
            None => Err(inputs),
        }
    }

    fn interrupt(&self, running_for: Duration) -> usize {
        let mut asked = 0;
        for slot in &self.running {
            let Some(running) = slot.load_full() else {
                continue;
            };
            if running.started.elapsed() > running_for {
                // Set first: the run's error must read as stopped, not failed.
                running.stopped.store(true, Ordering::Release);
                match running.options.terminate() {
                    Ok(()) => asked += 1,
                    Err(err) => tracing::warn!(%err, "onnx runtime refused to terminate a hung run"),
                }
            }
        }
        asked
    }
}

fn to_ort(tensor: Tensor) -> Result<DynValue> {
    let shape: Vec<i64> = tensor.shape.iter().map(|&dim| dim as i64).collect();
    let value = crate::with_tensor_data!(tensor.data, v => OrtTensor::from_array((shape, v)).map(|t| t.into_dyn()), b => {
        // ONNX Runtime copies each element as a C string: one NUL byte would
        // cut it short, silently.
        if let Some(index) = b.iter().position(|value| value.contains(&0)) {
            return Err(Error::bad_request(format!(
                "BYTES element {index} holds a NUL byte, which ONNX Runtime's strings cannot carry"
            )));
        }
        let texts = b.iter().map(|value| super::tract::utf8(value)).collect::<Result<Vec<String>>>()?;
        OrtTensor::from_string_array((shape, texts.as_slice())).map(|t| t.into_dyn())
    });
    value.map_err(|err| Error::Internal(format!("building an onnx runtime tensor: {err}")))
}

fn from_ort(value: &DynValue, expected: DataType) -> Result<Tensor> {
    fn extract<T: ort::value::PrimitiveTensorElementType + Clone>(
        value: &DynValue,
        expected: DataType,
    ) -> Result<(Vec<usize>, Vec<T>)> {
        let (shape, data) = value
            .try_extract_tensor::<T>()
            .map_err(|err| Error::Inference(format!("onnx runtime output is not {expected}: {err}")))?;
        let dims = shape
            .iter()
            .map(|&dim| usize::try_from(dim).unwrap_or(0))
            .collect();
        Ok((dims, data.to_vec()))
    }
    macro_rules! read {
        ($variant:ident) => {{
            let (shape, data) = extract(value, expected)?;
            Tensor {
                shape,
                data: TensorData::$variant(data),
            }
        }};
    }
    Ok(match expected {
        DataType::Bool => read!(Bool),
        DataType::U8 => read!(U8),
        DataType::U16 => read!(U16),
        DataType::U32 => read!(U32),
        DataType::U64 => read!(U64),
        DataType::I8 => read!(I8),
        DataType::I16 => read!(I16),
        DataType::I32 => read!(I32),
        DataType::I64 => read!(I64),
        DataType::F16 => read!(F16),
        DataType::F32 => read!(F32),
        DataType::F64 => read!(F64),
        DataType::Bytes => {
            let (shape, texts) = value
                .try_extract_strings()
                .map_err(|err| Error::Inference(format!("onnx runtime output is not {expected}: {err}")))?;
            Tensor {
                shape: shape
                    .iter()
                    .map(|&dim| usize::try_from(dim).unwrap_or(0))
                    .collect(),
                data: TensorData::Bytes(texts.into_iter().map(String::into_bytes).collect()),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    /// The library the tests run: `ORT_DYLIB_PATH`, as `scripts/test.sh`
    /// sets it, or what `scripts/fetch-onnxruntime.sh` put in `.ort/`.
    fn library() -> PathBuf {
        std::env::var_os("ORT_DYLIB_PATH")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                let local = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.ort"));
                std::fs::read_dir(&local)
                    .into_iter()
                    .flatten()
                    .flatten()
                    .map(|entry| entry.path())
                    .find(|path| path.to_string_lossy().contains("libonnxruntime.so"))
                    .expect("ONNX Runtime not found: run scripts/test.sh, or set ORT_DYLIB_PATH")
            })
    }

    /// The digits model (one 64×64 weight matrix) on a pool of `sessions`.
    fn digits_pool(sessions: usize) -> (OrtPool, SharedWeights) {
        let artifact = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../models/repository/digits/1/model.onnx"
        ))
        .unwrap();
        let signature = crate::backend::onnx::read_signature(&artifact).unwrap();
        let backend = OrtBackend::new(&library(), sessions, 1).unwrap();
        backend.pool(&artifact, &signature).unwrap()
    }

    #[test]
    fn every_session_of_a_pool_holds_the_one_copy_of_its_weights() {
        let (pool, weights) = digits_pool(3);
        let names: Vec<&str> = weights.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(names, ["coefficient"]);
        // This one and one per session: ONNX Runtime reads the same tensor,
        // and keeps it for as long as the session lives.
        assert_eq!(Arc::strong_count(&weights[0].1), 1 + 3);
        drop(pool);
        assert_eq!(Arc::strong_count(&weights[0].1), 1);
    }

    #[test]
    fn a_lone_session_keeps_onnx_runtimes_own_copy() {
        let (_pool, weights) = digits_pool(1);
        assert!(weights.is_empty());
    }
}
