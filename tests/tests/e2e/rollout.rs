//! Progressive rollouts end to end, on a manual clock the registry and the
//! gateway share: each interval's traffic is sent and counted, then the
//! clock moves past the interval, so every verdict is the one its traffic
//! deserves however busy the machine. A bad canary is rolled back by the
//! registry, a good one promoted through every step, a quiet interval
//! decides nothing, and a gateway's local guard stops a failing canary by
//! itself, registry or not.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sluice_common::clock::ManualClock;
use sluice_gateway::guard::GuardLimits;
use sluice_registry_client::rollout::{
    IntervalResult, Rollout, RolloutPolicy, RolloutStatus, StartRollout, VersionWindow,
};
use sluice_registry_client::types::{SetDeployment, Stage, TrafficSpec};
use sluice_tests::{Options, RegistryOptions, TestGateway, TestRegistry, credit_applicants, example_model};

const MODEL: &str = "credit_risk";

/// One request per applicant of the training data: the real input space,
/// 28% of it aged 60 or over.
fn applicant_requests() -> Arc<Vec<Vec<u8>>> {
    let bodies = credit_applicants(500, 0.0);
    Arc::new(
        bodies
            .iter()
            .map(|body| serde_json::to_vec(body).unwrap())
            .collect(),
    )
}

/// Answers by version: (version, status) of every request sent.
type Answers = Vec<(String, u16)>;

/// Sends applicants from `workers` tasks until `stop`, each pausing `pause`.
fn traffic(
    gateway: &Arc<TestGateway>,
    workers: usize,
    pause: Duration,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<Answers>> {
    let requests = applicant_requests();
    let next = Arc::new(AtomicUsize::new(0));
    (0..workers)
        .map(|_| {
            let (gateway, requests, next, stop) =
                (gateway.clone(), requests.clone(), next.clone(), stop.clone());
            tokio::spawn(async move {
                let url = gateway.url(&format!("/v2/models/{MODEL}/infer"));
                let mut answers = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let body = requests[next.fetch_add(1, Ordering::Relaxed) % requests.len()].clone();
                    let response = gateway.client.post(&url).body(body).send().await.unwrap();
                    let version = response
                        .headers()
                        .get("x-model-version")
                        .map(|value| value.to_str().unwrap().to_string())
                        .unwrap_or_default();
                    answers.push((version, response.status().as_u16()));
                    if !pause.is_zero() {
                        tokio::time::sleep(pause).await;
                    }
                }
                answers
            })
        })
        .collect()
}

async fn collect(stop: &AtomicBool, workers: Vec<tokio::task::JoinHandle<Answers>>) -> Answers {
    stop.store(true, Ordering::Relaxed);
    let mut answers = Vec::new();
    for worker in workers {
        answers.extend(worker.await.unwrap());
    }
    answers
}

/// Polls the rollout until `done` says so, or panics after `deadline`.
async fn wait_rollout(
    registry: &TestRegistry,
    deadline: Duration,
    done: impl Fn(&Rollout) -> bool,
) -> Rollout {
    let give_up = Instant::now() + deadline;
    loop {
        let rollout = registry.client("vic").get_rollout(MODEL).await.unwrap();
        if done(&rollout) {
            return rollout;
        }
        assert!(Instant::now() < give_up, "rollout never got there: {rollout:#?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn policy(steps: &[u32], interval_ms: u64, min_requests: u64, threshold: u32) -> RolloutPolicy {
    RolloutPolicy {
        step_weights: steps.to_vec(),
        step_weight: None,
        max_weight: None,
        interval_ms,
        min_requests,
        max_error_rate: Some(0.05),
        max_p99_ms: None,
        max_p99_ratio: None,
        p99_floor_ms: 1.0,
        max_shadow_disagreement: None,
        max_nan_rate: None,
        max_contract_violation_rate: None,
        threshold,
        webhook: None,
        max_inconclusive: 10,
        rollback_when_inconclusive: false,
    }
}

/// An interval, on the test's clock: minutes of it pass the moment its
/// traffic is in, however slow the machine.
const INTERVAL: Duration = Duration::from_secs(60);

/// A registry with a fast controller, the stable version 1 taking all
/// traffic, `canary` registered as version 2 in staging, and a gateway; the
/// registry and the gateway read one manual clock.
struct Rig {
    registry: TestRegistry,
    gateway: Arc<TestGateway>,
    hand: ManualClock,
    _cache: tempfile::TempDir,
}

async fn setup(canary: &str, guard: GuardLimits) -> Rig {
    setup_pair(MODEL, canary, guard).await
}

/// As `setup`, with the example model `stable` as version 1.
async fn setup_pair(stable: &str, canary: &str, guard: GuardLimits) -> Rig {
    let hand = ManualClock::default();
    let registry = TestRegistry::start_with(RegistryOptions {
        rollout_tick: Some(Duration::from_millis(20)),
        clock: Some(hand.clock()),
        ..Default::default()
    })
    .await;
    registry.release(MODEL, &example_model(stable)).await;
    let second = registry.register(MODEL, &example_model(canary), &[]).await;
    registry.approve_staging(MODEL, second.version).await;
    let cache = tempfile::tempdir().unwrap();
    let options = Options {
        guard,
        clock: hand.clock(),
        ..Options::default()
    };
    let gateway = Arc::new(TestGateway::follow(&registry, cache.path(), options).await);
    gateway.wait_versions(MODEL, &[1]).await;
    Rig {
        registry,
        gateway,
        hand,
        _cache: cache,
    }
}

impl Rig {
    /// Sends applicants in rounds of 20 until the registry's count for the
    /// interval now open (the windows begun at or after the clock's now,
    /// what the controller will judge) satisfies `enough`, given the
    /// canary's and the stable version's. Traffic the gateway counted in a
    /// window begun before is not the interval's, and is simply not counted.
    async fn fill(&self, enough: impl Fn(&VersionWindow, &VersionWindow) -> bool) -> Answers {
        self.fill_with(&applicant_requests(), enough).await
    }

    /// `fill`, sending `requests` in turn.
    async fn fill_with(
        &self,
        requests: &[Vec<u8>],
        enough: impl Fn(&VersionWindow, &VersionWindow) -> bool,
    ) -> Answers {
        let url = self.gateway.url(&format!("/v2/models/{MODEL}/infer"));
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut answers = Vec::new();
        loop {
            for body in requests.iter().skip(answers.len() % requests.len()).take(20) {
                let response = self
                    .gateway
                    .client
                    .post(&url)
                    .body(body.clone())
                    .send()
                    .await
                    .unwrap();
                let version = response
                    .headers()
                    .get("x-model-version")
                    .map(|value| value.to_str().unwrap().to_string())
                    .unwrap_or_default();
                answers.push((version, response.status().as_u16()));
            }
            // What the gateway reported so far (every 50 ms): a round or
            // two more than needed is sent, never less.
            let windows = self.registry.windows_from_now(MODEL).await;
            let of = |version: u64| {
                windows
                    .iter()
                    .find(|window| window.version == version)
                    .cloned()
                    .unwrap_or_default()
            };
            if enough(&of(2), &of(1)) {
                break;
            }
            assert!(Instant::now() < deadline, "the interval never filled");
        }
        // Everything sent is counted before the interval ends: a request
        // counted after would land in the next one.
        let sent = answers.len() as u64;
        while self.registry.requests_from_now(MODEL).await < sent {
            assert!(
                Instant::now() < deadline,
                "the gateway never reported all {sent} requests"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        answers
    }

    /// Ends the interval now open: the clock moves past it, and the
    /// controller judges it at its next tick.
    async fn end_interval(&self) -> Rollout {
        let before = self.registry.client("vic").get_rollout(MODEL).await.unwrap();
        self.hand.advance(INTERVAL);
        wait_rollout(&self.registry, Duration::from_secs(20), |rollout| {
            rollout.intervals.len() > before.intervals.len() || !rollout.status.is_active()
        })
        .await
    }

    /// Sends traffic until `enough`, then moves the clock one second, well
    /// inside the interval, and waits for the canary to be rolled back
    /// there: the sequential tests found the case against it conclusive.
    /// The rollout, its one judged interval, and what the callers got.
    async fn rolled_back_early(
        &self,
        enough: impl Fn(&VersionWindow, &VersionWindow) -> bool,
    ) -> (Rollout, IntervalResult, Answers) {
        let answers = self.fill(enough).await;
        self.hand.advance(Duration::from_secs(1));
        let rollout = wait_rollout(&self.registry, Duration::from_secs(20), |rollout| {
            !rollout.status.is_active()
        })
        .await;
        assert_eq!(rollout.status, RolloutStatus::RolledBack, "{rollout:#?}");
        let [judged] = &rollout.intervals[..] else {
            panic!("one interval judged: {rollout:#?}");
        };
        assert_eq!(
            (judged.verdict.as_str(), judged.conclusive),
            ("failed", true),
            "{judged:#?}"
        );
        let judged = judged.clone();
        (rollout, judged, answers)
    }

    /// Starts a rollout of version 2 under `policy`, and waits until the
    /// gateway gives it its first step's `weight`.
    async fn start(&self, policy: RolloutPolicy, weight: u32) {
        let body = StartRollout { canary: 2, policy };
        self.registry
            .client("dora")
            .start_rollout(MODEL, &body)
            .await
            .unwrap();
        self.gateway.wait_versions(MODEL, &[1, 2]).await;
        self.wait_canary_weight(weight).await;
    }

    /// Waits until the gateway gives the canary `weight`.
    async fn wait_canary_weight(&self, weight: u32) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let route = self.gateway.server.routes.snapshot().routes[MODEL].clone();
            let canary: u32 = route
                .targets
                .iter()
                .filter(|target| target.model.version == 2)
                .map(|target| target.weight)
                .sum();
            if canary == weight {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the gateway never gave the canary {weight}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Asserts the process's metrics hold a series `name` of this model with
/// the label `label` (`key="value"`).
fn assert_series(name: &str, label: &str) {
    let metrics = sluice_gateway::metrics::handle().render();
    assert!(
        metrics.lines().any(|line| line.starts_with(&format!("{name}{{"))
            && line.contains(&format!("model=\"{MODEL}\""))
            && line.contains(label)),
        "no {name} with {label}:\n{metrics}"
    );
}

const NO_GUARD: GuardLimits = GuardLimits { window: 0, errors: 1 };

/// The faulty canary fails 28% of applicants: its statistics, as they
/// arrive, make the sequential test's case conclusive, and it is rolled
/// back a second into its minute-long interval, its threshold of two
/// failed intervals notwithstanding (that is for fixed limits).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_canary_is_rolled_back_before_its_interval_ends_and_stable_never_fails() {
    let rig = setup("credit_risk_faulty", NO_GUARD).await;
    rig.start(policy(&[20, 50], INTERVAL.as_millis() as u64, 40, 2), 20)
        .await;
    // 100 canary requests: 28 failures expected, and the test is
    // conclusive from about 10 (9 of 50 was not, once).
    let (rollout, judged, answers) = rig.rolled_back_early(|canary, _| canary.requests >= 100).await;
    assert_eq!(judged.canary_weight, 20, "{judged:#?}");
    assert!(
        judged.reasons[0].starts_with("error rate") && judged.reasons[0].contains("is conclusive"),
        "{judged:#?}"
    );
    let errors = &rollout.evidence.classes[0];
    assert_eq!(errors.class, "error rate");
    assert!(errors.score >= 1.0 && errors.stable_events == 0.0, "{errors:?}");
    // Rolled back, the stable version answers everything.
    rig.wait_canary_weight(0).await;
    let after = rig.fill(|_, stable| stable.requests >= 40).await;
    assert!(
        after
            .iter()
            .all(|(version, status)| version == "1" && *status == 200),
        "{after:?}"
    );
    let stable_failures = answers
        .iter()
        .filter(|(version, status)| version == "1" && *status != 200)
        .count();
    assert_eq!(stable_failures, 0, "the stable version failed requests");
    let canary_failures = answers
        .iter()
        .filter(|(version, status)| version == "2" && *status == 500)
        .count();
    assert!(canary_failures > 0, "the canary's defect never showed");

    let registry = &rig.registry;
    let deployment = registry.client("vic").get_deployment(MODEL).await.unwrap();
    let weights = deployment.spec.weights();
    assert_eq!(weights, vec![(1, 100), (2, 0)]);
    let note = registry
        .client("vic")
        .get_document(MODEL, "2", "rollback")
        .await
        .unwrap();
    assert!(
        note.body["reasons"][0].as_str().unwrap().contains("error rate"),
        "{}",
        note.body
    );
    let events = registry.client("vic").events(0, 1000).await.unwrap();
    let rollback = events
        .iter()
        .find(|event| event.action == "rollout.rollback")
        .unwrap();
    assert_eq!(rollback.actor, "rollout");
    assert!(
        rollback
            .reason
            .as_deref()
            .unwrap_or_default()
            .contains("error rate")
    );
    // What the SluiceRolloutRolledBack alert reads (deploy/monitoring/).
    assert_series("sluice_rollout_events_total", "event=\"rollback\"");
}

/// The same canary, judged on gRPC traffic alone: both protocols take one
/// path below them, and count alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_canary_is_rolled_back_on_grpc_traffic_alone() {
    let rig = setup("credit_risk_faulty", NO_GUARD).await;
    rig.start(policy(&[20, 50], INTERVAL.as_millis() as u64, 40, 2), 20)
        .await;
    let requests: Vec<_> = credit_applicants(500, 0.0)
        .iter()
        .map(|body| crate::grpc::from_json(MODEL, body))
        .collect();
    let mut grpc = crate::grpc::client_of(&rig.gateway).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut answers: Vec<(String, tonic::Code)> = Vec::new();
    loop {
        for request in requests.iter().skip(answers.len() % requests.len()).take(20) {
            let (metadata, code) = match grpc.model_infer(request.clone()).await {
                Ok(answer) => (answer.metadata().clone(), tonic::Code::Ok),
                Err(status) => (status.metadata().clone(), status.code()),
            };
            let version = metadata
                .get("x-model-version")
                .unwrap()
                .to_str()
                .unwrap()
                .to_string();
            answers.push((version, code));
        }
        let windows = rig.registry.windows_from_now(MODEL).await;
        if windows
            .iter()
            .any(|window| window.version == 2 && window.requests >= 100)
        {
            break;
        }
        assert!(Instant::now() < deadline, "the interval never filled");
    }
    while rig.registry.requests_from_now(MODEL).await < answers.len() as u64 {
        assert!(
            Instant::now() < deadline,
            "the gateway never reported every request"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    rig.hand.advance(Duration::from_secs(1));
    let rollout = wait_rollout(&rig.registry, Duration::from_secs(20), |rollout| {
        !rollout.status.is_active()
    })
    .await;
    assert_eq!(rollout.status, RolloutStatus::RolledBack, "{rollout:#?}");
    assert!(
        rollout.intervals[0].reasons[0].starts_with("error rate"),
        "{rollout:#?}"
    );
    // The canary's engine failures are INTERNAL; the stable version failed none.
    assert!(
        answers
            .iter()
            .all(|(version, code)| version == "2" || *code == tonic::Code::Ok)
    );
    assert!(
        answers
            .iter()
            .any(|(version, code)| version == "2" && *code == tonic::Code::Internal)
    );
    rig.wait_canary_weight(0).await;
}

/// The canary's engine refuses a quarter of real inputs (ONNX Runtime's
/// `INVALID_ARGUMENT`, after a clean warm-up). Callers get 400s, as from
/// Triton, yet the refusals are the canary's: the stable version takes the
/// same inputs. Rolled back inside its first interval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_its_engine_refuses_is_rolled_back_though_callers_see_400s() {
    let rig = setup("credit_risk_refusing", NO_GUARD).await;
    rig.start(policy(&[20, 50], INTERVAL.as_millis() as u64, 40, 1), 20)
        .await;
    let (_, judged, answers) = rig.rolled_back_early(|canary, _| canary.requests >= 100).await;
    assert!(judged.reasons[0].starts_with("engine refusal rate"), "{judged:?}");
    assert!(judged.engine_refused_rate.unwrap() > 0.1, "{judged:?}");
    assert_eq!(judged.stable_engine_refused_rate, Some(0.0), "{judged:?}");
    assert_eq!(judged.error_rate, Some(0.0), "{judged:?}");
    // The callers saw 400s from the canary alone, and the engine's words.
    assert!(
        answers
            .iter()
            .any(|(version, status)| version == "2" && *status == 400)
    );
    assert!(
        answers
            .iter()
            .all(|(version, status)| version == "2" || *status == 200)
    );
    assert_series("sluice_engine_refused_total", "version=\"2\"");
}

/// Inputs both versions' engines refuse are the callers' problem: a canary
/// that refuses no more than the stable version is not rolled back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inputs_both_versions_refuse_roll_nothing_back() {
    let rig = setup_pair("credit_risk_refusing", "credit_risk_refusing", NO_GUARD).await;
    rig.start(policy(&[20, 50], INTERVAL.as_millis() as u64, 40, 1), 20)
        .await;
    // Sixty years older: every applicant is refused, by either version.
    let refused: Vec<Vec<u8>> = credit_applicants(200, 60.0)
        .iter()
        .map(|body| serde_json::to_vec(body).unwrap())
        .collect();
    let answers = rig.fill_with(&refused, |canary, _| canary.requests >= 40).await;
    assert!(answers.iter().all(|(_, status)| *status == 400), "{answers:?}");
    let rollout = rig.end_interval().await;
    let [judged] = &rollout.intervals[..] else {
        panic!("one interval judged: {rollout:#?}");
    };
    assert_eq!(judged.engine_refused_rate, Some(1.0), "{judged:?}");
    assert_eq!(judged.stable_engine_refused_rate, Some(1.0), "{judged:?}");
    assert_eq!(judged.verdict, "passed", "{judged:?}");
    assert_eq!(rollout.status, RolloutStatus::Progressing);
    assert_eq!(rollout.canary_weight, 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_canary_is_promoted_through_every_step() {
    let rig = setup("credit_risk_scaled", GuardLimits::default()).await;
    rig.start(policy(&[10, 30, 60], INTERVAL.as_millis() as u64, 10, 1), 10)
        .await;
    let mut answers = Vec::new();
    for weight in [10, 30, 60] {
        rig.wait_canary_weight(weight).await;
        answers.extend(rig.fill(|canary, _| canary.requests >= 10).await);
        let judged = rig.end_interval().await;
        assert_eq!(judged.intervals.last().unwrap().verdict, "passed", "{judged:#?}");
    }
    // Its last step passed, but a rollout moves no stage: the canary holds
    // its share until production's approvals let it in.
    let awaiting = rig.registry.client("vic").get_rollout(MODEL).await.unwrap();
    assert_eq!(awaiting.status, RolloutStatus::AwaitingPromotion, "{awaiting:#?}");
    assert_eq!(awaiting.canary_weight, 60);
    let canary = rig.registry.client("vic").get_version(MODEL, "2").await.unwrap();
    assert_eq!(
        canary.stage,
        Stage::Staging,
        "the rollout did not enter production itself"
    );
    // It opened the production transition, in its starter's name, for the
    // approvers to act on.
    let pending = rig
        .registry
        .client("vic")
        .list_transitions(Some(MODEL), true)
        .await
        .unwrap();
    assert_eq!(pending.len(), 1, "{pending:#?}");
    assert_eq!(
        (
            pending[0].version,
            pending[0].to_stage,
            pending[0].requested_by.as_str()
        ),
        (2, Stage::Production, "dora")
    );
    rig.registry.approve_production(MODEL, 2).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let rollout = loop {
        let rollout = rig.registry.client("vic").get_rollout(MODEL).await.unwrap();
        if rollout.status != RolloutStatus::AwaitingPromotion {
            break rollout;
        }
        assert!(Instant::now() < deadline, "never promoted: {rollout:#?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(rollout.status, RolloutStatus::Promoted, "{rollout:#?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while rig.gateway.serving(MODEL).version != 2 {
        assert!(
            Instant::now() < deadline,
            "the gateway never made the canary primary"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let passed: Vec<u32> = rollout
        .intervals
        .iter()
        .map(|interval| {
            assert_eq!(interval.verdict, "passed");
            interval.canary_weight
        })
        .collect();
    assert_eq!(
        passed,
        vec![10, 30, 60],
        "one passed interval per step, none else"
    );
    assert_eq!(rollout.canary_weight, 100);
    let version = rig.registry.client("vic").get_version(MODEL, "2").await.unwrap();
    assert_eq!(version.stage, Stage::Production);
    let deployment = rig.registry.client("vic").get_deployment(MODEL).await.unwrap();
    let weights = deployment.spec.weights();
    assert_eq!(
        weights,
        vec![(1, 0), (2, 100)],
        "the old version stays loaded at weight 0"
    );
    assert!(
        answers.iter().all(|(_, status)| *status == 200),
        "a request failed during the rollout"
    );
    assert!(answers.iter().any(|(version, _)| version == "2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiet_intervals_neither_promote_nor_roll_back() {
    let rig = setup("credit_risk_scaled", NO_GUARD).await;
    let mut quiet = policy(&[20, 50], INTERVAL.as_millis() as u64, 1000, 1);
    quiet.max_inconclusive = 3;
    rig.start(quiet, 20).await;
    // Some traffic, far below the minimum of 1000, in each of four intervals.
    for _ in 0..4 {
        rig.fill(|canary, _| canary.requests >= 1).await;
        rig.end_interval().await;
    }
    let rollout = rig.registry.client("vic").get_rollout(MODEL).await.unwrap();
    assert_eq!(rollout.status, RolloutStatus::Progressing);
    assert_eq!(
        (rollout.step, rollout.canary_weight, rollout.failed_intervals),
        (0, 20, 0)
    );
    let verdicts: Vec<&str> = rollout
        .intervals
        .iter()
        .map(|interval| interval.verdict.as_str())
        .collect();
    assert_eq!(verdicts, vec!["inconclusive"; 4]);
    assert!(rollout.intervals[0].reasons[0].contains("fewer than min_requests 1000"));
    assert_eq!(rollout.inconclusive_in_a_row, 4);
    // The third in a row stalled it, said once; it holds its weights.
    let events = rig.registry.client("vic").events(0, 1000).await.unwrap();
    let stalled: Vec<_> = events
        .iter()
        .filter(|event| event.action == "rollout.inconclusive")
        .collect();
    assert_eq!(stalled.len(), 1, "{events:#?}");
    assert!(
        stalled[0]
            .reason
            .as_deref()
            .unwrap_or_default()
            .starts_with("3 intervals in a row inconclusive"),
        "{:?}",
        stalled[0]
    );

    // By hand: abort gives the stable version everything back.
    let aborted = rig
        .registry
        .client("dora")
        .rollout_action(MODEL, "abort")
        .await
        .unwrap();
    assert_eq!(aborted.status, RolloutStatus::Aborted);
    let refused = rig
        .registry
        .client("dora")
        .rollout_action(MODEL, "resume")
        .await
        .unwrap_err();
    assert_eq!(refused.status(), Some(409));
}

/// A rollout nobody can judge rolls back when its policy says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_inconclusive_too_long_rolls_back_when_asked() {
    let rig = setup("credit_risk_scaled", GuardLimits::default()).await;
    let mut quiet = policy(&[20, 50], INTERVAL.as_millis() as u64, 1000, 1);
    quiet.max_inconclusive = 2;
    quiet.rollback_when_inconclusive = true;
    rig.start(quiet, 20).await;
    rig.fill(|canary, _| canary.requests >= 1).await;
    let first = rig.end_interval().await;
    assert_eq!(first.status, RolloutStatus::Progressing);
    rig.fill(|canary, _| canary.requests >= 1).await;
    let rollout = rig.end_interval().await;
    assert_eq!(rollout.status, RolloutStatus::RolledBack, "{rollout:#?}");
    let note = rig
        .registry
        .client("vic")
        .get_document(MODEL, "2", "rollback")
        .await
        .unwrap();
    assert!(
        note.body["reasons"][0]
            .as_str()
            .unwrap()
            .starts_with("2 intervals in a row inconclusive (max_inconclusive), the last: "),
        "{}",
        note.body
    );
    rig.wait_canary_weight(0).await;
}

/// An interval shorter than two of the gateways' statistics windows could
/// hold none of them: refused at the start, with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interval_the_gateways_statistics_cannot_fill_is_refused() {
    let rig = setup("credit_risk_scaled", GuardLimits::default()).await;
    // The gateway reports (every 50 ms here) once it has counted something.
    rig.fill(|_, stable| stable.requests >= 1).await;
    let body = StartRollout {
        canary: 2,
        policy: policy(&[20, 50], 60, 10, 1),
    };
    let refused = rig
        .registry
        .client("dora")
        .start_rollout(MODEL, &body)
        .await
        .unwrap_err();
    assert_eq!(refused.status(), Some(400));
    assert!(
        refused.to_string().contains(
            "interval_ms 60 is shorter than two of the gateways' statistics windows (50 ms, their --stats-interval-ms)"
        ),
        "{refused}"
    );
    let fits = StartRollout {
        canary: 2,
        policy: policy(&[20, 50], 100, 10, 1),
    };
    rig.registry
        .client("dora")
        .start_rollout(MODEL, &fits)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_guard_stops_a_failing_canary_without_the_registry() {
    // The canary fails 28% of applicants: stop it at 4 failures in its last 20.
    let limits = GuardLimits {
        window: 20,
        errors: 4,
    };
    let Rig {
        mut registry,
        gateway,
        _cache,
        ..
    } = setup("credit_risk_faulty", limits).await;
    let body = SetDeployment::new(TrafficSpec::weighted(&[(1, 60), (2, 40)]));
    registry
        .client("dora")
        .set_deployment(MODEL, &body)
        .await
        .unwrap();
    gateway.wait_versions(MODEL, &[1, 2]).await;
    registry.stop().await;

    let stop = Arc::new(AtomicBool::new(false));
    let workers = traffic(&gateway, 2, Duration::ZERO, &stop);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let route = gateway.server.routes.snapshot().routes[MODEL].clone();
        if route.targets.iter().all(|target| target.model.version == 1) {
            break;
        }
        assert!(Instant::now() < deadline, "the guard never tripped");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let before = collect(&stop, workers).await;
    // From here on the canary takes nothing, though the registry is down.
    let url = gateway.url(&format!("/v2/models/{MODEL}/infer"));
    for body in applicant_requests().iter().take(100) {
        let response = gateway.client.post(&url).body(body.clone()).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["x-model-version"], "1");
    }
    let canary_failures = before
        .iter()
        .filter(|(version, status)| version == "2" && *status == 500)
        .count();
    assert!(
        (4..=30).contains(&canary_failures),
        "{canary_failures} canary failures before the guard stopped it"
    );

    // The registry hears of it once it is back, and every replica converges.
    registry.restart().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let deployment = registry.client("vic").get_deployment(MODEL).await.unwrap();
        let weights = deployment.spec.weights();
        if weights == vec![(1, 100), (2, 0)] {
            assert_eq!(deployment.updated_by, "gw");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the registry never took the guard's rollback: {weights:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The canary answers every request, with NaN scores for a quarter of
/// real inputs: callers see only 200s, yet it is rolled back at its first
/// interval, and the local guard stops it with the registry down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_answering_nan_is_rolled_back_and_stopped_by_the_guard() {
    let rig = setup("credit_risk_nan", NO_GUARD).await;
    let mut checked = policy(&[20, 50], INTERVAL.as_millis() as u64, 40, 1);
    checked.max_nan_rate = Some(0.01);
    rig.start(checked, 20).await;
    let (_, judged, answers) = rig.rolled_back_early(|canary, _| canary.requests >= 100).await;
    assert!(answers.iter().all(|(_, status)| *status == 200), "{answers:?}");
    assert!(judged.reasons[0].starts_with("non-finite rows"), "{judged:?}");
    assert!(judged.nonfinite_rate.unwrap() > 0.1, "{judged:?}");
    assert_eq!(judged.stable_nonfinite_rate, Some(0.0), "{judged:?}");
    drop(rig);

    let (_rig, gateway) = guarded_split(MODEL, "credit_risk_nan").await;
    send_all(&gateway, &applicant_requests()).await;
    let route = gateway.server.routes.snapshot().routes[MODEL].clone();
    assert!(
        route.targets.iter().all(|target| target.model.version == 1),
        "the guard never tripped"
    );
}

/// A 60/40 split of `stable` and `canary` under a guard of 4 failures in
/// 20, the registry stopped: the gateway is on its own.
async fn guarded_split(stable: &str, canary: &str) -> (Rig, Arc<TestGateway>) {
    let limits = GuardLimits {
        window: 20,
        errors: 4,
    };
    let mut rig = setup_pair(stable, canary, limits).await;
    let body = SetDeployment::new(TrafficSpec::weighted(&[(1, 60), (2, 40)]));
    rig.registry
        .client("dora")
        .set_deployment(MODEL, &body)
        .await
        .unwrap();
    rig.gateway.wait_versions(MODEL, &[1, 2]).await;
    rig.wait_canary_weight(40).await;
    rig.registry.stop().await;
    let gateway = rig.gateway.clone();
    (rig, gateway)
}

/// Sends `bodies` one at a time; what each version answered.
async fn send_all(gateway: &TestGateway, bodies: &[Vec<u8>]) -> Answers {
    let url = gateway.url(&format!("/v2/models/{MODEL}/infer"));
    let mut answers = Vec::new();
    for body in bodies {
        let response = gateway.client.post(&url).body(body.clone()).send().await.unwrap();
        let version = response.headers()["x-model-version"]
            .to_str()
            .unwrap()
            .to_string();
        answers.push((version, response.status().as_u16()));
    }
    answers
}

/// The local guard counts engine refusals as it counts 5xx, beyond what
/// the stable version refuses: a refusing canary is stopped with the
/// registry down, and inputs both refuse stop nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_guard_stops_a_canary_its_engine_refuses() {
    let (rig, gateway) = guarded_split(MODEL, "credit_risk_refusing").await;
    let answers = send_all(&gateway, &applicant_requests()).await;
    let route = gateway.server.routes.snapshot().routes[MODEL].clone();
    assert!(
        route.targets.iter().all(|target| target.model.version == 1),
        "the guard never tripped"
    );
    // Stopped once its window of 20 is full and holds 4 refusals (the
    // stable version refused nothing), plus what came while the table swapped.
    let refused = answers
        .iter()
        .filter(|(version, status)| version == "2" && *status == 400)
        .count();
    assert!((4..=30).contains(&refused), "{refused} refusals: {answers:?}");
    drop(rig);

    let (rig, gateway) = guarded_split("credit_risk_refusing", "credit_risk_refusing").await;
    let refused_by_both: Vec<Vec<u8>> = credit_applicants(200, 60.0)
        .iter()
        .map(|body| serde_json::to_vec(body).unwrap())
        .collect();
    let answers = send_all(&gateway, &refused_by_both).await;
    assert!(answers.iter().all(|(_, status)| *status == 400));
    assert!(answers.iter().filter(|(version, _)| version == "2").count() >= 20);
    rig.wait_canary_weight(40).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_traffic_change_reaches_the_gateway_within_milliseconds() {
    let Rig {
        registry,
        gateway,
        _cache,
        ..
    } = setup("credit_risk_scaled", GuardLimits::default()).await;
    let mut swaps = gateway.server.routes.subscribe();
    let mut delays = Vec::new();
    for (stable, canary) in [(90, 10), (50, 50), (100, 0), (80, 20), (100, 0)] {
        let body = SetDeployment::new(TrafficSpec::weighted(&[(1, stable), (2, canary)]));
        let sent = Instant::now();
        registry
            .client("dora")
            .set_deployment(MODEL, &body)
            .await
            .unwrap();
        loop {
            let swap = tokio::time::timeout(Duration::from_secs(10), swaps.recv())
                .await
                .unwrap()
                .unwrap();
            let route = &swap.table.routes[MODEL];
            let canary_weight: u32 = route
                .targets
                .iter()
                .filter(|t| t.model.version == 2)
                .map(|t| t.weight)
                .sum();
            if canary_weight == canary {
                delays.push(swap.at.saturating_duration_since(sent));
                break;
            }
        }
    }
    delays.sort();
    eprintln!("traffic set to gateway swap, sorted: {delays:?}");
    assert!(
        delays[delays.len() / 2] < Duration::from_secs(1),
        "median propagation {delays:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_that_answers_far_from_stable_is_rolled_back_on_disagreement() {
    // The registry's judgement, the guard aside (it stops this canary too:
    // `the_local_guard_stops_a_canary_that_disagrees`).
    let rig = setup("credit_risk_inverted", NO_GUARD).await;
    // From 50% on the canary weighs as much as the stable version or more:
    // which one is the canary is the rollout's word, not the weights'.
    let mut checks = policy(&[50, 80], INTERVAL.as_millis() as u64, 20, 1);
    checks.max_shadow_disagreement = Some(0.1);
    rig.start(checks, 50).await;
    let (_, judged, answers) = rig
        .rolled_back_early(|canary, _| canary.requests >= 20 && canary.shadow.rows >= 20)
        .await;
    // It never failed a request: only comparing its answers with the
    // stable version's showed it wrong.
    assert!(answers.iter().all(|(_, status)| *status == 200));
    assert_eq!(judged.shadow_disagreement, Some(1.0), "{judged:?}");
    assert!(
        judged.reasons[0].starts_with("shadow disagreement 100.00%"),
        "{judged:?}"
    );
}

/// The canary gives everyone the same answer, as a model trained on a
/// broken label column would: it never fails, and the comparison with the
/// stable version's answers rolls it back inside its first interval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_with_one_answer_for_everyone_is_rolled_back_on_disagreement() {
    // The registry's judgement, the guard aside (it stops this canary too:
    // `the_local_guard_stops_a_canary_that_disagrees`).
    let rig = setup("credit_risk_constant", NO_GUARD).await;
    let mut checks = policy(&[20, 50], INTERVAL.as_millis() as u64, 20, 1);
    checks.max_shadow_disagreement = Some(0.1);
    rig.start(checks, 20).await;
    let (_, judged, answers) = rig
        .rolled_back_early(|canary, _| canary.requests >= 20 && canary.shadow.rows >= 20)
        .await;
    assert!(answers.iter().all(|(_, status)| *status == 200));
    // The stable version puts 8% of applicants in class 1.
    assert!(judged.shadow_disagreement.unwrap() > 0.5, "{judged:?}");
    assert_eq!(judged.error_rate, Some(0.0), "{judged:?}");
}

/// The slow canary answers exactly as the stable version, some 20 ms late
/// (sixteen 384 by 384 matrix products before its scores): no failure, no
/// disagreement, only its latency against the stable version's shows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_canary_is_rolled_back_on_its_latency() {
    let rig = setup("credit_risk_slow", NO_GUARD).await;
    let mut timed = policy(&[20, 50], INTERVAL.as_millis() as u64, 40, 2);
    timed.max_p99_ratio = Some(2.0);
    rig.start(timed, 20).await;
    let (_, judged, answers) = rig.rolled_back_early(|canary, _| canary.requests >= 40).await;
    assert!(answers.iter().all(|(_, status)| *status == 200), "{answers:?}");
    assert!(judged.reasons[0].starts_with("slow requests"), "{judged:#?}");
    let (p99, stable_p99) = (judged.p99_ms.unwrap(), judged.stable_p99_ms.unwrap());
    assert!(p99 > 2.0 * stable_p99 && p99 > stable_p99 + 1.0, "{judged:#?}");
    assert_eq!(judged.error_rate, Some(0.0), "{judged:?}");
}

/// The local guard stops the slow canary too, with the registry down: its
/// answers are past twice the stable version's p99 (from the stable
/// version's last statistics window on this gateway) and a millisecond
/// more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_guard_stops_a_slow_canary() {
    let (_rig, gateway) = guarded_split(MODEL, "credit_risk_slow").await;
    // Until the reporter has taken a window of the stable version's
    // answers, nothing is slow: a few first.
    let first = send_all(&gateway, &applicant_requests()[..20]).await;
    assert!(first.iter().all(|(_, status)| *status == 200));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let answers = send_all(&gateway, &applicant_requests()).await;
    assert!(answers.iter().all(|(_, status)| *status == 200));
    let route = gateway.server.routes.snapshot().routes[MODEL].clone();
    assert!(
        route.targets.iter().all(|target| target.model.version == 1),
        "the guard never tripped"
    );
}

/// During a rollout that checks disagreement, the local guard weighs each
/// comparison of the canary's answer with the stable version's as it weighs
/// failures: the inverted canary, which never fails, is stopped with the
/// registry down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_guard_stops_a_canary_that_disagrees() {
    let limits = GuardLimits {
        window: 20,
        errors: 4,
    };
    let mut rig = setup("credit_risk_inverted", limits).await;
    let mut checks = policy(&[50, 80], INTERVAL.as_millis() as u64, 20, 1);
    checks.max_shadow_disagreement = Some(0.1);
    rig.start(checks, 50).await;
    rig.registry.stop().await;
    let gateway = rig.gateway.clone();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let answers = send_all(&gateway, &applicant_requests()[..20]).await;
        assert!(answers.iter().all(|(_, status)| *status == 200));
        let route = gateway.server.routes.snapshot().routes[MODEL].clone();
        if route.targets.iter().all(|target| target.model.version == 1) {
            break;
        }
        assert!(Instant::now() < deadline, "the guard never tripped");
    }
}
