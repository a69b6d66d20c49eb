//! `sluice gateways`: the fleet that follows the registry, each gateway
//! with the revision it serves (behind the registry's, or not), what it has
//! loaded and when it last reported.

use sluice_registry_client::types::{Fleet, GatewayState};
use sluice_registry_client::{ClientError, RegistryClient};

use super::args::Output;
use super::table::Table;

pub async fn run_gateways(client: &RegistryClient, output: Output) -> Result<String, ClientError> {
    let fleet = client.gateways().await?;
    if output.is_machine() {
        return output.render(&fleet);
    }
    Ok(render(&fleet, output.is_wide()))
}

fn render(fleet: &Fleet, wide: bool) -> String {
    if fleet.gateways.is_empty() {
        return format!(
            "no gateway has reported in the last half hour (registry at revision {})\n",
            fleet.revision
        );
    }
    let mut headers = vec!["GATEWAY", "REVISION", "MODELS", "LAST REPORT", "STATUS"];
    if wide {
        headers.extend(["STARTED", "BUILD"]);
    }
    let mut table = Table::new(&headers);
    for gateway in &fleet.gateways {
        let serving = gateway.serving.as_ref();
        let revision = serving.map_or("-".to_string(), |serving| serving.revision.to_string());
        let models = serving.map_or("-".to_string(), |serving| {
            let listed: Vec<String> = serving
                .models
                .iter()
                .map(|(model, versions)| {
                    let versions: Vec<String> = versions.iter().map(u64::to_string).collect();
                    format!("{model}:{}", versions.join(","))
                })
                .collect();
            if listed.is_empty() {
                "-".into()
            } else {
                listed.join(" ")
            }
        });
        let mut row = vec![
            gateway.gateway.clone(),
            revision,
            models,
            format!("{:.1} s ago", gateway.seconds_since_report),
            status(fleet.revision, gateway),
        ];
        if wide {
            row.push(serving.map_or("-".into(), |serving| serving.started_at.clone()));
            row.push(serving.map_or("-".into(), |serving| serving.build.clone()));
        }
        table.push(row);
    }
    let mut text = format!("registry at revision {}\n", fleet.revision);
    text.push_str(&table.render());
    text
}

/// `ok`, `stale` (silent), `behind` (serving an older revision), or both.
fn status(revision: u64, gateway: &GatewayState) -> String {
    let behind = gateway
        .serving
        .as_ref()
        .is_some_and(|serving| serving.revision < revision);
    match (gateway.stale, behind) {
        (false, false) => "ok".into(),
        (true, false) => "stale".into(),
        (false, true) => "behind".into(),
        (true, true) => "stale, behind".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_registry_client::rollout::GatewayServing;

    #[test]
    fn a_gateway_behind_or_silent_says_so() {
        let gateway = |name: &str, revision: u64, stale: bool| GatewayState {
            gateway: name.into(),
            serving: Some(GatewayServing {
                revision,
                models: [("credit_risk".to_string(), vec![1, 2])].into(),
                started_at: "2026-12-07T00:00:00Z".into(),
                build: "0.1.0".into(),
            }),
            last_report_at: "2026-12-07T00:01:00.000Z".into(),
            seconds_since_report: if stale { 42.0 } else { 0.4 },
            interval_ms: 1000,
            stale,
        };
        let fleet = Fleet {
            revision: 9,
            gateways: vec![
                gateway("a", 9, false),
                gateway("b", 8, false),
                gateway("c", 8, true),
            ],
        };
        let text = render(&fleet, false);
        let statuses: Vec<&str> = text
            .lines()
            .skip(2)
            .map(|line| line.split("ago").nth(1).unwrap().trim())
            .collect();
        assert_eq!(statuses, ["ok", "behind", "stale, behind"], "{text}");
        assert!(text.contains("credit_risk:1,2"), "{text}");
    }
}
