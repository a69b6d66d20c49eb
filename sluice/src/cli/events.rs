//! `sluice events`: the registry's audit log.

use clap::Args;
use sluice_registry_client::{ClientError, RegistryClient};

use super::table::to_json;
use super::table::{Table, or_dash};

// The flags of `sluice events`.
#[derive(Debug, Clone, Args)]
pub struct EventsArgs {
    /// Only events after this id; the last id of one page starts the next.
    #[arg(long, value_name = "ID", default_value_t = 0)]
    pub since: u64,

    /// Most events to list, 1 to 1000.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 50,
        value_parser = clap::value_parser!(u32).range(1..=1000)
    )]
    pub limit: u32,
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
