//! `sluice contract derive|show`: a version's data contract, derived from its
//! reference profile (ranges widened by a margin, categories, no missing
//! values, plus the cross-field rules given), printed or stored with the
//! version as the `contract` document that gateways enforce.

use clap::Subcommand;
use sluice_registry_client::contract::{CONTRACT_DOCUMENT, DataContract};
use sluice_registry_client::profile::{PROFILE_DOCUMENT, ReferenceProfile};
use sluice_registry_client::{ClientError, RegistryClient};

#[derive(Debug, Clone, Subcommand)]
pub enum ContractCommand {
    /// Derive a version's data contract from its reference profile; print it, or store it (--put).
    Derive {
        /// Name of the model.
        model: String,

        /// A version number or alias.
        version: String,

        /// Widen each numeric feature's training range by this share of its width on both sides
        /// (never below zero for a feature that never was).
        #[arg(long, default_value_t = 0.1)]
        margin: f64,

        /// A cross-field rule, a comparison of linear expressions (`loan_amount <= 50 * income`);
        /// repeat for several.
        #[arg(long, value_name = "RULE")]
        rule: Vec<String>,

        /// Store it with the version as its `contract` document.
        #[arg(long)]
        put: bool,
    },

    /// Show a version's data contract.
    Show {
        /// Name of the model.
        model: String,

        /// A version number or alias.
        version: String,
    },
}

pub async fn run_contract(
    client: &RegistryClient,
    command: ContractCommand,
    output: Output,
) -> Result<String, ClientError> {
    match command {
        ContractCommand::Derive {
            model,
            version,
            margin,
            rule,
            put,
        } => {
            if !(margin.is_finite() && margin >= 0.0) {
                return Err(ClientError::Io(format!(
                    "--margin is {margin}: expected a non-negative share, 0.1 for 10%"
                )));
            }
            let document = client.get_document(&model, &version, PROFILE_DOCUMENT).await?;
            let profile: ReferenceProfile = serde_json::from_value(document.body).map_err(|err| {
                ClientError::Io(format!(
                    "version {version} of '{model}' has a reference profile this CLI cannot read: {err}"
                ))
            })?;
            let mut contract = DataContract::derive(&profile, margin);
            contract.rules = rule;
            contract.validate().map_err(ClientError::Io)?;
            let body = serde_json::to_value(&contract).map_err(|err| ClientError::Io(err.to_string()))?;
            if put {
                client
                    .put_document(&model, &version, CONTRACT_DOCUMENT, &body)
                    .await?;
            }
            output.render(&contract)
        }
        ContractCommand::Show { model, version } => {
            let document = client.get_document(&model, &version, CONTRACT_DOCUMENT).await?;
            output.render(&document.body)
        }
    }
}
use super::args::Output;
