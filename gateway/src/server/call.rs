//! One routed inference, whatever protocol carried it: the one routing
//! table load and its pick, admission, the hang check, what the request
//! does besides answering (log, mirrors, drift, contract), the run, and
//! its accounting. HTTP ([`super::handlers`]) and gRPC ([`super::grpc`])
//! differ only in how they read the call and write the answer.
//!
//! Statistics, guards and metrics count every answer by its HTTP status,
//! whichever protocol carried it: a rollout judges gRPC traffic as it
//! judges HTTP's.

use std::time::Instant;

use axum::http::HeaderMap;

use super::AppState;
use super::accounting::Accounting;
use super::admission;
use super::inference::{self, Answered, Logging, Mirrors, Payload, REQUEST_ID_HEADER, SideEffects};
use crate::error::{Error, Result};
use crate::metrics;
use crate::predlog::RouteKind;
use crate::routing::Picked;
use crate::stats::Outcome;
use sluice_registry_client::limits::check_request_id;

/// An inference as a protocol read it.
pub(super) struct Call<'a> {
    pub model: &'a str,
    /// Pinned to this version (a path's `/versions/{v}`, gRPC's `model_version`).
    pub version_opt: Option<&'a str>,
    /// HTTP headers or gRPC metadata: the sticky key, the predict token,
    /// `x-request-id`.
    pub headers: &'a HeaderMap,
    pub payload: Payload,
    /// When the request arrived: its timeouts count from here.
    pub arrived: Instant,
    /// When the caller stops waiting (gRPC's `grpc-timeout`).
    pub client_deadline_opt: Option<Instant>,
}

/// A call's answer, or why not, and the version that judged it (none when
/// it was refused before it reached one).
pub(super) struct Served {
    pub result: Result<Answered>,
    pub version_opt: Option<String>,
}

/// Keeps the in-flight gauge honest even when a client hangs up mid-request.
struct InFlight;

impl InFlight {
    fn enter() -> InFlight {
        metrics::in_flight().increment(1.0);
        InFlight
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        metrics::in_flight().decrement(1.0);
    }
}

/// A request refused before it reached a version: counted under empty
/// labels, so that a scan of random names cannot explode the metric's
/// cardinality, and never against a version.
fn unrouted(refused: Error, started: Instant) -> Served {
    count_unrouted(&refused, started);
    Served {
        result: Err(refused),
        version_opt: None,
    }
}

/// Counts a refusal that reached no version, under empty labels.
pub(super) fn count_unrouted(refused: &Error, started: Instant) {
    let code = refused.status().as_u16().to_string();
    ::metrics::counter!(metrics::REQUESTS, "model" => "", "version" => "", "code" => code).increment(1);
    ::metrics::histogram!(metrics::REQUEST_DURATION, "model" => "", "version" => "")
        .record(started.elapsed().as_secs_f64());
}

/// The caller's `x-request-id` for a logged prediction: kept with it and
/// joined on by the registry, so it must be short (400 otherwise).
fn logged_request_id(headers: &HeaderMap) -> Result<Option<String>> {
    let Some(value) = headers.get(REQUEST_ID_HEADER) else {
        return Ok(None);
    };
    check_request_id(value.to_str().unwrap_or_default(), REQUEST_ID_HEADER).map_err(Error::BadRequest)?;
    Ok(value.to_str().ok().map(str::to_string))
}

/// Whether and where the prediction is logged (`log_opt`: the route's
/// sample, with its inputs or not), under which caller's id.
fn logging(
    state: &AppState,
    headers: &HeaderMap,
    log_opt: Option<bool>,
    route: RouteKind,
    started: Instant,
) -> Result<Option<Logging>> {
    let (Some(with_inputs), Some(log)) = (log_opt, state.predictions_opt.clone()) else {
        return Ok(None);
    };
    Ok(Some(Logging {
        log,
        with_inputs,
        route,
        started,
        request_id_opt: logged_request_id(headers)?,
    }))
}

/// Routes, admits, runs and counts one inference.
pub(super) async fn infer(state: &AppState, call: Call<'_>) -> Served {
    let Call {
        model: model_name,
        version_opt,
        headers,
        payload,
        arrived: started,
        client_deadline_opt,
    } = call;
    // The one routing-table load of this request, and its pick; the Arc
    // keeps the version alive until we answer, whatever swaps happen meanwhile.
    let picked = state.routes.load().pick(model_name, version_opt, headers);
    let Picked {
        model,
        shadow_opt,
        canary,
        pinned,
        compare_with_opt,
        stable_opt,
        log_opt,
        contract_opt,
        slots,
    } = match picked {
        Ok(picked) => picked,
        Err(err) => return unrouted(err, started),
    };
    let admitted = match admission::admit_now(state, model_name, Some(&slots), headers) {
        Ok(admitted) => admitted,
        Err(refused) => return unrouted(payload.refuse(refused, headers).await, started),
    };
    let _in_flight = InFlight::enter();
    let canary_of_opt = stable_opt.filter(|_| canary);
    let accounting = Accounting::new(state, model.clone(), canary_of_opt, pinned, started);
    let version_opt = Some(model.version_label.clone());
    if model.watch.is_hung() {
        // Refused at once rather than queued behind the hung run, and
        // counted against the version: a hung canary fails its checks.
        ::metrics::counter!(metrics::UNHEALTHY_REFUSED, "model" => model.name.clone()).increment(1);
        let unhealthy = Error::Unhealthy(format!(
            "model '{}' version {} is unhealthy: one of its runs has gone past the hang bound; retry later",
            model.name, model.version
        ));
        let refused = payload.refuse(unhealthy, headers).await;
        accounting.finish(refused.status().as_u16(), Outcome::Failed);
        return Served {
            result: Err(refused),
            version_opt,
        };
    }
    let mirrors = Mirrors {
        shadow_opt,
        compare_with_opt,
    };
    let route = match (pinned, canary) {
        (true, _) => RouteKind::Pinned,
        (false, true) => RouteKind::Canary,
        (false, false) => RouteKind::Primary,
    };
    let result = match logging(state, headers, log_opt, route, started) {
        Err(refused) => Err(payload.refuse(refused, headers).await),
        Ok(logging_opt) => {
            let sides = SideEffects {
                mirrors,
                logging_opt,
                count_drift: !pinned,
                contract_opt,
            };
            inference::run(
                state,
                &model,
                sides,
                headers,
                payload,
                admitted,
                started,
                client_deadline_opt,
            )
            .await
        }
    };
    let result = result.map_err(|err| match err {
        Error::BodyBudget => admission::rejected(model_name, "bytes", Error::BodyBudget),
        err => err,
    });
    let (code, outcome) = match &result {
        Ok(answered) if answered.nonfinite => (200, Outcome::NonFinite),
        Ok(_) => (200, Outcome::of(200)),
        Err(err @ Error::EngineRefused(_)) => (err.status().as_u16(), Outcome::EngineRefused),
        Err(err) => (err.status().as_u16(), Outcome::of(err.status().as_u16())),
    };
    accounting.finish(code, outcome);
    Served { result, version_opt }
}
