//! HTTP reads (actix-web): the product listing with keyset pagination and the batch lookup,
//! problem+json errors, OpenAPI and Swagger UI.
use crate::model::{parse_ids, Product};
use crate::openapi::Security;
use crate::reader::{Catalog, CatalogError};
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse, ResponseError};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use uuid::Uuid;

/// What the handlers share.
pub struct HttpState {
    pub catalog: Arc<Catalog>,
    pub max_ids: usize,
}

/// An RFC 7807 `application/problem+json` error.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// The request field the problem is about, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl Problem {
    pub fn new(status: StatusCode, slug: &str, title: &str, detail: impl Into<String>) -> Self {
        Self {
            kind: format!("/problems/{slug}"),
            title: title.to_owned(),
            status: status.as_u16(),
            detail: detail.into(),
            field: None,
        }
    }

    pub fn invalid_field(field: &str, detail: impl Into<String>) -> Self {
        let mut p = Self::new(
            StatusCode::BAD_REQUEST,
            "invalid-field",
            "Invalid field",
            detail,
        );
        p.field = Some(field.to_owned());
        p
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid-request",
            "Invalid request",
            detail,
        )
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", "Not found", detail)
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status, self.title, self.detail)
    }
}

impl ResponseError for Problem {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status_code())
            .content_type("application/problem+json")
            .json(self)
    }
}

impl From<CatalogError> for Problem {
    fn from(e: CatalogError) -> Self {
        if e.is_unavailable() {
            tracing::error!(error = %e, "database unavailable");
            Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Service unavailable",
                "the database is unavailable; retry later",
            )
        } else {
            tracing::error!(error = %e, "read failed");
            Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal error",
                "the request could not be completed; retry later",
            )
        }
    }
}

impl From<rvc_store::StoreError> for Problem {
    fn from(e: rvc_store::StoreError) -> Self {
        CatalogError::from(e).into()
    }
}

/// Query of `GET /api/v1/products`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Exact category name.
    pub category: Option<String>,
    /// Pipeline status: registered, images_stored, vectorized, indexed, failed.
    pub status: Option<String>,
    /// RFC 3339 time: only products changed at or after it.
    pub updated_since: Option<String>,
    /// Page size, 1..=500 (default 100).
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// One page of products, ordered by id.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ProductPage {
    pub items: Vec<Product>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// Body of `POST /api/v1/products:batchGet`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct BatchGetRequest {
    pub product_ids: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BatchGetResponse {
    /// In request order (duplicates once).
    pub products: Vec<Product>,
    pub not_found_ids: Vec<Uuid>,
}

const CURSOR_PREFIX: &str = "k1.";

fn encode_cursor(id: Uuid) -> String {
    format!("{CURSOR_PREFIX}{}", id.simple())
}

fn decode_cursor(s: &str) -> Result<Uuid, Problem> {
    s.strip_prefix(CURSOR_PREFIX)
        .and_then(|rest| Uuid::try_parse(rest).ok())
        .ok_or_else(|| {
            Problem::invalid_field("cursor", "cursor: not a cursor returned by this API")
        })
}

/// List products (keyset pagination: rows present for the whole walk appear exactly once).
#[utoipa::path(
    get,
    path = "/api/v1/products",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of products", body = ProductPage),
        (status = 400, description = "Invalid query", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database is unavailable; retry", body = Problem, content_type = "application/problem+json")
    )
)]
pub async fn list(
    state: web::Data<HttpState>,
    q: web::Query<ListQuery>,
) -> Result<HttpResponse, Problem> {
    let q = q.into_inner();
    let limit = q.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(Problem::invalid_field(
            "limit",
            format!("limit: {limit} is outside 1..=500"),
        ));
    }
    let status = match q.status.as_deref() {
        None => None,
        Some(s) => Some(
            s.parse::<rvc_domain::ProductStatus>()
                .map_err(|e| Problem::invalid_field("status", format!("status: {e}")))?,
        ),
    };
    let updated_since = match q.updated_since.as_deref() {
        None => None,
        Some(s) => Some(
            DateTime::parse_from_rfc3339(s)
                .map_err(|e| {
                    Problem::invalid_field(
                        "updated_since",
                        format!(
                            "updated_since: {e} (expected RFC 3339, e.g. 2026-01-31T12:00:00Z)"
                        ),
                    )
                })?
                .with_timezone(&Utc),
        ),
    };
    let after = q.cursor.as_deref().map(decode_cursor).transpose()?;
    let filter = rvc_store::catalog::ListFilter {
        category: q.category,
        status,
        updated_since,
    };
    let client = state
        .catalog
        .pool()
        .get()
        .await
        .map_err(rvc_store::StoreError::from)?;
    // one row more than asked tells whether there is a next page
    let mut rows = rvc_store::catalog::list_products(&**client, &filter, after, limit + 1).await?;
    let more = i64::try_from(rows.len()).unwrap_or(i64::MAX) > limit;
    rows.truncate(usize::try_from(limit).unwrap_or(0));
    let next_cursor = if more {
        rows.last().map(|p| encode_cursor(p.id))
    } else {
        None
    };
    Ok(HttpResponse::Ok().json(ProductPage {
        items: rows.into_iter().map(Product::from).collect(),
        next_cursor,
    }))
}

/// Look products up by id: the same lookup (and cache) as gRPC `GetProductsInfo`.
#[utoipa::path(
    post,
    path = "/api/v1/products:batchGet",
    request_body = BatchGetRequest,
    responses(
        (status = 200, description = "Found products and unknown ids", body = BatchGetResponse),
        (status = 400, description = "Malformed ids or too many", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database is unavailable; retry", body = Problem, content_type = "application/problem+json")
    )
)]
pub async fn batch_get(
    state: web::Data<HttpState>,
    body: web::Json<BatchGetRequest>,
) -> Result<HttpResponse, Problem> {
    let raw = body.into_inner().product_ids;
    if raw.len() > state.max_ids {
        return Err(Problem::invalid_field(
            "product_ids",
            format!(
                "product_ids: {} ids, at most {} per call",
                raw.len(),
                state.max_ids
            ),
        ));
    }
    let ids = parse_ids(&raw).map_err(|bad| {
        Problem::invalid_field(
            "product_ids",
            format!(
                "product_ids: malformed ids (expected UUIDs): {}",
                bad.join(", ")
            ),
        )
    })?;
    let found = state.catalog.get_products(&ids).await?;
    Ok(HttpResponse::Ok().json(BatchGetResponse {
        products: found.products,
        not_found_ids: found.not_found,
    }))
}

/// The OpenAPI 3 document, served at `/api-docs/openapi.json` (Swagger UI at `/swagger/`).
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Retail Vision Catalog read API",
        description = "Current products for checkouts and POS: listing with keyset pagination and batch lookup by id (cached in Redis, never staler than the bound in docs/read-api.md), and recognition of the catalog's products in a photo (docs/recognition.md).\n\nEvery `/api/v1` route needs an API key (`Authorization: Bearer rvc_<id>_<secret>`, created with `rvcctl apikey create`) holding the route's scope: `catalog:read` for the product reads, `recognize` for recognition (`admin` holds every scope). `/healthz`, `/readyz`, `/metrics` and this document are open."
    ),
    paths(list, batch_get, rvc_recognition::http::recognize),
    components(schemas(
        Product,
        ProductPage,
        BatchGetRequest,
        BatchGetResponse,
        Problem,
        rvc_recognition::http::RecognizeForm,
        rvc_recognition::Recognition,
        rvc_recognition::RecognizedObject,
        rvc_recognition::Candidate,
        rvc_recognition::ProductInfo,
        rvc_recognition::BoxF
    )),
    modifiers(&Security)
)]
pub struct ApiDoc;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_foreign_text() {
        let id = Uuid::now_v7();
        assert_eq!(decode_cursor(&encode_cursor(id)).ok(), Some(id));
        assert!(decode_cursor("abc").is_err());
        assert!(decode_cursor(&id.to_string()).is_err());
    }
}
