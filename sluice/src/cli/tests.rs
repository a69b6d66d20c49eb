//! The CLI's parsing and rendering, without a registry.

use std::path::PathBuf;

use clap::Parser;
use sluice_registry_client::types::*;

use crate::command::{Cli, Command};

use super::args::*;
use super::governance::*;
use super::table::percent;
use super::traffic::*;
use super::versions::*;
use super::*;

/// Parses `line` as the `sluice` binary does.
fn parse(line: &str) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(std::iter::once("sluice").chain(line.split_whitespace()))
}

fn pair(key: &str, value: &str) -> (String, String) {
    (key.to_string(), value.to_string())
}

#[test]
fn key_value_splits_at_the_first_equals_sign() {
    assert_eq!(parse_key_value("team=risk").unwrap(), pair("team", "risk"));
    assert_eq!(parse_key_value("query=a=b").unwrap(), pair("query", "a=b"));
    assert_eq!(parse_key_value("empty=").unwrap(), pair("empty", ""));
    assert_eq!(
        parse_key_value("team").unwrap_err(),
        "expected KEY=VALUE, got 'team'"
    );
    assert!(parse_key_value("=risk").is_err());
}

#[test]
fn metric_values_are_finite_numbers() {
    assert_eq!(parse_metric("auc=0.91").unwrap(), ("auc".to_string(), 0.91));
    assert_eq!(
        parse_metric("latency_ms= 12").unwrap(),
        ("latency_ms".to_string(), 12.0)
    );
    let not_a_number = parse_metric("auc=high").unwrap_err();
    assert!(not_a_number.contains("must be a finite number"), "{not_a_number}");
    assert!(parse_metric("auc=NaN").is_err());
    assert!(parse_metric("auc=inf").is_err());
    assert!(parse_metric("auc").unwrap_err().contains("expected NAME=NUMBER"));
}

#[test]
fn targets_are_version_equals_percent() {
    assert_eq!(
        parse_target("3=90").unwrap(),
        TrafficTarget {
            version: 3,
            weight: 90
        }
    );
    assert_eq!(
        parse_target("4=0").unwrap(),
        TrafficTarget {
            version: 4,
            weight: 0
        }
    );
    assert_eq!(
        parse_target("3:90").unwrap_err(),
        "expected VERSION=WEIGHT such as 3=90, got '3:90'"
    );
    assert!(parse_target("v3=90").is_err());
    assert!(parse_target("3=-1").is_err());
    assert!(parse_target("3=101").unwrap_err().contains("0 to 100"));
}

#[test]
fn shadow_is_version_colon_fraction() {
    assert_eq!(
        parse_shadow("5:0.2").unwrap(),
        Shadow {
            version: 5,
            sample_rate: 0.2
        }
    );
    assert_eq!(
        parse_shadow("5:1").unwrap(),
        Shadow {
            version: 5,
            sample_rate: 1.0
        }
    );
    assert_eq!(
        parse_shadow("5=0.2").unwrap_err(),
        "expected VERSION:RATE such as 5:0.2, got '5=0.2'"
    );
    assert!(parse_shadow("5:0").is_ok(), "a paused shadow");
    assert!(parse_shadow("5:-0.1").is_err());
    assert!(parse_shadow("5:20").is_err());
    assert!(parse_shadow("5:NaN").is_err());
}

#[test]
fn registry_url_needs_a_scheme() {
    assert!(parse_registry_url("http://127.0.0.1:8081").is_ok());
    assert!(parse_registry_url("https://registry.example").is_ok());
    assert!(parse_registry_url("127.0.0.1:8081").is_err());
    assert!(parse_registry_url("http://").is_err());
}

#[test]
fn push_takes_lineage_flags_and_client_flags_after_the_subcommand() {
    let line = "versions push credit_risk model.onnx --metric auc=0.91 --param max_depth=6 \
                    --env python=3.11 --dataset s3://bucket/train.parquet --dataset-sha256 ab12 --json";
    let cli = parse(line).unwrap();
    let Command::Versions {
        command: VersionsCommand::Push(push),
        client,
    } = cli.command
    else {
        panic!("parsed as another command");
    };
    assert!(client.json);
    assert_eq!(push.file, PathBuf::from("model.onnx"));
    assert_eq!(push.model, "credit_risk");
    assert_eq!(push.metrics, vec![("auc".to_string(), 0.91)]);
    assert_eq!(push.parameters, vec![("max_depth".to_string(), "6".to_string())]);
    assert_eq!(push.environment, vec![("python".to_string(), "3.11".to_string())]);
    assert_eq!(push.dataset_sha256.as_deref(), Some("ab12"));
}

#[test]
fn malformed_arguments_are_usage_errors() {
    let bad_lines = [
        "versions push credit_risk model.onnx --dataset-sha256 ab12",
        "versions push credit_risk model.onnx --metric auc=high",
        "versions push model.onnx --model credit_risk",
        "alias set credit_risk champion 3 --if-version 2 --if-absent",
        "traffic set credit_risk 3=abc",
        "traffic set credit_risk 3=100 --shadow 5:2",
        "stage request credit_risk 3 live",
        "events --limit 0",
        "events --limit 1001",
        "models list --registry-url localhost:8081",
    ];
    for line in bad_lines {
        let error = parse(line).map(drop).expect_err(line);
        assert_eq!(error.exit_code(), 2, "{line}");
    }
}

#[test]
fn traffic_and_alias_arguments_parse() {
    let cli = parse("traffic set credit_risk 3=90 4=10 --shadow 5:0.2 --if-revision 7").unwrap();
    let Command::Traffic {
        command:
            TrafficCommand::Set {
                targets,
                shadow,
                if_revision,
                ..
            },
        ..
    } = cli.command
    else {
        panic!("parsed as another command");
    };
    assert_eq!(
        targets,
        vec![
            TrafficTarget {
                version: 3,
                weight: 90
            },
            TrafficTarget {
                version: 4,
                weight: 10
            }
        ]
    );
    assert_eq!(
        shadow,
        Some(Shadow {
            version: 5,
            sample_rate: 0.2
        })
    );
    assert_eq!(if_revision, Some(7));

    let cli = parse("alias set credit_risk champion 3 --if-absent").unwrap();
    let Command::Alias {
        command:
            AliasCommand::Set {
                version,
                if_absent,
                if_version,
                ..
            },
        ..
    } = cli.command
    else {
        panic!("parsed as another command");
    };
    assert_eq!((version, if_absent, if_version), (3, true, None));

    let cli = parse("stage request credit_risk champion production --comment ship").unwrap();
    let Command::Stage {
        command: StageCommand::Request {
            to_stage, version, ..
        },
        ..
    } = cli.command
    else {
        panic!("parsed as another command");
    };
    assert_eq!((to_stage, version.as_str()), (Stage::Production, "champion"));
}

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
            warmup: None,
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
             sticky header: x-user-id\nprediction log: off\n"
    );
}

#[test]
fn percents_drop_needless_decimals() {
    assert_eq!(percent(0.2), "20%");
    assert_eq!(percent(0.07), "7%");
    assert_eq!(percent(0.125), "12.5%");
    assert_eq!(percent(1.0), "100%");
}

fn api_error(status: u16) -> ClientError {
    ClientError::Api {
        status,
        message: "refused".into(),
    }
}

#[test]
fn errors_map_to_documented_exit_codes() {
    let cases = [
        (api_error(400), 1),
        (api_error(422), 1),
        (api_error(413), 1),
        (api_error(500), 5),
        (api_error(503), 5),
        (ClientError::Io("cannot read model.onnx".into()), 2),
        (ClientError::Local("cannot run version 3 here".into()), 1),
        (api_error(404), 3),
        (api_error(409), 4),
        (
            ClientError::Unreachable {
                url: "http://127.0.0.1:8081".into(),
                message: "connection refused".into(),
            },
            5,
        ),
        (ClientError::Decode("expected value".into()), 5),
        (api_error(401), 6),
        (api_error(403), 6),
    ];
    for (error, code) in cases {
        assert_eq!(ExitReason::for_error(&error).code(), code, "{error}");
    }
}

#[test]
fn the_local_admin_token_goes_to_local_registries_only() {
    let data_dir = std::env::temp_dir().join(format!("sluice-cli-token-{}", std::process::id()));
    std::fs::create_dir_all(&data_dir).unwrap();
    let local = "http://127.0.0.1:8081";
    assert_eq!(local_admin_token(&data_dir, local), None);
    std::fs::write(data_dir.join(ADMIN_TOKEN_FILE), "secret-admin\n").unwrap();
    for url in [local, "http://localhost:8081/", "http://[::1]:8081"] {
        assert_eq!(
            local_admin_token(&data_dir, url).as_deref(),
            Some("secret-admin"),
            "{url}"
        );
    }
    for url in ["https://registry.example:8081", "http://10.0.0.7:8081"] {
        assert_eq!(local_admin_token(&data_dir, url), None, "{url}");
    }
    std::fs::remove_dir_all(&data_dir).unwrap();
    assert_eq!(local_admin_token(&data_dir, local), None);
}

#[test]
fn flags_beat_the_context_which_beats_the_defaults() {
    let dir = std::env::temp_dir().join(format!("sluice-cli-context-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("config.toml");
    let token_file = dir.join("prod.token");
    std::fs::write(&token_file, "prod-token\n").unwrap();
    std::fs::write(
        &config,
        format!(
            "current = \"prod\"\n[contexts.prod]\nregistry_url = \"https://prod.example:8081\"\ntoken_file = {:?}\n\
             [contexts.dev]\nregistry_url = \"http://127.0.0.1:9081\"\n",
            token_file.display().to_string()
        ),
    )
    .unwrap();
    let target = |line: &str| {
        let cli = parse(&format!("models list --config {} {line}", config.display())).unwrap();
        let Command::Models { client, .. } = cli.command else {
            panic!("parsed as another command");
        };
        context::target(&client)
    };
    let prod = target("").unwrap();
    assert_eq!(
        (prod.registry_url.as_str(), prod.token_opt.as_deref()),
        ("https://prod.example:8081", Some("prod-token"))
    );
    let dev = target("--context dev").unwrap();
    assert_eq!(
        (dev.registry_url.as_str(), dev.token_opt),
        ("http://127.0.0.1:9081", None)
    );
    let flags = target("--registry-url http://10.0.0.7:8081 --token given").unwrap();
    assert_eq!(
        (flags.registry_url.as_str(), flags.token_opt.as_deref()),
        ("http://10.0.0.7:8081", Some("given"))
    );
    let missing = target("--context staging").unwrap_err().to_string();
    assert!(
        missing.contains("no context 'staging'") && missing.contains("dev, prod"),
        "{missing}"
    );
    // Without a file there are no contexts, and the defaults hold.
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(target("").unwrap().registry_url, DEFAULT_REGISTRY_URL);
}

#[test]
fn every_command_and_argument_is_described() {
    use clap::CommandFactory;
    fn walk(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
        for arg in command.get_arguments().filter(|arg| !arg.is_hide_set()) {
            if arg.get_help().is_none() && arg.get_long_help().is_none() {
                missing.push(format!("{path} <{}>", arg.get_id()));
            }
        }
        for sub in command.get_subcommands().filter(|sub| sub.get_name() != "help") {
            let path = format!("{path} {}", sub.get_name());
            if sub.get_about().is_none() {
                missing.push(path.clone());
            }
            walk(sub, &path, missing);
        }
    }
    let mut missing = Vec::new();
    walk(&Cli::command(), "sluice", &mut missing);
    assert!(
        missing.is_empty(),
        "without a description:\n{}",
        missing.join("\n")
    );
}

#[test]
fn output_formats_and_their_shorthand() {
    let output = |line: &str| {
        let cli = parse(line).unwrap();
        let Command::Models { client, .. } = cli.command else {
            panic!("parsed as another command");
        };
        client.output()
    };
    assert_eq!(output("models list"), Output::Table);
    assert_eq!(output("models list -o wide"), Output::Wide);
    assert_eq!(output("models list -o yaml"), Output::Yaml);
    assert_eq!(output("models list --json"), Output::Json);
    assert!(parse("models list -o xml").is_err());
    let yaml = Output::Yaml
        .render(&serde_json::json!({"model": "m", "revision": 3}))
        .unwrap();
    assert_eq!(yaml, "model: m\nrevision: 3\n");
}

/// The example policy files the docs use parse with the readers that take
/// them, in TOML and in JSON alike.
#[test]
fn the_example_policies_parse_as_toml_and_as_json() {
    use sluice_registry_client::rollout::RolloutPolicy;
    use sluice_registry_client::trigger::TriggerPolicy;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/policies");
    // The same document as JSON, through the same reader.
    fn as_json<T: serde::de::DeserializeOwned>(path: &std::path::Path) -> T {
        let value: toml::Value = toml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let json = serde_json::to_string(&value).unwrap();
        sluice_common::documents::parse(&path.with_extension("json"), &json).unwrap()
    }

    let rollout = super::rollout::read_policy(&root.join("rollout.toml")).unwrap();
    assert_eq!(rollout, super::rollout::default_policy().unwrap());
    assert_eq!(rollout.steps().unwrap(), vec![10, 25, 50]);
    assert_eq!(as_json::<RolloutPolicy>(&root.join("rollout.toml")), rollout);

    let triggers: TriggerPolicy = sluice_common::documents::read(&root.join("triggers.toml")).unwrap();
    assert_eq!(triggers.rules.len(), 3);
    assert_eq!(triggers.rollout.as_ref().unwrap().steps().unwrap(), vec![25, 50]);
    assert_eq!(as_json::<TriggerPolicy>(&root.join("triggers.toml")), triggers);

    let governance = sluice_registry::policy::Policy::load(&root.join("governance.toml")).unwrap();
    assert_eq!(governance.max_weight(Stage::Staging), 50);
    assert_eq!(governance.max_versions(Stage::Production), Some(1));
    let json_path = std::env::temp_dir().join(format!("sluice-governance-{}.json", std::process::id()));
    let value: toml::Value =
        toml::from_str(&std::fs::read_to_string(root.join("governance.toml")).unwrap()).unwrap();
    std::fs::write(&json_path, serde_json::to_string(&value).unwrap()).unwrap();
    assert_eq!(
        sluice_registry::policy::Policy::load(&json_path).unwrap(),
        governance
    );
    std::fs::remove_file(&json_path).unwrap();
}
