//! One async function per registry subcommand: build the request from the
//! parsed flags, make the call, and render the answer, for people as a line
//! or a table, or with `--json` as the registry's body, pretty-printed.
//!
//! Each returns the text to print rather than printing it: no stdout lock is
//! then held across an `.await` (it would make the future `!Send`), the caller
//! decides what a failed write means, and rendering is testable without a
//! registry.

use std::path::Path;

use serde::Serialize;
use sluice_registry_client::slices::SliceSpec;
use sluice_registry_client::types::*;
use sluice_registry_client::{ClientError, RegistryClient};

use super::args::{
    AliasCommand, EventsArgs, ModelsCommand, PushArgs, StageCommand, TrafficCommand, VersionsCommand,
};
use super::table::{Table, human_size, key_values, or_dash, pairs, short_hash, truncate};

/// Hex digits of a sha256 in tables: enough to tell artifacts apart.
const TABLE_HASH_DIGITS: usize = 12;

/// Hex digits of a sha256 in one-line messages, which are read, not compared.
const MESSAGE_HASH_DIGITS: usize = 8;

/// Characters of a description in `models list`, so one long description does
/// not push the table off the screen; `models show` has the whole text.
const LIST_DESCRIPTION_CHARS: usize = 48;

pub async fn run_models(
    client: &RegistryClient,
    command: ModelsCommand,
    json: bool,
) -> Result<String, ClientError> {
    match command {
        ModelsCommand::Create {
            name,
            description,
            tags,
        } => {
            let body = CreateModel {
                name,
                description: description.unwrap_or_default(),
                tags: tags.into_iter().collect(),
            };
            let model = client.create_model(&body).await?;
            if json {
                return to_json(&model);
            }
            Ok(format!("created model {}\n", model.name))
        }
        ModelsCommand::List => {
            let models = client.list_models().await?;
            if json {
                return to_json(&models);
            }
            Ok(models_table(&models))
        }
        ModelsCommand::Show { name } => {
            let model = client.get_model(&name).await?;
            if json {
                return to_json(&model);
            }
            Ok(model_listing(&model))
        }
    }
}

pub async fn run_versions(
    client: &RegistryClient,
    command: VersionsCommand,
    json: bool,
) -> Result<String, ClientError> {
    match command {
        VersionsCommand::Push(push) => push_version(client, *push, json).await,
        VersionsCommand::List { model } => {
            let versions = client.list_versions(&model).await?;
            if json {
                return to_json(&versions);
            }
            Ok(versions_table(&versions))
        }
        VersionsCommand::Show { model, version } => {
            let found = client.get_version(&model, &version).await?;
            if json {
                return to_json(&found);
            }
            Ok(version_listing(&found))
        }
        VersionsCommand::Test { .. } => {
            unreachable!("cli::run sends it to quality::run_suite, for its exit code")
        }
    }
}

async fn push_version(client: &RegistryClient, push: PushArgs, json: bool) -> Result<String, ClientError> {
    let PushArgs {
        file,
        model,
        metrics,
        parameters,
        environment,
        dataset,
        dataset_sha256,
        commit,
        run_id,
        intended_use,
        limitations,
        parent_version,
        trigger_id,
        slice_feature,
        slice_edges,
    } = push;
    check_is_file(&file).await?;
    let slice = slice_feature.map(|feature| SliceSpec {
        feature,
        edges: slice_edges,
    });
    if let Some(slice) = &slice {
        slice
            .validate()
            .map_err(|err| ClientError::Io(format!("--slice-edges: {err}")))?;
    }
    // A misspelt model then fails at once, not after uploading a large artifact for nothing.
    client.get_model(&model).await?;
    let artifact = client.upload_artifact(&file).await?;
    let lineage = Lineage {
        training_run_id: run_id,
        code_commit: commit,
        dataset: dataset.map(|uri| Dataset {
            uri,
            sha256: dataset_sha256,
        }),
        parameters: parameters.into_iter().collect(),
        metrics: metrics.into_iter().collect(),
        environment: environment.into_iter().collect(),
        intended_use,
        limitations,
        parent_version,
        trigger_id,
        slice,
    };
    let body = CreateVersion {
        artifact: ArtifactSource::Sha256(artifact.sha256),
        lineage,
    };
    let version = client.create_version(&model, &body).await?;
    if json {
        return to_json(&version);
    }
    Ok(format!(
        "registered {} version {} (sha256 {}…, {})\n",
        version.model,
        version.version,
        short_hash(&version.sha256, MESSAGE_HASH_DIGITS),
        human_size(version.size)
    ))
}

/// The upload would open a directory without complaint and fail mid-stream,
/// reported as a broken connection; this says what is actually wrong.
async fn check_is_file(path: &Path) -> Result<(), ClientError> {
    let metadata = tokio::fs::metadata(path)
        .await
        .map_err(|err| ClientError::Io(format!("cannot read {}: {err}", path.display())))?;
    if !metadata.is_file() {
        return Err(ClientError::Io(format!("{} is not a file", path.display())));
    }
    Ok(())
}

pub async fn run_stage(
    client: &RegistryClient,
    command: StageCommand,
    json: bool,
) -> Result<String, ClientError> {
    let transition = match command {
        StageCommand::Request {
            model,
            version,
            to_stage,
            comment,
        } => {
            let body = RequestTransition {
                to_stage,
                comment: comment.unwrap_or_default(),
            };
            client.request_transition(&model, &version, &body).await?
        }
        StageCommand::Approve {
            id,
            approval,
            comment,
        } => {
            let body = ReviewTransition {
                approval,
                comment: comment.unwrap_or_default(),
            };
            client.review_transition(id, Decision::Approve, &body).await?
        }
        StageCommand::Reject { id, comment } => {
            let body = ReviewTransition {
                approval: None,
                comment: comment.unwrap_or_default(),
            };
            client.review_transition(id, Decision::Reject, &body).await?
        }
        StageCommand::List { model, pending } => {
            let transitions = client.list_transitions(model.as_deref(), pending).await?;
            if json {
                return to_json(&transitions);
            }
            return Ok(transitions_table(&transitions));
        }
    };
    if json {
        return to_json(&transition);
    }
    Ok(transition_line(&transition))
}

pub async fn run_alias(
    client: &RegistryClient,
    command: AliasCommand,
    json: bool,
) -> Result<String, ClientError> {
    match command {
        AliasCommand::Set {
            model,
            alias,
            version,
            if_version,
            if_absent,
        } => {
            // The wire tells "only if absent" (`null`) from "unconditionally" (no field).
            let precondition = match (if_version, if_absent) {
                (Some(expected), _) => Some(Some(expected)),
                (None, true) => Some(None),
                (None, false) => None,
            };
            let body = SetAlias {
                version,
                if_version: precondition,
            };
            let stored = client.set_alias(&model, &alias, &body).await?;
            if json {
                return to_json(&stored);
            }
            Ok(format!(
                "{} alias {} → version {}\n",
                stored.model, stored.alias, stored.version
            ))
        }
        AliasCommand::List { model } => {
            let aliases = client.list_aliases(&model).await?;
            if json {
                return to_json(&aliases);
            }
            Ok(aliases_table(&aliases))
        }
    }
}

pub async fn run_traffic(
    client: &RegistryClient,
    command: TrafficCommand,
    json: bool,
) -> Result<String, ClientError> {
    match command {
        TrafficCommand::Set {
            model,
            targets,
            shadow,
            sticky_header,
            log_sample_rate,
            batching,
            contract,
            if_revision,
            reason,
        } => {
            let spec = TrafficSpec {
                targets,
                shadow,
                sticky_header,
                rollout: None,
                log_sample_rate,
                batching: batching.into_batching(),
                contract,
            };
            let body = SetDeployment {
                if_revision,
                reason,
                ..SetDeployment::new(spec)
            };
            let deployment = client.set_deployment(&model, &body).await?;
            if json {
                return to_json(&deployment);
            }
            Ok(deployment_line(&deployment))
        }
        TrafficCommand::Show { model } => {
            let deployment = client.get_deployment(&model).await?;
            if json {
                return to_json(&deployment);
            }
            Ok(deployment_report(&deployment))
        }
    }
}

pub async fn run_events(
    client: &RegistryClient,
    args: EventsArgs,
    json: bool,
) -> Result<String, ClientError> {
    let events = client.events(args.since, args.limit).await?;
    if json {
        return to_json(&events);
    }
    if events.is_empty() {
        return Ok(format!("no events after {}\n", args.since));
    }
    let mut table = Table::new(&["ID", "AT", "ACTOR", "ACTION", "SUBJECT", "REASON"]);
    for event in &events {
        table.push(vec![
            event.id.to_string(),
            event.at.clone(),
            event.actor.clone(),
            event.action.clone(),
            event.subject.clone(),
            or_dash(event.reason.as_deref().unwrap_or_default()),
        ]);
    }
    let mut text = table.render();
    // A full page may have a next one; say how to get it.
    if let Some(last) = events.last().filter(|_| events.len() >= args.limit as usize) {
        text.push_str(&format!("more: sluice events --since {}\n", last.id));
    }
    Ok(text)
}

// ---- rendering ----

pub(super) fn to_json<T: Serialize>(value: &T) -> Result<String, ClientError> {
    let mut text = serde_json::to_string_pretty(value)
        .map_err(|err| ClientError::Decode(format!("re-encoding the answer as JSON: {err}")))?;
    text.push('\n');
    Ok(text)
}

fn models_table(models: &[Model]) -> String {
    if models.is_empty() {
        return "no models yet: `sluice models create NAME` registers one\n".to_string();
    }
    let mut table = Table::new(&["NAME", "LATEST", "DESCRIPTION", "TAGS"]);
    for model in models {
        table.push(vec![
            model.name.clone(),
            version_or_dash(model.latest_version),
            or_dash(&truncate(&model.description, LIST_DESCRIPTION_CHARS)),
            pairs(&model.tags),
        ]);
    }
    table.render()
}

fn model_listing(model: &Model) -> String {
    key_values(&[
        ("name", model.name.clone()),
        ("description", or_dash(&model.description)),
        ("tags", pairs(&model.tags)),
        ("latest version", version_or_dash(model.latest_version)),
        ("created", format!("{} by {}", model.created_at, model.created_by)),
        ("updated", model.updated_at.clone()),
    ])
}

fn versions_table(versions: &[Version]) -> String {
    if versions.is_empty() {
        return "no versions yet: `sluice versions push FILE --model MODEL` registers one\n".to_string();
    }
    let mut table = Table::new(&[
        "VERSION", "STAGE", "ALIASES", "SHA256", "SIZE", "METRICS", "AUTHOR", "CREATED",
    ]);
    for version in versions {
        table.push(vec![
            version.version.to_string(),
            version.stage.to_string(),
            or_dash(&version.aliases.join(",")),
            short_hash(&version.sha256, TABLE_HASH_DIGITS).to_string(),
            human_size(version.size),
            pairs(&version.lineage.metrics),
            version.author.clone(),
            version.created_at.clone(),
        ]);
    }
    table.render()
}

fn version_listing(version: &Version) -> String {
    let lineage = &version.lineage;
    let mut rows: Vec<(&str, String)> = vec![
        ("model", version.model.clone()),
        ("version", version.version.to_string()),
        ("stage", version.stage.to_string()),
        ("aliases", or_dash(&version.aliases.join(", "))),
        ("sha256", version.sha256.clone()),
        (
            "size",
            format!("{} ({} bytes)", human_size(version.size), version.size),
        ),
    ];
    if let Some(source_uri) = &version.source_uri {
        rows.push(("source", source_uri.clone()));
    }
    rows.push(("author", version.author.clone()));
    rows.push(("created", version.created_at.clone()));
    push_tensors(&mut rows, "inputs", &version.signature.inputs);
    push_tensors(&mut rows, "outputs", &version.signature.outputs);
    rows.push((
        "training run",
        or_dash(lineage.training_run_id.as_deref().unwrap_or_default()),
    ));
    rows.push((
        "code commit",
        or_dash(lineage.code_commit.as_deref().unwrap_or_default()),
    ));
    if let Some(parent) = lineage.parent_version {
        rows.push(("parent version", parent.to_string()));
    }
    if let Some(trigger) = lineage.trigger_id {
        rows.push(("trigger run", trigger.to_string()));
    }
    if let Some(slice) = &lineage.slice {
        let edges: Vec<String> = slice.edges.iter().map(f64::to_string).collect();
        let bands = match edges.is_empty() {
            true => "each value".to_string(),
            false => format!("bands at {}", edges.join(", ")),
        };
        rows.push(("slice feature", format!("{} ({bands})", slice.feature)));
    }
    let dataset = match &lineage.dataset {
        Some(Dataset {
            uri,
            sha256: Some(hash),
        }) => format!("{uri} (sha256 {hash})"),
        Some(Dataset { uri, sha256: None }) => uri.clone(),
        None => "-".to_string(),
    };
    rows.push(("dataset", dataset));
    rows.push(("parameters", pairs(&lineage.parameters)));
    rows.push(("metrics", pairs(&lineage.metrics)));
    rows.push(("environment", pairs(&lineage.environment)));
    rows.push((
        "intended use",
        or_dash(lineage.intended_use.as_deref().unwrap_or_default()),
    ));
    rows.push((
        "limitations",
        or_dash(lineage.limitations.as_deref().unwrap_or_default()),
    ));
    key_values(&rows)
}

/// One row per tensor, the key only on the first, so they read as one list.
fn push_tensors<'a>(rows: &mut Vec<(&'a str, String)>, key: &'a str, tensors: &[TensorSpec]) {
    if tensors.is_empty() {
        rows.push((key, "-".to_string()));
        return;
    }
    for (index, tensor) in tensors.iter().enumerate() {
        let shown_key = if index == 0 { key } else { "" };
        rows.push((shown_key, tensor_line(tensor)));
    }
}

/// `features FP32 [-1, 4]`: name, datatype and shape, `-1` a dynamic dim.
fn tensor_line(tensor: &TensorSpec) -> String {
    let dims: Vec<String> = tensor.shape.iter().map(|dim| dim.to_string()).collect();
    format!("{} {} [{}]", tensor.name, tensor.datatype, dims.join(", "))
}

fn transitions_table(transitions: &[Transition]) -> String {
    if transitions.is_empty() {
        return "no transitions\n".to_string();
    }
    let mut table = Table::new(&[
        "ID",
        "MODEL",
        "VERSION",
        "FROM",
        "TO",
        "STATUS",
        "MISSING",
        "REQUESTED BY",
    ]);
    for transition in transitions {
        table.push(vec![
            transition.id.to_string(),
            transition.model.clone(),
            transition.version.to_string(),
            transition.from_stage.to_string(),
            transition.to_stage.to_string(),
            transition.status.to_string(),
            or_dash(&transition.missing_approvals.join(",")),
            transition.requested_by.clone(),
        ]);
    }
    table.render()
}

/// `transition 4: credit_risk version 3 none → staging, pending: needs technical`.
fn transition_line(transition: &Transition) -> String {
    let mut line = format!(
        "transition {}: {} version {} {} → {}, {}",
        transition.id,
        transition.model,
        transition.version,
        transition.from_stage,
        transition.to_stage,
        transition.status
    );
    match transition.status {
        TransitionStatus::Pending if !transition.missing_approvals.is_empty() => {
            line.push_str(": needs ");
            line.push_str(&transition.missing_approvals.join(", "));
        }
        TransitionStatus::Rejected => {
            let rejecter_opt = transition
                .reviews
                .iter()
                .rev()
                .find(|review| review.decision == Decision::Reject);
            if let Some(review) = rejecter_opt {
                line.push_str(" by ");
                line.push_str(&review.actor);
            }
        }
        TransitionStatus::Pending | TransitionStatus::Applied => {}
    }
    line.push('\n');
    line
}

fn aliases_table(aliases: &[Alias]) -> String {
    if aliases.is_empty() {
        return "no aliases\n".to_string();
    }
    let mut table = Table::new(&["ALIAS", "VERSION", "UPDATED BY", "UPDATED"]);
    for alias in aliases {
        table.push(vec![
            alias.alias.clone(),
            alias.version.to_string(),
            alias.updated_by.clone(),
            alias.updated_at.clone(),
        ]);
    }
    table.render()
}

/// `credit_risk at revision 7: 3=90 4=10, shadow 5:0.2, sticky header x-user-id`.
fn deployment_line(deployment: &Deployment) -> String {
    let spec = &deployment.spec;
    let targets: Vec<String> = spec
        .targets
        .iter()
        .map(|target| format!("{}={}", target.version, target.weight))
        .collect();
    let mut line = format!(
        "{} at revision {}: {}",
        deployment.model,
        deployment.revision,
        targets.join(" ")
    );
    if let Some(shadow) = &spec.shadow {
        line.push_str(&format!(", shadow {}:{}", shadow.version, shadow.sample_rate));
    }
    if let Some(header) = &spec.sticky_header {
        line.push_str(&format!(", sticky header {header}"));
    }
    line.push('\n');
    line
}

fn deployment_report(deployment: &Deployment) -> String {
    let spec = &deployment.spec;
    let mut text = format!(
        "{}  revision {}  updated by {} at {}\n",
        deployment.model, deployment.revision, deployment.updated_by, deployment.updated_at
    );
    let mut table = Table::new(&["VERSION", "WEIGHT", "SHA256"]);
    for target in &spec.targets {
        let hash = deployment
            .versions
            .iter()
            .find(|deployed| deployed.version == target.version)
            .map_or("-", |deployed| short_hash(&deployed.sha256, TABLE_HASH_DIGITS));
        table.push(vec![
            target.version.to_string(),
            format!("{}%", target.weight),
            hash.to_string(),
        ]);
    }
    text.push_str(&table.render());
    if let Some(shadow) = &spec.shadow {
        text.push_str(&format!(
            "shadow: version {} ({} sampled)\n",
            shadow.version,
            percent(shadow.sample_rate)
        ));
    }
    if let Some(header) = &spec.sticky_header {
        text.push_str(&format!("sticky header: {header}\n"));
    }
    if let Some(rollout) = &spec.rollout {
        text.push_str(&format!("rollout: {rollout}\n"));
    }
    if let Some(mode) = spec.contract {
        text.push_str(&format!("data contract: {mode}\n"));
    }
    if let Some(batching) = &spec.batching {
        text.push_str(&format!(
            "batching: up to {} rows, {} µs delay, queue {}, {} instance(s){}\n",
            batching.max_batch_size,
            batching.max_queue_delay_us,
            batching.max_queue_size,
            batching.instances,
            match batching.preferred_batch_sizes.as_slice() {
                [] => String::new(),
                sizes => format!(
                    ", preferred {}",
                    sizes.iter().map(usize::to_string).collect::<Vec<_>>().join(",")
                ),
            }
        ));
    }
    text
}

/// `0.2` as `20%`, `0.125` as `12.5%`: two decimals at most, none when whole.
fn percent(fraction: f64) -> String {
    let fixed = format!("{:.2}", fraction * 100.0);
    let trimmed = fixed.trim_end_matches('0').trim_end_matches('.');
    format!("{trimmed}%")
}

fn version_or_dash(version_opt: Option<u64>) -> String {
    version_opt.map_or_else(|| "-".to_string(), |version| version.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transition(status: TransitionStatus, missing: &[&str]) -> Transition {
        Transition {
            id: 4,
            model: "credit_risk".into(),
            version: 3,
            from_stage: Stage::None,
            to_stage: Stage::Staging,
            status,
            requested_by: "alice".into(),
            requested_at: "2026-01-02T03:04:05Z".into(),
            comment: String::new(),
            reviews: vec![Review {
                actor: "bob".into(),
                decision: Decision::Reject,
                approval: None,
                comment: "auc too low".into(),
                at: "2026-01-02T04:00:00Z".into(),
            }],
            missing_approvals: missing.iter().map(|kind| String::from(*kind)).collect(),
        }
    }

    fn deployment() -> Deployment {
        Deployment {
            model: "credit_risk".into(),
            revision: 7,
            spec: TrafficSpec {
                targets: vec![
                    TrafficTarget {
                        version: 3,
                        weight: 90,
                    },
                    TrafficTarget {
                        version: 4,
                        weight: 10,
                    },
                ],
                shadow: Some(Shadow {
                    version: 5,
                    sample_rate: 0.2,
                }),
                sticky_header: Some("x-user-id".into()),
                rollout: None,
                log_sample_rate: None,
                batching: None,
                contract: None,
            },
            versions: vec![DeployedVersion {
                version: 3,
                sha256: "1a2b3c4d5e6f7a8b9c0d".into(),
                size: 1229,
                slice: None,
            }],
            updated_at: "2026-01-02T03:04:05Z".into(),
            updated_by: "admin".into(),
        }
    }

    #[test]
    fn transitions_read_as_one_line() {
        assert_eq!(
            transition_line(&transition(TransitionStatus::Pending, &["technical"])),
            "transition 4: credit_risk version 3 none → staging, pending: needs technical\n"
        );
        assert_eq!(
            transition_line(&transition(TransitionStatus::Applied, &[])),
            "transition 4: credit_risk version 3 none → staging, applied\n"
        );
        assert_eq!(
            transition_line(&transition(TransitionStatus::Rejected, &[])),
            "transition 4: credit_risk version 3 none → staging, rejected by bob\n"
        );
    }

    #[test]
    fn deployments_show_weights_shadow_and_stickiness() {
        assert_eq!(
            deployment_line(&deployment()),
            "credit_risk at revision 7: 3=90 4=10, shadow 5:0.2, sticky header x-user-id\n"
        );
        assert_eq!(
            deployment_report(&deployment()),
            "credit_risk  revision 7  updated by admin at 2026-01-02T03:04:05Z\n\
             VERSION  WEIGHT  SHA256\n\
             3        90%     1a2b3c4d5e6f\n\
             4        10%     -\n\
             shadow: version 5 (20% sampled)\n\
             sticky header: x-user-id\n"
        );
    }

    #[test]
    fn percents_drop_needless_decimals() {
        assert_eq!(percent(0.2), "20%");
        assert_eq!(percent(0.07), "7%");
        assert_eq!(percent(0.125), "12.5%");
        assert_eq!(percent(1.0), "100%");
    }
}
