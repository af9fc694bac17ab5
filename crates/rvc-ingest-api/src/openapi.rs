//! The OpenAPI 3 document, served at `/api-docs/openapi.json` (Swagger UI at `/swagger/`).
use utoipa::openapi::OpenApi as Doc;
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

/// Adds the bearer scheme, each operation's scope, and the answers rvc-auth gives (401, 403,
/// 429, 503) to every `/api/v1` operation, so the document matches what the middleware does.
struct Security;

/// The scope an operation needs: reading is `catalog:read`, writing (POST, DELETE)
/// `catalog:write`; health and metrics are open.
fn scope_of(method: &str, path: &str) -> Option<rvc_auth::Scope> {
    if !path.starts_with("/api/v1/") {
        return None;
    }
    match method {
        "get" => Some(rvc_auth::Scope::CatalogRead),
        "post" | "delete" => Some(rvc_auth::Scope::CatalogWrite),
        _ => None,
    }
}

impl utoipa::Modify for Security {
    fn modify(&self, doc: &mut Doc) {
        rvc_auth::openapi::document(doc, scope_of);
    }
}
