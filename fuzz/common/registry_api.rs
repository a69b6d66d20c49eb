//! What the registry does with a JSON body before its store sees it, for
//! the fuzz target `registry_api` and `tests/tests/e2e/fuzz_regressions.rs`:
//! the first byte picks the body (trigger policy, rollout, deployment,
//! contract, suite, and the bodies serde alone checks), the rest is it.
//! Any bytes are a value or an error, never a panic.

use serde::de::DeserializeOwned;
use sluice_registry::actions::Actions;
use sluice_registry_client::contract::DataContract;
use sluice_registry_client::rollout::{GuardReport, StartRollout, StatsReport};
use sluice_registry_client::suite::Suite;
use sluice_registry_client::trigger::{CompleteRun, FireTrigger};
use sluice_registry_client::types::{
    CreateModel, CreateVersion, RequestTransition, ReviewTransition, SetAlias, SetDeployment, UpdateModel,
};

/// An operator's file with something of each kind to check against.
const ACTIONS: &str = r#"
webhook_hosts = ["airflow.internal:8080", "*.hooks.example.com", "127.0.0.1"]
webhook_env = ["AIRFLOW_AUTH"]
[commands.retrain]
program = "python3"
args = ["retrain.py"]
[commands.retrain.params]
min_rows = { flag = "--min-rows", type = "integer", min = 1, max = 100000 }
rate = { flag = "--rate", type = "number", min = 0, max = 1 }
approve = { flag = "--approve", type = "switch" }
mode = { flag = "--mode", type = "choice", choices = ["fast", "full"] }
"#;

pub fn actions() -> Actions {
    Actions::parse(ACTIONS, |name| {
        (name == "AIRFLOW_AUTH").then(|| "Basic x".to_string())
    })
    .expect("the fuzz target's actions file")
}

fn parsed<T: DeserializeOwned>(body: &[u8]) -> Option<T> {
    serde_json::from_slice(body).ok()
}

/// Checks `body` as the body `kind` picks; true when it would be taken.
pub fn check(kind: u8, body: &[u8], actions: &Actions) -> bool {
    match kind % 14 {
        0 => parsed::<serde_json::Value>(body)
            .and_then(|value| sluice_registry::trigger::parse_policy(value).ok())
            .is_some_and(|policy| sluice_registry::trigger::validate(&policy, 60_000, actions).is_ok()),
        1 => parsed::<StartRollout>(body).is_some_and(|start| {
            start.policy.steps().is_ok()
                && start
                    .policy
                    .webhook
                    .iter()
                    .all(|url| actions.check_url(url).is_ok())
        }),
        2 => parsed::<SetDeployment>(body).is_some_and(|set| {
            set.spec()
                .batching
                .iter()
                .all(|batching| batching.validate().is_ok())
        }),
        3 => parsed::<DataContract>(body).is_some_and(|contract| contract.validate().is_ok()),
        4 => parsed::<Suite>(body).is_some_and(|suite| suite.validate().is_ok()),
        5 => parsed::<CreateModel>(body).is_some(),
        6 => parsed::<UpdateModel>(body).is_some(),
        7 => parsed::<CreateVersion>(body).is_some(),
        8 => parsed::<RequestTransition>(body).is_some(),
        9 => parsed::<ReviewTransition>(body).is_some(),
        10 => parsed::<SetAlias>(body).is_some(),
        11 => parsed::<FireTrigger>(body).is_some() || parsed::<CompleteRun>(body).is_some(),
        12 => parsed::<StatsReport>(body).is_some(),
        _ => parsed::<GuardReport>(body).is_some(),
    }
}
