//! The API's OpenAPI 3.1 document: its frame (title, bearer tokens) around
//! the operations `routes()` collects, each with the error answer
//! (`sluice_common::openapi`). Served at `/openapi.json` without a token, as
//! the health check is; the console builds its calls from it;
//! `docs/openapi/registry.json` holds it committed, and a test fails when
//! the two differ.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ComponentsBuilder, InfoBuilder, OpenApi, OpenApiBuilder, SecurityRequirement};

pub fn base() -> OpenApi {
    let bearer = SecurityScheme::Http(
        HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .description(Some(
                "A registry token (`sluice tokens create`, or the tokens file); its role decides what it may do",
            ))
            .build(),
    );
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("Sluice registry API")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "Models, versions, governance, deployments, rollouts, monitoring and the audit log of Sluice's \
                     control plane. registry/API.md says what each call does and which role may make it.",
                ))
                .build(),
        )
        .components(Some(ComponentsBuilder::new().security_scheme("bearer", bearer).build()))
        .security(Some([SecurityRequirement::new("bearer", Vec::<String>::new())]))
        .build()
}

/// The document with every operation's error answer.
pub fn finish(document: OpenApi) -> OpenApi {
    sluice_common::openapi::with_errors(
        document,
        "An error: a client mistake (4xx: a bad request, a missing token, a role that may not, a conflict) or the registry's (5xx)",
    )
}
