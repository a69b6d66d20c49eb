//! Dynamic batching for one model version, with Triton's knobs
//! ([`Batching`]): requests queue here, are joined along their first
//! dimension, run as one, and each gets its own rows back.
//!
//! Each of the version's `instances` executor threads forms a batch only
//! when it is free, so under load the queue fills while a batch runs and the
//! next one is larger: that, not the delay, is where most of the gain comes
//! from. Forming is serialized by one lock (only executors take it); the
//! delay is waited with a timed channel receive, precise to microseconds,
//! where tokio's timers would round up to a millisecond.
//!
//! What a batch never does:
//! - run a request whose deadline passed while it waited (answered 504): a
//!   forming batch stops waiting at its members' earliest deadline;
//! - leave a request unanswered: a request dropped unanswered (an executor
//!   panicking in a split or an encoder) answers with an error as it drops,
//!   and the executor lives on;
//! - wait on a full queue (the request is answered 503 with `Retry-After`);
//! - fail a good request because another in its batch was bad: a batch the
//!   engine refuses is run again one request at a time, so the error goes to
//!   the request that caused it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError, TrySendError};
use sluice_registry_client::types::Batching;

use crate::backend::Session;
use crate::error::{Error, Result};
use crate::signature::Signature;
use crate::tensor::Tensor;

/// Called once with a request's outputs (its own rows) or its error.
pub type Done = Box<dyn FnOnce(Result<Vec<Tensor>>, BatchTiming) + Send>;

/// How long a request waited in the queue, and how long its batch ran.
#[derive(Debug, Clone, Copy, Default)]
pub struct BatchTiming {
    pub queued: Duration,
    pub computed: Duration,
}

/// One request waiting to be batched.
pub struct Pending {
    inputs: Vec<Tensor>,
    rows: usize,
    enqueued: Instant,
    deadline_opt: Option<Instant>,
    /// Taken when answered; still here on drop means never answered.
    done_opt: Option<Done>,
}

impl Pending {
    /// `inputs` in signature order, every one with the same first dimension
    /// (the decoder checked the shared batch symbol).
    pub fn new(inputs: Vec<Tensor>, deadline_opt: Option<Instant>, done: Done) -> Pending {
        let rows = inputs.first().map_or(0, Tensor::rows);
        Pending {
            inputs,
            rows,
            enqueued: Instant::now(),
            deadline_opt,
            done_opt: Some(done),
        }
    }

    fn expired(&self, now: Instant) -> bool {
        self.deadline_opt.is_some_and(|deadline| now >= deadline)
    }

    fn answer(mut self, result: Result<Vec<Tensor>>, timing: BatchTiming) {
        if let Some(done) = self.done_opt.take() {
            done(result, timing);
        }
    }

    fn answer_expired(self, now: Instant) {
        let queued = now - self.enqueued;
        metrics::counter!(crate::metrics::DEADLINE_EXCEEDED, "stage" => "batch queue").increment(1);
        let waited = queued.as_micros();
        self.answer(
            Err(Error::DeadlineExceeded(format!(
                "the request's timeout expired after {waited} µs in the batch queue; it was not run"
            ))),
            BatchTiming {
                queued,
                ..BatchTiming::default()
            },
        );
    }

    /// Can join a batch whose first request is `first`: same inner dims for every input.
    fn fits_with(&self, first: &Pending) -> bool {
        self.inputs
            .iter()
            .zip(&first.inputs)
            .all(|(mine, theirs)| mine.shape.get(1..) == theirs.shape.get(1..))
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(done) = self.done_opt.take() {
            let failed = Error::Internal("a batch executor failed before answering this request".into());
            done(Err(failed), BatchTiming::default());
        }
    }
}

/// A version's batch queue; dropping it lets the executors finish what is
/// queued and exit.
pub struct Batcher {
    queue: Sender<Pending>,
    config: Batching,
    rejected: metrics::Counter,
}

impl Batcher {
    /// Starts `config.instances` executors for `session`. Refused when the
    /// model has an input or output without a dynamic first dimension: it has
    /// no batch dimension to join requests along.
    pub fn start(
        model: &str,
        version: &str,
        session: Arc<dyn Session>,
        config: &Batching,
    ) -> std::result::Result<Batcher, String> {
        config.validate()?;
        check_batchable(session.signature())?;
        let (queue, receiver) = crossbeam_channel::bounded(config.max_queue_size);
        let executor = Arc::new(Executor {
            forming: Mutex::new(Former {
                receiver,
                carry_opt: None,
            }),
            session,
            config: config.clone(),
            batch_rows: metrics::histogram!(crate::metrics::BATCH_SIZE, "model" => model.to_string(), "version" => version.to_string()),
        });
        for index in 0..config.instances {
            let executor = executor.clone();
            std::thread::Builder::new()
                .name(format!("sluice-batch-{model}-{index}"))
                .spawn(move || executor.serve())
                .map_err(|err| format!("cannot start a batch executor thread: {err}"))?;
        }
        Ok(Batcher {
            queue,
            config: config.clone(),
            rejected: metrics::counter!(crate::metrics::BATCH_REJECTED, "model" => model.to_string(), "version" => version.to_string()),
        })
    }

    pub fn config(&self) -> &Batching {
        &self.config
    }

    /// Queues a request; it is answered through its `done`. Refused at once
    /// when it has more rows than a batch may hold (400) or the queue is full (503).
    pub fn submit(&self, pending: Pending) -> Result<()> {
        if pending.rows > self.config.max_batch_size {
            return Err(Error::bad_request(format!(
                "the request has {} rows (first dimension) but this model batches at most {}; split it",
                pending.rows, self.config.max_batch_size
            )));
        }
        if let Some((index, tensor)) = pending
            .inputs
            .iter()
            .enumerate()
            .find(|(_, tensor)| tensor.rows() != pending.rows)
        {
            return Err(Error::bad_request(format!(
                "input {index} has {} rows but the first input has {}: a batched model needs the same first dimension in every input",
                tensor.rows(),
                pending.rows
            )));
        }
        match self.queue.try_send(pending) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => {
                self.rejected.increment(1);
                Err(Error::Unavailable(format!(
                    "the model's batch queue is full ({} requests waiting), retry later",
                    self.config.max_queue_size
                )))
            }
            Err(TrySendError::Disconnected(_)) => Err(Error::ShuttingDown),
        }
    }
}

/// Requests can be joined only along a batch dimension: the first of every
/// input, one symbol shared by all (an index input `[K]` beside `[N, 4]`
/// would be joined wrong), and a dynamic first dimension in every output.
fn check_batchable(signature: &Signature) -> std::result::Result<(), String> {
    let specs = signature.inputs.iter().chain(&signature.outputs);
    if let Some(spec) = specs
        .into_iter()
        .find(|spec| spec.shape.first().is_none_or(|&dim| dim >= 0))
    {
        return Err(format!(
            "'{}' has shape {} with no dynamic first dimension to batch along",
            spec.name,
            crate::signature::format_shape(&spec.shape)
        ));
    }
    let symbol_of = |spec: &crate::signature::TensorSpec| spec.dim_symbols.first().cloned().flatten();
    let first = signature.inputs.first().and_then(symbol_of);
    match signature.inputs.iter().find(|spec| symbol_of(spec) != first) {
        Some(spec) => Err(format!(
            "inputs '{}' and '{}' do not share their first dimension ({} vs {}): it is not one batch dimension",
            signature.inputs[0].name,
            spec.name,
            first.as_deref().unwrap_or("unnamed"),
            symbol_of(spec).as_deref().unwrap_or("unnamed")
        )),
        None => Ok(()),
    }
}

/// The queue's receiving end and the request that did not fit the last batch.
struct Former {
    receiver: Receiver<Pending>,
    carry_opt: Option<Pending>,
}

struct Executor {
    forming: Mutex<Former>,
    session: Arc<dyn Session>,
    config: Batching,
    batch_rows: metrics::Histogram,
}

impl Executor {
    fn serve(&self) {
        loop {
            let batch = {
                // Forming only moves requests (and answers expired ones),
                // so even a poisoned lock leaves the queue consistent.
                let mut former = self
                    .forming
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                match former.form(&self.config) {
                    Some(batch) => batch,
                    None => return,
                }
            };
            if batch.is_empty() {
                continue;
            }
            // A panic past the engine's own guard (splitting, encoding)
            // answers what it drops with an error; the executor lives on.
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.run(batch))).is_err() {
                tracing::error!("a batch executor panicked; its unanswered requests got an error");
            }
        }
    }

    fn run(&self, batch: Vec<Pending>) {
        let rows: Vec<usize> = batch.iter().map(|pending| pending.rows).collect();
        let total: usize = rows.iter().sum();
        self.batch_rows.record(total as f64);
        let joined = (0..batch[0].inputs.len())
            .map(|index| {
                let parts: Vec<&Tensor> = batch.iter().map(|pending| &pending.inputs[index]).collect();
                Tensor::concat_rows(&parts)
            })
            .collect::<Option<Vec<Tensor>>>();
        let started = Instant::now();
        let result = match joined {
            Some(inputs) => run_guarded(&*self.session, inputs).and_then(|outputs| split(outputs, &rows)),
            None => Err(Error::Internal(
                "requests of one batch did not fit together".into(),
            )),
        };
        let computed = started.elapsed();
        match result {
            Ok(per_request) => {
                for (pending, outputs) in batch.into_iter().zip(per_request) {
                    let timing = BatchTiming {
                        queued: started - pending.enqueued,
                        computed,
                    };
                    pending.answer(Ok(outputs), timing);
                }
            }
            Err(err) if batch.len() == 1 => {
                let pending = batch.into_iter().next().expect("one request");
                let timing = BatchTiming {
                    queued: started - pending.enqueued,
                    computed,
                };
                pending.answer(Err(err), timing);
            }
            Err(err) => {
                // One bad request must not fail the others: run each alone
                // so that the error lands where it belongs.
                tracing::debug!(error = %err, requests = batch.len(), "batch failed; running its requests one by one");
                for pending in batch {
                    let alone = Instant::now();
                    if pending.expired(alone) {
                        pending.answer_expired(alone);
                        continue;
                    }
                    let result = run_guarded(&*self.session, pending.inputs.clone());
                    let timing = BatchTiming {
                        queued: started - pending.enqueued,
                        computed: alone.elapsed(),
                    };
                    pending.answer(result, timing);
                }
            }
        }
    }
}

impl Former {
    /// The next batch, once this executor is free, without the members whose
    /// deadline passed while it formed (possibly none left); `None` when the
    /// queue is closed and empty.
    fn form(&mut self, config: &Batching) -> Option<Vec<Pending>> {
        let first = loop {
            let pending = match self.carry_opt.take() {
                Some(pending) => pending,
                None => self.receiver.recv().ok()?,
            };
            let now = Instant::now();
            if pending.expired(now) {
                pending.answer_expired(now);
                continue;
            }
            break pending;
        };
        // Triton measures the delay from the oldest request's arrival; no
        // member waits past its own deadline for others to come.
        let mut window_end = first.enqueued + Duration::from_micros(config.max_queue_delay_us);
        if let Some(deadline) = first.deadline_opt {
            window_end = window_end.min(deadline);
        }
        let mut rows = first.rows;
        let mut batch = vec![first];
        while rows < config.max_batch_size {
            let next = match self.receiver.try_recv() {
                Ok(pending) => pending,
                Err(TryRecvError::Disconnected) => break,
                Err(TryRecvError::Empty) => {
                    // Nothing more is queued: a preferred size goes now, and
                    // without a delay so does anything.
                    if config.max_queue_delay_us == 0 || config.preferred_batch_sizes.contains(&rows) {
                        break;
                    }
                    match self.receiver.recv_deadline(window_end) {
                        Ok(pending) => pending,
                        Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
                    }
                }
            };
            let now = Instant::now();
            if next.expired(now) {
                next.answer_expired(now);
                continue;
            }
            if rows + next.rows > config.max_batch_size || !next.fits_with(&batch[0]) {
                self.carry_opt = Some(next);
                break;
            }
            if let Some(deadline) = next.deadline_opt {
                window_end = window_end.min(deadline);
            }
            rows += next.rows;
            batch.push(next);
        }
        let now = Instant::now();
        let (live, expired): (Vec<Pending>, Vec<Pending>) =
            batch.into_iter().partition(|pending| !pending.expired(now));
        for pending in expired {
            pending.answer_expired(now);
        }
        Some(live)
    }
}

/// Runs the engine; a panic in it fails this run alone, not the executor.
fn run_guarded(session: &dyn Session, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| session.run(inputs)))
        .unwrap_or_else(|_| Err(Error::Inference("the engine panicked".into())))
}

/// Cuts each output back into the rows of each request, in queue order.
fn split(outputs: Vec<Tensor>, rows: &[usize]) -> Result<Vec<Vec<Tensor>>> {
    let total: usize = rows.iter().sum();
    let mut per_request: Vec<Vec<Tensor>> = (0..rows.len())
        .map(|_| Vec::with_capacity(outputs.len()))
        .collect();
    for (index, output) in outputs.into_iter().enumerate() {
        let got = output.rows();
        let parts = output.split_rows(rows).ok_or_else(|| {
            Error::Inference(format!(
                "output {index} has {got} rows for a batch of {total}: the model does not keep its batch dimension"
            ))
        })?;
        for (request, part) in per_request.iter_mut().zip(parts) {
            request.push(part);
        }
    }
    Ok(per_request)
}

#[cfg(test)]
mod tests;
