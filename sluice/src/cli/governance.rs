//! `sluice stage` and `sluice alias`: request, approve and reject stage
//! transitions; move and list aliases.

use clap::Subcommand;
use sluice_registry_client::types::Stage;
use sluice_registry_client::types::*;
use sluice_registry_client::{ClientError, RegistryClient};

use super::args::Output;
use super::table::{Table, or_dash};

#[derive(Debug, Clone, Subcommand)]
pub enum StageCommand {
    /// Ask to move a version to another stage; applied at once when the policy needs no approval.
    Request {
        /// Name of the model.
        model: String,

        /// Version number, or an alias such as `champion`.
        version: String,

        /// Stage to move to: staging, production or archived.
        #[arg(value_name = "STAGE")]
        to_stage: Stage,

        /// Why, for the reviewers and the audit log.
        #[arg(long, value_name = "TEXT")]
        comment: Option<String>,
    },

    /// Approve a pending transition; it is applied once every approval it needs is given.
    Approve {
        /// Id of the transition (`sluice stage list --pending`).
        id: u64,

        /// Which approval this is (`technical`, `business`); needed only while more than one is missing.
        #[arg(long = "as", value_name = "APPROVAL")]
        approval: Option<String>,

        /// A note for the audit log.
        #[arg(long, value_name = "TEXT")]
        comment: Option<String>,
    },

    /// Reject a pending transition.
    Reject {
        /// Id of the transition (`sluice stage list --pending`).
        id: u64,

        /// Why, for the requester and the audit log.
        #[arg(long, value_name = "TEXT")]
        comment: Option<String>,
    },

    /// List transition requests, newest first.
    List {
        /// Only those of this model.
        #[arg(long, value_name = "MODEL")]
        model: Option<String>,

        /// Only those still waiting for approvals.
        #[arg(long)]
        pending: bool,
    },
}

#[derive(Debug, Clone, Subcommand)]
pub enum AliasCommand {
    /// Point an alias (`champion`) at a version, creating it if needed.
    Set {
        /// Name of the model.
        model: String,

        /// Name of the alias.
        alias: String,

        /// Version number to point it at.
        version: u64,

        /// Only if the alias points at this version now: refused with exit code 4 if someone moved it.
        #[arg(long, value_name = "VERSION")]
        if_version: Option<u64>,

        /// Only if the alias does not exist yet.
        #[arg(long, conflicts_with = "if_version")]
        if_absent: bool,
    },

    /// List the aliases of a model.
    List {
        /// Name of the model.
        model: String,
    },
}

pub async fn run_stage(
    client: &RegistryClient,
    command: StageCommand,
    output: Output,
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
            if output.is_machine() {
                return output.render(&transitions);
            }
            return Ok(transitions_table(&transitions));
        }
    };
    if output.is_machine() {
        return output.render(&transition);
    }
    Ok(transition_line(&transition))
}

pub async fn run_alias(
    client: &RegistryClient,
    command: AliasCommand,
    output: Output,
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
            if output.is_machine() {
                return output.render(&stored);
            }
            Ok(format!(
                "{} alias {} → version {}\n",
                stored.model, stored.alias, stored.version
            ))
        }
        AliasCommand::List { model } => {
            let aliases = client.list_aliases(&model).await?;
            if output.is_machine() {
                return output.render(&aliases);
            }
            Ok(aliases_table(&aliases))
        }
    }
}

pub(super) fn transitions_table(transitions: &[Transition]) -> String {
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
pub(super) fn transition_line(transition: &Transition) -> String {
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

pub(super) fn aliases_table(aliases: &[Alias]) -> String {
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
