//! Shadow traffic: a sample of requests is run again on a shadow version
//! after the primary answer is ready, and the two answers are compared.
//!
//! The shadow never touches the client's response: the primary's bytes are
//! encoded before a job is queued, the queue is bounded and drops (and
//! counts) when full, and the shadow runs on threads of its own.

use std::sync::Arc;

use crossbeam_channel::{Sender, TrySendError};
use tokio::sync::mpsc;

use crate::comparison::compare;
use crate::guard::{GuardLimits, Trip};
use crate::model::LoadedModel;
use crate::tensor::Tensor;

/// One mirrored request: the inputs the client's version ran and what it
/// answered, to be run again by `shadow` and compared.
pub struct ShadowJob {
    /// The version that runs the inputs again.
    pub shadow: Arc<LoadedModel>,
    /// The version that answered the client.
    pub primary: Arc<LoadedModel>,
    pub inputs: Vec<Tensor>,
    pub primary_outputs: Vec<Tensor>,
    /// Whose comparison this is: the shadow's own, or, during a rollout that
    /// checks disagreement, the canary's (then `primary` is the canary and
    /// `shadow` the stable version).
    pub judged: Arc<LoadedModel>,
}

/// The bounded queue in front of the shadow threads.
pub struct Shadows {
    jobs_opt: Option<Sender<ShadowJob>>,
}

/// Where a canary's comparisons go when its guard trips on them.
#[derive(Clone)]
pub struct Guarding {
    pub limits: GuardLimits,
    pub trips: mpsc::Sender<Trip>,
}

impl Shadows {
    pub fn new(threads: usize, queue_capacity: usize, guarding: Guarding) -> Shadows {
        let (sender, receiver) = crossbeam_channel::bounded::<ShadowJob>(queue_capacity.max(1));
        for index in 0..threads.max(1) {
            let receiver = receiver.clone();
            let guarding = guarding.clone();
            std::thread::Builder::new()
                .name(format!("sluice-shadow-{index}"))
                .spawn(move || {
                    while let Ok(job) = receiver.recv() {
                        let _ =
                            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(job, &guarding)));
                    }
                })
                .expect("spawning a shadow thread");
        }
        Shadows {
            jobs_opt: Some(sender),
        }
    }

    /// Queues a job, or drops and counts it when the queue is full: a slow
    /// shadow never pushes back on the primary path.
    pub fn submit(&self, job: ShadowJob) {
        let Some(jobs) = &self.jobs_opt else {
            return;
        };
        if let Err(TrySendError::Full(job) | TrySendError::Disconnected(job)) = jobs.try_send(job) {
            job.judged.shadow_metrics().dropped.increment(1);
        }
    }
}

impl Drop for Shadows {
    fn drop(&mut self) {
        self.jobs_opt = None;
    }
}

fn run(job: ShadowJob, guarding: &Guarding) {
    let metrics = job.judged.shadow_metrics();
    match job.shadow.run(job.inputs) {
        Ok(outputs) => {
            let comparison = compare(&job.primary_outputs, &outputs);
            metrics.record(&comparison);
            job.judged.stats.record_shadow(Some(&comparison));
            // A canary compared with the stable version: its guard weighs
            // the comparison as it weighs failures.
            let canary = &job.judged;
            let disagreed = comparison.agreements < comparison.rows;
            if Arc::ptr_eq(canary, &job.primary) && canary.guard.record_comparison(disagreed, guarding.limits)
            {
                let _ = guarding.trips.try_send(Trip {
                    model: canary.name.clone(),
                    version: canary.version,
                    errors: guarding.limits.errors as u64,
                    window: guarding.limits.window as u64,
                });
            }
        }
        Err(err) => {
            metrics.errors.increment(1);
            job.judged.stats.record_shadow(None);
            tracing::debug!(model = %job.shadow.name, version = job.shadow.version, primary = job.primary.version, error = %err, "shadow run failed");
        }
    }
}
