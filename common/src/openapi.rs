//! What both planes' OpenAPI documents share: the error every operation may
//! answer (`{"error": "..."}`, the one error shape of Sluice's HTTP APIs),
//! and the well-known path each listener serves its document at.

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::routing::get;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, RefOr, ResponseBuilder};
use utoipa::{PartialSchema, ToSchema};

/// Where every listener of Sluice serves its document.
pub const PATH: &str = "/openapi.json";

/// What every error answers, with a 4xx or 5xx status.
#[derive(ToSchema)]
#[schema(as = Error)]
#[allow(dead_code)]
struct ErrorBody {
    /// What went wrong and what was expected.
    error: String,
}

/// Raw bytes: an ONNX file, or the binary tensor extension's body. Said
/// as OpenAPI 3.1 says it (a string of that media type), not as an array
/// of integers, which is what `Vec<u8>` would describe.
pub struct Bytes;

impl PartialSchema for Bytes {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .content_media_type("application/octet-stream")
            .into()
    }
}

impl ToSchema for Bytes {}

/// `document` with the error schema, and the error as every operation's
/// `default` answer (described as `description` says).
pub fn with_errors(mut document: OpenApi, description: &str) -> OpenApi {
    let error = ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name(ErrorBody::name())))
                .build(),
        )
        .build();
    let components = document.components.get_or_insert_with(Default::default);
    components
        .schemas
        .insert(ErrorBody::name().into(), ErrorBody::schema());
    for item in document.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for operation in operations.into_iter().flatten() {
            operation
                .responses
                .responses
                .entry("default".into())
                .or_insert_with(|| error.clone().into());
        }
    }
    document
}

/// [`PATH`], answering `document`, rendered once.
pub fn router<S: Clone + Send + Sync + 'static>(document: &OpenApi) -> Router<S> {
    let json = document.to_pretty_json().unwrap_or_default();
    Router::new().route(
        PATH,
        get(move || {
            let json = json.clone();
            async move {
                (
                    [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))],
                    json,
                )
            }
        }),
    )
}
