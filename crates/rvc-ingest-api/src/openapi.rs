//! The OpenAPI 3 document, served at `/api-docs/openapi.json` (Swagger UI at `/swagger/`).
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Retail Vision Catalog ingest API",
        description = "Register products with photos; follow them through upload, vectorisation and publication."
    ),
    paths(
        crate::routes::products::create,
        crate::routes::products::get_by_id,
        crate::routes::products::get_by_sku
    ),
    components(schemas(
        crate::routes::products::ProductAck,
        crate::routes::products::ProductForm,
        crate::problem::Problem,
        rvc_store::products::ProductView,
        rvc_store::products::ImageView,
        rvc_store::products::TimelineEntry
    ))
)]
pub struct ApiDoc;
