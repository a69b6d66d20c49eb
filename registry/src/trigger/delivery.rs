//! Delivering a fired run: a webhook with backoff, or a command the
//! operator declared, off the request path; the outcome is settled on the
//! run.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use sluice_registry_client::limits::quote;
use sluice_registry_client::trigger::{
    PayloadWindow, RunStatus, TriggerAction, TriggerPayload, TriggerPolicy, TriggerRun, WebhookFormat,
};

use crate::actions::Invocation;
use crate::state::AppState;
use crate::store::triggers;

use super::WEBHOOK_ATTEMPTS;
use super::runs::settle;

/// Longest wait between two webhook attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Delivers runs: each `dispatching` run once per process (a restart
/// delivers again: webhooks carry the idempotency key for that).
#[derive(Default)]
pub struct Dispatcher {
    in_flight: Mutex<HashSet<u64>>,
}

impl Dispatcher {
    pub fn dispatch(
        self: &Arc<Self>,
        state: &Arc<AppState>,
        registry_url: &str,
        run: TriggerRun,
        policy: TriggerPolicy,
    ) {
        if !self
            .in_flight
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(run.id)
        {
            return;
        }
        let payload = TriggerPayload {
            trigger_id: run.id,
            model: run.model.clone(),
            base_version: run.base_version,
            reason: run.reason.clone(),
            evidence: run.evidence.clone(),
            window: PayloadWindow {
                start_ms: run.window_start_ms,
                end_ms: run.window_end_ms,
            },
            idempotency_key: run.idempotency_key.clone(),
            registry_url: registry_url.to_string(),
        };
        let dispatcher = self.clone();
        let state = state.clone();
        tokio::spawn(async move {
            let id = payload.trigger_id;
            let action = still_dispatching(&state, id).await.then_some(policy.action);
            match action {
                None => {}
                Some(TriggerAction::Webhook {
                    url,
                    format,
                    headers,
                    max_attempts,
                    backoff_ms,
                }) => {
                    let hook = Webhook {
                        url,
                        format,
                        headers,
                        max_attempts,
                        backoff: Duration::from_millis(backoff_ms),
                    };
                    hook.deliver(&state, &payload).await;
                }
                Some(TriggerAction::Command { name, params }) => {
                    // Declared when the policy was set; the operator may
                    // have changed the file since.
                    match state.actions.command(&name, &params) {
                        Ok(invocation) => LocalCommand(invocation).run(&state, &payload).await,
                        Err(refused) => {
                            tracing::warn!(run = id, %refused, actions_file = ?state.actions.source(), "trigger command not run");
                            let detail = format!(
                                "command {} not run: the registry's operator no longer declares it so (the registry's log says why)",
                                quote(&name)
                            );
                            advance(&state, id, RunStatus::Failed, Some(detail), None).await;
                        }
                    }
                }
            }
            dispatcher
                .in_flight
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .remove(&id);
        });
    }
}

/// Writes a run's new state; a run already settled (a version registered
/// meanwhile, the policy deleted) is left as it is. Returns whether the run
/// was still in progress: a delivery stops when it was not.
async fn advance(
    state: &AppState,
    id: u64,
    status: RunStatus,
    detail: Option<String>,
    attempts_opt: Option<u32>,
) -> bool {
    let outcome = state
        .blocking(move |store, _| {
            store.write(|tx| {
                let current = triggers::get(tx, id)?;
                if !current.status.is_active() {
                    return Ok(false);
                }
                if let Some(attempts) = attempts_opt {
                    let mut run = current.clone();
                    run.attempts = attempts;
                    triggers::update(tx, &run)?;
                }
                if status != current.status {
                    settle(tx, "trigger", id, status, detail)?;
                }
                Ok(true)
            })
        })
        .await;
    outcome.unwrap_or_else(|err| {
        // Stopping leaves the run dispatching: the next tick delivers it again.
        tracing::error!(run = id, error = %err, "cannot record a trigger run's progress");
        false
    })
}

/// Whether run `id` still waits for its delivery: the monitor may have read
/// it as `dispatching` just before a finished delivery recorded otherwise.
async fn still_dispatching(state: &AppState, id: u64) -> bool {
    state
        .blocking(move |store, _| store.read(|connection| triggers::get(connection, id)))
        .await
        .is_ok_and(|run| run.status == RunStatus::Dispatching)
}

struct Webhook {
    url: String,
    format: WebhookFormat,
    headers: std::collections::BTreeMap<String, String>,
    max_attempts: u32,
    backoff: Duration,
}

impl Webhook {
    async fn deliver(&self, state: &AppState, payload: &TriggerPayload) {
        let body = match self.format {
            WebhookFormat::Sluice => json!(payload),
            // Airflow refuses a second run with the same id (409): a retry
            // after a lost answer cannot start the DAG twice.
            WebhookFormat::Airflow => json!({
                "dag_run_id": format!("sluice-{}-{}", payload.model, payload.trigger_id),
                "conf": payload,
            }),
        };
        // What the operator allows is checked at each delivery: the policy
        // was stored under the file of its day.
        let allowed = self
            .url_and_headers(state)
            .map(|headers| (self.url.clone(), headers));
        let (url, headers) = match allowed {
            Ok(allowed) => allowed,
            Err(refused) => {
                // Viewers read the run: the reason, with the operator's
                // lists, goes to the registry's log only.
                tracing::warn!(run = payload.trigger_id, %refused, actions_file = ?state.actions.source(), "trigger webhook not called");
                let detail = "webhook not called: the registry's operator no longer allows it (the registry's log says why)";
                advance(
                    state,
                    payload.trigger_id,
                    RunStatus::Failed,
                    Some(detail.to_string()),
                    None,
                )
                .await;
                return;
            }
        };
        let mut delay = self.backoff;
        let mut last_problem = String::new();
        let mut attempts = 0;
        for attempt in 1..=self.max_attempts {
            // After a backoff, the run may have ended (the pipeline got an
            // earlier attempt whose answer was lost, and registered its version).
            if attempt > 1 && !still_dispatching(state, payload.trigger_id).await {
                return;
            }
            attempts = attempt;
            let mut request = state.webhooks.post(&url).json(&body);
            for (name, value) in &headers {
                request = request.header(name, value);
            }
            let outcome = request.send().await;
            metrics::counter!(WEBHOOK_ATTEMPTS, "model" => payload.model.clone()).increment(1);
            // What the run records is the status alone: the answer's body
            // and the error's text stay out of what every viewer reads.
            let retry = match outcome {
                Ok(response) => {
                    let status = response.status();
                    let delivered = if status.is_success() {
                        Some(format!("delivered to {url} (HTTP {})", status.as_u16()))
                    } else if status == reqwest::StatusCode::CONFLICT && self.format == WebhookFormat::Airflow
                    {
                        Some(format!("{url} has this DAG run already (HTTP 409)"))
                    } else {
                        None
                    };
                    if let Some(detail) = delivered {
                        advance(
                            state,
                            payload.trigger_id,
                            RunStatus::Running,
                            Some(detail),
                            Some(attempt),
                        )
                        .await;
                        return;
                    }
                    last_problem = match status.is_redirection() {
                        true => format!("HTTP {} (redirects are not followed)", status.as_u16()),
                        false => format!("HTTP {}", status.as_u16()),
                    };
                    status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS
                }
                Err(err) => {
                    tracing::debug!(run = payload.trigger_id, error = %err, "trigger webhook attempt failed");
                    last_problem = match () {
                        _ if err.is_timeout() => "no answer in time".to_string(),
                        _ if err.is_connect() => "cannot connect".to_string(),
                        _ => "the request failed".to_string(),
                    };
                    true
                }
            };
            if !retry || attempt == self.max_attempts {
                break;
            }
            // The run may have ended meanwhile (the pipeline got the first
            // attempt after all and registered its version): stop then.
            if !advance(
                state,
                payload.trigger_id,
                RunStatus::Dispatching,
                None,
                Some(attempt),
            )
            .await
            {
                return;
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(MAX_BACKOFF);
        }
        let detail = format!("webhook {url} failed: {last_problem}");
        tracing::warn!(run = payload.trigger_id, %detail, "trigger webhook gave up");
        advance(
            state,
            payload.trigger_id,
            RunStatus::Failed,
            Some(detail),
            Some(attempts),
        )
        .await;
    }

    /// The headers as sent, once the URL is known to be allowed.
    fn url_and_headers(&self, state: &AppState) -> std::result::Result<Vec<(String, String)>, String> {
        let target = state.actions.check_url(&self.url)?;
        self.headers
            .iter()
            .map(|(name, value)| Ok((name.clone(), state.actions.header(&target, name, value)?)))
            .collect()
    }
}

/// A declared command, started for one run. Its output goes to an
/// owner-only file beside the registry's data, for the operator: the run
/// records its exit status alone, since the output may hold anything the
/// command could read, and every viewer reads runs.
struct LocalCommand(Invocation);

impl LocalCommand {
    async fn run(&self, state: &AppState, payload: &TriggerPayload) {
        let id = payload.trigger_id;
        match self.spawn_and_wait(state, payload).await {
            Ok(()) => {
                let detail = format!("command {} exited 0", self.0.name);
                advance(state, id, RunStatus::Succeeded, Some(detail), None).await;
            }
            Err(detail) => {
                tracing::warn!(run = id, %detail, "trigger command failed");
                advance(state, id, RunStatus::Failed, Some(detail), None).await;
            }
        }
    }

    async fn spawn_and_wait(
        &self,
        state: &AppState,
        payload: &TriggerPayload,
    ) -> std::result::Result<(), String> {
        let Invocation {
            name,
            program,
            args,
            env,
            working_dir_opt,
            timeout,
        } = &self.0;
        let dir: PathBuf = state.data_dir.join("triggers");
        sluice_common::files::create_dir_all(&dir)
            .map_err(|err| format!("cannot create {}: {err}", dir.display()))?;
        let context = dir.join(format!("{}.json", payload.trigger_id));
        let log_path = dir.join(format!("{}.log", payload.trigger_id));
        sluice_common::files::write(&context, &serde_json::to_vec_pretty(payload).unwrap_or_default())
            .map_err(|err| format!("cannot write {}: {err}", context.display()))?;
        let log = sluice_common::files::create(&log_path)
            .map_err(|err| format!("cannot create {}: {err}", log_path.display()))?;
        let log_err = log.try_clone().map_err(|err| err.to_string())?;
        let mut command = tokio::process::Command::new(program);
        if let Some(dir) = working_dir_opt {
            command.current_dir(dir);
        }
        // Nothing of the registry's environment but what was declared.
        let mut child = command
            .args(args)
            .env_clear()
            .envs(env.iter().map(|(key, value)| (key, value)))
            .env("SLUICE_TRIGGER_ID", payload.trigger_id.to_string())
            .env("SLUICE_MODEL", &payload.model)
            .env("SLUICE_BASE_VERSION", payload.base_version.to_string())
            .env("SLUICE_TRIGGER_REASON", &payload.reason)
            .env("SLUICE_REGISTRY_URL", &payload.registry_url)
            .env("SLUICE_TRIGGER_CONTEXT", &context)
            .stdin(std::process::Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .kill_on_drop(true)
            .spawn()
            .map_err(|err| {
                tracing::warn!(command = %name, %program, error = %err, "cannot start a trigger command");
                format!("command {name} could not start (the registry's log says why)")
            })?;
        advance(
            state,
            payload.trigger_id,
            RunStatus::Running,
            Some(format!(
                "command {name} running; its output is in triggers/{}.log on the registry's host",
                payload.trigger_id
            )),
            None,
        )
        .await;
        let status = match tokio::time::timeout(*timeout, child.wait()).await {
            Ok(status) => status.map_err(|err| format!("waiting for command {name}: {err}"))?,
            Err(_) => {
                let _ = child.kill().await;
                return Err(format!(
                    "command {name} ran longer than {} s and was killed",
                    timeout.as_secs()
                ));
            }
        };
        match status.success() {
            true => Ok(()),
            false => Err(format!(
                "command {name} failed ({status}); its output is in triggers/{}.log on the registry's host",
                payload.trigger_id
            )),
        }
    }
}
