//! Who gets in, and what they hold while they are served: a request's
//! predict token and rate, one of `--max-in-flight` slots, one of its
//! model's `--max-in-flight-per-model` (so a slow model cannot take every
//! slot from the others), and the bytes of its body from a budget fitted to
//! the process's memory (`--max-body-bytes-in-flight`), counted as they
//! arrive. Every check is a try: a refusal is an answer at once, never a
//! wait, and nothing is kept of a refused body.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, header};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, SemaphorePermit};

use super::AppState;
use super::body;
use crate::error::{Error, Result};
use crate::metrics;

/// How much of a refused request's body is read (and dropped) so that its
/// client reads the 503 instead of a broken pipe, and for how long.
const DISCARD_BYTES: usize = 1 << 20;
const DISCARD_TIME: std::time::Duration = std::time::Duration::from_secs(1);

/// The budget counts kibibytes: a permit count is a `u32` per call.
const UNIT: usize = 1024;

/// What an admitted request holds until it is answered.
pub struct Admitted<'a> {
    _slot: SemaphorePermit<'a>,
    _model_slot: OwnedSemaphorePermit,
    /// Its body's bytes, grown as they arrive.
    pub body: Reservation,
}

/// Request bodies' bytes held at once, across every request.
pub struct BodyBudget(Arc<Semaphore>);

impl BodyBudget {
    pub fn new(bytes: usize) -> BodyBudget {
        BodyBudget(Arc::new(Semaphore::new(
            bytes.div_ceil(UNIT).clamp(1, Semaphore::MAX_PERMITS),
        )))
    }

    /// An empty reservation, to grow as a body arrives.
    pub fn reserve(&self) -> Reservation {
        Reservation {
            budget: self.0.clone(),
            permit_opt: None,
            units: 0,
        }
    }

    /// Bytes not held by any body now (to the unit).
    pub fn available(&self) -> usize {
        self.0.available_permits() * UNIT
    }
}

/// One request's part of the [`BodyBudget`], given back when it is dropped.
pub struct Reservation {
    budget: Arc<Semaphore>,
    permit_opt: Option<OwnedSemaphorePermit>,
    units: usize,
}

impl Reservation {
    /// Holds at least `bytes`, or says the budget is spent.
    pub fn cover(&mut self, bytes: usize) -> Result<()> {
        let needed = bytes.div_ceil(UNIT);
        if needed <= self.units {
            return Ok(());
        }
        let more = u32::try_from(needed - self.units).map_err(|_| Error::BodyBudget)?;
        let permit = self
            .budget
            .clone()
            .try_acquire_many_owned(more)
            .map_err(|_| Error::BodyBudget)?;
        match &mut self.permit_opt {
            Some(held) => held.merge(permit),
            None => self.permit_opt = Some(permit),
        }
        self.units = needed;
        Ok(())
    }
}

/// Lets a request to `model` in (its share of slots is `model_slots`), or
/// answers why not once its body is read and dropped (up to a bound), so
/// that the client reads the answer instead of a broken pipe. A body whose
/// length is declared reserves it now; one sent in chunks, as it arrives.
pub async fn admit<'a>(
    state: &'a AppState,
    model: &str,
    model_slots: &Arc<Semaphore>,
    headers: &HeaderMap,
    body_limit: usize,
    body: Body,
) -> Result<(Admitted<'a>, Body)> {
    match admit_now(state, model, model_slots, headers, body_limit) {
        Ok(admitted) => Ok((admitted, body)),
        Err(refused) => Err(refuse(refused, headers, body).await),
    }
}

fn admit_now<'a>(
    state: &'a AppState,
    model: &str,
    model_slots: &Arc<Semaphore>,
    headers: &HeaderMap,
    body_limit: usize,
) -> Result<Admitted<'a>> {
    state.access.check(model, headers)?;
    let slot = state.admission.try_acquire().map_err(|_| {
        rejected(
            model,
            "in_flight",
            Error::TooManyInFlight(state.limits.max_in_flight),
        )
    })?;
    let model_slot = model_slots.clone().try_acquire_owned().map_err(|_| {
        let busy = Error::ModelBusy {
            model: model.to_string(),
            limit: state.limits.max_in_flight_per_model,
        };
        rejected(model, "model", busy)
    })?;
    let mut reservation = state.body_budget.reserve();
    // Past the body limit it is refused (413) as it is read: nothing to hold.
    if let Some(declared) = body::declared_length(headers).filter(|length| *length <= body_limit as u64) {
        reservation
            .cover(declared as usize)
            .map_err(|spent| rejected(model, "bytes", spent))?;
    }
    Ok(Admitted {
        _slot: slot,
        _model_slot: model_slot,
        body: reservation,
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
        body::discard(body, DISCARD_BYTES, DISCARD_TIME).await;
    }
    refused
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reservation_grows_within_the_budget_and_gives_it_back() {
        let budget = BodyBudget::new(10 * UNIT);
        let mut first = budget.reserve();
        first.cover(1).unwrap();
        first.cover(6 * UNIT).unwrap();
        assert_eq!(budget.available(), 4 * UNIT);
        let mut second = budget.reserve();
        assert!(matches!(second.cover(5 * UNIT), Err(Error::BodyBudget)));
        second.cover(4 * UNIT).unwrap();
        drop(first);
        assert_eq!(budget.available(), 6 * UNIT);
    }
}
