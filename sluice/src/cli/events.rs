//! `sluice events`: the registry's audit log, newest first, filtered by
//! model, actor and action; `--follow` prints each new event as it lands.

use std::io::Write;
use std::time::Duration;

use clap::Args;
use sluice_registry_client::types::{Event, EventQuery};
use sluice_registry_client::{ClientError, RegistryClient};

use super::args::Output;
use super::table::{Table, or_dash};

/// How often `--follow` asks for new events.
const FOLLOW_POLL: Duration = Duration::from_secs(1);

// The flags of `sluice events`.
#[derive(Debug, Clone, Args)]
pub struct EventsArgs {
    /// Only events about this model: its versions, aliases, traffic, rollouts and transitions.
    #[arg(long, value_name = "MODEL")]
    pub model: Option<String>,

    /// Only events made by this actor.
    #[arg(long, value_name = "ACTOR")]
    pub actor: Option<String>,

    /// Only this action (`traffic.set`), or those starting so (`rollout.*`).
    #[arg(long, value_name = "ACTION")]
    pub action: Option<String>,

    /// Only events after this id, oldest first: the last id of one read starts the next.
    #[arg(long, value_name = "ID", conflicts_with = "before")]
    pub since: Option<u64>,

    /// Only events before this id, newest first: the last id of one page starts the next.
    #[arg(long, value_name = "ID")]
    pub before: Option<u64>,

    /// Most events to list, 1 to 1000.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 50,
        value_parser = clap::value_parser!(u32).range(1..=1000)
    )]
    pub limit: u32,

    /// Print the latest events oldest first, then each new one as it lands, until interrupted.
    #[arg(
        long,
        short = 'f',
        alias = "watch",
        short_alias = 'w',
        conflicts_with = "before"
    )]
    pub follow: bool,
}

impl EventsArgs {
    fn query(&self) -> EventQuery {
        EventQuery {
            since: self.since.unwrap_or(0),
            before: self.before,
            limit: self.limit,
            model: self.model.clone(),
            actor: self.actor.clone(),
            action: self.action.clone(),
            // A cursor after an id reads forward; otherwise the newest come first.
            newest_first: self.since.is_none(),
        }
    }
}

pub async fn run_events(
    client: &RegistryClient,
    args: EventsArgs,
    output: Output,
) -> Result<String, ClientError> {
    if args.follow {
        return follow(client, &args, output).await;
    }
    let query = args.query();
    let events = client.query_events(&query).await?;
    if output.is_machine() {
        return output.render(&events);
    }
    if events.is_empty() {
        return Ok("no events\n".into());
    }
    let mut text = events_table(&events, output.is_wide());
    // A full page may have a next one; say how to get it.
    if let Some(last) = events.last().filter(|_| events.len() >= args.limit as usize) {
        let cursor = if query.newest_first { "--before" } else { "--since" };
        text.push_str(&format!(
            "more: sluice events {cursor} {} (with the same filters)\n",
            last.id
        ));
    }
    Ok(text)
}

/// The last `limit` events oldest first, then every new one, a line each
/// (JSON Lines under `-o json`); returns only when the registry fails.
async fn follow(client: &RegistryClient, args: &EventsArgs, output: Output) -> Result<String, ClientError> {
    let mut latest = args.query();
    latest.newest_first = true;
    let mut backlog = client.query_events(&latest).await?;
    backlog.reverse();
    let mut since = backlog.last().map_or(0, |event| event.id);
    if since == 0 {
        // Nothing matched yet: follow from the log's end, not its start.
        let newest = EventQuery {
            limit: 1,
            newest_first: true,
            ..EventQuery::default()
        };
        since = client
            .query_events(&newest)
            .await?
            .first()
            .map_or(0, |event| event.id);
    }
    if !print_lines(&backlog, output, true)? {
        return Ok(String::new());
    }
    let mut next = args.query();
    next.newest_first = false;
    loop {
        tokio::time::sleep(FOLLOW_POLL).await;
        next.since = since;
        let events = client.query_events(&next).await?;
        if let Some(last) = events.last() {
            since = last.id;
        }
        if !print_lines(&events, output, false)? {
            return Ok(String::new());
        }
    }
}

/// Writes the events now; `false` when the reader has gone (`| head`).
fn print_lines(events: &[Event], output: Output, header: bool) -> Result<bool, ClientError> {
    let mut text = String::new();
    for event in events {
        if output.is_machine() {
            // One event a line, whatever -o asked: a stream, not a document.
            let line = serde_json::to_string(event).map_err(|err| ClientError::Decode(err.to_string()))?;
            text.push_str(&line);
            text.push('\n');
        } else {
            text.push_str(&event_line(event));
        }
    }
    if header && !output.is_machine() {
        text.insert_str(
            0,
            &format!(
                "{:<6} {:<24} {:<12} {:<22} {}\n",
                "ID", "AT", "ACTOR", "ACTION", "SUBJECT"
            ),
        );
    }
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(true),
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(err) => Err(ClientError::Local(format!("cannot write the output: {err}"))),
    }
}

fn event_line(event: &Event) -> String {
    let reason = event
        .reason
        .as_deref()
        .map_or(String::new(), |reason| format!("  ({reason})"));
    format!(
        "{:<6} {:<24} {:<12} {:<22} {}{reason}\n",
        event.id, event.at, event.actor, event.action, event.subject
    )
}

/// `wide`: also the policy rule that allowed each change.
fn events_table(events: &[Event], wide: bool) -> String {
    let mut headers = vec!["ID", "AT", "ACTOR", "ACTION", "SUBJECT", "REASON"];
    if wide {
        headers.push("RULE");
    }
    let mut table = Table::new(&headers);
    for event in events {
        let mut row = vec![
            event.id.to_string(),
            event.at.clone(),
            event.actor.clone(),
            event.action.clone(),
            event.subject.clone(),
            or_dash(event.reason.as_deref().unwrap_or_default()),
        ];
        if wide {
            row.push(or_dash(event.rule.as_deref().unwrap_or_default()));
        }
        table.push(row);
    }
    table.render()
}
