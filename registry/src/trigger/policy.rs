//! A trigger policy as the API receives it and as older releases stored
//! it: parsed (an inline program refused, with what to do instead),
//! validated against the operator's actions, migrated at start.

use serde_json::{Value, json};
use sluice_registry_client::limits::quote;
use sluice_registry_client::trigger::{RunStatus, TriggerAction, TriggerPolicy, TriggerRule};

use crate::actions::Actions;
use crate::cron::Cron;
use crate::error::{Error, Result};
use crate::store::events::{self, Change};
use crate::store::sql::Transaction;
use crate::store::triggers;

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
    // serde reads a struct from an array too: a policy is an object.
    if !body.is_object() {
        return Err(Error::bad_request("invalid trigger policy: expected an object"));
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
            rule: None,
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
