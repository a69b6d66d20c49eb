//! `sluice serve --demo`: the example models, compiled into the binary, are
//! registered with their model cards, reference profiles, data contracts
//! and behavioural suites, approved into staging and
//! deployed through the registry's API, the path any release takes. Safe to
//! run again on the same data dir: what is already there is left as it is.

use sluice_registry_client::contract::CONTRACT_DOCUMENT;
use sluice_registry_client::profile::PROFILE_DOCUMENT;
use sluice_registry_client::suite::Suite;
use sluice_registry_client::types::{
    ArtifactSource, CreateModel, CreateVersion, Decision, Lineage, RequestTransition, ReviewTransition,
    SetDeployment, Stage, TrafficSpec, TransitionStatus, Version,
};
use sluice_registry_client::{ClientError, RegistryClient};

struct DemoModel {
    name: &'static str,
    description: &'static str,
    artifact: &'static [u8],
    /// Lineage written by `models/cards.py`.
    card: &'static str,
    /// Reference profile written by `models/cards.py`.
    profile: &'static str,
    /// Data contract written by `models/cards.py`, where there is one.
    contract_opt: Option<&'static str>,
    /// Behavioural suite written by `models/suites.py`, where there is one.
    suite_opt: Option<&'static str>,
}

const DEMO_MODELS: &[DemoModel] = &[
    DemoModel {
        name: "credit_risk",
        description: "Default risk of a loan applicant (logistic regression, eight features)",
        artifact: include_bytes!("../../models/repository/credit_risk/1/model.onnx"),
        card: include_str!("../../models/repository/credit_risk/1/card.json"),
        profile: include_str!("../../models/repository/credit_risk/1/profile.json"),
        contract_opt: Some(include_str!(
            "../../models/repository/credit_risk/1/contract.json"
        )),
        suite_opt: Some(include_str!("../../models/repository/credit_risk/suite.json")),
    },
    DemoModel {
        name: "digits",
        description: "Handwritten digit recognition on 8x8 images (MLP)",
        artifact: include_bytes!("../../models/repository/digits/1/model.onnx"),
        card: include_str!("../../models/repository/digits/1/card.json"),
        profile: include_str!("../../models/repository/digits/1/profile.json"),
        contract_opt: None,
        suite_opt: Some(include_str!("../../models/repository/digits/suite.json")),
    },
];

/// Registers, approves and deploys each example model that is not there yet.
pub async fn register(client: &RegistryClient) -> Result<(), ClientError> {
    for demo in DEMO_MODELS {
        let version = ensure_version(client, demo).await?;
        ensure_document(client, demo.name, &version, PROFILE_DOCUMENT, demo.profile).await?;
        if let Some(contract) = demo.contract_opt {
            ensure_document(client, demo.name, &version, CONTRACT_DOCUMENT, contract).await?;
        }
        if let Some(suite) = demo.suite_opt {
            ensure_suite(client, demo.name, suite).await?;
        }
        if version.stage == Stage::None {
            promote_to_staging(client, &version).await?;
        }
        deploy_if_undeployed(client, demo.name, version.version).await?;
    }
    Ok(())
}

/// Stores the model's suite unless it has one (a revision someone put since is kept).
async fn ensure_suite(client: &RegistryClient, model: &str, suite: &str) -> Result<(), ClientError> {
    match client.get_suite(model, None).await {
        Ok(_) => return Ok(()),
        Err(err) if err.is_not_found() => {}
        Err(err) => return Err(err),
    }
    let suite: Suite = serde_json::from_str(suite)
        .map_err(|err| ClientError::Local(format!("the demo suite of '{model}' does not parse: {err}")))?;
    client.put_suite(model, &suite).await.map(drop)
}

async fn ensure_version(client: &RegistryClient, demo: &DemoModel) -> Result<Version, ClientError> {
    let created = client
        .create_model(&CreateModel {
            name: demo.name.to_string(),
            description: demo.description.to_string(),
            tags: [("source".to_string(), "demo".to_string())].into(),
        })
        .await;
    match created {
        Ok(_) => {}
        Err(err) if err.is_conflict() => {}
        Err(err) => return Err(err),
    }
    let artifact = client.upload_artifact_bytes(demo.artifact.to_vec()).await?;
    let existing = client.list_versions(demo.name).await?;
    if let Some(version) = existing
        .into_iter()
        .find(|version| version.sha256 == artifact.sha256)
    {
        return Ok(version);
    }
    let lineage: Lineage = serde_json::from_str(demo.card)
        .map_err(|err| ClientError::Decode(format!("the demo card of {}: {err}", demo.name)))?;
    client
        .create_version(
            demo.name,
            &CreateVersion {
                artifact: ArtifactSource::Sha256(artifact.sha256),
                lineage,
            },
        )
        .await
}

/// Stores a document (the training data's profile, the data contract) with
/// the version, unless it has one by that name.
async fn ensure_document(
    client: &RegistryClient,
    model: &str,
    version: &Version,
    name: &str,
    text: &str,
) -> Result<(), ClientError> {
    let reference = version.version.to_string();
    match client.get_document(model, &reference, name).await {
        Ok(_) => return Ok(()),
        Err(err) if err.is_not_found() => {}
        Err(err) => return Err(err),
    }
    let body: serde_json::Value = serde_json::from_str(text)
        .map_err(|err| ClientError::Decode(format!("the demo {name} of {model}: {err}")))?;
    client
        .put_document(model, &reference, name, &body)
        .await
        .map(drop)
}

async fn promote_to_staging(client: &RegistryClient, version: &Version) -> Result<(), ClientError> {
    let reference = version.version.to_string();
    let request = RequestTransition {
        to_stage: Stage::Staging,
        comment: "demo: example model".into(),
    };
    let transition = match client
        .request_transition(&version.model, &reference, &request)
        .await
    {
        Ok(transition) => transition,
        // A transition left pending by an earlier run: approve that one.
        Err(err) if err.is_conflict() => {
            let pending = client.list_transitions(Some(&version.model), true).await?;
            match pending
                .into_iter()
                .find(|transition| transition.version == version.version)
            {
                Some(transition) => transition,
                None => return Err(err),
            }
        }
        Err(err) => return Err(err),
    };
    if transition.status != TransitionStatus::Pending {
        return Ok(());
    }
    let review = ReviewTransition {
        approval: None,
        comment: "demo: checked against ONNX Runtime's reference outputs".into(),
    };
    client
        .review_transition(transition.id, Decision::Approve, &review)
        .await
        .map(drop)
}

async fn deploy_if_undeployed(client: &RegistryClient, model: &str, version: u64) -> Result<(), ClientError> {
    let mut body = SetDeployment::new(TrafficSpec::weighted(&[(version, 100)]));
    // Revision 0: only if the endpoint has no deployment yet.
    body.if_revision = Some(0);
    body.reason = Some("demo: first deployment".into());
    match client.set_deployment(model, &body).await {
        Ok(_) => Ok(()),
        Err(err) if err.is_conflict() => Ok(()),
        Err(err) => Err(err),
    }
}
