//! The web console: a single-page app for approvers and release engineers,
//! built into the binary (nothing is fetched at run time) and served on the
//! admin API's listener at `/console/`.
//!
//! The pages hold no data and no secret: the app asks for a token, keeps it
//! in memory only, and calls `/api/v1` with it as any client does, so the
//! console can do nothing its user's token cannot. Its Content Security
//! Policy allows scripts, styles and connections from this origin only, no
//! inline script or style, no framing: a deployer's text that slipped past
//! the app's escaping still could not run.

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

use super::PathParams;
use crate::error::Error;

// `CONSOLE_ASSETS`: every file of `registry/console/`, by name (build.rs).
include!(concat!(env!("OUT_DIR"), "/console_assets.rs"));

/// Same origin only, nothing inline, no plugins, no framing, no form posts:
/// the app sends JSON with `fetch`.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'";

pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/console", get(|| async { Redirect::permanent("/console/") }))
        .route("/console/", get(|| async { asset("index.html") }))
        .route(
            "/console/{file}",
            get(|PathParams(file): PathParams<String>| async move { asset(&file) }),
        )
}

fn asset(name: &str) -> Response {
    let Some((_, content_type, body)) = CONSOLE_ASSETS.iter().find(|(known, _, _)| *known == name) else {
        return Error::not_found(format!("the console has no file {name:?}")).into_response();
    };
    let mut response = (*body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // A new binary brings new assets under the same names.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}
