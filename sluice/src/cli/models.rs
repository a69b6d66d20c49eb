//! `sluice models`: create, list and show models.

use clap::Subcommand;
use sluice_registry_client::types::*;
use sluice_registry_client::{ClientError, RegistryClient};

use super::args::*;
use super::table::version_or_dash;
use super::table::{Table, key_values, or_dash, pairs, truncate};

#[derive(Debug, Clone, Subcommand)]
pub enum ModelsCommand {
    /// Register a new model: the named endpoint that versions are pushed to.
    Create {
        /// Name of the model, as clients call it (`/v2/models/{name}/infer`).
        name: String,

        /// What the model is for, for people browsing the registry.
        #[arg(long, value_name = "TEXT")]
        description: Option<String>,

        /// A tag, KEY=VALUE; repeat for several.
        #[arg(long = "tag", value_name = "KEY=VALUE", value_parser = parse_key_value)]
        tags: Vec<(String, String)>,
    },

    /// List every model with its latest version.
    List,

    /// Show one model.
    Show {
        /// Name of the model.
        name: String,
    },
}

/// Characters of a description in `models list`, so one long description does
/// not push the table off the screen; `models show` has the whole text.
pub(super) const LIST_DESCRIPTION_CHARS: usize = 48;

pub async fn run_models(
    client: &RegistryClient,
    command: ModelsCommand,
    output: Output,
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
            if output.is_machine() {
                return output.render(&model);
            }
            Ok(format!("created model {}\n", model.name))
        }
        ModelsCommand::List => {
            let models = client.list_models().await?;
            if output.is_machine() {
                return output.render(&models);
            }
            Ok(models_table(&models, output.is_wide()))
        }
        ModelsCommand::Show { name } => {
            let model = client.get_model(&name).await?;
            if output.is_machine() {
                return output.render(&model);
            }
            Ok(model_listing(&model))
        }
    }
}

/// `wide`: descriptions whole.
pub(super) fn models_table(models: &[Model], wide: bool) -> String {
    if models.is_empty() {
        return "no models yet: `sluice models create NAME` registers one\n".to_string();
    }
    let mut table = Table::new(&["NAME", "LATEST", "DESCRIPTION", "TAGS"]);
    for model in models {
        table.push(vec![
            model.name.clone(),
            version_or_dash(model.latest_version),
            or_dash(&if wide {
                model.description.clone()
            } else {
                truncate(&model.description, LIST_DESCRIPTION_CHARS)
            }),
            pairs(&model.tags),
        ]);
    }
    table.render()
}

pub(super) fn model_listing(model: &Model) -> String {
    key_values(&[
        ("name", model.name.clone()),
        ("description", or_dash(&model.description)),
        ("tags", pairs(&model.tags)),
        ("latest version", version_or_dash(model.latest_version)),
        ("created", format!("{} by {}", model.created_at, model.created_by)),
        ("updated", model.updated_at.clone()),
    ])
}
