//! Prometheus metrics: names in one place, and the process-wide recorder.
//!
//! The `metrics` facade allows one global recorder per process; every server
//! in the process (tests start several) shares it and renders it at `/metrics`.

use std::sync::OnceLock;

use metrics::{Counter, Gauge, Histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

pub const REQUESTS: &str = "sluice_requests_total";
pub const REQUEST_DURATION: &str = "sluice_request_duration_seconds";
pub const QUEUE_DURATION: &str = "sluice_queue_duration_seconds";
pub const COMPUTE_DURATION: &str = "sluice_compute_duration_seconds";
pub const IN_FLIGHT: &str = "sluice_requests_in_flight";
pub const COMPUTE_REJECTED: &str = "sluice_compute_rejected_total";
pub const ADMISSION_REJECTED: &str = "sluice_admission_rejected_total";
pub const PREDICT_AUTH_REFUSED: &str = "sluice_predict_auth_refused_total";
pub const RATE_LIMITED: &str = "sluice_rate_limited_total";
pub const BATCH_SIZE: &str = "sluice_batch_size";
pub const BATCH_REJECTED: &str = "sluice_batch_rejected_total";
pub const DEADLINE_EXCEEDED: &str = "sluice_deadline_exceeded_total";
pub const HUNG_RUNS: &str = "sluice_hung_runs_total";
pub const UNHEALTHY_REFUSED: &str = "sluice_unhealthy_refused_total";
pub const ENGINE_REFUSED: &str = "sluice_engine_refused_total";
pub const RUNS_STOPPED: &str = "sluice_runs_stopped_total";
pub const CONTRACT_VIOLATIONS: &str = "sluice_contract_violations_total";
pub const CONTRACT_ROWS: &str = "sluice_contract_rows_total";
pub const MODEL_LOAD_DURATION: &str = "sluice_model_load_duration_seconds";
pub const MODEL_LOAD_FAILURES: &str = "sluice_model_load_failures_total";
pub const MODEL_WARM: &str = "sluice_model_warm";
pub const MODEL_READY: &str = "sluice_model_ready";
pub const MODEL_VERSIONS_LIVE: &str = "sluice_model_versions_live";
pub const SHADOW_REQUESTS: &str = "sluice_shadow_requests_total";
pub const SHADOW_ERRORS: &str = "sluice_shadow_errors_total";
pub const SHADOW_DROPPED: &str = "sluice_shadow_dropped_total";
pub const SHADOW_ROWS: &str = "sluice_shadow_compared_rows_total";
pub const SHADOW_AGREEMENTS: &str = "sluice_shadow_agreements_total";
pub const SHADOW_MEAN_ABS_DIFF: &str = "sluice_shadow_mean_abs_diff";
pub const SHADOW_MAX_ABS_DIFF: &str = "sluice_shadow_max_abs_diff";
pub const PREDLOG_RECORDS: &str = "sluice_prediction_log_records_total";
pub const PREDLOG_DROPPED: &str = "sluice_prediction_log_dropped_total";
pub const PREDLOG_SEGMENTS: &str = "sluice_prediction_log_segments_total";
pub const PREDLOG_WRITE_FAILURES: &str = "sluice_prediction_log_write_failures_total";
pub const FEEDBACK_LABELS: &str = "sluice_feedback_labels_total";
pub const FEEDBACK_REFUSED: &str = "sluice_feedback_refused_total";
pub const GUARD_TRIPS: &str = "sluice_guard_trips_total";
pub const CACHE_CORRUPTIONS: &str = "sluice_artifact_cache_corruptions_total";
pub const REGISTRY_ERRORS: &str = "sluice_registry_watch_errors_total";
pub const DEPLOYMENTS_REVISION: &str = "sluice_deployments_revision";

/// Latency buckets from 50 µs to 10 s: microsecond models and slow CNNs alike.
const LATENCY_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    10.0,
];

/// Rows per batched run, from one request alone to Triton-sized batches.
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0];

/// Absolute differences between a shadow's answers and the primary's, from
/// float rounding (1e-7) to a different model (10).
const DIFFERENCE_BUCKETS: &[f64] = &[1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 0.01, 0.1, 1.0, 10.0];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the recorder on first call and returns the handle that renders it.
pub fn handle() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(LATENCY_BUCKETS)
                .expect("latency buckets are not empty")
                .set_buckets_for_metric(
                    metrics_exporter_prometheus::Matcher::Prefix("sluice_shadow_".into()),
                    DIFFERENCE_BUCKETS,
                )
                .expect("difference buckets are not empty")
                .set_buckets_for_metric(
                    metrics_exporter_prometheus::Matcher::Full(BATCH_SIZE.into()),
                    BATCH_BUCKETS,
                )
                .expect("batch buckets are not empty")
                .build_recorder();
            let handle = recorder.handle();
            // Fails only if another recorder was installed first: then ours
            // renders nothing, which the metrics test would show.
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics will be empty");
            }
            describe();
            // Histograms are drained into their buckets by upkeep: without it
            // samples pile up between scrapes.
            let upkeep = handle.clone();
            std::thread::Builder::new()
                .name("sluice-metrics-upkeep".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(std::time::Duration::from_secs(5));
                        upkeep.run_upkeep();
                    }
                })
                .expect("spawning the metrics upkeep thread");
            handle
        })
        .clone()
}

fn describe() {
    metrics::describe_counter!(
        REQUESTS,
        "Inference requests by model, version and HTTP status code"
    );
    metrics::describe_histogram!(
        REQUEST_DURATION,
        metrics::Unit::Seconds,
        "Inference request duration, body read to response"
    );
    metrics::describe_histogram!(
        QUEUE_DURATION,
        metrics::Unit::Seconds,
        "Time an inference waited for a compute thread"
    );
    metrics::describe_histogram!(
        COMPUTE_DURATION,
        metrics::Unit::Seconds,
        "Time an inference ran in its engine"
    );
    metrics::describe_gauge!(IN_FLIGHT, "Inference requests being served");
    metrics::describe_counter!(
        ENGINE_REFUSED,
        "Inference requests the engine refused as invalid after the gateway's validation passed them (answered 400), by model and version"
    );
    metrics::describe_counter!(
        COMPUTE_REJECTED,
        "Inference requests refused because the compute queue was full"
    );
    metrics::describe_counter!(
        ADMISSION_REJECTED,
        "Inference and feedback requests refused (503), by reason: in_flight (--max-in-flight), model (--max-in-flight-per-model), bytes (--max-body-bytes-in-flight)"
    );
    metrics::describe_counter!(
        PREDICT_AUTH_REFUSED,
        "Inference and feedback requests refused for their predict token, by reason (missing, unknown: 401; forbidden: 403)"
    );
    metrics::describe_counter!(
        RATE_LIMITED,
        "Inference and feedback requests refused (429) because their predict token was over its rate limit, by token name"
    );
    metrics::describe_histogram!(BATCH_SIZE, "Rows in each batched run, by model and version");
    metrics::describe_counter!(
        BATCH_REJECTED,
        "Inference requests refused because the model's batch queue was full"
    );
    metrics::describe_counter!(
        DEADLINE_EXCEEDED,
        "Inference requests whose deadline expired (their timeout, or --request-timeout-ms), by where they waited"
    );
    metrics::describe_counter!(
        HUNG_RUNS,
        "Times a version was marked unhealthy because a run went past --hung-run-ms, by model and backend"
    );
    metrics::describe_counter!(
        RUNS_STOPPED,
        "ONNX Runtime runs stopped because they went past --hung-run-ms (their requests were answered 504)"
    );
    metrics::describe_counter!(
        UNHEALTHY_REFUSED,
        "Inference requests refused (503) because the version they routed to had a hung run, by model"
    );
    metrics::describe_counter!(
        CONTRACT_VIOLATIONS,
        "Rows breaking a check of the version's data contract, by check (feature:min|max|categories|missing, or a rule)"
    );
    metrics::describe_counter!(CONTRACT_ROWS, "Rows checked against the version's data contract");
    metrics::describe_histogram!(
        MODEL_LOAD_DURATION,
        metrics::Unit::Seconds,
        "Time to load and warm a model version"
    );
    metrics::describe_counter!(MODEL_LOAD_FAILURES, "Model versions that failed to load");
    metrics::describe_gauge!(MODEL_VERSIONS_LIVE, "Versions of each model serving traffic");
    metrics::describe_gauge!(
        MODEL_WARM,
        "1 when a loaded version ran its warm-up, 0 when it serves cold (no synthetic input ran)"
    );
    metrics::describe_gauge!(
        MODEL_READY,
        "1 when a repository model serves a version, 0 when none loaded (its load error is in its metadata)"
    );
    metrics::describe_counter!(
        SHADOW_REQUESTS,
        "Requests mirrored to a shadow version and compared"
    );
    metrics::describe_counter!(SHADOW_ERRORS, "Mirrored requests the shadow version failed");
    metrics::describe_counter!(
        SHADOW_DROPPED,
        "Mirrored requests dropped because the shadow queue was full"
    );
    metrics::describe_counter!(
        SHADOW_ROWS,
        "Rows whose predicted class the shadow and the primary were compared on"
    );
    metrics::describe_counter!(
        SHADOW_AGREEMENTS,
        "Compared rows where the shadow predicted the primary's class"
    );
    metrics::describe_histogram!(
        SHADOW_MEAN_ABS_DIFF,
        "Mean absolute difference between shadow and primary outputs, per mirrored request"
    );
    metrics::describe_histogram!(
        SHADOW_MAX_ABS_DIFF,
        "Largest absolute difference between shadow and primary outputs, per mirrored request"
    );
    metrics::describe_counter!(
        PREDLOG_RECORDS,
        "Predictions written to the prediction log (counted once their segment is stored)"
    );
    metrics::describe_counter!(
        PREDLOG_DROPPED,
        "Predictions not logged: the log's queue was full, or their segment could not be stored"
    );
    metrics::describe_counter!(PREDLOG_SEGMENTS, "Prediction log segments written to the store");
    metrics::describe_counter!(
        PREDLOG_WRITE_FAILURES,
        "Prediction log segments the store refused (their records are lost)"
    );
    metrics::describe_counter!(
        FEEDBACK_LABELS,
        "Ground-truth labels stored for the registry to join with logged predictions"
    );
    metrics::describe_counter!(
        FEEDBACK_REFUSED,
        "Feedback requests refused (429) because this gateway wrote --feedback-bytes-per-hour of labels this hour"
    );
    metrics::describe_counter!(
        GUARD_TRIPS,
        "Canaries this gateway stopped routing to because they failed too many of their last requests"
    );
    metrics::describe_counter!(
        CACHE_CORRUPTIONS,
        "Cached artifacts that no longer matched their sha256 and were fetched again"
    );
    metrics::describe_counter!(
        REGISTRY_ERRORS,
        "Failed calls to the registry while following its deployments"
    );
    metrics::describe_gauge!(
        DEPLOYMENTS_REVISION,
        "Registry deployments revision this gateway serves"
    );
}

/// The in-flight gauge, resolved once: a request only touches an atomic.
pub fn in_flight() -> &'static Gauge {
    static GAUGE: OnceLock<Gauge> = OnceLock::new();
    GAUGE.get_or_init(|| {
        handle();
        metrics::gauge!(IN_FLIGHT)
    })
}

/// The series of one model version, resolved when it loads, so that the
/// request path increments atomics instead of looking up labelled series
/// (and cloning their label strings) half a dozen times per request.
pub struct ModelMetrics {
    model: String,
    version: String,
    pub request_duration: Histogram,
    pub queue_duration: Histogram,
    pub compute_duration: Histogram,
    /// Requests its engine refused (`Error::EngineRefused`).
    pub engine_refused: Counter,
    /// Counters for the codes an inference commonly answers; others are
    /// looked up when they happen.
    common_codes: [(u16, Counter); 8],
}

impl ModelMetrics {
    pub fn new(model: &str, version: &str) -> ModelMetrics {
        // Handles made before the recorder exists would count nothing.
        handle();
        let labels = [("model", model.to_string()), ("version", version.to_string())];
        let code = |code: u16| {
            let counter = metrics::counter!(REQUESTS, "model" => model.to_string(), "version" => version.to_string(), "code" => code.to_string());
            (code, counter)
        };
        ModelMetrics {
            model: model.to_string(),
            version: version.to_string(),
            request_duration: metrics::histogram!(REQUEST_DURATION, &labels),
            queue_duration: metrics::histogram!(QUEUE_DURATION, &labels),
            compute_duration: metrics::histogram!(COMPUTE_DURATION, &labels),
            engine_refused: metrics::counter!(ENGINE_REFUSED, &labels),
            // 422 and 504 are contract refusals and expired deadlines: frequent when they come.
            common_codes: [
                code(200),
                code(400),
                code(413),
                code(415),
                code(422),
                code(500),
                code(503),
                code(504),
            ],
        }
    }

    pub fn count(&self, code: u16) {
        match self.common_codes.iter().find(|(common, _)| *common == code) {
            Some((_, counter)) => counter.increment(1),
            None => metrics::counter!(
                REQUESTS,
                "model" => self.model.clone(),
                "version" => self.version.clone(),
                "code" => code.to_string()
            )
            .increment(1),
        }
    }
}
