//! Who gets in, and what they hold while they are served: a request's
//! predict token and rate, one of `--max-in-flight` slots, one of its
//! model's `--max-in-flight-per-model` (so a slow model cannot take every
//! slot from the others), and bytes of `--max-body-bytes-in-flight` for
//! what it holds in memory: its body as it arrives, then what the body
//! decodes to, then its answer until the answer is written. Every check is
//! a try: a refusal is an answer at once, never a wait, and nothing is kept
//! of a refused body.
//!
//! What a request holds ([`Admitted`]) travels with it: into the compute
//! job, the batch queue, and the answer's body, so a request answered 504
//! whose work still waits, and an answer a slow client has not read yet,
//! hold their part until they are gone.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, header};

use super::AppState;
use crate::error::{Error, Result};
use crate::metrics;
use crate::slots::{Held, Slots};

/// How much of a refused request's body is read (and dropped) so that its
/// client reads the 503 instead of a broken pipe, and for how long.
const DISCARD_BYTES: usize = 1 << 20;
const DISCARD_TIME: std::time::Duration = std::time::Duration::from_secs(1);

/// What an admitted request holds until it and its answer are gone.
#[derive(Debug)]
pub struct Admitted {
    _slot: Held,
    /// `None` for feedback, which has its own hourly budget.
    _model_slot_opt: Option<Held>,
    /// Bytes of the budget, grown as the body arrives and is decoded.
    pub bytes: Held,
}

impl Admitted {
    /// Holds at least `bytes` of the budget, or says it is spent.
    pub fn cover(&mut self, bytes: usize) -> Result<()> {
        match self.bytes.grow_to(bytes) {
            true => Ok(()),
            false => Err(Error::BodyBudget),
        }
    }
}

/// Lets a request to `model` in (its share of slots is `model_slots_opt`),
/// or answers why not once its body is read and dropped (up to a bound), so
/// that the client reads the answer instead of a broken pipe. Its body's
/// bytes are held as they arrive, not as declared: a client that declares
/// a large body and sends nothing holds nothing.
pub async fn admit(
    state: &AppState,
    model: &str,
    model_slots_opt: Option<&Arc<Slots>>,
    headers: &HeaderMap,
    body: Body,
) -> Result<(Admitted, Body)> {
    match admit_now(state, model, model_slots_opt, headers) {
        Ok(admitted) => Ok((admitted, body)),
        Err(refused) => Err(refuse(refused, headers, body).await),
    }
}

/// Lets a request in, or says why not; its body (if any) is the caller's.
pub(super) fn admit_now(
    state: &AppState,
    model: &str,
    model_slots_opt: Option<&Arc<Slots>>,
    headers: &HeaderMap,
) -> Result<Admitted> {
    state.access.check(model, headers)?;
    let slot = state.admission.try_take(1).ok_or_else(|| {
        rejected(
            model,
            "in_flight",
            Error::TooManyInFlight(state.limits.max_in_flight),
        )
    })?;
    let model_slot_opt = match model_slots_opt {
        None => None,
        Some(slots) => Some(slots.try_take(1).ok_or_else(|| {
            let busy = Error::ModelBusy {
                model: model.to_string(),
                limit: slots.max(),
            };
            rejected(model, "model", busy)
        })?),
    };
    Ok(Admitted {
        _slot: slot,
        _model_slot_opt: model_slot_opt,
        bytes: state.body_budget.empty(),
    })
}

/// Counts a refusal of admission by model and reason.
pub fn rejected(model: &str, reason: &'static str, refusal: Error) -> Error {
    ::metrics::counter!(metrics::ADMISSION_REJECTED, "model" => model.to_string(), "reason" => reason)
        .increment(1);
    refusal
}

/// Reads and drops a refused request's body (up to a bound), so that its
/// client reads the answer instead of a broken pipe; a client that asked
/// `Expect: 100-continue` sends nothing more and is not waited for.
pub async fn refuse(refused: Error, headers: &HeaderMap, body: Body) -> Error {
    let expects_continue = headers
        .get(header::EXPECT)
        .is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if !expects_continue {
        discard(body, DISCARD_BYTES, DISCARD_TIME).await;
    }
    refused
}

/// Reads and discards a body the server will not use (a refused request),
/// up to `limit` bytes and `timeout`, so that the client can read the
/// answer instead of a broken pipe. Nothing is kept: memory stays flat.
async fn discard(body: Body, limit: usize, timeout: std::time::Duration) {
    use http_body_util::BodyExt;
    let mut body = body;
    let drain = async {
        let mut seen = 0usize;
        while let Some(Ok(frame)) = body.frame().await {
            seen += frame.data_ref().map_or(0, |data| data.len());
            if seen > limit {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(timeout, drain).await;
}
