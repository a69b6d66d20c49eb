//! A rollout's judgement, without the store: the statistics windows that
//! arrived feed its sequential tests (`evidence`), each interval is checked
//! at its end, and a verdict moves it on. `evaluate` in the parent writes
//! what these decide; the rollout simulation (`benches/src/bin/rollouts.rs`)
//! runs the same functions on simulated traffic.

use sluice_registry_client::rollout::{
    Evidence, IntervalResult, Rollout, RolloutPolicy, RolloutStatus, VersionWindow,
};

use super::evidence::{self, BOUNDARY};
use crate::store::now;

/// Intervals a rollout keeps in its record.
const MAX_INTERVALS_KEPT: usize = 100;

/// A class whose evidence is past this share of the boundary holds the
/// canary at its step: it is not promoted while the case against it builds.
const BUILDING: f64 = 0.5;

/// What a judged interval moves the rollout to.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    /// Stay at this step: an inconclusive interval, or a failed one short
    /// of the threshold.
    Hold,
    /// The next step's weight (already in the rollout).
    Advance,
    /// The last step passed.
    Promote,
    /// Failed: roll the canary back, for these reasons.
    RollBack(Vec<String>),
    /// `max_inconclusive` intervals in a row inconclusive, and the policy
    /// holds: say so once.
    Stall(Vec<String>),
}

/// A rollout of `canary` against `stable` at its first step, its first
/// interval and its evidence beginning at `now_ms`; revisions are the
/// store's to fill.
pub fn begin(
    model: &str,
    canary: u64,
    stable: u64,
    policy: RolloutPolicy,
    actor: &str,
    now_ms: u64,
) -> Result<Rollout, String> {
    let steps = policy.steps()?;
    let stamp = now();
    Ok(Rollout {
        model: model.to_string(),
        canary,
        stable,
        policy,
        status: RolloutStatus::Progressing,
        step: 0,
        canary_weight: steps[0],
        failed_intervals: 0,
        intervals: Vec::new(),
        started_by: actor.to_string(),
        started_at: stamp.clone(),
        updated_at: stamp,
        interval_started_ms: now_ms,
        started_revision: 0,
        deployment_revision: 0,
        inconclusive_in_a_row: 0,
        evidence: Evidence {
            until_ms: now_ms,
            ..Evidence::default()
        },
    })
}

/// Adds the windows that arrived up to `until_ms` to the rollout's
/// sequential tests; the reasons, when they are now conclusive against the
/// canary.
pub fn watch(
    rollout: &mut Rollout,
    canary: &VersionWindow,
    stable: &VersionWindow,
    until_ms: u64,
) -> Option<Vec<String>> {
    let elapsed_ms = until_ms.saturating_sub(rollout.evidence.until_ms);
    rollout.evidence.until_ms = until_ms;
    evidence::fold(&mut rollout.evidence, &rollout.policy, canary, stable, elapsed_ms)
}

/// The interval's checks on the windows that ended in it. `conclusive`: the
/// sequential tests already decided against the canary, for these reasons.
pub fn interval(
    rollout: &Rollout,
    canary: &VersionWindow,
    stable: &VersionWindow,
    conclusive: Option<Vec<String>>,
) -> IntervalResult {
    let policy = &rollout.policy;
    let mut result = IntervalResult {
        ended_at: now(),
        canary_weight: rollout.canary_weight,
        canary_requests: canary.requests,
        error_rate: canary.error_rate(),
        stable_error_rate: stable.error_rate(),
        engine_refused_rate: canary.engine_refused_rate(),
        stable_engine_refused_rate: stable.engine_refused_rate(),
        nonfinite_rate: canary.nonfinite_rate(),
        stable_nonfinite_rate: stable.nonfinite_rate(),
        p99_ms: canary.latency_quantile_ms(0.99),
        stable_p99_ms: stable.latency_quantile_ms(0.99),
        shadow_disagreement: canary.shadow_disagreement(),
        verdict: "passed".into(),
        reasons: Vec::new(),
        conclusive: false,
    };
    if let Some(reasons) = conclusive {
        result.verdict = "failed".into();
        result.reasons = reasons;
        result.conclusive = true;
        return result;
    }
    if canary.requests < policy.min_requests {
        result.verdict = "inconclusive".into();
        result.reasons.push(format!(
            "{} canary requests, fewer than min_requests {}",
            canary.requests, policy.min_requests
        ));
        return result;
    }
    // Rates (errors, refusals, timeouts, NaN rows, slow requests,
    // disagreement) are the sequential tests'; what is left are absolute
    // limits, and checks configured without data: in Flagger, a canary
    // whose comparisons were all dropped has not shown it agrees.
    let mut fail = |reason: String| result.reasons.push(reason);
    let exceeds = |value: f64, limit: f64| value.is_nan() || value > limit;
    if policy.max_nan_rate.is_some() && canary.output_rows == 0 {
        fail("no answered row of the canary to look for NaN or infinity in".into());
    }
    let p99_opt = canary.latency_quantile_ms(0.99);
    if let (Some(limit), Some(p99)) = (policy.max_p99_ms, p99_opt)
        && exceeds(p99, limit)
    {
        fail(format!("p99 {p99:.3} ms above max_p99_ms {limit}"));
    }
    if policy.max_p99_ratio.is_some() && (p99_opt.is_none() || stable.latency_quantile_ms(0.99).is_none()) {
        fail("no stable-version latency to compare the canary's with".into());
    }
    if policy.max_shadow_disagreement.is_some() && canary.shadow.rows == 0 {
        fail("no comparison of the canary's answers with the stable version's".into());
    }
    if let Some(limit) = policy.max_contract_violation_rate {
        match canary.worst_contract_check() {
            Some((check, rate)) if exceeds(rate, limit) => fail(format!(
                "{:.2}% of the canary's rows break its data contract's '{check}', above max_contract_violation_rate {:.2}%",
                rate * 100.0,
                limit * 100.0
            )),
            Some(_) => {}
            None => fail(
                "no row of the canary was checked against a data contract (does the version carry one, and does the deployment check it?)"
                    .into(),
            ),
        }
    }
    if !result.reasons.is_empty() {
        result.verdict = "failed".into();
        return result;
    }
    let building: Vec<String> = rollout
        .evidence
        .classes
        .iter()
        .filter(|class| class.score >= BUILDING)
        .map(|class| {
            format!(
                "evidence against the canary's {} is building (log-likelihood ratio {:.1} of {:.1}): held at this step",
                class.class,
                class.score * BOUNDARY,
                BOUNDARY
            )
        })
        .collect();
    if !building.is_empty() {
        result.verdict = "inconclusive".into();
        result.reasons = building;
    }
    result
}

/// Records `result` as the interval ending at `now_ms` and moves the
/// rollout on: its step, weight and counters. What the store must do (new
/// weights, a promotion, a rollback) is the answer.
pub fn conclude(rollout: &mut Rollout, steps: &[u32], result: IntervalResult, now_ms: u64) -> Next {
    rollout.interval_started_ms = now_ms;
    let verdict = result.verdict.clone();
    let reasons = result.reasons.clone();
    let conclusive = result.conclusive;
    rollout.intervals.push(result);
    // The latest intervals tell the story; a rollout left inconclusive for
    // days must not grow without bound.
    if rollout.intervals.len() > MAX_INTERVALS_KEPT {
        let excess = rollout.intervals.len() - MAX_INTERVALS_KEPT;
        rollout.intervals.drain(..excess);
    }
    rollout.inconclusive_in_a_row = match verdict.as_str() {
        "inconclusive" => rollout.inconclusive_in_a_row.saturating_add(1),
        _ => 0,
    };
    match verdict.as_str() {
        "passed" if rollout.step + 1 >= steps.len() => Next::Promote,
        "passed" => {
            rollout.step += 1;
            rollout.canary_weight = steps[rollout.step];
            Next::Advance
        }
        "failed" => {
            rollout.failed_intervals += 1;
            // The sequential tests weighed their own noise: `threshold` is
            // for the fixed limits, which do not.
            if conclusive || rollout.failed_intervals >= rollout.policy.threshold {
                Next::RollBack(reasons)
            } else {
                Next::Hold
            }
        }
        // Said once, when the count is reached: a rollout nobody can judge
        // must not sit at its canary weight unnoticed.
        "inconclusive" if rollout.inconclusive_in_a_row == rollout.policy.max_inconclusive => {
            let why = vec![format!(
                "{} intervals in a row inconclusive (max_inconclusive), the last: {}",
                rollout.inconclusive_in_a_row,
                reasons.join("; ")
            )];
            match rollout.policy.rollback_when_inconclusive {
                true => Next::RollBack(why),
                false => Next::Stall(why),
            }
        }
        _ => Next::Hold,
    }
}

#[cfg(test)]
mod tests {
    use sluice_registry_client::rollout::LATENCY_BUCKETS_MS;

    use super::*;

    fn rollout(policy: serde_json::Value) -> Rollout {
        let mut fields = serde_json::json!({"step_weights": [20, 50], "interval_ms": 1000, "min_requests": 10, "threshold": 2});
        for (key, value) in policy.as_object().unwrap() {
            fields[key] = value.clone();
        }
        let policy: RolloutPolicy = serde_json::from_value(fields).unwrap();
        let mut rollout = begin("credit", 2, 1, policy, "dora", 0).unwrap();
        (rollout.started_revision, rollout.deployment_revision) = (1, 1);
        rollout
    }

    fn answers(requests: u64, server_errors: u64) -> VersionWindow {
        VersionWindow {
            requests,
            server_errors,
            output_rows: requests,
            latency_buckets: vec![0; LATENCY_BUCKETS_MS.len() + 1],
            ..VersionWindow::default()
        }
    }

    fn contract(contract_rows: u64, violations: &[(&str, u64)]) -> VersionWindow {
        VersionWindow {
            contract_rows,
            contract_violations: violations
                .iter()
                .map(|(check, count)| (check.to_string(), *count))
                .collect(),
            ..answers(100, 0)
        }
    }

    #[test]
    fn a_canary_breaking_its_contract_too_often_fails_the_interval() {
        let checked = rollout(serde_json::json!({"max_contract_violation_rate": 0.05}));
        let stable = contract(0, &[]);
        let fine = interval(
            &checked,
            &contract(100, &[("age:min", 5), ("income:max", 2)]),
            &stable,
            None,
        );
        assert_eq!(fine.verdict, "passed", "{:?}", fine.reasons);
        let failed = interval(
            &checked,
            &contract(100, &[("age:min", 6), ("income:max", 2)]),
            &stable,
            None,
        );
        assert_eq!(failed.verdict, "failed");
        assert!(
            failed.reasons[0].contains("6.00% of the canary's rows break its data contract's 'age:min'"),
            "{:?}",
            failed.reasons
        );
        // Configured, but nothing was checked: the check fails, as other checks without data do.
        let unchecked = interval(&checked, &contract(0, &[]), &stable, None);
        assert_eq!(unchecked.verdict, "failed");
        assert!(unchecked.reasons[0].contains("no row of the canary was checked"));
        // Not configured: violations do not matter.
        let ignored = interval(
            &rollout(serde_json::json!({})),
            &contract(100, &[("age:min", 90)]),
            &stable,
            None,
        );
        assert_eq!(ignored.verdict, "passed");
    }

    #[test]
    fn configured_comparisons_without_data_fail() {
        let checks = [
            ("max_nan_rate", serde_json::json!(0.01), "NaN or infinity"),
            ("max_p99_ratio", serde_json::json!(2.0), "stable-version latency"),
            ("max_shadow_disagreement", serde_json::json!(0.1), "no comparison"),
        ];
        for (key, limit, says) in checks {
            let judged = rollout(serde_json::json!({ key: limit }));
            let silent = VersionWindow {
                output_rows: 0,
                ..answers(100, 0)
            };
            let result = interval(&judged, &silent, &silent, None);
            assert_eq!(result.verdict, "failed", "{key}");
            assert!(result.reasons[0].contains(says), "{key}: {:?}", result.reasons);
        }
    }

    /// Fewer than min_requests is inconclusive; the sequential tests may
    /// still fail the canary on what little it got.
    #[test]
    fn few_requests_are_inconclusive_unless_the_evidence_is_conclusive() {
        let mut judged = rollout(serde_json::json!({"min_requests": 100, "max_error_rate": 0.05}));
        let quiet = interval(&judged, &answers(20, 1), &answers(80, 0), None);
        assert_eq!(quiet.verdict, "inconclusive");
        assert!(watch(&mut judged, &answers(20, 1), &answers(80, 0), 1000).is_none());
        let reasons = watch(&mut judged, &answers(20, 20), &answers(80, 0), 2000).expect("20 of 20 failed");
        assert!(reasons[0].starts_with("error rate"), "{reasons:?}");
        assert_eq!(judged.evidence.until_ms, 2000);
        let failed = interval(&judged, &answers(40, 21), &answers(160, 0), Some(reasons));
        assert_eq!(failed.verdict, "failed");
        assert!(failed.conclusive);
    }

    /// A canary is not promoted while evidence against it builds, even when
    /// the interval would pass.
    #[test]
    fn building_evidence_holds_the_canary() {
        let mut judged = rollout(serde_json::json!({"max_error_rate": 0.05}));
        let mut windows = 0;
        while judged.evidence.classes.iter().all(|class| class.score < BUILDING) {
            assert!(watch(&mut judged, &answers(20, 3), &answers(80, 0), windows * 1000).is_none());
            windows += 1;
        }
        let held = interval(&judged, &answers(20, 3), &answers(80, 0), None);
        assert_eq!(held.verdict, "inconclusive");
        assert!(
            held.reasons[0].contains("error rate is building"),
            "{:?}",
            held.reasons
        );
    }

    #[test]
    fn verdicts_move_the_rollout() {
        let mut judged = rollout(serde_json::json!({"threshold": 2, "max_inconclusive": 2}));
        let steps = judged.policy.steps().unwrap();
        let result = |verdict: &str, conclusive: bool| IntervalResult {
            verdict: verdict.into(),
            reasons: vec![format!("{verdict} because")],
            conclusive,
            ..interval(
                &rollout(serde_json::json!({})),
                &answers(100, 0),
                &answers(100, 0),
                None,
            )
        };
        assert_eq!(
            conclude(&mut judged, &steps, result("failed", false), 1),
            Next::Hold
        );
        assert_eq!(
            conclude(&mut judged, &steps, result("passed", false), 2),
            Next::Advance
        );
        assert_eq!(
            (judged.step, judged.canary_weight, judged.interval_started_ms),
            (1, 50, 2)
        );
        assert_eq!(
            conclude(&mut judged, &steps, result("inconclusive", false), 3),
            Next::Hold
        );
        let Next::Stall(why) = conclude(&mut judged, &steps, result("inconclusive", false), 4) else {
            panic!("not stalled after max_inconclusive");
        };
        assert!(why[0].starts_with("2 intervals in a row inconclusive"), "{why:?}");
        // Failed intervals need not be in a row: the second rolls back.
        assert_eq!(
            conclude(&mut judged, &steps, result("failed", false), 5),
            Next::RollBack(vec!["failed because".into()])
        );
        // Conclusive evidence rolls back at once, whatever the threshold.
        let mut judged = rollout(serde_json::json!({"threshold": 3}));
        assert!(matches!(
            conclude(&mut judged, &steps, result("failed", true), 1),
            Next::RollBack(_)
        ));
        let mut judged = rollout(serde_json::json!({}));
        conclude(&mut judged, &steps, result("passed", false), 1);
        assert_eq!(
            conclude(&mut judged, &steps, result("passed", false), 2),
            Next::Promote
        );
    }
}
