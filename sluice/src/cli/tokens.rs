//! `sluice tokens create|list|revoke`: the registry's bearer tokens, live,
//! through its API (an admin token's work). A new token is printed once,
//! alone on stdout, so that `TOKEN=$(sluice tokens create ...)` keeps it.

use std::time::Duration;

use clap::Subcommand;
use sluice_registry_client::types::{CreateToken, TokenInfo};
use sluice_registry_client::{ClientError, RegistryClient};

use super::args::Output;
use super::table::{Table, or_dash};

/// The roles a token may have, as the registry names them.
pub const ROLES: [&str; 5] = ["viewer", "deployer", "approver", "gateway", "admin"];

#[derive(Debug, Clone, Subcommand)]
pub enum TokensCommand {
    /// Create a token in the registry, working at once; prints it, the only time it is shown.
    Create {
        /// Who the token speaks for: recorded as the actor of every change made with it.
        actor: String,
        /// What the token may do.
        #[arg(long, value_parser = ROLES)]
        role: String,
        /// How long it works (`90d`, `12h`, `30m`); without it, until revoked.
        #[arg(long, value_name = "DURATION", value_parser = parse_expiry)]
        expires: Option<Duration>,
    },
    /// List the registry's tokens (never the tokens themselves): who, what role, until when.
    List,
    /// Revoke a token at once; its next request is refused.
    Revoke {
        /// The token's id, as `sluice tokens list` shows it.
        id: u64,
    },
}

fn parse_expiry(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text)
        .map_err(|err| format!("'{text}' is not a duration such as 90d, 12h or 30m: {err}"))?;
    if duration < Duration::from_secs(1) {
        return Err(format!("'{text}' is under a second"));
    }
    Ok(duration)
}

pub async fn run_tokens(
    client: &RegistryClient,
    command: TokensCommand,
    output: Output,
) -> Result<String, ClientError> {
    match command {
        TokensCommand::Create { actor, role, expires } => {
            let body = CreateToken {
                actor,
                role,
                expires_in_s: expires.map(|duration| duration.as_secs().max(1)),
            };
            let created = client.create_token(&body).await?;
            if output.is_machine() {
                return output.render(&created);
            }
            let info = &created.info;
            let until = info
                .expires_at
                .as_deref()
                .map_or("until revoked".to_string(), |at| format!("until {at}"));
            eprintln!(
                "created token {} for {} ({}), working {until}; it is shown once, here:",
                info.id, info.actor, info.role
            );
            Ok(format!("{}\n", created.token))
        }
        TokensCommand::List => {
            let tokens = client.list_tokens().await?;
            if output.is_machine() {
                return output.render(&tokens);
            }
            Ok(render_list(
                &tokens,
                humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
            ))
        }
        TokensCommand::Revoke { id } => {
            let token = client.revoke_token(id).await?;
            if output.is_machine() {
                return output.render(&token);
            }
            Ok(format!(
                "revoked token {} of {} ({}): refused from now on\n",
                token.id, token.actor, token.role
            ))
        }
    }
}

/// `now` as RFC 3339, which orders as the registry's times do.
fn render_list(tokens: &[TokenInfo], now: String) -> String {
    if tokens.is_empty() {
        return "no tokens\n".into();
    }
    let mut table = Table::new(&[
        "ID", "ACTOR", "ROLE", "SOURCE", "CREATED", "BY", "EXPIRES", "STATE",
    ]);
    for token in tokens {
        let state = match (&token.revoked_at, &token.expires_at) {
            (Some(at), _) => format!("revoked {at} by {}", token.revoked_by.as_deref().unwrap_or("?")),
            (None, Some(at)) if *at <= now => "expired".into(),
            (None, _) => "live".into(),
        };
        table.push(vec![
            token.id.to_string(),
            token.actor.clone(),
            token.role.clone(),
            token.source.clone(),
            token.created_at.clone(),
            token.created_by.clone(),
            or_dash(token.expires_at.as_deref().unwrap_or_default()),
            state,
        ]);
    }
    table.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_says_which_tokens_still_work() {
        let token = |id: u64, expires: Option<&str>, revoked: Option<&str>| TokenInfo {
            id,
            actor: "dora".into(),
            role: "deployer".into(),
            source: "api".into(),
            created_at: "2026-12-01T00:00:00.000Z".into(),
            created_by: "admin".into(),
            expires_at: expires.map(String::from),
            revoked_at: revoked.map(String::from),
            revoked_by: revoked.map(|_| "admin".to_string()),
        };
        let text = render_list(
            &[
                token(1, None, None),
                token(2, Some("2026-12-02T00:00:00.000Z"), None),
                token(3, Some("2027-01-01T00:00:00.000Z"), None),
                token(4, None, Some("2026-12-03T00:00:00.000Z")),
            ],
            "2026-12-07T00:00:00.000Z".into(),
        );
        let states: Vec<&str> = text
            .lines()
            .skip(1)
            .map(|line| line.split("  ").last().unwrap().trim())
            .collect();
        assert_eq!(
            states,
            [
                "live",
                "expired",
                "live",
                "revoked 2026-12-03T00:00:00.000Z by admin"
            ],
            "{text}"
        );
        assert!(parse_expiry("90d").is_ok());
        assert!(parse_expiry("soon").unwrap_err().contains("90d"));
    }
}
