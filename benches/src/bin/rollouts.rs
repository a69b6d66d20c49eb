//! Simulated rollouts, judged by the registry's own code: how often a bad
//! canary is caught, how many of its requests it takes, and how often a
//! good one is rolled back for noise.
//!
//! Each rollout is seeded. Requests arrive at a fixed rate, are split by
//! the canary's weight, and each draws its outcome (5xx, engine refusal,
//! timeout, NaN rows, latency, shadow agreement) from its version's
//! behaviour; every 5 seconds a gateway's statistics window is handed to
//! `judge::watch` (as the controller does when a report arrives), and at
//! each interval's end to `judge::interval` and `judge::conclude`.
//!
//! ```sh
//! cargo run --release -p sluice-benches --bin rollouts [-- SEEDS]
//! ```

#![allow(clippy::print_stdout, reason = "the tables are this program's output")]

use std::collections::BTreeMap;

use sluice_registry::rollout::judge::{self, Next};
use sluice_registry_client::rollout::{LATENCY_BUCKETS_MS, RolloutPolicy, RolloutStatus, VersionWindow};

/// Seconds between a gateway's statistics reports (`--stats-interval-ms`'s default).
const WINDOW_S: u64 = 5;

/// Share of the stable version's requests mirrored to the canary and compared.
const COMPARED: f64 = 0.1;

/// Requests a second of each traffic level simulated.
const RATES: [f64; 4] = [1.0, 10.0, 100.0, 1000.0];

/// Intervals after which an undecided rollout is counted as stalled.
const MAX_INTERVALS: u32 = 30;

/// How one version answers.
#[derive(Clone, Copy)]
struct Behaviour {
    /// Shares of requests answered 5xx, refused by the engine, timed out.
    errors: f64,
    refusals: f64,
    timeouts: f64,
    /// Share of answered rows with a NaN.
    nan_rows: f64,
    /// Median latency (ms) and its log-normal spread.
    median_ms: f64,
    spread: f64,
    /// Share of rows whose class differs from the stable version's.
    disagreement: f64,
    /// A slice of the inputs (this share) on which it fails every request.
    failing_slice: f64,
    /// Fails every request for `burst_s` seconds of each minute.
    burst_s: u64,
    /// Fails every request after this many seconds (an engine that crashes).
    crash_after_s: Option<u64>,
}

/// The stable version, on a model answering in `median_ms`.
fn stable(median_ms: f64) -> Behaviour {
    Behaviour {
        errors: 0.005,
        refusals: 0.002,
        timeouts: 0.001,
        nan_rows: 0.0,
        median_ms,
        spread: 0.35,
        disagreement: 0.0,
        failing_slice: 0.0,
        burst_s: 0,
        crash_after_s: None,
    }
}

/// A kind of canary: its name, whether it is bad by the issue's definition,
/// and how it differs from the stable version.
struct Kind {
    name: &'static str,
    bad: bool,
    canary: fn(Behaviour) -> Behaviour,
    /// Something both versions suffer (garbage input, a loaded machine),
    /// from second 60 to second 180: `(refusals, slowdown)`.
    both: Option<(f64, f64)>,
}

fn kinds() -> Vec<Kind> {
    vec![
        Kind {
            name: "good: the stable version itself",
            bad: false,
            canary: |s| s,
            both: None,
        },
        Kind {
            name: "good: 1% disagreement, 10% slower",
            bad: false,
            canary: |s| Behaviour {
                disagreement: 0.01,
                median_ms: s.median_ms * 1.1,
                ..s
            },
            both: None,
        },
        Kind {
            name: "good: garbage input to both for 2 minutes",
            bad: false,
            canary: |s| s,
            both: Some((0.3, 1.0)),
        },
        Kind {
            name: "good: both 3x slower for 2 minutes",
            bad: false,
            canary: |s| s,
            both: Some((0.0, 3.0)),
        },
        Kind {
            name: "bad: 5xx 5 points above stable",
            bad: true,
            canary: |s| Behaviour {
                errors: s.errors + 0.05,
                ..s
            },
            both: None,
        },
        Kind {
            name: "bad: 5xx on 30%",
            bad: true,
            canary: |s| Behaviour { errors: 0.3, ..s },
            both: None,
        },
        Kind {
            name: "bad: engine refuses 25% of real inputs",
            bad: true,
            canary: |s| Behaviour {
                refusals: s.refusals + 0.25,
                ..s
            },
            both: None,
        },
        Kind {
            name: "bad: 10% time out",
            bad: true,
            canary: |s| Behaviour { timeouts: 0.1, ..s },
            both: None,
        },
        Kind {
            name: "bad: NaN on 2% of rows",
            bad: true,
            canary: |s| Behaviour { nan_rows: 0.02, ..s },
            both: None,
        },
        Kind {
            name: "bad: one answer for everyone (50% disagree)",
            bad: true,
            canary: |s| Behaviour {
                disagreement: 0.5,
                ..s
            },
            both: None,
        },
        Kind {
            name: "bad: 12% disagree",
            bad: true,
            canary: |s| Behaviour {
                disagreement: 0.12,
                ..s
            },
            both: None,
        },
        Kind {
            name: "bad: five times slower",
            bad: true,
            canary: |s| Behaviour {
                median_ms: s.median_ms * 5.0,
                ..s
            },
            both: None,
        },
        Kind {
            name: "bad: fails one slice (10% of inputs)",
            bad: true,
            canary: |s| Behaviour {
                failing_slice: 0.1,
                ..s
            },
            both: None,
        },
        Kind {
            name: "bad: fails for 10 s of every minute",
            bad: true,
            canary: |s| Behaviour { burst_s: 10, ..s },
            both: None,
        },
        Kind {
            name: "bad: engine crashes after 2 minutes",
            bad: true,
            canary: |s| Behaviour {
                crash_after_s: Some(120),
                ..s
            },
            both: None,
        },
    ]
}

/// splitmix64: small, seeded, good enough for simulated traffic.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn uniform(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn chance(&mut self, p: f64) -> bool {
        self.uniform() < p
    }

    fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform().max(f64::MIN_POSITIVE), self.uniform());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

fn policy(rate: f64) -> RolloutPolicy {
    // An interval long enough for min_requests at the first step, as a
    // release engineer would choose it for this traffic.
    let min_requests = 50u64;
    let interval_s = (2.0 * min_requests as f64 / (rate * 0.1)).max(60.0);
    serde_json::from_value(serde_json::json!({
        "step_weights": [10, 25, 50],
        "interval_ms": (interval_s * 1000.0) as u64,
        "min_requests": min_requests,
        "max_error_rate": 0.05,
        "max_nan_rate": 0.01,
        "max_p99_ratio": 2.0,
        "p99_floor_ms": 1.0,
        "max_shadow_disagreement": 0.1,
        "threshold": 2,
    }))
    .expect("a valid policy")
}

fn window(version: u64) -> VersionWindow {
    VersionWindow {
        model: "sim".into(),
        version,
        latency_buckets: vec![0; LATENCY_BUCKETS_MS.len() + 1],
        ..Default::default()
    }
}

/// One request's outcome on a version, counted into its window.
fn answer(window: &mut VersionWindow, behaviour: &Behaviour, at_s: u64, extra: (f64, f64), rng: &mut Rng) {
    window.requests += 1;
    let failing = rng.chance(behaviour.failing_slice)
        || at_s % 60 < behaviour.burst_s
        || behaviour.crash_after_s.is_some_and(|after| at_s >= after);
    if failing || rng.chance(behaviour.errors) {
        window.server_errors += 1;
        return;
    }
    if rng.chance(behaviour.refusals + extra.0) {
        window.engine_refused += 1;
        return;
    }
    if rng.chance(behaviour.timeouts) {
        window.timeouts += 1;
        return;
    }
    window.output_rows += 1;
    if rng.chance(behaviour.nan_rows) {
        window.nonfinite_rows += 1;
    }
    let latency = behaviour.median_ms * extra.1 * (behaviour.spread * rng.normal()).exp();
    let bucket = LATENCY_BUCKETS_MS.partition_point(|bound| *bound < latency);
    window.latency_buckets[bucket] += 1;
}

/// How one rollout ended.
struct Ended {
    status: RolloutStatus,
    canary_requests: u64,
}

fn simulate(kind: &Kind, rate: f64, median_ms: f64, seed: u64) -> Ended {
    let mut rng = Rng(seed);
    let policy = policy(rate);
    let steps = policy.steps().expect("valid steps");
    let interval_s = policy.interval_ms / 1000;
    let mut rollout = judge::begin("sim", 2, 1, policy, "sim", 0).expect("a valid policy");
    let stable_behaviour = stable(median_ms);
    let canary_behaviour = (kind.canary)(stable_behaviour);
    let (mut interval_canary, mut interval_stable) = (window(2), window(1));
    let mut canary_requests = 0;
    // Requests are spread evenly; a fractional rate carries over.
    let mut owed = 0.0;
    let mut second = 0u64;
    loop {
        let (mut canary, mut stable) = (window(2), window(1));
        for _ in 0..WINDOW_S {
            let extra = match kind.both {
                Some(both) if (60..180).contains(&second) => both,
                _ => (0.0, 1.0),
            };
            owed += rate;
            while owed >= 1.0 {
                owed -= 1.0;
                if rng.chance(f64::from(rollout.canary_weight) / 100.0) {
                    answer(&mut canary, &canary_behaviour, second, extra, &mut rng);
                } else {
                    answer(&mut stable, &stable_behaviour, second, extra, &mut rng);
                    if rng.chance(COMPARED) {
                        canary.shadow.rows += 1;
                        if !rng.chance(canary_behaviour.disagreement) {
                            canary.shadow.agreements += 1;
                        }
                    }
                }
            }
            second += 1;
        }
        canary_requests += canary.requests;
        interval_canary.merge(&canary);
        interval_stable.merge(&stable);
        let now_ms = second * 1000;
        let conclusive = judge::watch(&mut rollout, &canary, &stable, now_ms);
        if conclusive.is_none() && second < rollout.interval_started_ms / 1000 + interval_s {
            continue;
        }
        let result = judge::interval(&rollout, &interval_canary, &interval_stable, conclusive);
        (interval_canary, interval_stable) = (window(2), window(1));
        let status = match judge::conclude(&mut rollout, &steps, result, now_ms) {
            Next::Promote => RolloutStatus::Promoted,
            Next::RollBack(_) => RolloutStatus::RolledBack,
            Next::Hold | Next::Advance | Next::Stall(_)
                if rollout.intervals.len() as u32 >= MAX_INTERVALS =>
            {
                RolloutStatus::Paused
            }
            Next::Hold | Next::Advance | Next::Stall(_) => continue,
        };
        return Ended {
            status,
            canary_requests,
        };
    }
}

#[derive(Default)]
struct Tally {
    rollouts: u64,
    promoted: u64,
    rolled_back: u64,
    stalled: u64,
    /// Canary requests before each rollback.
    before_rollback: Vec<u64>,
}

impl Tally {
    fn add(&mut self, ended: &Ended) {
        self.rollouts += 1;
        match ended.status {
            RolloutStatus::Promoted => self.promoted += 1,
            RolloutStatus::RolledBack => {
                self.rolled_back += 1;
                self.before_rollback.push(ended.canary_requests);
            }
            _ => self.stalled += 1,
        }
    }

    fn quantile(&self, q: f64) -> String {
        let mut sorted = self.before_rollback.clone();
        sorted.sort_unstable();
        let index = (sorted.len().saturating_sub(1) as f64 * q).round() as usize;
        sorted.get(index).map_or("-".into(), ToString::to_string)
    }
}

fn main() {
    let seeds: u64 = std::env::args()
        .nth(1)
        .map(|arg| arg.parse().expect("SEEDS: a number of seeds per kind and rate"))
        .unwrap_or(40);
    let kinds = kinds();
    let mut by_kind: BTreeMap<usize, Tally> = BTreeMap::new();
    let mut by_rate: BTreeMap<(bool, usize), Tally> = BTreeMap::new();
    let (mut good, mut bad) = (Tally::default(), Tally::default());
    for (k, kind) in kinds.iter().enumerate() {
        for (r, &rate) in RATES.iter().enumerate() {
            for seed in 0..seeds {
                // Half on a sub-millisecond model, half on a 3 ms one.
                let median_ms = if seed % 2 == 0 { 0.15 } else { 3.0 };
                let ended = simulate(kind, rate, median_ms, (k as u64) << 40 | (r as u64) << 32 | seed);
                by_kind.entry(k).or_default().add(&ended);
                by_rate.entry((kind.bad, r)).or_default().add(&ended);
                if kind.bad { &mut bad } else { &mut good }.add(&ended);
            }
        }
    }
    println!(
        "| canary | rollouts | promoted | rolled back | stalled | canary requests before rollback (median, p90) |"
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    for (k, tally) in &by_kind {
        println!(
            "| {} | {} | {} | {} | {} | {}, {} |",
            kinds[*k].name,
            tally.rollouts,
            tally.promoted,
            tally.rolled_back,
            tally.stalled,
            tally.quantile(0.5),
            tally.quantile(0.9)
        );
    }
    println!();
    println!(
        "| requests a second | bad caught | median canary requests before rollback | good rolled back |"
    );
    println!("| --- | --- | --- | --- |");
    for (r, rate) in RATES.iter().enumerate() {
        let good = &by_rate[&(false, r)];
        let (good_rolled, good_n) = (good.rolled_back, good.rollouts);
        let bad = &by_rate[&(true, r)];
        println!(
            "| {rate} | {} of {} | {} | {good_rolled} of {good_n} |",
            bad.rolled_back,
            bad.rollouts,
            bad.quantile(0.5)
        );
    }
    println!();
    println!(
        "bad canaries caught: {} of {} ({:.1}%), median {} canary requests before rollback",
        bad.rolled_back,
        bad.rollouts,
        100.0 * bad.rolled_back as f64 / bad.rollouts as f64,
        bad.quantile(0.5)
    );
    println!(
        "good canaries rolled back: {} of {} ({:.2}%)",
        good.rolled_back,
        good.rollouts,
        100.0 * good.rolled_back as f64 / good.rollouts as f64
    );
}
