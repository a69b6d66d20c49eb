//! Drives one run: a single-threaded event loop per worker thread, each
//! owning its connections and its recorder, so nothing is locked or shared
//! on the request path but a few relaxed counters for the progress line.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::http::{Connection, Shared};
use crate::schedule::{Arrivals, ConnectionSchedule, RateProfile, SplitMix};
use crate::stats::{Outcome, Recorder, Sample};
use crate::target::{Target, pick};

/// How load is offered.
#[derive(Debug, Clone, PartialEq)]
pub enum Load {
    /// Requests start on a schedule whatever the server does; latency is
    /// measured from the intended start (corrected for coordinated omission).
    Open {
        profile: RateProfile,
        arrivals: Arrivals,
        connections: usize,
    },
    /// Each connection sends its next request when the last one ends
    /// (wrk's model): latency is not corrected.
    Closed { connections: usize },
}

impl Load {
    pub fn connections(&self) -> usize {
        match self {
            Load::Open { connections, .. } | Load::Closed { connections } => *connections,
        }
    }
}

#[derive(Debug, Clone)]
pub struct RunSpec {
    pub targets: Arc<Vec<Target>>,
    pub load: Load,
    pub duration: Duration,
    pub threads: usize,
    pub timeout: Duration,
    pub split_header_opt: Option<String>,
    /// HTTP/2 connections the in-flight requests share as streams (gRPC,
    /// h2c); `None`: one connection per request in flight.
    pub h2_connections_opt: Option<usize>,
    pub seed: u64,
    /// How long before a request's intended start the generator stops
    /// sleeping and spins (see `wait_until`).
    pub spin: Duration,
}

/// Counters the progress line reads; workers only add to them.
#[derive(Debug, Default)]
pub struct Progress {
    pub completed: AtomicU64,
    pub errors: AtomicU64,
}

#[derive(Debug, Clone)]
pub struct RunResult {
    pub recorder: Recorder,
    /// Worker threads actually used (never more than connections).
    pub threads: usize,
    /// The scheduled duration: the window throughput is measured over.
    pub window: Duration,
    /// From the start to the last response (the window plus the tail).
    pub elapsed: Duration,
    /// CPU time this process used during the run, over the workers' capacity.
    pub cpu_utilization_opt: Option<f64>,
}

impl RunResult {
    /// Successful responses that ended inside the window, per second of it:
    /// what the server delivered, not what the generator offered.
    pub fn achieved_rate(&self) -> f64 {
        self.recorder.total.ok_in_window as f64 / self.window.as_secs_f64().max(f64::EPSILON)
    }
}

/// Runs `spec` to completion; blocks the calling thread.
pub fn run(spec: &RunSpec, progress: &Arc<Progress>) -> std::io::Result<RunResult> {
    let mut threads = spec.threads.clamp(1, spec.load.connections().max(1));
    // A thread's slots share its own HTTP/2 connections: at least one each.
    if let Some(shared) = spec.h2_connections_opt {
        threads = threads.min(shared.max(1));
    }
    let cpu_before = process_cpu_seconds();
    // Every worker starts the clock at the same instant, a moment from now,
    // so that thread start-up is not counted as lag.
    let start = Instant::now() + Duration::from_millis(20);
    let workers: Vec<_> = (0..threads)
        .map(|worker| {
            let spec = spec.clone();
            let progress = progress.clone();
            std::thread::Builder::new()
                .name(format!("loadtest-{worker}"))
                .spawn(move || -> std::io::Result<Recorder> {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()?;
                    Ok(runtime.block_on(worker_loop(&spec, worker, threads, start, &progress)))
                })
        })
        .collect::<std::io::Result<_>>()?;
    let mut recorder = Recorder::default();
    for worker in workers {
        let part = worker
            .join()
            .map_err(|_| std::io::Error::other("a load generator thread panicked"))??;
        recorder.merge(&part);
    }
    let elapsed = start.elapsed().max(Duration::from_millis(1));
    // A thread uses at most one core, and there are only so many cores.
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let capacity = threads.min(cores) as f64;
    let cpu_utilization_opt = match (cpu_before, process_cpu_seconds()) {
        (Some(before), Some(after)) => Some((after - before) / (elapsed.as_secs_f64() * capacity)),
        _ => None,
    };
    Ok(RunResult {
        recorder,
        threads,
        window: spec.duration,
        elapsed,
        cpu_utilization_opt,
    })
}

/// A connection's request in flight, as the watchdog sees it.
#[derive(Default)]
struct Slot {
    started: Cell<Option<Instant>>,
    expire: Notify,
}

async fn worker_loop(
    spec: &RunSpec,
    worker: usize,
    threads: usize,
    start: Instant,
    progress: &Arc<Progress>,
) -> Recorder {
    let recorder = Rc::new(RefCell::new(Recorder::default()));
    let local = tokio::task::LocalSet::new();
    let indices: Vec<usize> = (worker..spec.load.connections()).step_by(threads).collect();
    let slots: Rc<[Slot]> = indices.iter().map(|_| Slot::default()).collect();
    // This thread's share of the HTTP/2 connections, when they are shared.
    let shared_opt = spec.h2_connections_opt.map(|total| {
        let share = total / threads + usize::from(worker < total % threads);
        Rc::new(Shared::new(share))
    });
    let running = Rc::new(Cell::new(indices.len()));
    for (position, index) in indices.into_iter().enumerate() {
        let (spec, recorder, progress, slots, running, shared_opt) = (
            spec.clone(),
            recorder.clone(),
            progress.clone(),
            slots.clone(),
            running.clone(),
            shared_opt.clone(),
        );
        local.spawn_local(async move {
            let slot = &slots[position];
            let shared = shared_opt.as_deref().map(|shared| (shared, position));
            drive_connection(&spec, index, start, &recorder, &progress, slot, shared).await;
            running.set(running.get() - 1);
        });
    }
    local.spawn_local(watchdog(slots, running, spec.timeout));
    local.await;
    Rc::try_unwrap(recorder)
        .map(RefCell::into_inner)
        .unwrap_or_else(|shared| shared.borrow().clone())
}

/// Expires requests past the timeout. One timer per thread, not one per
/// request: a per-request `tokio::time::timeout` cost a quarter of the
/// generator's throughput. Precision is a tenth of the timeout (1-100 ms).
async fn watchdog(slots: Rc<[Slot]>, running: Rc<Cell<usize>>, timeout: Duration) {
    let period = (timeout / 10).clamp(Duration::from_millis(1), Duration::from_millis(100));
    while running.get() > 0 {
        tokio::time::sleep(period).await;
        let now = Instant::now();
        for slot in slots.iter() {
            if slot.started.get().is_some_and(|started| now - started >= timeout) {
                // Wakes only a request waiting now: no permit is left behind
                // to cut the next one short.
                slot.expire.notify_waiters();
            }
        }
    }
}

/// Sends one slot's requests. `shared_opt`: the thread's HTTP/2
/// connections and this slot's place among them.
async fn drive_connection(
    spec: &RunSpec,
    index: usize,
    start: Instant,
    recorder: &RefCell<Recorder>,
    progress: &Progress,
    slot: &Slot,
    shared_opt: Option<(&Shared, usize)>,
) {
    let end = start + spec.duration;
    let mut schedule_opt = match &spec.load {
        Load::Open {
            profile,
            arrivals,
            connections,
        } => Some(ConnectionSchedule::new(
            profile.clone(),
            *arrivals,
            *connections,
            index,
            spec.seed,
        )),
        Load::Closed { .. } => None,
    };
    let total_weight: u64 = spec.targets.iter().map(|t| u64::from(t.weight)).sum();
    let mut random = SplitMix::new(derive_seed(spec.seed ^ 0xA24B_AED4_963E_E407, index));
    // Past the window plus one timeout, a run stops even if its schedule is
    // not done (a hung server would otherwise keep it going for hours); what
    // was never sent is counted as such.
    let hard_stop = end + spec.timeout;
    let mut previous_end = start;
    let mut connection_opt: Option<Connection> = None;
    let mut body_turn = index;
    let splitting = spec.split_header_opt.is_some();
    tokio::time::sleep_until(start.into()).await;
    loop {
        let intended = match &mut schedule_opt {
            Some(schedule) => match schedule.next_due(spec.duration) {
                Some(offset) => start + offset,
                None => break,
            },
            None => Instant::now(),
        };
        if intended >= end {
            break;
        }
        if Instant::now() >= hard_stop {
            let remaining = schedule_opt.as_mut().map_or(0, |schedule| {
                std::iter::from_fn(|| schedule.next_due(spec.duration)).count()
            });
            recorder.borrow_mut().not_sent(1 + remaining as u64);
            break;
        }
        let connection_was_free = previous_end <= intended;
        wait_until(intended, spec.spin).await;
        let sent = Instant::now();
        let target = pick(&spec.targets, total_weight, &mut random);
        let payload = &target.payloads[body_turn % target.payloads.len()];
        body_turn += 1;
        let request = target
            .endpoint
            .post(payload.body.clone(), payload.header_length_opt);
        let exchange = async {
            if !connection_opt.as_ref().is_some_and(Connection::is_usable) {
                let protocol = target.endpoint.protocol;
                let (connection, opened) = match shared_opt {
                    Some((shared, position)) => shared.get(position, target.url(), protocol).await,
                    None => Connection::open(target.url(), protocol)
                        .await
                        .map(|connection| (connection, true)),
                }
                .map_err(|err| ("connect", err.to_string()))?;
                if opened {
                    recorder.borrow_mut().connections_opened += 1;
                }
                connection_opt = Some(connection);
            }
            let connection = connection_opt.as_mut().expect("opened above");
            connection
                .send(request, spec.split_header_opt.as_deref())
                .await
                .map_err(|err| ("io", err.to_string()))
        };
        slot.started.set(Some(sent));
        let result = tokio::select! {
            biased;
            answer = exchange => Ok(answer),
            () = slot.expire.notified() => Err(()),
        };
        slot.started.set(None);
        let ended = Instant::now();
        previous_end = ended;
        let (outcome, version_opt) = match result {
            // A gRPC call answered with a failure: its code is the class.
            Ok(Ok(answer)) if answer.grpc_opt.as_ref().is_some_and(|(code, _)| *code != 0) => {
                let (code, message_opt) = answer.grpc_opt.unwrap_or_default();
                let outcome = Outcome::Error {
                    class: format!("grpc {}", grpc_code_name(code)),
                    message_opt,
                };
                (outcome, answer.split_value_opt)
            }
            Ok(Ok(answer)) if (200..300).contains(&answer.status) => (Outcome::Ok, answer.split_value_opt),
            Ok(Ok(answer)) => (
                Outcome::Error {
                    class: format!("status {}", answer.status),
                    message_opt: error_message(&answer.body),
                },
                answer.split_value_opt,
            ),
            Ok(Err((class, _detail))) => {
                connection_opt = None;
                (
                    Outcome::Error {
                        class: class.to_string(),
                        message_opt: None,
                    },
                    None,
                )
            }
            Err(()) => {
                // The connection still carries the late response: start afresh.
                connection_opt = None;
                (
                    Outcome::Error {
                        class: "timeout".to_string(),
                        message_opt: None,
                    },
                    None,
                )
            }
        };
        let failed = matches!(outcome, Outcome::Error { .. });
        recorder.borrow_mut().record(
            Sample {
                at_second: ended.saturating_duration_since(start).as_secs() as usize,
                corrected: ended - intended,
                service: ended - sent,
                lag: sent - intended,
                version: version_opt.as_deref(),
                outcome,
                in_window: ended <= end,
                connection_was_free,
            },
            splitting,
        );
        progress.completed.fetch_add(1, Ordering::Relaxed);
        if failed {
            progress.errors.fetch_add(1, Ordering::Relaxed);
            // A closed loop against a dead server would spin: pace it.
            if schedule_opt.is_none() && connection_opt.is_none() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// gRPC's name for a status code, as clients print it.
fn grpc_code_name(code: u32) -> String {
    const NAMES: [&str; 17] = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];
    NAMES
        .get(code as usize)
        .map_or_else(|| format!("code {code}"), |name| name.to_string())
}

/// An independent seed for stream `index`: SplitMix streams seeded a
/// multiple of its increment apart replay each other, so seeds are hashed.
pub fn derive_seed(seed: u64, index: usize) -> u64 {
    SplitMix::new(seed.wrapping_add((index as u64).wrapping_mul(0xD1B5_4A32_D192_ED03))).next_u64()
}

/// Tokio's timer ticks in whole milliseconds and may fire a tick or two
/// late: an honest schedule of sub-millisecond requests cannot wait on it
/// alone. Sleep to `spin` before the intended start, then yield (letting the
/// other connections run) until it comes. The spin costs CPU; `spin` zero
/// turns it off, and the timer's lateness then shows as send lag.
async fn wait_until(intended: Instant, spin: Duration) {
    let coarse = intended.checked_sub(spin).unwrap_or(intended);
    if Instant::now() < coarse {
        tokio::time::sleep_until(coarse.into()).await;
    }
    while Instant::now() < intended {
        if spin.is_zero() {
            tokio::time::sleep_until(intended.into()).await;
        } else {
            tokio::task::yield_now().await;
        }
    }
}

/// The `{"error": "..."}` message of a V2 error body, shortened for grouping.
fn error_message(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let message = value.get("error")?.as_str()?;
    Some(message.chars().take(120).collect())
}

/// User plus system CPU seconds of this process, from `/proc/self/stat`
/// (Linux; clock ticks are 100 per second on every mainstream kernel).
fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let user: f64 = fields.get(11)?.parse().ok()?;
    let system: f64 = fields.get(12)?.parse().ok()?;
    Some((user + system) / 100.0)
}
