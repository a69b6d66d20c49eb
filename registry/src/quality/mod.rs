//! Quality gates: the checks a version passes before it takes more traffic.
//!
//! - [`suite`] runs a model's behavioural suite on a version with the
//!   gateway's engine, and judges every case;
//! - this module runs it for the API (and keeps the report with the
//!   version), builds a version's per-slice report from the feedback join,
//!   and checks a stage's or a rollout's quality gates, refusing with what
//!   failed.

/// Suite runs by model and verdict (the monitor describes it with the others).
pub const SUITE_RUNS: &str = "sluice_suite_runs_total";

pub mod suite;

use std::sync::Arc;

use sluice_registry_client::slices::SliceReport;
use sluice_registry_client::suite::SuiteReport;
use sluice_registry_client::types::{GateResult, Stage, Version};

use crate::error::{Error, Result};
use crate::state::AppState;
use crate::store::suites;

/// Failures spelled out in a gate's refusal; the stored report has them all.
const SHOWN_FAILURES: usize = 4;

/// Runs revision `revision_opt` (the latest by default) of the model's suite
/// on `version` and keeps the report with the version.
pub async fn run_suite(
    state: &Arc<AppState>,
    version: &Version,
    revision_opt: Option<u64>,
    actor: &str,
) -> Result<SuiteReport> {
    let model = version.model.clone();
    let stored = state
        .blocking(move |store, _| store.read(|connection| suites::get(connection, &model, revision_opt)))
        .await?;
    let artifact = state.artifacts.get(&version.sha256).await?;
    let inspector = state.inspector.clone();
    let (version_owned, actor) = (version.clone(), actor.to_string());
    // Loading and running a model is CPU work: off the reactor.
    let report = tokio::task::spawn_blocking(move || {
        suite::run(inspector.as_ref(), &artifact, &version_owned, &stored, &actor)
    })
    .await
    .map_err(|err| Error::Internal(format!("suite task failed: {err}")))??;
    let kept = report.clone();
    state
        .blocking(move |store, _| store.write(|tx| suites::record_report(tx, &kept)))
        .await?;
    metrics::counter!(
        SUITE_RUNS,
        "model" => report.model.clone(),
        "outcome" => if report.passed { "passed" } else { "failed" }
    )
    .increment(1);
    Ok(report)
}

/// The version's realized performance per slice of its card's slice
/// feature, over the labels joined in the last `window_ms`.
pub fn slice_report(state: &AppState, version: &Version, window_ms: u64) -> SliceReport {
    let now = state.clock.now_ms();
    let mut report = state
        .joiner
        .slices(
            &version.model,
            version.version,
            now.saturating_sub(window_ms),
            now + 1,
            state.policy.slice_min_rows,
        )
        .with_spec(version.lineage.slice.clone());
    report.window_ms = window_ms;
    report
}

/// What must pass, and where the refusal says it was going.
pub struct QualityGates<'a> {
    /// The stage whose metric gates are reported with the quality gates,
    /// so that one refusal names every gate that failed.
    pub metric_gates_opt: Option<Stage>,
    pub require_suite: bool,
    pub slice_gates: &'a [crate::policy::Gate],
    /// `enter production`, `start a rollout`.
    pub doing: String,
}

impl QualityGates<'_> {
    pub fn for_stage(policy: &crate::policy::Policy, stage: Stage) -> QualityGates<'_> {
        let rule = policy.stages.get(&stage);
        QualityGates {
            metric_gates_opt: Some(stage),
            require_suite: rule.is_some_and(|rule| rule.require_suite),
            slice_gates: rule.map(|rule| rule.slice_gates.as_slice()).unwrap_or_default(),
            doing: format!("enter {stage}"),
        }
    }

    /// A rollout that passes promotes its canary to production, so its
    /// start also runs the suite when production requires one. Production's
    /// slice gates are not applied to a rollout: they need labelled traffic
    /// the canary has not served yet when it starts, and the rollout judges
    /// the canary on its own signals as it grows.
    pub fn for_rollout(policy: &crate::policy::Policy) -> QualityGates<'_> {
        QualityGates {
            metric_gates_opt: None,
            require_suite: policy.rollouts.require_suite || policy.rule(Stage::Production).require_suite,
            slice_gates: &[],
            doing: "start a rollout".into(),
        }
    }

    /// Runs the suite and checks the slice gates; a refusal (422) names
    /// every gate that failed.
    pub async fn check(&self, state: &Arc<AppState>, version: &Version, actor: &str) -> Result<()> {
        let mut failures = match self.metric_gates_opt {
            Some(stage) => state.policy.failed_gates(stage, &version.lineage),
            None => Vec::new(),
        };
        if self.require_suite {
            let model = version.model.clone();
            let has_suite = state
                .blocking(move |store, _| store.read(|connection| suites::find(connection, &model, None)))
                .await?
                .is_some();
            if has_suite {
                let report = run_suite(state, version, None, actor).await?;
                if !report.passed {
                    failures.push(format!(
                        "{} (the whole report: `sluice suite report {} {}`)",
                        report.summary(SHOWN_FAILURES),
                        version.model,
                        version.version
                    ));
                }
            } else {
                failures.push(format!(
                    "the policy requires a behavioural suite and '{}' has none: add one with `sluice suite put {} FILE`",
                    version.model, version.model
                ));
            }
        }
        if !self.slice_gates.is_empty() {
            let report = slice_report(state, version, state.joiner.retained_ms());
            failures.extend(
                self.slice_gates
                    .iter()
                    .filter_map(|gate| gate.slice_failure(&report)),
            );
        }
        if failures.is_empty() {
            return Ok(());
        }
        Err(Error::refused(format!(
            "version {} of '{}' cannot {}: {}",
            version.version,
            version.model,
            self.doing,
            failures.join("; ")
        )))
    }
}

/// Each gate of `stage` judged now against `version`, passed or not,
/// without running anything: the suite's verdict is the version's latest
/// report, and fails when that report is of an older suite revision than
/// the model's latest. (The suite and slice gates ran when the transition
/// was requested; the metric gates are checked again when it applies.)
pub async fn gate_results(state: &Arc<AppState>, version: &Version, stage: Stage) -> Result<Vec<GateResult>> {
    let rule = state.policy.rule(stage);
    let mut results: Vec<GateResult> = rule
        .gates
        .iter()
        .map(|gate| {
            let failure = gate.failure(&version.lineage);
            let detail = match (&failure, version.lineage.metrics.get(&gate.metric)) {
                (Some(why), _) => why.clone(),
                (None, Some(value)) => format!("{} is {value}", gate.metric),
                (None, None) => String::new(),
            };
            GateResult {
                kind: "metric".into(),
                gate: gate.to_string(),
                passed: failure.is_none(),
                detail,
            }
        })
        .collect();
    if rule.require_suite {
        let (model, number) = (version.model.clone(), version.version);
        let (suite, report) = state
            .blocking(move |store, _| {
                store.read(|connection| {
                    let suite = suites::find(connection, &model, None)?;
                    Ok((suite, suites::latest_report(connection, &model, number)?))
                })
            })
            .await?;
        let command = format!("`sluice versions test {} {}`", version.model, version.version);
        let (passed, detail) = match (suite, report) {
            (None, _) => (false, format!("'{}' has no behavioural suite", version.model)),
            (Some(_), None) => (false, format!("no report: run {command}")),
            (Some(suite), Some(report)) if report.suite_revision != suite.revision => (
                false,
                format!(
                    "the latest report is of suite revision {}, and the suite is at revision {}: run {command}",
                    report.suite_revision, suite.revision
                ),
            ),
            (Some(_), Some(report)) => (report.passed, report.summary(SHOWN_FAILURES)),
        };
        results.push(GateResult {
            kind: "suite".into(),
            gate: "behavioural suite".into(),
            passed,
            detail,
        });
    }
    if !rule.slice_gates.is_empty() {
        let report = slice_report(state, version, state.joiner.retained_ms());
        for gate in &rule.slice_gates {
            let failure = gate.slice_failure(&report);
            results.push(GateResult {
                kind: "slice".into(),
                gate: gate.to_string(),
                passed: failure.is_none(),
                detail: failure.unwrap_or_else(|| {
                    let metric = gate.metric.strip_suffix("_gap").unwrap_or(&gate.metric);
                    report
                        .gap(metric)
                        .map(|gap| {
                            format!(
                                "a gap of {:.4} between '{}' and '{}'",
                                gap.gap, gap.highest, gap.lowest
                            )
                        })
                        .unwrap_or_default()
                }),
            });
        }
    }
    Ok(results)
}
