//! The batcher against a small engine that doubles its input and records
//! each run's rows, so the tests see how requests were grouped. Real models
//! batched over HTTP are in `tests/tests/e2e/batching.rs`.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;

use super::*;
use crate::signature::TensorSpec;
use crate::tensor::{DataType, TensorData};

struct Doubler {
    signature: Signature,
    runs: Mutex<Vec<usize>>,
    /// While set, runs wait: the executor is busy and requests queue.
    hold: AtomicBool,
    /// Runs started, held or not.
    entered: AtomicUsize,
}

impl Doubler {
    fn new(first_dim: i64) -> Arc<Doubler> {
        let spec = |name: &str| TensorSpec {
            name: name.into(),
            datatype: DataType::F32,
            shape: vec![first_dim, 2],
            dim_symbols: vec![Some("N".into()), None],
            labels: Vec::new(),
        };
        Arc::new(Doubler {
            signature: Signature {
                inputs: vec![spec("x")],
                outputs: vec![spec("y")],
            },
            runs: Mutex::new(Vec::new()),
            hold: AtomicBool::new(false),
            entered: AtomicUsize::new(0),
        })
    }

    fn runs(&self) -> Vec<usize> {
        self.runs.lock().unwrap().clone()
    }

    /// Holds the engine, submits one request and waits until its run has
    /// started: what is submitted next queues behind it.
    fn occupy(&self, batcher: &Batcher) -> mpsc::Receiver<Answer> {
        self.hold.store(true, Ordering::SeqCst);
        let before = self.entered.load(Ordering::SeqCst);
        let (first, receiver) = pending(&[1.0, 2.0], None);
        batcher.submit(first).unwrap();
        while self.entered.load(Ordering::SeqCst) == before {
            std::thread::yield_now();
        }
        receiver
    }
}

impl Session for Doubler {
    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        self.entered.fetch_add(1, Ordering::SeqCst);
        while self.hold.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(1));
        }
        self.runs.lock().unwrap().push(inputs[0].rows());
        let TensorData::F32(values) = &inputs[0].data else {
            return Err(Error::Internal("not f32".into()));
        };
        if values.iter().any(|value| value.is_nan()) {
            return Err(Error::bad_request("NaN in x"));
        }
        Ok(vec![Tensor {
            shape: inputs[0].shape.clone(),
            data: TensorData::F32(values.iter().map(|value| value * 2.0).collect()),
        }])
    }
}

fn rows(values: &[f32]) -> Vec<Tensor> {
    vec![Tensor {
        shape: vec![values.len() / 2, 2],
        data: TensorData::F32(values.to_vec()),
    }]
}

type Answer = (Result<Vec<Tensor>>, BatchTiming);

fn pending(values: &[f32], deadline_opt: Option<Instant>) -> (Pending, mpsc::Receiver<Answer>) {
    let (sender, receiver) = mpsc::channel();
    let done: Done = Box::new(move |result, timing| {
        let _ = sender.send((result, timing));
    });
    (Pending::new(rows(values), deadline_opt, done), receiver)
}

fn answer(receiver: &mpsc::Receiver<Answer>) -> Result<Vec<Tensor>> {
    answer_within(receiver, Duration::from_secs(10))
}

/// The answer, which must come before `limit`: tests whose delay is ten
/// seconds show with it that the batch did not wait the delay out.
fn answer_within(receiver: &mpsc::Receiver<Answer>, limit: Duration) -> Result<Vec<Tensor>> {
    receiver.recv_timeout(limit).expect("answered in time").0
}

fn config(max_batch_size: usize, delay_us: u64) -> Batching {
    Batching {
        max_queue_delay_us: delay_us,
        instances: 1,
        ..Batching::with_max_batch_size(max_batch_size)
    }
}

fn start(session: &Arc<Doubler>, config: &Batching) -> Batcher {
    Batcher::start("m", "1", session.clone(), config).unwrap()
}

#[test]
fn queued_requests_run_together_and_each_gets_its_own_rows_back() {
    let session = Doubler::new(-1);
    let batcher = start(&session, &config(8, 0));
    // The first request occupies the executor; the next three queue behind it.
    let first_answer = session.occupy(&batcher);
    let mut answers = Vec::new();
    for request in 1..4 {
        let values: Vec<f32> = (0..request * 2).map(|i| (request * 10 + i) as f32).collect();
        let (queued, receiver) = pending(&values, None);
        batcher.submit(queued).unwrap();
        answers.push((values, receiver));
    }
    session.hold.store(false, Ordering::SeqCst);

    assert_eq!(answer(&first_answer).unwrap(), rows(&[2.0, 4.0]));
    for (values, receiver) in answers {
        let doubled: Vec<f32> = values.iter().map(|value| value * 2.0).collect();
        assert_eq!(answer(&receiver).unwrap(), rows(&doubled));
    }
    // 1 row alone, then 1 + 2 + 3 rows in one run.
    assert_eq!(session.runs(), vec![1, 6]);
}

#[test]
fn a_batch_never_exceeds_max_batch_size_and_a_larger_request_is_refused() {
    let session = Doubler::new(-1);
    let batcher = start(&session, &config(4, 0));
    let _first_answer = session.occupy(&batcher);
    let receivers: Vec<_> = (0..3)
        .map(|_| {
            let (queued, receiver) = pending(&[1.0; 8], None);
            batcher.submit(queued).unwrap();
            receiver
        })
        .collect();
    session.hold.store(false, Ordering::SeqCst);
    for receiver in &receivers {
        answer(receiver).unwrap();
    }
    assert_eq!(session.runs(), vec![1, 4, 4, 4]);

    let (too_big, _) = pending(&[0.0; 10], None);
    let err = batcher.submit(too_big).unwrap_err();
    assert!(matches!(err, Error::BadRequest(_)), "{err}");
    assert!(err.to_string().contains("5 rows"), "{err}");
}

#[test]
fn a_preferred_size_runs_without_waiting_out_the_delay() {
    let session = Doubler::new(-1);
    let batching = Batching {
        preferred_batch_sizes: vec![2],
        // Ten seconds: waiting it out would fail the answer's timeout below.
        max_queue_delay_us: 10_000_000,
        ..config(8, 0)
    };
    let batcher = start(&session, &batching);
    let (first, first_answer) = pending(&[1.0, 2.0, 3.0, 4.0], None);
    batcher.submit(first).unwrap();
    answer_within(&first_answer, Duration::from_secs(2)).unwrap();
    assert_eq!(session.runs(), vec![2]);
}

#[test]
fn the_delay_gathers_requests_that_arrive_within_it() {
    let session = Doubler::new(-1);
    let batcher = start(&session, &config(8, 500_000));
    let receivers: Vec<_> = (0..3)
        .map(|_| {
            let (queued, receiver) = pending(&[1.0, 2.0], None);
            batcher.submit(queued).unwrap();
            receiver
        })
        .collect();
    for receiver in &receivers {
        answer(receiver).unwrap();
    }
    assert_eq!(session.runs(), vec![3]);
}

#[test]
fn a_full_queue_refuses_at_once() {
    let session = Doubler::new(-1);
    let batcher = start(
        &session,
        &Batching {
            max_queue_size: 1,
            ..config(1, 0)
        },
    );
    let running_answer = session.occupy(&batcher);
    let (waiting, waiting_answer) = pending(&[1.0, 2.0], None);
    batcher.submit(waiting).unwrap();
    let (refused, _) = pending(&[1.0, 2.0], None);
    let err = batcher.submit(refused).unwrap_err();
    assert!(matches!(err, Error::Unavailable(_)), "{err}");
    assert_eq!(err.status(), axum::http::StatusCode::SERVICE_UNAVAILABLE);
    session.hold.store(false, Ordering::SeqCst);
    answer(&running_answer).unwrap();
    answer(&waiting_answer).unwrap();
}

#[test]
fn a_request_whose_deadline_passes_in_the_queue_is_answered_and_never_run() {
    let session = Doubler::new(-1);
    let batcher = start(&session, &config(8, 0));
    let running_answer = session.occupy(&batcher);
    let deadline = Instant::now() + Duration::from_millis(1);
    let (late, late_answer) = pending(&[5.0, 5.0, 5.0, 5.0], Some(deadline));
    batcher.submit(late).unwrap();
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    session.hold.store(false, Ordering::SeqCst);
    answer(&running_answer).unwrap();
    let err = answer(&late_answer).unwrap_err();
    assert_eq!(err.status(), axum::http::StatusCode::GATEWAY_TIMEOUT, "{err}");
    assert_eq!(session.runs(), vec![1], "the expired request's 2 rows never ran");
}

#[test]
fn a_bad_request_fails_alone_and_its_batch_mates_are_answered() {
    let session = Doubler::new(-1);
    let batcher = start(&session, &config(8, 0));
    let first_answer = session.occupy(&batcher);
    let (good, good_answer) = pending(&[3.0, 4.0], None);
    let (bad, bad_answer) = pending(&[f32::NAN, 4.0], None);
    batcher.submit(good).unwrap();
    batcher.submit(bad).unwrap();
    session.hold.store(false, Ordering::SeqCst);
    answer(&first_answer).unwrap();
    assert_eq!(answer(&good_answer).unwrap(), rows(&[6.0, 8.0]));
    let err = answer(&bad_answer).unwrap_err();
    assert!(matches!(err, Error::BadRequest(_)), "{err}");
}

#[test]
fn a_forming_batch_stops_waiting_at_a_members_deadline() {
    let session = Doubler::new(-1);
    // Ten seconds of delay: the answer's own timeout would fail first.
    let batcher = start(&session, &config(8, 10_000_000));
    let (late, late_answer) = pending(&[1.0, 2.0], Some(Instant::now() + Duration::from_millis(20)));
    batcher.submit(late).unwrap();
    let err = answer_within(&late_answer, Duration::from_secs(2)).unwrap_err();
    assert_eq!(err.status(), axum::http::StatusCode::GATEWAY_TIMEOUT, "{err}");
    assert!(session.runs().is_empty(), "an expired request never runs");
}

#[test]
fn a_request_dropped_unanswered_still_gets_an_error() {
    let (dropped, receiver) = pending(&[1.0, 2.0], None);
    drop(dropped);
    let err = answer(&receiver).unwrap_err();
    assert!(matches!(err, Error::Internal(_)), "{err}");
}

#[test]
fn inputs_that_do_not_share_a_batch_dimension_are_not_batched() {
    let session = Doubler::new(-1);
    let mut signature = session.signature.clone();
    let mut indices = signature.inputs[0].clone();
    indices.name = "indices".into();
    indices.dim_symbols[0] = Some("K".into());
    signature.inputs.push(indices);
    let err = check_batchable(&signature).unwrap_err();
    assert!(
        err.contains("'x' and 'indices' do not share their first dimension (N vs K)"),
        "{err}"
    );
}

#[test]
fn a_model_without_a_dynamic_first_dimension_is_not_batched() {
    let err = Batcher::start("m", "1", Doubler::new(1), &config(8, 0))
        .err()
        .unwrap();
    assert!(err.contains("no dynamic first dimension"), "{err}");
    let invalid = Batching {
        preferred_batch_sizes: vec![9],
        ..config(8, 0)
    };
    let err = Batcher::start("m", "1", Doubler::new(-1), &invalid)
        .err()
        .unwrap();
    assert!(err.contains("preferred_batch_sizes"), "{err}");
}
