//! Training triggers: firing a run (once per idempotency key, within the
//! cooldown and the concurrency cap), delivering it (webhook with backoff,
//! or a local command), and what follows (expiry, the automatic canary of
//! the version it registered).
//!
//! A run's life: `dispatching` when fired, `running` once delivered,
//! `succeeded` when a version naming it in `lineage.trigger_id` is
//! registered (or the command exits 0, or the pipeline reports), `failed`
//! or `expired` otherwise. Every step is a stored change with its event.

mod canary;
mod delivery;
mod policy;
mod runs;

pub use canary::{canary_candidates, refuse_canary, start_canary};
pub use delivery::Dispatcher;
pub use policy::{migrate_inline_commands, parse_policy, validate};
pub use runs::{Fired, Firing, expire, fire, serving_version, settle};

pub const FIRED: &str = "sluice_trigger_runs_total";

pub const SKIPPED: &str = "sluice_trigger_skipped_total";

pub const WEBHOOK_ATTEMPTS: &str = "sluice_trigger_webhook_attempts_total";
