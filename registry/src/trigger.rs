//! Training triggers: firing a run (once per idempotency key, within the
//! cooldown and the concurrency cap), delivering it (webhook with backoff,
//! or a local command), and what follows (expiry, the automatic canary of
//! the version it registered).
//!
//! A run's life: `dispatching` when fired, `running` once delivered,
//! `succeeded` when a version naming it in `lineage.trigger_id` is
//! registered (or the command exits 0, or the pipeline reports), `failed`
//! or `expired` otherwise. Every step is a stored change with its event.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::store::sql::Transaction;
use serde_json::{Value, json};
use sluice_registry_client::limits::quote;
use sluice_registry_client::rollout::StartRollout;
use sluice_registry_client::trigger::{
    PayloadWindow, RunStatus, TriggerAction, TriggerPayload, TriggerPolicy, TriggerRule, TriggerRun,
    WebhookFormat,
};

use crate::actions::{Actions, Invocation};
use crate::cron::Cron;
use crate::error::{Error, Result};
use crate::policy::Policy;
use crate::state::AppState;
use crate::stats::now_ms;
use crate::store::events::{self, Change};
use crate::store::{now, triggers, versions};

pub const FIRED: &str = "sluice_trigger_runs_total";
pub const SKIPPED: &str = "sluice_trigger_skipped_total";
pub const WEBHOOK_ATTEMPTS: &str = "sluice_trigger_webhook_attempts_total";

/// Longest wait between two webhook attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Run details written by releases before `--actions-file` kept what a
/// failed command printed (`{program} failed (exit status: 1): {last
/// lines}`) or what a webhook answered (`... failed: HTTP 500: {body}`),
/// where every viewer reads them: cut to the status. (The audit log's
/// copies are history, and stay.)
fn redact_old_run_details(transaction: &Transaction<'_>) -> Result<()> {
    for mut run in triggers::with_status(transaction, &[RunStatus::Failed])? {
        let Some(detail) = &run.detail else {
            continue;
        };
        let redacted = match (detail.find(" failed ("), detail.find("): ")) {
            (Some(_), Some(end)) => Some(format!("{}) (its output is withheld)", &detail[..end])),
            _ => detail.find(" failed: HTTP ").and_then(|at| {
                let status_end = at + " failed: HTTP ".len() + 3;
                detail
                    .get(status_end..)
                    .filter(|rest| rest.starts_with(": "))
                    .map(|_| format!("{} (the answer is withheld)", &detail[..status_end]))
            }),
        };
        if let Some(redacted) = redacted {
            run.detail = Some(redacted);
            triggers::update(transaction, &run)?;
        }
    }
    Ok(())
}

/// A policy as the API receives it. One that names a program (as the
/// releases before `--actions-file` stored them) is refused with what to
/// do instead, rather than serde's "unknown field".
pub fn parse_policy(body: Value) -> Result<TriggerPolicy> {
    if let Some(program) = inline_program(&body) {
        return Err(Error::bad_request(format!(
            "action.command: a policy cannot give a program ('{}'): it names a command the registry's operator declared in --actions-file, {{\"command\": {{\"name\": \"NAME\", \"params\": {{...}}}}}}",
            quote(&program)
        )));
    }
    serde_json::from_value(body).map_err(|err| Error::bad_request(format!("invalid trigger policy: {err}")))
}

/// The program of a policy that gives one inline, as releases before
/// `--actions-file` stored it.
fn inline_program(policy: &Value) -> Option<String> {
    let command = policy.get("action")?.get("command")?;
    let program = command.get("program")?;
    Some(
        program
            .as_str()
            .map_or_else(|| program.to_string(), str::to_string),
    )
}

/// Policies stored by a release before `--actions-file` may give their
/// program inline. Each one whose program, arguments and environment are
/// exactly a declared command's is moved to name it (with its event); any
/// other stops the registry from starting, with the declaration that would
/// let it, since a command nobody declared must never run.
pub fn migrate_inline_commands(transaction: &Transaction<'_>, actions: &Actions) -> Result<()> {
    let mut undeclared = Vec::new();
    for (model, text) in triggers::policy_texts(transaction)? {
        let mut stored: Value = serde_json::from_str(&text)?;
        let Some(program) = inline_program(&stored) else {
            continue;
        };
        let command = &stored["action"]["command"];
        let args: Vec<String> = serde_json::from_value(command["args"].clone()).unwrap_or_default();
        let env: std::collections::BTreeMap<String, String> =
            serde_json::from_value(command["env"].clone()).unwrap_or_default();
        let Some(name) = actions.find_declared(&program, &args, &env) else {
            undeclared.push(format!(
                "model '{model}' has a trigger policy that gives its program inline. Declare it in --actions-file:\n\n{}",
                Actions::declaration(&format!("{model}-retrain"), &program, &args, &env)
            ));
            continue;
        };
        stored["action"] = json!({ "command": { "name": name } });
        let migrated: TriggerPolicy = serde_json::from_value(stored)?;
        triggers::put_policy(transaction, "registry", &model, &migrated)?;
        let change = Change {
            actor: "registry",
            action: "trigger.policy.migrate",
            subject: model.clone(),
            reason: Some("its inline command is the declared command it now names"),
        };
        events::append(
            transaction,
            change,
            Some(&serde_json::from_str::<Value>(&text)?),
            Some(&migrated),
        )?;
        tracing::info!(%model, command = name, "trigger policy now names its declared command");
    }
    redact_old_run_details(transaction)?;
    if undeclared.is_empty() {
        return Ok(());
    }
    Err(Error::refused(format!(
        "{}\n\nthen start the registry again: a stored policy whose command is exactly a declared one is moved to name it. \
         Mind that a declared command inherits only PATH, HOME, LANG, LC_ALL, TZ and TMPDIR of the registry's environment \
         (add what it needs to `env` or `inherit_env`) and runs an hour at most unless `timeout_ms` says otherwise. \
         No role may give a program through the API any more (SECURITY.md).",
        undeclared.join("\n\n")
    )))
}

/// Refuses a policy that could never work, or that asks for what the
/// operator did not allow (`actions`), naming the field. `bucket_ms` is the
/// resolution of realized-performance windows.
pub fn validate(policy: &TriggerPolicy, bucket_ms: u64, actions: &Actions) -> Result<()> {
    for (index, rule) in policy.rules.iter().enumerate() {
        let bad =
            |message: String| Error::bad_request(format!("rules[{index}] ({}): {message}", rule.reason()));
        match rule {
            TriggerRule::Drift {
                window_ms, windows, ..
            }
            | TriggerRule::Performance {
                window_ms, windows, ..
            }
            | TriggerRule::Contract {
                window_ms, windows, ..
            } if *window_ms < 1000 || *windows == 0 => {
                return Err(bad(
                    "window_ms must be at least 1000 and windows at least 1".into()
                ));
            }
            TriggerRule::Contract { max_rate, .. } if !(0.0..=1.0).contains(max_rate) => {
                return Err(bad(format!(
                    "max_rate is {max_rate}: expected a share from 0 to 1"
                )));
            }
            TriggerRule::Drift { window_ms, .. } | TriggerRule::Contract { window_ms, .. }
                if *window_ms > crate::stats::RETENTION_MS =>
            {
                return Err(bad(format!(
                    "window_ms is at most {} (the registry keeps 30 minutes of gateway statistics): use more windows",
                    crate::stats::RETENTION_MS
                )));
            }
            TriggerRule::Performance { window_ms, .. } if window_ms % bucket_ms != 0 => {
                return Err(bad(format!(
                    "window_ms must be a multiple of {bucket_ms} (--feedback-bucket-ms): labels are counted in buckets that long"
                )));
            }
            TriggerRule::Performance { metric, .. }
                if !matches!(metric.as_str(), "accuracy" | "auc" | "mae") =>
            {
                return Err(bad(format!("metric '{metric}': expected accuracy, auc or mae")));
            }
            TriggerRule::Schedule { cron } => {
                Cron::parse(cron).map_err(bad)?;
            }
            _ => {}
        }
    }
    if policy.max_concurrent == 0 {
        return Err(Error::bad_request("max_concurrent must be at least 1"));
    }
    match &policy.action {
        TriggerAction::Webhook {
            url,
            max_attempts,
            headers,
            ..
        } => {
            let target = actions
                .check_url(url)
                .map_err(|err| Error::bad_request(format!("action.webhook.url {err}")))?;
            if *max_attempts == 0 {
                return Err(Error::bad_request(
                    "action.webhook.max_attempts must be at least 1",
                ));
            }
            for (name, value) in headers {
                actions
                    .header(&target, name, value)
                    .map_err(|err| Error::bad_request(format!("action.webhook.headers: {err}")))?;
            }
        }
        TriggerAction::Command { name, params } => {
            actions
                .command(name, params)
                .map_err(|err| Error::bad_request(format!("action.command: {err}")))?;
        }
    }
    if let Some(rollout) = &policy.rollout {
        rollout
            .steps()
            .map_err(|err| Error::bad_request(format!("rollout: {err}")))?;
        if let Some(url) = &rollout.webhook {
            actions
                .check_url(url)
                .map_err(|err| Error::bad_request(format!("rollout.webhook {err}")))?;
        }
    }
    Ok(())
}

/// What asking for a run came to.
#[derive(Debug)]
pub enum Fired {
    New(TriggerRun),
    /// A run with this idempotency key exists: it is the answer.
    Existing(TriggerRun),
    /// Not fired, and why (cooldown, concurrency cap).
    Skipped(String),
}

/// A run to fire.
pub struct Firing<'a> {
    pub actor: &'a str,
    pub model: &'a str,
    pub reason: &'a str,
    pub evidence: Value,
    pub window: (u64, u64),
    pub idempotency_key: String,
}

/// Fires a run, in one transaction with its event: once per key, and
/// (for automatic reasons) not within the cooldown.
pub fn fire(transaction: &Transaction<'_>, firing: Firing<'_>) -> Result<Fired> {
    let Firing {
        actor,
        model,
        reason,
        evidence,
        window,
        idempotency_key,
    } = firing;
    if let Some(existing) = triggers::find_by_key(transaction, &idempotency_key)? {
        return Ok(Fired::Existing(existing));
    }
    let policy = triggers::find_policy(transaction, model)?.ok_or_else(|| {
        Error::conflict(format!(
            "'{model}' has no trigger policy: set one with `sluice triggers set {model} FILE`"
        ))
    })?;
    let now_at = now_ms();
    if reason != "manual"
        && let Some(last) = triggers::last_automatic(transaction, model)?
        && now_at.saturating_sub(last.created_ms) < policy.cooldown_ms
    {
        metrics::counter!(SKIPPED, "model" => model.to_string(), "why" => "cooldown").increment(1);
        return Ok(Fired::Skipped(format!(
            "run {} fired {} s ago, within the cooldown of {} s",
            last.id,
            now_at.saturating_sub(last.created_ms) / 1000,
            policy.cooldown_ms / 1000
        )));
    }
    let active = triggers::active_count(transaction, model)?;
    if active >= policy.max_concurrent {
        metrics::counter!(SKIPPED, "model" => model.to_string(), "why" => "concurrency").increment(1);
        return Ok(Fired::Skipped(format!(
            "{active} run(s) of '{model}' are in progress, the policy's max_concurrent is {}",
            policy.max_concurrent
        )));
    }
    let base_version = serving_version(transaction, model)?
        .ok_or_else(|| Error::conflict(format!("'{model}' has no deployment: nothing to retrain from")))?;
    let run = TriggerRun {
        id: 0,
        model: model.to_string(),
        base_version,
        reason: reason.to_string(),
        evidence,
        window_start_ms: window.0,
        window_end_ms: window.1,
        idempotency_key,
        status: RunStatus::Dispatching,
        attempts: 0,
        detail: None,
        result_version: None,
        rollout: None,
        fired_by: actor.to_string(),
        created_at: now(),
        created_ms: now_at,
        finished_at: None,
    };
    let run = triggers::insert(transaction, &run)?;
    record(transaction, actor, "trigger.fire", &run, None)?;
    metrics::counter!(FIRED, "model" => model.to_string(), "reason" => reason.to_string()).increment(1);
    Ok(Fired::New(run))
}

/// The version taking most of `model`'s traffic (the newer on a tie).
pub fn serving_version(connection: &crate::store::sql::Connection<'_>, model: &str) -> Result<Option<u64>> {
    Ok(
        crate::store::deployments::find(connection, model)?.and_then(|deployment| {
            deployment
                .spec
                .targets
                .iter()
                .max_by_key(|target| (target.weight, target.version))
                .map(|target| target.version)
        }),
    )
}

fn record(
    transaction: &Transaction<'_>,
    actor: &str,
    action: &str,
    run: &TriggerRun,
    before: Option<&TriggerRun>,
) -> Result<()> {
    let change = Change {
        actor,
        action,
        subject: format!("{}/trigger/{}", run.model, run.id),
        reason: Some(&run.reason),
    };
    events::append(transaction, change, before, Some(run))?;
    Ok(())
}

/// Moves a run to `status` (a finished one keeps its end), with its event.
pub fn settle(
    transaction: &Transaction<'_>,
    actor: &str,
    id: u64,
    status: RunStatus,
    detail: Option<String>,
) -> Result<TriggerRun> {
    let before = triggers::get(transaction, id)?;
    if !before.status.is_active() {
        return Err(Error::conflict(format!(
            "trigger run {id} is {} already",
            before.status.as_str()
        )));
    }
    let mut run = before.clone();
    run.status = status;
    run.detail = detail.or(run.detail);
    if !status.is_active() {
        run.finished_at = Some(now());
    }
    triggers::update(transaction, &run)?;
    record(
        transaction,
        actor,
        &format!("trigger.{}", status.as_str()),
        &run,
        Some(&before),
    )?;
    Ok(run)
}

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

/// Runs that outlived their policy's `run_timeout_ms` stop counting.
pub fn expire(transaction: &Transaction<'_>) -> Result<Vec<TriggerRun>> {
    let now = now_ms();
    let mut expired = Vec::new();
    for run in triggers::with_status(transaction, &[RunStatus::Running, RunStatus::Dispatching])? {
        let Some(policy) = triggers::find_policy(transaction, &run.model)? else {
            continue;
        };
        if now.saturating_sub(run.created_ms) > policy.run_timeout_ms {
            let detail = format!("no version registered within {} s", policy.run_timeout_ms / 1000);
            expired.push(settle(
                transaction,
                "trigger",
                run.id,
                RunStatus::Expired,
                Some(detail),
            )?);
        }
    }
    Ok(expired)
}

/// Runs that registered a version whose policy asks for a canary of it,
/// and that have not tried yet.
pub fn canary_candidates(connection: &crate::store::sql::Connection<'_>) -> Result<Vec<TriggerRun>> {
    let mut candidates = Vec::new();
    for run in triggers::with_status(connection, &[RunStatus::Succeeded])? {
        if run.result_version.is_none() || run.rollout.is_some() {
            continue;
        }
        if triggers::find_policy(connection, &run.model)?.is_some_and(|policy| policy.rollout.is_some()) {
            candidates.push(run);
        }
    }
    Ok(candidates)
}

/// Starts the canary of the version run `id` registered, once that version
/// has reached a stage that may take traffic (`None` until then).
pub fn start_canary(
    transaction: &Transaction<'_>,
    governance: &Policy,
    id: u64,
) -> Result<Option<crate::rollout::Decided>> {
    let before = triggers::get(transaction, id)?;
    let (Some(version), Some(policy)) = (
        before.result_version,
        triggers::find_policy(transaction, &before.model)?.and_then(|policy| policy.rollout),
    ) else {
        return Ok(None);
    };
    let candidate = versions::get(transaction, &before.model, version)?;
    if !governance.deployable_stages.contains(&candidate.stage) {
        return Ok(None);
    }
    let body = StartRollout {
        canary: version,
        policy,
    };
    let decided = crate::rollout::start(transaction, governance, "trigger", &before.model, &body)?;
    let mut run = before.clone();
    run.rollout = Some(format!(
        "canary of version {version} started at weight {}",
        decided.rollout.canary_weight
    ));
    triggers::update(transaction, &run)?;
    record(transaction, "trigger", "trigger.canary", &run, Some(&before))?;
    Ok(Some(decided))
}

/// Records why the canary could not start (another rollout is on...), so
/// that it is not tried again at every tick.
pub fn refuse_canary(transaction: &Transaction<'_>, id: u64, why: &Error) -> Result<()> {
    let before = triggers::get(transaction, id)?;
    let mut run = before.clone();
    run.rollout = Some(format!(
        "canary of version {} not started: {why}",
        run.result_version.unwrap_or_default()
    ));
    triggers::update(transaction, &run)?;
    record(transaction, "trigger", "trigger.canary", &run, Some(&before))
}
