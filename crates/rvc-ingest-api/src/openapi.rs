//! The OpenAPI 3 document, served at `/api-docs/openapi.json` (Swagger UI at `/swagger/`).
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi as Doc, Ref, ResponseBuilder};
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Retail Vision Catalog ingest API",
        description = "Register products with photos; follow them through upload, vectorisation and publication.\n\nEvery `/api/v1` route needs an API key (`Authorization: Bearer rvc_<id>_<secret>`, created with `rvcctl apikey create`) holding the route's scope: `catalog:write` to POST and DELETE (archive), `catalog:read` to read (`admin` holds every scope). `/healthz`, `/readyz` and `/metrics` are open."
    ),
    paths(
        crate::routes::products::create,
        crate::routes::products::get_by_id,
        crate::routes::products::get_by_sku,
        crate::routes::products::archive_by_id,
        crate::routes::products::archive_by_sku
    ),
    components(schemas(
        crate::routes::products::ProductAck,
        crate::routes::products::ArchiveAck,
        crate::routes::products::ProductForm,
        crate::problem::Problem,
        rvc_store::products::PublicProductView,
        rvc_store::products::ImageView,
        rvc_store::products::PublicTimelineEntry,
        rvc_store::products::StepError
    )),
    modifiers(&Security)
)]
pub struct ApiDoc;

/// The name of the security scheme in the document.
pub const SCHEME: &str = "api_key";

/// Adds the bearer scheme, each operation's scope, and the answers rvc-auth gives (401, 403,
/// 429, 503) to every `/api/v1` operation, so the document matches what the middleware does.
struct Security;

fn problem(description: &str, retry_after: bool) -> utoipa::openapi::Response {
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

impl utoipa::Modify for Security {
    fn modify(&self, doc: &mut Doc) {
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
            if !path.starts_with("/api/v1/") {
                continue;
            }
            for (op, scope) in [
                (item.get.as_mut(), "catalog:read"),
                (item.post.as_mut(), "catalog:write"),
                (item.delete.as_mut(), "catalog:write"),
            ] {
                let Some(op) = op else { continue };
                op.security = Some(vec![SecurityRequirement::new(SCHEME, [scope])]);
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
                r.insert(
                    "503".into(),
                    problem(
                        "The database (or the key store) is unavailable; retry",
                        true,
                    )
                    .into(),
                );
            }
        }
    }
}
