//! The sequential tests that judge a canary against the stable version as
//! its statistics arrive, so that a clearly bad canary is rolled back before
//! its interval ends and a good one is not rolled back for noise.
//!
//! Each class of bad answer is a Bernoulli trial: a request answered 5xx,
//! refused by its engine, timed out or slower than the stable version's
//! slow tail; an answered row holding a NaN or an infinity; a shadowed row
//! whose class differs from the primary's. For each class the policy asks
//! about (its limit `δ`: `max_error_rate`, `max_nan_rate`, 1% of requests
//! beyond the stable version's p99 for `max_p99_ratio`,
//! `max_shadow_disagreement`):
//!
//! - in each window, the canary's rate is the stable version's rate `q`
//!   now plus an excess `d`; `q` is unknown, and each hypothesis gets the
//!   `q` that best explains the canary's counts and the stable version's
//!   recent ones ([`RECENT_MS`]: older windows fade) together (a profile
//!   likelihood): inputs both versions fail are the callers', and a stable
//!   version seen little says little;
//! - "as good" is `d = δ/5` ([`TOLERANCE`]), "bad" any of `d = δ`, `2δ`,
//!   `4δ`, ... up to certainty, so that a canary failing everything is
//!   caught in a handful of requests and one at the limit in a few hundred;
//! - the log-likelihood ratio of each "bad" against "as good" is added up
//!   window by window and reset at 0 when it falls below (Page's CUSUM): a
//!   canary that turns bad later, or in bursts, is not shielded by its good
//!   start;
//! - the evidence is conclusive when any ratio reaches [`BOUNDARY`].
//!
//! Under "as good" each ratio drifts down, and a CUSUM reaches its boundary
//! about once in `e^BOUNDARY` trials; a good canary (the stable version's
//! rates) drifts down much faster. `benches/src/bin/rollouts.rs`
//! runs this code on simulated rollouts: its table in `benches/RESULTS.md`
//! holds the detection and false-rollback rates. Between `b + δ/5` and
//! `b + δ` is indifference: such a canary may go either way.

use sluice_registry_client::rollout::{
    ClassEvidence, Evidence, LATENCY_BUCKETS_MS, RolloutPolicy, VersionWindow,
};

/// The log-likelihood ratio that rolls a canary back: `ln(10^6)`.
pub const BOUNDARY: f64 = 13.815_510_557_964_274;

/// The share of a class's limit a canary may be worse by and still be "as
/// good": the lower edge of the indifference zone.
pub const TOLERANCE: f64 = 0.2;

/// The share of a slow canary's requests beyond the stable version's slow
/// threshold: p99 beyond it means 1% of requests are.
pub const SLOW_SHARE: f64 = 0.01;

/// How fast the stable version's older windows fade from its rate now:
/// by `e` every this many milliseconds.
pub const RECENT_MS: f64 = 30_000.0;

/// The most trials the stable version's earlier windows weigh against the
/// current one.
pub const HISTORY_TRIALS: f64 = 100.0;

/// Rates are kept inside (0, 1) so that every logarithm is finite.
const MAX_RATE: f64 = 0.999;
const MIN_RATE: f64 = 1e-9;

/// Bad events among trials.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Counts {
    pub events: f64,
    pub trials: f64,
}

impl Counts {
    fn of(events: u64, trials: u64) -> Counts {
        Counts {
            events: events.min(trials) as f64,
            trials: trials as f64,
        }
    }
}

/// One class's trials in one window: the canary's and the stable version's
/// (`None`: the stable version's rate is known to be 0).
struct Trial {
    class: &'static str,
    limit: f64,
    canary: Counts,
    stable: Option<Counts>,
}

/// Adds one window's (or several, added up) counts of the canary and the
/// stable version, `elapsed_ms` after the last, to the rollout's evidence;
/// the reasons, when any class's evidence against the canary is now
/// conclusive.
pub fn fold(
    evidence: &mut Evidence,
    policy: &RolloutPolicy,
    canary: &VersionWindow,
    stable: &VersionWindow,
    elapsed_ms: u64,
) -> Option<Vec<String>> {
    let fade = (-(elapsed_ms as f64) / RECENT_MS).exp();
    let mut reasons = Vec::new();
    for trial in trials(evidence, policy, canary, stable) {
        let position = match evidence.classes.iter().position(|c| c.class == trial.class) {
            Some(position) => position,
            None => {
                evidence.classes.push(ClassEvidence {
                    class: trial.class.to_string(),
                    log_ratios: vec![0.0; alternatives(trial.limit).len()],
                    ..Default::default()
                });
                evidence.classes.len() - 1
            }
        };
        let class = &mut evidence.classes[position];
        let stable = trial.stable.unwrap_or_default();
        class.canary_events += trial.canary.events;
        class.canary_trials += trial.canary.trials;
        class.stable_events += stable.events;
        class.stable_trials += stable.trials;
        // Earlier windows weigh at most HISTORY_TRIALS: with much
        // traffic the window speaks for itself (and garbage arriving for
        // both is seen at once); with little, the last half minute does.
        let history = class.recent_stable_trials * fade;
        let scale = match history > HISTORY_TRIALS {
            true => HISTORY_TRIALS / history,
            false => 1.0,
        };
        let recent = trial.stable.map(|_| Counts {
            events: class.recent_stable_events * fade * scale + stable.events,
            trials: history * scale + stable.trials,
        });
        class.recent_stable_events = class.recent_stable_events * fade + stable.events;
        class.recent_stable_trials = history + stable.trials;
        let good = profile(trial.canary, recent, TOLERANCE * trial.limit);
        for (ratio, factor) in class.log_ratios.iter_mut().zip(alternatives(trial.limit)) {
            let bad = profile(trial.canary, recent, factor * trial.limit);
            *ratio = (*ratio + bad - good).max(0.0);
        }
        let (strongest, factor) = class.log_ratios.iter().zip(alternatives(trial.limit)).fold(
            (0.0f64, 1.0),
            |best, (&ratio, factor)| {
                if ratio > best.0 { (ratio, factor) } else { best }
            },
        );
        class.score = strongest / BOUNDARY;
        if strongest >= BOUNDARY {
            reasons.push(describe(class, trial.limit, factor));
        }
    }
    (!reasons.is_empty()).then_some(reasons)
}

/// The classes `policy` asks about, with this window's counts.
fn trials(
    evidence: &mut Evidence,
    policy: &RolloutPolicy,
    canary: &VersionWindow,
    stable: &VersionWindow,
) -> Vec<Trial> {
    let mut trials = Vec::new();
    let mut trial = |class, limit, canary, stable| {
        trials.push(Trial {
            class,
            limit,
            canary,
            stable,
        })
    };
    if let Some(limit) = policy.max_error_rate.filter(|limit| *limit > 0.0) {
        let of = |window: &VersionWindow, events| Counts::of(events, window.requests);
        trial(
            "error rate",
            limit,
            of(canary, canary.server_errors),
            Some(of(stable, stable.server_errors)),
        );
        trial(
            "engine refusal rate",
            limit,
            of(canary, canary.engine_refused),
            Some(of(stable, stable.engine_refused)),
        );
        trial(
            "timeout rate",
            limit,
            of(canary, canary.timeouts),
            Some(of(stable, stable.timeouts)),
        );
    }
    if let Some(limit) = policy.max_nan_rate.filter(|limit| *limit > 0.0) {
        let of = |window: &VersionWindow| Counts::of(window.nonfinite_rows, window.output_rows);
        trial("non-finite rows", limit, of(canary), Some(of(stable)));
    }
    if let Some(ratio) = policy.max_p99_ratio {
        add_buckets(&mut evidence.stable_latency, &stable.latency_buckets);
        if let Some(threshold) = slow_threshold(&evidence.stable_latency, ratio, policy.p99_floor_ms) {
            let of = |buckets: &[u64]| Counts {
                events: above(buckets, threshold),
                trials: buckets.iter().sum::<u64>() as f64,
            };
            trial(
                "slow requests",
                SLOW_SHARE,
                of(&canary.latency_buckets),
                Some(of(&stable.latency_buckets)),
            );
        }
    }
    if let Some(limit) = policy.max_shadow_disagreement.filter(|limit| *limit > 0.0) {
        let shadow = &canary.shadow;
        let disagreed = shadow.rows.saturating_sub(shadow.agreements);
        // Compared with the primary itself: the stable version agrees with
        // itself everywhere, and that is known.
        trial(
            "shadow disagreement",
            limit,
            Counts::of(disagreed, shadow.rows),
            None,
        );
    }
    trials
}

/// How many times the limit each "bad" alternative is worse by: 1, 2, 4,
/// ... until the rate would pass certainty.
fn alternatives(limit: f64) -> Vec<f64> {
    let mut factors = vec![1.0];
    while factors.last().is_some_and(|factor| factor * limit < 1.0) {
        factors.push(factors.last().unwrap_or(&1.0) * 2.0);
    }
    factors
}

/// The log-likelihood of one window's counts when the canary's rate is the
/// stable version's plus `excess`, at the stable rate that makes them most
/// likely (0 when `stable` is `None`).
fn profile(canary: Counts, stable: Option<Counts>, excess: f64) -> f64 {
    let excess = excess.min(MAX_RATE);
    let log_likelihood = |q: f64| {
        let p = (q + excess).clamp(MIN_RATE, MAX_RATE);
        let mut sum = canary.events * p.ln() + (canary.trials - canary.events) * (1.0 - p).ln();
        if let Some(stable) = stable {
            let q = q.clamp(MIN_RATE, MAX_RATE);
            sum += stable.events * q.ln() + (stable.trials - stable.events) * (1.0 - q).ln();
        }
        sum
    };
    if stable.is_none() {
        return log_likelihood(0.0);
    }
    // Concave in q: a golden-section search finds its top.
    let (mut low, mut high) = (0.0, (MAX_RATE - excess).max(0.0));
    let ratio = (5f64.sqrt() - 1.0) / 2.0;
    for _ in 0..60 {
        let left = high - ratio * (high - low);
        let right = low + ratio * (high - low);
        if log_likelihood(left) < log_likelihood(right) {
            low = left;
        } else {
            high = right;
        }
    }
    log_likelihood((low + high) / 2.0)
}

/// Where "slow" begins: `ratio` times the stable version's p99 and at least
/// `floor_ms` beyond it, as `max_p99_ratio` and `p99_floor_ms` say.
fn slow_threshold(buckets: &[u64], ratio: f64, floor_ms: f64) -> Option<f64> {
    let window = VersionWindow {
        latency_buckets: buckets.to_vec(),
        ..Default::default()
    };
    let p99 = window.latency_quantile_ms(0.99)?;
    Some((p99 * ratio).max(p99 + floor_ms))
}

/// Requests slower than `threshold_ms`, the bucket it falls in counted in
/// proportion (as `latency_quantile_ms` interpolates).
fn above(buckets: &[u64], threshold_ms: f64) -> f64 {
    let mut slower = 0.0;
    for (index, &count) in buckets.iter().enumerate() {
        let lower = if index == 0 {
            0.0
        } else {
            LATENCY_BUCKETS_MS
                .get(index - 1)
                .copied()
                .unwrap_or(f64::INFINITY)
        };
        let upper = LATENCY_BUCKETS_MS.get(index).copied().unwrap_or(f64::INFINITY);
        // Above the last bound nothing is known but that it is slow.
        if lower >= threshold_ms || upper.is_infinite() {
            slower += count as f64;
        } else if upper > threshold_ms {
            slower += count as f64 * (upper - threshold_ms) / (upper - lower);
        }
    }
    slower
}

fn add_buckets(total: &mut Vec<u64>, more: &[u64]) {
    if total.len() < more.len() {
        total.resize(more.len(), 0);
    }
    for (mine, theirs) in total.iter_mut().zip(more) {
        *mine = mine.saturating_add(*theirs);
    }
}

fn describe(class: &ClassEvidence, limit: f64, factor: f64) -> String {
    let rate = |events: f64, trials: f64| match trials {
        0.0 => 0.0,
        _ => events / trials * 100.0,
    };
    let stable = match class.stable_trials {
        0.0 => String::new(),
        _ => format!(
            " against the stable version's {:.2}% ({:.0} of {:.0})",
            rate(class.stable_events, class.stable_trials),
            class.stable_events,
            class.stable_trials
        ),
    };
    format!(
        "{} {:.2}% ({:.0} of {:.0} since the rollout began){stable}: the evidence that the canary is worse by {:.2} points or more is conclusive (log-likelihood ratio {:.1} of {:.1})",
        class.class,
        rate(class.canary_events, class.canary_trials),
        class.canary_events,
        class.canary_trials,
        limit * factor * 100.0,
        class.score * BOUNDARY,
        BOUNDARY
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RolloutPolicy {
        serde_json::from_value(serde_json::json!({
            "step_weights": [20, 50],
            "interval_ms": 60000,
            "max_error_rate": 0.05,
        }))
        .unwrap()
    }

    fn answers(requests: u64, server_errors: u64) -> VersionWindow {
        VersionWindow {
            requests,
            server_errors,
            ..Default::default()
        }
    }

    /// Folds `windows` (canary, stable) until conclusive; how many.
    fn windows_to_conclude(
        policy: &RolloutPolicy,
        windows: &[(VersionWindow, VersionWindow)],
    ) -> Option<usize> {
        let mut evidence = Evidence::default();
        windows
            .iter()
            .position(|(canary, stable)| fold(&mut evidence, policy, canary, stable, 5000).is_some())
    }

    #[test]
    fn a_canary_failing_everything_is_caught_in_a_handful_of_requests() {
        let windows = vec![(answers(3, 3), answers(12, 0)); 20];
        let at = windows_to_conclude(&policy(), &windows).expect("never concluded");
        assert!(at < 5, "took {} windows of 3 requests", at + 1);
    }

    #[test]
    fn a_canary_at_the_limit_is_caught_in_hundreds_of_requests() {
        // 5 failures in 100 against none in 400, window after window.
        let windows = vec![(answers(100, 5), answers(400, 0)); 40];
        let at = windows_to_conclude(&policy(), &windows).expect("never concluded");
        assert!((1..10).contains(&at), "took {} windows of 100 requests", at + 1);
    }

    #[test]
    fn a_canary_as_good_as_stable_is_never_concluded_against() {
        // 1% of both fail, for a million canary requests.
        let windows = vec![(answers(1000, 10), answers(4000, 40)); 1000];
        assert_eq!(windows_to_conclude(&policy(), &windows), None);
    }

    #[test]
    fn what_both_versions_fail_is_the_callers() {
        // Garbage from a client: 30% of everything fails, on either side.
        let mut windows = vec![(answers(100, 0), answers(400, 0)); 10];
        windows.extend(vec![(answers(100, 32), answers(400, 120)); 100]);
        assert_eq!(windows_to_conclude(&policy(), &windows), None);
    }

    #[test]
    fn evidence_builds_across_windows_and_resets_at_zero() {
        let policy = policy();
        let mut evidence = Evidence::default();
        // Many good windows first do not bank credit against a later fault.
        for _ in 0..100 {
            assert!(fold(&mut evidence, &policy, &answers(100, 0), &answers(400, 0), 5000).is_none());
        }
        assert!(
            evidence.classes.iter().all(|class| class.score == 0.0),
            "{evidence:?}"
        );
        let mut windows = 0;
        while fold(&mut evidence, &policy, &answers(100, 20), &answers(400, 0), 5000).is_none() {
            windows += 1;
            assert!(windows < 5, "{evidence:?}");
        }
    }

    #[test]
    fn slow_means_beyond_the_ratio_and_the_floor() {
        let policy: RolloutPolicy = serde_json::from_value(serde_json::json!({
            "step_weights": [20, 50],
            "interval_ms": 60000,
            "max_p99_ratio": 2.0,
        }))
        .unwrap();
        let at = |ms: f64, count: u64| {
            let mut buckets = vec![0; LATENCY_BUCKETS_MS.len() + 1];
            let index = LATENCY_BUCKETS_MS.iter().position(|bound| *bound >= ms).unwrap();
            buckets[index] = count;
            VersionWindow {
                requests: count,
                latency_buckets: buckets,
                ..Default::default()
            }
        };
        // 0.2 ms against 0.1 ms: twice, but not a millisecond more.
        let windows = vec![(at(0.2, 100), at(0.1, 400)); 1000];
        assert_eq!(windows_to_conclude(&policy, &windows), None);
        // 15 ms against 3 ms: five times slower.
        let windows = vec![(at(15.0, 10), at(3.0, 40)); 100];
        let concluded = windows_to_conclude(&policy, &windows).expect("a slow canary passed");
        assert!(concluded < 3, "{concluded}");
    }

    /// The stable rate is the one that best explains both versions.
    #[test]
    fn the_stable_rate_is_profiled_out() {
        let counts = |events: f64, trials: f64| Counts { events, trials };
        // 10% of both: no excess fits best.
        let same = profile(counts(10.0, 100.0), Some(counts(40.0, 400.0)), 0.0);
        let worse = profile(counts(10.0, 100.0), Some(counts(40.0, 400.0)), 0.05);
        assert!(same > worse + 0.5, "{same} {worse}");
        // 15% against 10%: an excess of 5 points fits best.
        let same = profile(counts(15.0, 100.0), Some(counts(40.0, 400.0)), 0.0);
        let worse = profile(counts(15.0, 100.0), Some(counts(40.0, 400.0)), 0.05);
        assert!(worse > same, "{same} {worse}");
        // Known 0 for the stable version: the canary's own rate.
        let known = profile(counts(1.0, 10.0), None, 0.1);
        assert!((known - (0.1f64.ln() + 9.0 * 0.9f64.ln())).abs() < 1e-9);
    }

    #[test]
    fn slow_requests_are_counted_in_proportion_inside_a_bucket() {
        let mut buckets = vec![0; LATENCY_BUCKETS_MS.len() + 1];
        // 10 requests between 1.0 and 1.5 ms; 4 above 10 s.
        buckets[7] = 10;
        buckets[LATENCY_BUCKETS_MS.len()] = 4;
        assert!((above(&buckets, 1.25) - 9.0).abs() < 1e-9);
        assert!((above(&buckets, 0.5) - 14.0).abs() < 1e-9);
        assert!((above(&buckets, 20_000.0) - 4.0).abs() < 1e-9);
    }
}
