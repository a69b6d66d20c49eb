//! One inference, from payload to answer, whatever the protocol: decoded
//! on a compute thread, run there or queued for the version's batcher, then
//! encoded, logged and mirrored where its batch ran. Nothing here runs on
//! the reactor but the body read and the hand-offs, except for models that
//! run inline: those whose warm-up run is faster than the hand-off itself
//! (`--inline-below-us`), for small plain payloads, are decoded, run and
//! encoded right here.
//!
//! A [`Payload`] is an HTTP body (JSON, or JSON and binary tensors) or a
//! gRPC `ModelInferRequest`; only its decoding and the answer's encoding
//! differ ([`Encoded`]): checks, deadlines, contracts, drift, the log and
//! the mirrors are one path.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use sluice_proto::inference::{ModelInferRequest, ModelInferResponse};
use sluice_registry_client::contract::ContractMode;
use tokio::sync::oneshot;

use super::AppState;
use super::admission::Admitted;
use super::body::{self, Encoding};
use crate::batcher::{BatchTiming, Pending};
use crate::error::{Error, Result};
use crate::model::LoadedModel;
use crate::predlog::{PredictionLog, PredictionRecord, RouteKind};
use crate::protocol::request::RequestedOutput;
use crate::protocol::{self, grpc, request, response};
use crate::shadow::{ShadowJob, Shadows};
use crate::tensor::Tensor;
use sluice_registry_client::limits::check_request_id;

/// The id a prediction is logged under, for ground-truth feedback to join on.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Largest body decoded on the reactor for an inline model: a few hundred
/// numbers, microseconds of parsing. Larger ones go to the pool whatever the model.
const INLINE_MAX_BODY_BYTES: usize = 16 * 1024;

/// Most rows run inline: the warm-up that qualified the model timed one.
const INLINE_MAX_ROWS: usize = 8;

/// What a request does besides answering, decided before it runs.
pub(super) struct SideEffects {
    pub mirrors: Mirrors,
    pub logging_opt: Option<Logging>,
    /// Count its features for drift (not for pinned requests).
    pub count_drift: bool,
    /// Check its inputs against the version's data contract, and how.
    pub contract_opt: Option<ContractMode>,
}

/// Where a request's prediction is logged.
pub(super) struct Logging {
    pub log: Arc<PredictionLog>,
    pub with_inputs: bool,
    pub route: RouteKind,
    pub started: Instant,
    /// The caller's `x-request-id`.
    pub request_id_opt: Option<String>,
}

/// Where a request's inputs are run again after it is answered.
pub(super) struct Mirrors {
    /// The route's shadow, when this request is in its sample.
    pub shadow_opt: Option<Arc<LoadedModel>>,
    /// The stable version, when this canary answer is to be compared with it.
    pub compare_with_opt: Option<Arc<LoadedModel>>,
}

/// What a request arrived as.
pub(super) enum Payload {
    /// An HTTP body, read within the limits once the request is admitted.
    Http(Body),
    /// A gRPC message, read whole (within the message limit) by the
    /// protocol layer, and its encoded length.
    Grpc(Box<ModelInferRequest>, usize),
}

impl Payload {
    /// A refused request's payload: an HTTP body is read and dropped (up
    /// to a bound), so that its client reads the answer.
    pub async fn refuse(self, refused: Error, headers: &HeaderMap) -> Error {
        match self {
            Payload::Http(body) => super::admission::refuse(refused, headers, body).await,
            Payload::Grpc(..) => refused,
        }
    }
}

/// An answer as its protocol writes it.
pub(super) enum Encoded {
    Http(response::EncodedResponse),
    Grpc(Box<ModelInferResponse>),
}

/// A read payload, to be decoded on a compute thread.
enum Wire {
    Http {
        raw: axum::body::Bytes,
        encoding: Encoding,
        header_length_opt: Option<usize>,
    },
    Grpc(Box<ModelInferRequest>),
}

/// A request between its run and its answer: what encoding, logging and
/// mirroring need, whichever thread the run happened on.
struct Answering {
    /// Answer as gRPC (else as HTTP).
    grpc: bool,
    model: Arc<LoadedModel>,
    shadows: Arc<Shadows>,
    sides: SideEffects,
    id_opt: Option<String>,
    requested: Vec<RequestedOutput>,
    mirrored_inputs_opt: Option<Vec<Tensor>>,
    logged_inputs_opt: Option<Vec<Tensor>>,
    slice_values: Vec<f64>,
    /// Set when the client was answered 504 while this still ran: what it
    /// computes then was never served, so it is neither logged nor mirrored.
    abandoned: Arc<AtomicBool>,
    /// An answer that could be larger is refused before it is built.
    max_response_bytes: usize,
    /// What the request holds: its slots and its part of the memory budget.
    admitted: Admitted,
}

/// What the response is built from.
pub(super) struct Answered {
    pub encoded: Encoded,
    pub request_id_opt: Option<String>,
    pub admitted: Admitted,
    /// An output row held a NaN or an infinity.
    pub nonfinite: bool,
}

/// After decoding: answered already (run on this thread), waiting in the
/// batch queue, or decoded inline but to be run on the pool. A refusal
/// leaves through the closure's error instead.
enum Step {
    Answered(Answered, Duration),
    Deferred(Answering, Vec<Tensor>),
    Queued(oneshot::Receiver<(Result<Answered>, BatchTiming)>),
}

/// Runs one admitted request. `client_deadline_opt` is when its caller
/// stops waiting (gRPC's `grpc-timeout`): it bounds every wait as the
/// server's request timeout does.
#[allow(clippy::too_many_arguments)]
pub(super) async fn run(
    state: &AppState,
    model: &Arc<LoadedModel>,
    sides: SideEffects,
    headers: &HeaderMap,
    payload: Payload,
    mut admitted: Admitted,
    started: Instant,
    client_deadline_opt: Option<Instant>,
) -> Result<Answered> {
    let (wire, small) = match payload {
        Payload::Http(body) => {
            let encoding = Encoding::from_headers(headers)?;
            let header_length_opt = header_length(headers)?;
            let raw = body::collect(
                body,
                headers,
                state.max_request_bytes,
                state.limits.body_read_timeout,
                &mut admitted,
            )
            .await?;
            let small = raw.len() <= INLINE_MAX_BODY_BYTES && encoding == Encoding::Identity;
            let wire = Wire::Http {
                raw,
                encoding,
                header_length_opt,
            };
            (wire, small)
        }
        Payload::Grpc(message, length) => {
            admitted.cover(length)?;
            (Wire::Grpc(message), length <= INLINE_MAX_BODY_BYTES)
        }
    };
    let default_timeout_opt = state.limits.request_timeout_opt;
    if let Some(timeout) = default_timeout_opt
        && started.elapsed() >= timeout
    {
        metrics::counter!(crate::metrics::DEADLINE_EXCEEDED, "stage" => "body").increment(1);
        return Err(Error::DeadlineExceeded(format!(
            "the server's request timeout of {} ms passed while the body was read; it was not run",
            timeout.as_millis()
        )));
    }
    let abandoned = Arc::new(AtomicBool::new(false));
    // A model faster than the hand-off runs right here when the body is
    // small and plain: its whole request costs a few microseconds.
    let inline = model.runs_inline() && small;
    // The server's timeout caps what the caller waits; the caller's own
    // deadline caps it too.
    let give_up_opt = earliest(
        default_timeout_opt.map(|timeout| started + timeout),
        client_deadline_opt,
    );
    let decoding = Decoding {
        wire,
        limit: state.max_request_bytes,
        give_up_opt,
        model: model.clone(),
        shadows: state.shadows.clone(),
        sides,
        admitted,
        started,
        default_timeout_opt,
        abandoned: abandoned.clone(),
        max_response_bytes: state.limits.max_response_bytes,
    };
    // Otherwise decompression, decoding, the run and encoding are CPU work
    // for a compute thread (or a batch executor), never for the reactor.
    let work = move || -> Result<Step> {
        let (answering, inputs, deadline_opt) = decoding.decode()?;
        start(answering, inputs, deadline_opt, inline)
    };
    // The give-up time also bounds every wait below: a hung engine or a
    // long queue answers 504, and the work finds nobody waiting.
    let (step, pool_queued) = if inline {
        // A panicking engine fails this request alone, as on the pool.
        let step = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work))
            .unwrap_or_else(|_| Err(Error::Inference("the engine panicked".into())));
        // An input that makes this model slow held the reactor thread: no
        // more of that. (Requests that arrived meanwhile still run inline:
        // the watchdog judges hangs, not inline runs.)
        if let Ok(Step::Answered(_, computed)) = &step
            && *computed > crate::runwatch::INLINE_LIMIT
        {
            model.stop_inline();
        }
        (step, Duration::ZERO)
    } else {
        let (step, timing) = within(give_up_opt, "compute", &abandoned, state.compute.run(work)).await?;
        (step, timing.queued)
    };
    let (answered, queued, computed) =
        finish(state, model, step?, pool_queued, give_up_opt, &abandoned).await?;
    model.metrics.queue_duration.record(queued.as_secs_f64());
    let answered = answered?;
    model.metrics.compute_duration.record(computed.as_secs_f64());
    Ok(answered)
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// A request whose body was read, moved onto the thread that decodes it.
struct Decoding {
    wire: Wire,
    limit: usize,
    /// When the caller stops waiting (the server's timeout or its own).
    give_up_opt: Option<Instant>,
    model: Arc<LoadedModel>,
    shadows: Arc<Shadows>,
    sides: SideEffects,
    admitted: Admitted,
    started: Instant,
    default_timeout_opt: Option<Duration>,
    abandoned: Arc<AtomicBool>,
    max_response_bytes: usize,
}

impl Decoding {
    /// Decompressed, decoded and checked (memory, id, deadline, contract),
    /// its features counted for drift: the request ready to run, with its
    /// inputs and its deadline.
    fn decode(self) -> Result<(Answering, Vec<Tensor>, Option<Instant>)> {
        let Decoding {
            wire,
            limit,
            give_up_opt,
            model,
            shadows,
            sides,
            mut admitted,
            started,
            default_timeout_opt,
            abandoned,
            max_response_bytes,
        } = self;
        let grpc = matches!(wire, Wire::Grpc(_));
        let (decoded, bytes_length) = match wire {
            Wire::Http {
                raw,
                encoding,
                header_length_opt,
            } => {
                let raw_length = raw.len();
                let bytes = body::decode(raw, encoding, limit)?;
                // What the body became is held too: decompressed, decoded,
                // and copied for the log and the mirrors.
                admitted.cover(raw_length.max(bytes.len()))?;
                (
                    request::decode(&bytes, header_length_opt, &model.signature)?,
                    bytes.len(),
                )
            }
            // Its raw tensors are slices of the message's buffer, held
            // (covered) already; the message goes once it is decoded.
            Wire::Grpc(message) => (grpc::decode(*message, &model.signature)?, 0),
        };
        let copies = 1
            + usize::from(sides.mirrors.any())
            + usize::from(
                sides
                    .logging_opt
                    .as_ref()
                    .is_some_and(|logging| logging.with_inputs),
            );
        admitted.cover(bytes_length + copies * tensor_bytes(&decoded.inputs))?;
        // A logged prediction keeps its id, and the registry joins on it.
        if sides.logging_opt.is_some()
            && let Some(id) = &decoded.id
        {
            check_request_id(id, "the request's id").map_err(Error::BadRequest)?;
        }
        // The server's timeout caps a request's own: past it nobody waits.
        let timeout_opt = match (decoded.timeout_opt, default_timeout_opt) {
            (Some(asked), Some(cap)) => Some(asked.min(cap)),
            (asked, cap) => asked.or(cap),
        };
        let deadline_opt = earliest(timeout_opt.map(|timeout| started + timeout), give_up_opt);
        if let Some(deadline) = deadline_opt
            && Instant::now() >= deadline
        {
            metrics::counter!(crate::metrics::DEADLINE_EXCEEDED, "stage" => "compute queue").increment(1);
            return Err(Error::DeadlineExceeded(format!(
                "the request's deadline ({} µs after it arrived) passed before it could run; it was not run",
                deadline.saturating_duration_since(started).as_micros()
            )));
        }
        if let Some(mode) = sides.contract_opt
            && let Some(contract) = model.contract.get()
        {
            let violations = contract.check(&decoded.inputs);
            if !violations.is_empty() {
                match mode {
                    ContractMode::Reject => return Err(violations.into_error()),
                    ContractMode::Observe => contract.observed(&violations),
                }
            }
        }
        if sides.count_drift
            && let Some(drift) = model.drift.get()
        {
            drift.count(&decoded.inputs);
        }
        let answering = Answering {
            grpc,
            mirrored_inputs_opt: sides.mirrors.any().then(|| decoded.inputs.clone()),
            logged_inputs_opt: sides
                .logging_opt
                .as_ref()
                .filter(|logging| logging.with_inputs)
                .map(|_| decoded.inputs.clone()),
            slice_values: match (&sides.logging_opt, model.slicer.get()) {
                (Some(_), Some(slicer)) => slicer.values(&decoded.inputs),
                _ => Vec::new(),
            },
            model,
            shadows,
            sides,
            id_opt: decoded.id,
            requested: decoded.outputs,
            abandoned,
            max_response_bytes,
            admitted,
        };
        Ok((answering, decoded.inputs, deadline_opt))
    }
}

/// Runs a decoded request on this thread, or queues it for its version's
/// batcher. `inline` (on the reactor) runs only what cannot wait: a
/// request of a few rows on an engine with a free session; else the
/// request is deferred to the pool.
fn start(
    answering: Answering,
    inputs: Vec<Tensor>,
    deadline_opt: Option<Instant>,
    inline: bool,
) -> Result<Step> {
    let model = answering.model.clone();
    let Some(batcher) = &model.batcher_opt else {
        let compute_started = Instant::now();
        let outputs = if !inline {
            model.run(inputs)?
        } else {
            let rows = inputs.first().map_or(0, Tensor::rows);
            if rows > INLINE_MAX_ROWS {
                return Ok(Step::Deferred(answering, inputs));
            }
            match model.try_run(inputs) {
                Ok(outputs) => outputs?,
                Err(inputs) => return Ok(Step::Deferred(answering, inputs)),
            }
        };
        let computed = compute_started.elapsed();
        return Ok(Step::Answered(answering.finish(outputs)?, computed));
    };
    let (reply, answer) = oneshot::channel();
    let done = Box::new(move |result: Result<Vec<Tensor>>, timing: BatchTiming| {
        // The requester has gone (hung up, or answered 504): the run was
        // not served, so nothing of it is logged or mirrored.
        if reply.is_closed() {
            return;
        }
        let answered = result.and_then(|outputs| answering.finish(outputs));
        let _ = reply.send((answered, timing));
    });
    batcher.submit(Pending::new(inputs, deadline_opt, done))?;
    Ok(Step::Queued(answer))
}

/// Waits for what `start` left to do (a deferred run on the pool, or the
/// batch), each wait bounded by the server's timeout: the answer, and how
/// long the request queued and computed.
async fn finish(
    state: &AppState,
    model: &Arc<LoadedModel>,
    step: Step,
    pool_queued: Duration,
    give_up_opt: Option<Instant>,
    abandoned: &Arc<AtomicBool>,
) -> Result<(Result<Answered>, Duration, Duration)> {
    Ok(match step {
        Step::Answered(answered, computed) => (Ok(answered), pool_queued, computed),
        Step::Deferred(answering, inputs) => {
            let model = model.clone();
            let run = state.compute.run(move || -> Result<(Answered, Duration)> {
                let compute_started = Instant::now();
                let outputs = model.run(inputs)?;
                let computed = compute_started.elapsed();
                Ok((answering.finish(outputs)?, computed))
            });
            let (outcome, timing) = within(give_up_opt, "compute", abandoned, run).await?;
            let (answered, computed) = outcome?;
            (Ok(answered), timing.queued, computed)
        }
        Step::Queued(answer) => {
            let answer = async {
                answer
                    .await
                    .map_err(|_| Error::Internal("a batch executor dropped a request".into()))
            };
            let (answered, batch) = within(give_up_opt, "batch", abandoned, answer).await?;
            (answered, pool_queued + batch.queued, batch.computed)
        }
    })
}

/// Bytes the values of `tensors` take.
fn tensor_bytes(tensors: &[Tensor]) -> usize {
    tensors
        .iter()
        .map(|tensor| tensor.data.wire_size())
        .fold(0, usize::saturating_add)
}

/// `waiting`, or a 504 once `give_up_opt` (the server's request timeout)
/// passes; then `abandoned` tells the work still running that nobody waits.
async fn within<T>(
    give_up_opt: Option<Instant>,
    stage: &'static str,
    abandoned: &AtomicBool,
    waiting: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    let Some(give_up) = give_up_opt else {
        return waiting.await;
    };
    tokio::time::timeout_at(give_up.into(), waiting).await.unwrap_or_else(|_| {
        abandoned.store(true, Ordering::Release);
        metrics::counter!(crate::metrics::DEADLINE_EXCEEDED, "stage" => stage).increment(1);
        Err(Error::DeadlineExceeded(format!(
            "no answer within the server's request timeout (waiting for {stage}); if it had not started, it was not run"
        )))
    })
}

impl Answering {
    /// Encodes the answer, then hands the outputs to the prediction log and
    /// the mirrors: they can no longer change it. An answer that could take
    /// more than the limit is refused before it is built, and, never
    /// served, is neither logged nor mirrored.
    fn finish(self, outputs: Vec<Tensor>) -> Result<Answered> {
        let bound = response::size_bound(&self.model, self.id_opt.as_deref(), &self.requested, &outputs);
        if bound > self.max_response_bytes {
            return Err(Error::ResponseTooLarge {
                bound,
                limit: self.max_response_bytes,
            });
        }
        let Answering {
            grpc,
            model,
            shadows,
            sides,
            id_opt,
            requested,
            mirrored_inputs_opt,
            logged_inputs_opt,
            slice_values,
            abandoned,
            max_response_bytes: _,
            admitted,
        } = self;
        let encoded = match grpc {
            true => Encoded::Grpc(Box::new(grpc::encode(
                &model,
                id_opt.as_deref(),
                &requested,
                &outputs,
            ))),
            false => Encoded::Http(response::encode(&model, id_opt.as_deref(), &requested, &outputs)),
        };
        let rows = outputs.first().map_or(0, Tensor::rows);
        let mut nonfinite_rows = Vec::new();
        for output in &outputs {
            output.mark_nonfinite_rows(&mut nonfinite_rows, rows);
        }
        let nonfinite = nonfinite_rows.iter().filter(|&&bad| bad).count();
        if abandoned.load(Ordering::Acquire) {
            return Ok(Answered {
                encoded,
                request_id_opt: None,
                admitted,
                nonfinite: nonfinite > 0,
            });
        }
        // Pinned requests are not the traffic a rollout judges.
        if sides.count_drift {
            model.stats.record_rows(rows as u64, nonfinite as u64);
            if let Some(drift) = model.drift.get() {
                drift.count_outputs(&outputs);
            }
        }
        // The log and the mirrors share the outputs, copied only when both want them.
        let mut outputs_opt = Some(outputs);
        let mut request_id_opt = None;
        if let Some(logging) = sides.logging_opt {
            // What feedback joins on: the caller's x-request-id, the
            // body's id, or one made up here; returned in x-request-id.
            let request_id = logging.request_id_opt.or(id_opt).unwrap_or_else(new_request_id);
            request_id_opt = Some(request_id.clone());
            let logged_outputs = match mirrored_inputs_opt {
                Some(_) => outputs_opt.clone().unwrap_or_default(),
                None => outputs_opt.take().unwrap_or_default(),
            };
            logging.log.submit(PredictionRecord {
                at: logging.log.now(),
                request_id,
                model: model.clone(),
                route: logging.route,
                latency: logging.started.elapsed(),
                inputs_opt: logged_inputs_opt,
                slice_values,
                outputs: logged_outputs,
            });
        }
        if let (Some(inputs), Some(outputs)) = (mirrored_inputs_opt, outputs_opt) {
            sides.mirrors.submit(&shadows, &model, inputs, outputs);
        }
        Ok(Answered {
            encoded,
            request_id_opt,
            admitted,
            nonfinite: nonfinite > 0,
        })
    }
}

/// The HTTP response of an answer encoded for HTTP.
pub(super) fn into_response(answered: Answered) -> Response {
    // Its non-finite outputs were counted already (`call::infer`).
    let Answered {
        encoded,
        request_id_opt,
        admitted,
        nonfinite: _,
    } = answered;
    let encoded = match encoded {
        Encoded::Http(encoded) => encoded,
        // Never: the payload's protocol chose the encoding.
        Encoded::Grpc(_) => {
            return Error::Internal("an HTTP request was answered as gRPC".into()).into_response();
        }
    };
    let mut response = Response::new(Body::new(body::HeldBody::new(encoded.body, admitted)));
    let response_headers = response.headers_mut();
    if let Some(value) = request_id_opt.and_then(|id| HeaderValue::from_str(&id).ok()) {
        response_headers.insert(HeaderName::from_static(REQUEST_ID_HEADER), value);
    }
    let content_type = match encoded.header_length_opt {
        Some(length) => {
            response_headers.insert(
                HeaderName::from_static(protocol::HEADER_CONTENT_LENGTH),
                HeaderValue::from(length),
            );
            "application/octet-stream"
        }
        None => "application/json",
    };
    response_headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// 128 random bits, hex: a request id when the caller gave none.
fn new_request_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

impl Mirrors {
    fn any(&self) -> bool {
        self.shadow_opt.is_some() || self.compare_with_opt.is_some()
    }

    fn submit(
        self,
        shadows: &Shadows,
        answered: &Arc<LoadedModel>,
        inputs: Vec<Tensor>,
        outputs: Vec<Tensor>,
    ) {
        if let Some(stable) = self.compare_with_opt {
            shadows.submit(ShadowJob {
                shadow: stable,
                primary: answered.clone(),
                inputs: inputs.clone(),
                primary_outputs: outputs.clone(),
                judged: answered.clone(),
            });
        }
        if let Some(shadow) = self.shadow_opt {
            shadows.submit(ShadowJob {
                shadow: shadow.clone(),
                primary: answered.clone(),
                inputs,
                primary_outputs: outputs,
                judged: shadow,
            });
        }
    }
}

fn header_length(headers: &HeaderMap) -> Result<Option<usize>> {
    let mut values = headers.get_all(protocol::HEADER_CONTENT_LENGTH).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    // Two lengths would leave which split of the body is meant to chance.
    if values.next().is_some() {
        return Err(Error::bad_request(
            "Inference-Header-Content-Length is given more than once: give it once",
        ));
    }
    value
        .to_str()
        .ok()
        .and_then(|text| text.trim().parse::<usize>().ok())
        .map(Some)
        .ok_or_else(|| Error::bad_request("Inference-Header-Content-Length must be a non-negative integer"))
}
