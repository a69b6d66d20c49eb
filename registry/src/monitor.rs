//! The monitor: one control-plane loop that, every tick, joins new feedback
//! with the prediction log, measures drift and realized performance of every
//! deployed version (the Prometheus gauges), evaluates each model's trigger
//! rules on clock-aligned windows, and moves trigger runs along (delivery,
//! expiry, the automatic canary).
//!
//! Rule streaks live in memory: after a restart a drift rule needs its N
//! windows again, which errs on the side of not retraining twice.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use sluice_registry_client::feedback::Performance;
use sluice_registry_client::profile::{DriftReport, DriftThresholds, ReferenceProfile};
use sluice_registry_client::trigger::{RuleProgress, RunStatus, TriggerAction, TriggerPolicy, TriggerRule};

use crate::cron::Cron;
use crate::error::Result;
use crate::state::AppState;
use crate::store::{deployments, triggers};
use crate::trigger::{self, Dispatcher, Fired, Firing};

/// The window the gauges describe (the drift API's default too).
pub const GAUGE_WINDOW_MS: u64 = 10 * 60 * 1000;

pub const DRIFT_PSI: &str = "sluice_drift_psi";
pub const DRIFT_JS: &str = "sluice_drift_js_distance";
pub const DRIFT_KS: &str = "sluice_drift_ks";
pub const DRIFT_CHI_SQUARE_P: &str = "sluice_drift_chi_square_p";
pub const DRIFT_FEATURE_DRIFTED: &str = "sluice_drift_feature_drifted";
pub const DRIFT_PREDICTION: &str = "sluice_drift_prediction_drifted";
pub const DRIFT_SHARE: &str = "sluice_drift_drifted_share";
pub const DRIFT_DATASET: &str = "sluice_drift_dataset_drifted";
pub const DRIFT_ROWS: &str = "sluice_drift_rows";
pub const REALIZED: &str = "sluice_feedback_realized";
pub const JOINED: &str = "sluice_feedback_joined_rows";
pub const UNMATCHED: &str = "sluice_feedback_unmatched";
pub const SLICE_GAP: &str = "sluice_slice_gap";

/// What one tick needs from the store, read at once.
struct Snapshot {
    /// (model, version, its profile) for every deployed target.
    served: Vec<(String, u64, Option<ReferenceProfile>)>,
    /// (model, serving version, policy).
    policies: Vec<(String, Option<u64>, TriggerPolicy)>,
}

/// A rule's consecutive bad windows.
#[derive(Default)]
struct Streak {
    base_version: u64,
    last_window_end: u64,
    bad: Vec<Value>,
}

impl Streak {
    /// Judges the window of `window_ms` that ended last before `now` (once:
    /// later calls in the same window do nothing). When it makes `windows`
    /// bad ones in a row, of the same base version, returns their evidence
    /// and the last one's end, and starts counting again.
    fn judge(
        &mut self,
        base: u64,
        (window_ms, windows): (u64, u32),
        now: u64,
        verdict: impl Fn(u64, u64) -> Option<Value>,
    ) -> Option<(Vec<Value>, u64)> {
        let end = now / window_ms * window_ms;
        if self.last_window_end >= end {
            return None;
        }
        let consecutive = self.last_window_end + window_ms == end && self.base_version == base;
        if !consecutive {
            self.bad.clear();
        }
        self.base_version = base;
        self.last_window_end = end;
        match verdict(end - window_ms, end) {
            Some(evidence) => self.bad.push(evidence),
            None => self.bad.clear(),
        }
        (self.bad.len() >= windows as usize).then(|| (std::mem::take(&mut self.bad), end))
    }
}

pub struct Monitor {
    state: Arc<AppState>,
    registry_url: String,
    dispatcher: Arc<Dispatcher>,
    streaks: HashMap<(String, usize), Streak>,
    schedules_checked: HashMap<(String, usize), u64>,
    /// Each model's rules as last seen (JSON): changed rules start their
    /// streaks afresh.
    policies_seen: HashMap<String, String>,
}

pub async fn run(
    state: Arc<AppState>,
    tick: Duration,
    registry_url: String,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) {
    let mut monitor = Monitor {
        state,
        registry_url,
        dispatcher: Arc::new(Dispatcher::default()),
        streaks: HashMap::new(),
        schedules_checked: HashMap::new(),
        policies_seen: HashMap::new(),
    };
    if let Err(err) = monitor.orphans().await {
        tracing::error!(error = %err, "monitor cannot settle the runs of a previous process");
    }
    loop {
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = stopping.wait_for(|stopped| *stopped) => return,
        }
        if let Err(err) = monitor.tick().await {
            tracing::error!(error = %err, "monitor tick failed");
        }
    }
}

impl Monitor {
    /// A command's process died with the previous registry process: its run failed.
    async fn orphans(&self) -> Result<()> {
        self.state
            .blocking(|store, _| {
                store.write(|tx| {
                    for run in triggers::with_status(tx, &[RunStatus::Running])? {
                        let command = triggers::find_policy(tx, &run.model)?
                            .is_some_and(|policy| matches!(policy.action, TriggerAction::Command { .. }));
                        if command {
                            let detail = "the registry restarted while its command ran".to_string();
                            trigger::settle(tx, "trigger", run.id, RunStatus::Failed, Some(detail))?;
                        }
                    }
                    Ok(())
                })
            })
            .await
    }

    async fn tick(&mut self) -> Result<()> {
        if let Err(err) = self.state.joiner.scan().await {
            tracing::warn!(error = %err, "cannot read the prediction or feedback log");
        }
        let snapshot = self.state.blocking(|store, _| store.read(read_snapshot)).await?;
        let now = self.state.clock.now_ms();
        for (model, version, profile_opt) in &snapshot.served {
            if let Some(profile) = profile_opt {
                let window = self
                    .state
                    .stats
                    .since(model, *version, now.saturating_sub(GAUGE_WINDOW_MS));
                let report = crate::drift::report(
                    model,
                    *version,
                    GAUGE_WINDOW_MS,
                    profile,
                    &window,
                    DriftThresholds::default(),
                );
                drift_gauges(&report);
            }
            let performance =
                self.state
                    .joiner
                    .performance(model, *version, now.saturating_sub(GAUGE_WINDOW_MS), now);
            performance_gauges(&performance);
            // The gap between slices over what slice gates look at (hours of labels).
            let slices = self.state.joiner.slices(
                model,
                *version,
                now.saturating_sub(self.state.joiner.retained_ms()),
                now,
                self.state.policy.slice_min_rows,
            );
            slice_gauges(&slices);
        }
        let profiles: HashMap<(String, u64), ReferenceProfile> = snapshot
            .served
            .into_iter()
            .filter_map(|(model, version, profile_opt)| {
                profile_opt.map(|profile| ((model, version), profile))
            })
            .collect();
        let state = self.state.clone();
        for (model, serving_opt, policy) in snapshot.policies {
            // A policy set again unchanged (a GitOps loop) keeps its streaks;
            // a changed one starts them afresh. Schedules keep when they were
            // last checked either way: a new cron is due from then on.
            let rules = serde_json::to_string(&policy.rules).unwrap_or_default();
            if self.policies_seen.get(&model) != Some(&rules) {
                self.streaks.retain(|(name, _), _| *name != model);
                self.policies_seen.insert(model.clone(), rules);
            }
            let Some(base) = serving_opt else {
                continue;
            };
            for (index, rule) in policy.rules.iter().enumerate() {
                let firing_opt = match rule {
                    TriggerRule::Drift {
                        window_ms,
                        windows,
                        thresholds,
                    } => {
                        let thresholds = thresholds.unwrap_or_default();
                        let profile_opt = profiles.get(&(model.clone(), base));
                        let verdict = |start: u64, end: u64| {
                            let profile = profile_opt?;
                            let window = state.stats.between(&model, base, start, end);
                            let report =
                                crate::drift::report(&model, base, *window_ms, profile, &window, thresholds);
                            report.dataset_drift.then(|| drift_evidence(&report, start))
                        };
                        self.windowed(
                            "drift",
                            (&model, index),
                            base,
                            (*window_ms, *windows),
                            now,
                            verdict,
                        )
                    }
                    TriggerRule::Performance {
                        metric,
                        threshold,
                        window_ms,
                        windows,
                        min_labels,
                    } => {
                        let verdict = |start: u64, end: u64| {
                            let performance = state.joiner.performance(&model, base, start, end);
                            let realized = match metric.as_str() {
                                "accuracy" => performance.accuracy,
                                "auc" => performance.auc,
                                _ => performance.mae,
                            }?;
                            let worse = if metric == "mae" {
                                realized > *threshold
                            } else {
                                realized < *threshold
                            };
                            (performance.joined >= *min_labels && worse).then(|| {
                                json!({"start_ms": start, "end_ms": end, "metric": metric, "realized": realized,
                                       "threshold": threshold, "joined": performance.joined})
                            })
                        };
                        // A window's labels join up to a grace later (their
                        // predictions' segments come once a minute): judge it then.
                        let settled = now.saturating_sub(state.joiner.grace_ms());
                        self.windowed(
                            "performance",
                            (&model, index),
                            base,
                            (*window_ms, *windows),
                            settled,
                            verdict,
                        )
                    }
                    TriggerRule::Contract {
                        max_rate,
                        window_ms,
                        windows,
                        min_rows,
                    } => {
                        let verdict = |start: u64, end: u64| {
                            let window = state.stats.between(&model, base, start, end);
                            let (check, rate) = window.worst_contract_check()?;
                            (window.contract_rows >= *min_rows && rate > *max_rate).then(|| {
                                json!({"start_ms": start, "end_ms": end, "check": check, "rate": rate,
                                       "max_rate": max_rate, "rows": window.contract_rows})
                            })
                        };
                        self.windowed(
                            "contract",
                            (&model, index),
                            base,
                            (*window_ms, *windows),
                            now,
                            verdict,
                        )
                    }
                    TriggerRule::Schedule { cron } => self.scheduled(&model, index, cron, now),
                };
                if let Some((reason, evidence, window, key)) = firing_opt {
                    self.fire(&model, reason, evidence, window, key).await;
                }
            }
        }
        self.publish_progress();
        self.dispatch_and_settle().await
    }

    /// Tells the API where every streak stands.
    fn publish_progress(&self) {
        let mut progress: HashMap<String, Vec<RuleProgress>> = HashMap::new();
        for ((model, rule), streak) in &self.streaks {
            progress.entry(model.clone()).or_default().push(RuleProgress {
                rule: *rule,
                last_window_end_ms: streak.last_window_end,
                bad_in_a_row: streak.bad.len() as u32,
            });
        }
        for rules in progress.values_mut() {
            rules.sort_by_key(|rule| rule.rule);
        }
        *self
            .state
            .trigger_progress
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = progress;
    }

    /// Judges the window that ended at the last boundary of `window_ms`, once;
    /// returns a firing when `windows` in a row were bad.
    fn windowed(
        &mut self,
        reason: &'static str,
        (model, index): (&str, usize),
        base: u64,
        (window_ms, windows): (u64, u32),
        now: u64,
        verdict: impl Fn(u64, u64) -> Option<Value>,
    ) -> Option<(&'static str, Value, (u64, u64), String)> {
        let streak = self.streaks.entry((model.to_string(), index)).or_default();
        let (bad, end) = streak.judge(base, (window_ms, windows), now, verdict)?;
        let evidence = json!({ "windows": bad });
        let start = end.saturating_sub(window_ms * u64::from(windows));
        Some((
            reason,
            evidence,
            (start, end),
            format!("{reason}:{model}:{base}:{end}"),
        ))
    }

    fn scheduled(
        &mut self,
        model: &str,
        index: usize,
        cron: &str,
        now: u64,
    ) -> Option<(&'static str, Value, (u64, u64), String)> {
        let checked = self
            .schedules_checked
            .entry((model.to_string(), index))
            .or_insert(now);
        let after = *checked;
        *checked = now;
        let due = Cron::parse(cron).ok()?.due(after, now)?;
        let evidence = json!({ "cron": cron, "scheduled_ms": due });
        Some((
            "schedule",
            evidence,
            (due, due),
            format!("schedule:{model}:{due}"),
        ))
    }

    async fn fire(
        &self,
        model: &str,
        reason: &'static str,
        evidence: Value,
        window: (u64, u64),
        key: String,
    ) {
        let model_name = model.to_string();
        let now = self.state.clock.now_ms();
        let outcome = self
            .state
            .blocking(move |store, _| {
                store.write(|tx| {
                    trigger::fire(
                        tx,
                        Firing {
                            actor: "trigger",
                            model: &model_name,
                            reason,
                            evidence,
                            window,
                            idempotency_key: key,
                            now_ms: now,
                        },
                    )
                })
            })
            .await;
        match outcome {
            Ok(Fired::New(run)) => tracing::info!(model, run = run.id, reason, "training trigger fired"),
            Ok(Fired::Existing(_)) => {}
            Ok(Fired::Skipped(why)) => tracing::info!(model, reason, %why, "training trigger skipped"),
            Err(err) => tracing::warn!(model, reason, error = %err, "training trigger could not fire"),
        }
    }

    /// The rollout's quality gates on the version `run` registered, once it
    /// may take traffic (until then `start_canary` waits for it).
    async fn canary_gates(&self, run: &sluice_registry_client::trigger::TriggerRun) -> Result<()> {
        let gates = crate::quality::QualityGates::for_rollout(&self.state.policy);
        let Some(number) = run.result_version.filter(|_| gates.require_suite) else {
            return Ok(());
        };
        let model = run.model.clone();
        let version = self
            .state
            .blocking(move |store, _| {
                store.read(|connection| crate::store::versions::get(connection, &model, number))
            })
            .await?;
        if !self.state.policy.is_deployable(version.stage) {
            return Ok(());
        }
        gates.check(&self.state, &version, "trigger").await
    }

    /// Delivers fired runs, expires stale ones, starts due canaries.
    async fn dispatch_and_settle(&self) -> Result<()> {
        let governance = self.state.policy.clone();
        let now = self.state.clock.now_ms();
        let (pending, candidates) = self
            .state
            .blocking(move |store, _| {
                store.write(|tx| {
                    trigger::expire(tx, now)?;
                    let mut pending = Vec::new();
                    for run in triggers::with_status(tx, &[RunStatus::Dispatching])? {
                        if let Some(policy) = triggers::find_policy(tx, &run.model)? {
                            pending.push((run, policy));
                        }
                    }
                    Ok((pending, trigger::canary_candidates(tx)?))
                })
            })
            .await?;
        for (run, policy) in pending {
            self.dispatcher
                .dispatch(&self.state, &self.registry_url, run, policy);
        }
        for run in candidates {
            // A canary started by a trigger passes the gates a person's would.
            if let Err(err) = self.canary_gates(&run).await {
                // A store failure or outage is tried again at the next tick.
                if let crate::error::Error::Internal(_) | crate::error::Error::Unavailable(_) = err {
                    tracing::warn!(run = run.id, error = %err, "cannot check a trigger's canary yet");
                } else {
                    self.state
                        .blocking(move |store, _| store.write(|tx| trigger::refuse_canary(tx, run.id, &err)))
                        .await?;
                }
                continue;
            }
            let governance = governance.clone();
            let at = crate::rollout::StartAt::of(&self.state);
            let started = self
                .state
                .blocking(move |store, _| {
                    store.write(|tx| trigger::start_canary(tx, &governance, run.id, at))
                })
                .await;
            match started {
                Ok(Some(decided)) => decided.announce(&self.state),
                Ok(None) => {}
                // A store failure is tried again at the next tick; a refusal
                // (another rollout is on, the version cannot take traffic) is kept.
                Err(err @ (crate::error::Error::Internal(_) | crate::error::Error::Unavailable(_))) => {
                    tracing::warn!(run = run.id, error = %err, "cannot start a trigger's canary yet");
                }
                Err(err) => {
                    self.state
                        .blocking(move |store, _| store.write(|tx| trigger::refuse_canary(tx, run.id, &err)))
                        .await?;
                }
            }
        }
        Ok(())
    }
}

fn read_snapshot(connection: &crate::store::sql::Connection<'_>) -> Result<Snapshot> {
    let mut served = Vec::new();
    for deployment in deployments::list(connection)?.deployments {
        for target in &deployment.spec.targets {
            let profile = crate::drift::load_profile(connection, &deployment.model, target.version)?;
            served.push((deployment.model.clone(), target.version, profile));
        }
    }
    let mut policies = Vec::new();
    for state in triggers::states(connection)? {
        let serving = trigger::serving_version(connection, &state.model)?;
        policies.push((state.model, serving, state.policy));
    }
    Ok(Snapshot { served, policies })
}

fn drift_evidence(report: &DriftReport, start: u64) -> Value {
    let drifted: Vec<Value> = report
        .features
        .iter()
        .filter(|feature| feature.status == "drifted")
        .map(|feature| json!({"feature": feature.name, "psi": feature.psi, "js_distance": feature.js_distance, "ks": feature.ks}))
        .collect();
    json!({
        "start_ms": start,
        "end_ms": start + report.window_ms,
        "rows": report.rows,
        "drifted_share": report.drifted_share,
        "drifted": drifted,
    })
}

fn drift_gauges(report: &DriftReport) {
    let model = report.model.clone();
    let version = report.version.to_string();
    // Features and outputs share the gauges, told apart by a `column` label.
    let columns = report
        .features
        .iter()
        .map(|feature| ("feature", feature))
        .chain(report.outputs.iter().map(|output| ("output", output)));
    for (column, drift) in columns {
        let labels = [
            ("model", model.clone()),
            ("version", version.clone()),
            ("column", column.to_string()),
            ("feature", drift.name.clone()),
        ];
        metrics::gauge!(DRIFT_PSI, &labels).set(drift.psi);
        metrics::gauge!(DRIFT_JS, &labels).set(drift.js_distance);
        if let Some(ks) = drift.ks {
            metrics::gauge!(DRIFT_KS, &labels).set(ks);
        }
        if let Some(p_value) = drift.chi_square_p {
            metrics::gauge!(DRIFT_CHI_SQUARE_P, &labels).set(p_value);
        }
        metrics::gauge!(DRIFT_FEATURE_DRIFTED, &labels).set(f64::from(u8::from(drift.status == "drifted")));
    }
    let labels = [("model", model), ("version", version)];
    metrics::gauge!(DRIFT_SHARE, &labels).set(report.drifted_share);
    metrics::gauge!(DRIFT_DATASET, &labels).set(f64::from(u8::from(report.dataset_drift)));
    metrics::gauge!(DRIFT_PREDICTION, &labels).set(f64::from(u8::from(report.prediction_drift)));
    metrics::gauge!(DRIFT_ROWS, &labels).set(report.rows as f64);
}

fn slice_gauges(report: &sluice_registry_client::slices::SliceReport) {
    for gap in &report.gaps {
        let labels = [
            ("model", report.model.clone()),
            ("version", report.version.to_string()),
            ("metric", gap.metric.clone()),
        ];
        metrics::gauge!(SLICE_GAP, &labels).set(gap.gap);
    }
}

fn performance_gauges(performance: &Performance) {
    let model = performance.model.clone();
    let version = performance.version.to_string();
    for (metric, value_opt) in [
        ("accuracy", performance.accuracy),
        ("auc", performance.auc),
        ("mae", performance.mae),
    ] {
        if let Some(value) = value_opt {
            let labels = [
                ("model", model.clone()),
                ("version", version.clone()),
                ("metric", metric.to_string()),
            ];
            metrics::gauge!(REALIZED, &labels).set(value);
        }
    }
    let labels = [("model", model.clone()), ("version", version)];
    metrics::gauge!(JOINED, &labels).set(performance.joined as f64);
    let unmatched = performance.unmatched;
    for (kind, count) in [
        ("unknown", unmatched.unknown),
        ("late", unmatched.late),
        ("duplicate", unmatched.duplicate),
        ("mismatched", unmatched.mismatched),
        ("pending", unmatched.pending),
        ("dropped", unmatched.dropped),
    ] {
        metrics::gauge!(UNMATCHED, "model" => model.clone(), "kind" => kind).set(count as f64);
    }
}

/// Describes the gauges (once, where a recorder is installed).
pub fn describe() {
    metrics::describe_gauge!(
        DRIFT_PSI,
        "Population stability index of a feature over the last 10 minutes"
    );
    metrics::describe_gauge!(
        DRIFT_JS,
        "Jensen-Shannon distance (log base 2) of a feature over the last 10 minutes"
    );
    metrics::describe_gauge!(
        DRIFT_KS,
        "Kolmogorov-Smirnov statistic of a feature's binned distribution over the last 10 minutes"
    );
    metrics::describe_gauge!(
        DRIFT_FEATURE_DRIFTED,
        "1 when a feature (column=feature) or an output column (column=output) drifted over the last 10 minutes"
    );
    metrics::describe_gauge!(
        DRIFT_CHI_SQUARE_P,
        "Chi-square p-value of a categorical feature or output against its reference over the last 10 minutes"
    );
    metrics::describe_gauge!(
        DRIFT_PREDICTION,
        "1 when some output column of the version drifted (prediction drift)"
    );
    metrics::describe_gauge!(
        DRIFT_SHARE,
        "Share of judged features that drifted over the last 10 minutes"
    );
    metrics::describe_gauge!(
        DRIFT_DATASET,
        "1 when the drifted share reached the dataset threshold"
    );
    metrics::describe_gauge!(DRIFT_ROWS, "Rows counted for drift over the last 10 minutes");
    metrics::describe_gauge!(
        REALIZED,
        "Realized accuracy, AUC or MAE from labels joined over the last 10 minutes"
    );
    metrics::describe_gauge!(
        JOINED,
        "Rows with a prediction and a label, joined over the last 10 minutes"
    );
    metrics::describe_gauge!(
        UNMATCHED,
        "Feedback not joined since the registry started: unknown, late, duplicate, mismatched, pending"
    );
    metrics::describe_gauge!(
        SLICE_GAP,
        "Largest difference of a realized metric between slices of the card's slice feature, over the labels the join keeps (what slice gates judge)"
    );
    metrics::describe_counter!(
        crate::quality::SUITE_RUNS,
        "Behavioural suite runs, by model and outcome (passed, failed)"
    );
    metrics::describe_counter!(trigger::FIRED, "Training trigger runs fired, by reason");
    metrics::describe_counter!(
        "sluice_registry_corrupt_artifacts_total",
        "Stored artifacts whose bytes no longer match their sha256, found when read (served as an error, never as a model)"
    );
    metrics::describe_counter!(
        trigger::SKIPPED,
        "Training triggers not fired because of the cooldown or the concurrency cap"
    );
    metrics::describe_counter!(
        trigger::WEBHOOK_ATTEMPTS,
        "Training trigger webhook deliveries tried"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: u64 = 1000;

    #[test]
    fn n_bad_windows_in_a_row_fire_once() {
        let mut streak = Streak::default();
        let bad = |start: u64, _end: u64| Some(json!(start));
        let good = |_: u64, _: u64| None;
        // Judged at 5.5 s: the window [4 s, 5 s); again within it, nothing.
        assert_eq!(streak.judge(1, (WINDOW, 2), 5500, bad), None);
        assert_eq!(streak.judge(1, (WINDOW, 2), 5900, bad), None);
        // The next window is the second bad one in a row: fire, with both.
        assert_eq!(
            streak.judge(1, (WINDOW, 2), 6100, bad),
            Some((vec![json!(4000), json!(5000)], 6000))
        );
        // Counting starts over: one more bad window is not enough.
        assert_eq!(streak.judge(1, (WINDOW, 2), 7100, bad), None);
        // A good window breaks the streak.
        assert_eq!(streak.judge(1, (WINDOW, 2), 8100, good), None);
        assert_eq!(streak.judge(1, (WINDOW, 2), 9100, bad), None);
        assert_eq!(
            streak.judge(1, (WINDOW, 2), 10_100, bad).map(|(_, end)| end),
            Some(10_000)
        );
    }

    #[test]
    fn a_gap_or_a_new_base_version_starts_over() {
        let mut streak = Streak::default();
        let bad = |start: u64, _end: u64| Some(json!(start));
        assert_eq!(streak.judge(1, (WINDOW, 2), 5100, bad), None);
        // The monitor missed a window (a slow tick): not consecutive.
        assert_eq!(streak.judge(1, (WINDOW, 2), 7100, bad), None);
        // The serving version changed: its drift is another story.
        assert_eq!(streak.judge(2, (WINDOW, 2), 8100, bad), None);
        assert!(streak.judge(2, (WINDOW, 2), 9100, bad).is_some());
    }
}
