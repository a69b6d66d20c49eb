//! What changed between two traffic specs, and an endpoint's changes as the
//! audit log holds them (`deployment.set` events carry the deployment
//! before and after): `traffic set` prints its change (or only shows it,
//! `--dry-run`), `traffic history`, `traffic diff` and `traffic undo` read
//! them.

use sluice_registry_client::types::{Deployment, Event, TrafficSpec};
use sluice_registry_client::{ClientError, RegistryClient};

use super::table::percent;

/// Events asked for per page: the registry's most.
const PAGE: u32 = 1000;

/// Each setting of a spec, by name, as people read it.
fn settings(spec: &TrafficSpec) -> Vec<(&'static str, String)> {
    let none = || "none".to_string();
    let targets: Vec<String> = spec
        .targets
        .iter()
        .map(|target| format!("{}={}", target.version, target.weight))
        .collect();
    vec![
        ("targets", targets.join(" ")),
        (
            "shadow",
            spec.shadow.map_or_else(none, |shadow| {
                format!(
                    "version {} ({} sampled)",
                    shadow.version,
                    percent(shadow.sample_rate)
                )
            }),
        ),
        ("sticky header", spec.sticky_header.clone().unwrap_or_else(none)),
        (
            "log sample rate",
            spec.log_sample_rate.map_or_else(
                || "none (no prediction log)".to_string(),
                |rate| format!("{} of predictions with inputs", percent(rate)),
            ),
        ),
        (
            "batching",
            spec.batching.as_ref().map_or_else(none, |batching| {
                serde_json::to_string(batching).unwrap_or_default()
            }),
        ),
        (
            "data contract",
            spec.contract.map_or_else(none, |mode| mode.to_string()),
        ),
        (
            "warm-up",
            spec.warmup
                .as_ref()
                .map_or_else(none, |warmup| serde_json::to_string(warmup).unwrap_or_default()),
        ),
        (
            "rollout",
            spec.rollout.as_ref().map_or_else(none, describe_rollout),
        ),
    ]
}

/// A rollout's marker in a deployment (the controller's), in a few words:
/// `version 2 against 1`; the whole JSON when it is not the controller's.
fn describe_rollout(marker: &serde_json::Value) -> String {
    match (marker["canary"].as_u64(), marker["stable"].as_u64()) {
        (Some(canary), Some(stable)) => format!("version {canary} against {stable}"),
        _ => marker.to_string(),
    }
}

/// `name: old → new` for each setting that differs; every setting of
/// `after` when there was nothing before.
pub fn changes(before_opt: Option<&TrafficSpec>, after: &TrafficSpec) -> Vec<String> {
    let after_settings = settings(after);
    let Some(before) = before_opt else {
        return after_settings
            .into_iter()
            .map(|(name, value)| format!("{name}: {value}"))
            .collect();
    };
    settings(before)
        .into_iter()
        .zip(after_settings)
        .filter(|((_, old), (_, new))| old != new)
        .map(|((name, old), (_, new))| format!("{name}: {old} → {new}"))
        .collect()
}

/// The lines a change prints, indented under its headline; `unchanged`
/// when nothing differs.
pub fn describe(changes: &[String]) -> String {
    if changes.is_empty() {
        return "  unchanged\n".to_string();
    }
    changes.iter().map(|change| format!("  {change}\n")).collect()
}

/// One change of an endpoint's traffic, from the audit log.
pub struct Change {
    pub event: Event,
    pub before_opt: Option<Deployment>,
    pub after_opt: Option<Deployment>,
}

impl Change {
    /// The revision this change made (`None` for a removal).
    pub fn revision(&self) -> Option<u64> {
        self.after_opt.as_ref().map(|after| after.revision)
    }
}

/// Every change of `model`'s deployment, oldest first.
pub async fn history(client: &RegistryClient, model: &str) -> Result<Vec<Change>, ClientError> {
    let mut changes = Vec::new();
    let mut since = 0;
    loop {
        let page = client.events(since, PAGE).await?;
        let full = page.len() >= PAGE as usize;
        since = page.last().map_or(since, |event| event.id);
        for event in page {
            let ours = event.subject == model && event.action.starts_with("deployment.");
            if !ours {
                continue;
            }
            let read = |value: &Option<serde_json::Value>| -> Result<Option<Deployment>, ClientError> {
                value
                    .clone()
                    .filter(|value| !value.is_null())
                    .map(serde_json::from_value)
                    .transpose()
                    .map_err(|err| ClientError::Decode(format!("event {}: {err}", event.id)))
            };
            let (before_opt, after_opt) = (read(&event.before)?, read(&event.after)?);
            changes.push(Change {
                event,
                before_opt,
                after_opt,
            });
        }
        if !full {
            return Ok(changes);
        }
    }
}

/// The spec `model` had at `revision`, from its history.
pub fn at_revision<'a>(
    history: &'a [Change],
    model: &str,
    revision: u64,
) -> Result<&'a TrafficSpec, ClientError> {
    history
        .iter()
        .find_map(|change| change.after_opt.as_ref().filter(|after| after.revision == revision))
        .map(|deployment| &deployment.spec)
        .ok_or_else(|| {
            ClientError::Local(format!(
                "'{model}' has no revision {revision} in the audit log: `sluice traffic history {model}` lists them"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_differs_is_named_with_its_old_and_new_value() {
        let mut before = TrafficSpec::weighted(&[(1, 100)]);
        before.log_sample_rate = Some(1.0);
        let mut after = TrafficSpec::weighted(&[(1, 90), (2, 10)]);
        after.log_sample_rate = Some(1.0);
        assert_eq!(changes(Some(&before), &after), vec!["targets: 1=100 → 1=90 2=10"]);
        after.log_sample_rate = None;
        assert_eq!(
            changes(Some(&before), &after)[1],
            "log sample rate: 100% of predictions with inputs → none (no prediction log)"
        );
        assert_eq!(describe(&changes(Some(&after), &after)), "  unchanged\n");
        assert_eq!(
            changes(None, &after).len(),
            8,
            "a new deployment names every setting"
        );
    }
}
