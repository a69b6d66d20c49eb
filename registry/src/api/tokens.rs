//! `/api/v1/tokens`: bearer tokens, made, listed and revoked live by an
//! admin. A token is in clear only in the answer that creates it.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use sluice_common::secrets::{generate_token, hash_token};
use sluice_registry_client::types::{CreateToken, CreatedToken, TokenInfo};

use super::{AppState, Body, PathParams};
use crate::auth::{self, Caller, Permission, Role};
use crate::error::{Error, Result};
use crate::store::tokens;

/// The longest expiry a token may be given: ten years, far beyond any
/// sensible one, and far from overflowing a time.
const MAX_EXPIRY_S: u64 = 10 * 365 * 24 * 3600;

#[utoipa::path(
    post,
    path = "/api/v1/tokens",
    tag = "tokens",
    request_body = CreateToken,
    responses((status = 201, body = CreatedToken))
)]
pub async fn create_token(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Body(body): Body<CreateToken>,
) -> Result<(StatusCode, Json<CreatedToken>)> {
    caller.require(Permission::ManageTokens)?;
    let role = Role::parse(&body.role).map_err(Error::bad_request)?;
    let expires_at = match body.expires_in_s {
        Some(0) => return Err(Error::bad_request("expires_in_s must be at least 1")),
        Some(seconds) if seconds > MAX_EXPIRY_S => {
            return Err(Error::bad_request(format!(
                "expires_in_s is {seconds}: at most {MAX_EXPIRY_S} (ten years)"
            )));
        }
        Some(seconds) => {
            let at = state.clock.now() + Duration::from_secs(seconds);
            Some(humantime::format_rfc3339_millis(at).to_string())
        }
        None => None,
    };
    let token = generate_token().map_err(Error::Internal)?;
    let sha256 = hash_token(&token);
    let info = state
        .blocking(move |store, _| {
            store.write(|tx| tokens::create(tx, &caller.actor, &body.actor, role, &sha256, expires_at))
        })
        .await?;
    Ok((StatusCode::CREATED, Json(CreatedToken { token, info })))
}

#[utoipa::path(
    get,
    path = "/api/v1/tokens",
    tag = "tokens",
    responses((status = 200, body = Vec<TokenInfo>))
)]
pub async fn list_tokens(State(state): State<Arc<AppState>>, caller: Caller) -> Result<Json<Vec<TokenInfo>>> {
    caller.require(Permission::ManageTokens)?;
    let tokens = state.blocking(|store, _| store.read(tokens::list)).await?;
    Ok(Json(tokens))
}

#[utoipa::path(
    post,
    path = "/api/v1/tokens/{id}/revoke",
    tag = "tokens",
    params(("id" = u64, Path)),
    responses((status = 200, body = TokenInfo))
)]
pub async fn revoke_token(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathParams(id): PathParams<u64>,
) -> Result<Json<TokenInfo>> {
    caller.require(Permission::ManageTokens)?;
    let clock = state.clock.clone();
    let token = state
        .blocking(move |store, _| {
            store.write(|tx| {
                tokens::revoke(tx, &caller.actor, id, None, |token| {
                    auth::is_live(token, clock.now())
                })
            })
        })
        .await?;
    Ok(Json(token))
}
