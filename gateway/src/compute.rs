//! A bounded pool of inference threads, so CPU-bound model runs never stall
//! the async reactor.
//!
//! Jobs go over a bounded channel to dedicated threads, each job with a
//! oneshot for its answer. A full queue refuses at once (the caller answers
//! 503 with `Retry-After`) instead of piling requests up.

use std::time::{Duration, Instant};

use crossbeam_channel::{Sender, TrySendError};
use tokio::sync::oneshot;

use crate::error::{Error, Result};

type Job = Box<dyn FnOnce() + Send + 'static>;

pub struct ComputePool {
    jobs_opt: Option<Sender<Job>>,
}

/// How long a job waited for a thread and how long it ran.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub queued: Duration,
    pub computed: Duration,
}

impl ComputePool {
    /// `threads` workers sharing a queue of at most `queue_capacity` waiting jobs.
    pub fn new(threads: usize, queue_capacity: usize) -> ComputePool {
        let (sender, receiver) = crossbeam_channel::bounded::<Job>(queue_capacity.max(1));
        for index in 0..threads.max(1) {
            let receiver = receiver.clone();
            std::thread::Builder::new()
                .name(format!("sluice-compute-{index}"))
                .spawn(move || {
                    while let Ok(job) = receiver.recv() {
                        // A panicking engine loses its one job (its requester
                        // gets a 500), not the thread.
                        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                    }
                })
                .expect("spawning a compute thread");
        }
        ComputePool {
            jobs_opt: Some(sender),
        }
    }

    /// Runs `work` on a compute thread and waits for it without blocking the reactor.
    pub async fn run<T, F>(&self, work: F) -> Result<(T, Timing)>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let jobs = self.jobs_opt.as_ref().ok_or(Error::ShuttingDown)?;
        let (reply, answer) = oneshot::channel();
        let enqueued = Instant::now();
        let job: Job = Box::new(move || {
            // The client hung up while this waited: do not compute for nobody.
            if reply.is_closed() {
                return;
            }
            let started = Instant::now();
            let value = work();
            let timing = Timing {
                queued: started - enqueued,
                computed: started.elapsed(),
            };
            // The requester may have gone (client hung up): nothing to do.
            let _ = reply.send((value, timing));
        });
        match jobs.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                metrics::counter!(crate::metrics::COMPUTE_REJECTED).increment(1);
                return Err(Error::Overloaded);
            }
            Err(TrySendError::Disconnected(_)) => return Err(Error::ShuttingDown),
        }
        answer
            .await
            .map_err(|_| Error::Internal("a compute thread dropped a job (panic in an engine?)".into()))
    }
}

impl Drop for ComputePool {
    /// Closes the queue; each worker finishes what it holds and exits. No
    /// join: this may run on the reactor, which must not block.
    fn drop(&mut self) {
        self.jobs_opt = None;
    }
}
