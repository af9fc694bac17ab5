//! What the API-key middleware adds to an OpenAPI document: the bearer security scheme, the
//! scope each operation needs, and the answers rvc-auth gives (401, 403, 429 with
//! `Retry-After`, 503), so the document matches the server (schemathesis checks it in
//! `make fuzz-api`). Both the ingest API and the read side use it.
use crate::Scope;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi as Doc, Ref, ResponseBuilder};

/// The name of the security scheme in the document.
pub const SCHEME: &str = "api_key";

/// Documents the key on every operation `scope_of(method, path)` gives a scope (`method`
/// lower-case: get, post, put, delete); operations it gives none stay open. An operation's own
/// 503 (a backend it names) keeps its description.
pub fn document(doc: &mut Doc, scope_of: impl Fn(&str, &str) -> Option<Scope>) {
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        SCHEME,
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("rvc_<id>_<secret>")
                .description(Some(
                    "An API key from `rvcctl apikey create`, sent as `Authorization: Bearer <key>`",
                ))
                .build(),
        ),
    );
    for (path, item) in doc.paths.paths.iter_mut() {
        for (method, op) in [
            ("get", item.get.as_mut()),
            ("post", item.post.as_mut()),
            ("put", item.put.as_mut()),
            ("delete", item.delete.as_mut()),
        ] {
            let (Some(op), Some(scope)) = (op, scope_of(method, path)) else {
                continue;
            };
            op.security = Some(vec![SecurityRequirement::new(SCHEME, [scope.as_str()])]);
            let r = &mut op.responses.responses;
            r.insert(
                "401".into(),
                problem(
                    "No API key, or one that is unknown, expired or revoked",
                    false,
                )
                .into(),
            );
            r.insert(
                "403".into(),
                problem(&format!("The API key lacks the `{scope}` scope"), false).into(),
            );
            r.insert(
                "429".into(),
                problem("The API key's rate limit is exceeded", true).into(),
            );
            r.entry("503".into()).or_insert_with(|| {
                problem(
                    "The database (or the key store) is unavailable; retry",
                    true,
                )
                .into()
            });
        }
    }
}

/// A problem+json answer, with `Retry-After` when the client should come back.
pub fn problem(description: &str, retry_after: bool) -> utoipa::openapi::Response {
    let mut r = ResponseBuilder::new().description(description).content(
        "application/problem+json",
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name("Problem")))
            .build(),
    );
    if retry_after {
        r = r.header(
            "Retry-After",
            utoipa::openapi::HeaderBuilder::new()
                .schema(
                    utoipa::openapi::ObjectBuilder::new()
                        .schema_type(utoipa::openapi::Type::Integer),
                )
                .description(Some("Seconds to wait before retrying"))
                .build(),
        );
    }
    r.build()
}
