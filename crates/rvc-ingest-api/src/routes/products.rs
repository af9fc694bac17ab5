//! `/api/v1/products`.
use crate::form;
use crate::idempotency::{self, Stored};
use crate::problem::Problem;
use crate::startup::AppState;
use actix_multipart::Multipart;
use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use rvc_store::products::{self, IngestOutcome, ProductRef, PublicProductView};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// What a POST answers: where the product stands now.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ProductAck {
    pub product_id: Uuid,
    pub sku: String,
    pub version: i32,
    #[schema(value_type = String, example = "registered")]
    pub status: rvc_domain::ProductStatus,
    /// The `upload_images` outbox row created by this request; null when nothing changed.
    pub event_id: Option<Uuid>,
}

/// The multipart form of `POST /api/v1/products` (documentation only).
#[allow(dead_code)]
#[derive(utoipa::ToSchema)]
pub struct ProductForm {
    /// 1-64 of `[A-Za-z0-9._-]`; the product's identity: re-POSTing a SKU updates it.
    sku: String,
    /// 1-128 characters.
    name: String,
    /// 1-128 characters; created on first use.
    category_name: String,
    /// Decimal string, > 0, at most 2 fraction digits, e.g. `129.90`.
    price: String,
    /// ISO 4217 code; defaults to DEFAULT_CURRENCY.
    currency: Option<String>,
    /// 1-10 JPEG, PNG or WebP files, each at most 10 MiB and 8192x8192.
    #[schema(value_type = Vec<String>, format = Binary)]
    images: Vec<Vec<u8>>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct SkuQuery {
    /// The SKU to look up.
    pub sku: Option<String>,
}

/// Reads and discards up to `max` bytes of a body.
async fn drain(mut payload: web::Payload, max: usize) {
    use futures::StreamExt;
    let mut seen = 0usize;
    while let Some(Ok(chunk)) = payload.next().await {
        seen += chunk.len();
        if seen > max {
            break;
        }
    }
}

/// Accept a product and its photos.
#[utoipa::path(
    post,
    path = "/api/v1/products",
    request_body(content = ProductForm, content_type = "multipart/form-data"),
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe: same key + same content returns the stored response")),
    responses(
        (status = 202, description = "Accepted: stored, photos staged, pipeline started", body = ProductAck),
        (status = 200, description = "Nothing changed since the current version", body = ProductAck),
        (status = 400, description = "Missing or invalid field", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "A photo or the request is too large", body = Problem, content_type = "application/problem+json"),
        (status = 408, description = "The body was not received within BODY_READ_TIMEOUT_SECS", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JPEG/PNG/WebP, or not multipart", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Idempotency-Key reused with different content, or image dimensions too large", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Busy (too many photos in flight, or no database connection free): retry after Retry-After seconds", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, Problem> {
    let is_multipart = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.to_ascii_lowercase().starts_with("multipart/form-data"));
    if !is_multipart {
        return Err(Problem::unsupported(
            "send the product as multipart/form-data (fields sku, name, category_name, price, currency, images)",
        ));
    }
    let key = idempotency::key_from(req.headers())?;
    // Reserve room for the body before reading any of it: the request's Content-Length, or
    // the largest allowed body when it sends none. The reservation is held until the answer
    // (the photos stay in memory until they are in Postgres).
    let limits = &state.limits;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limits.max_body_bytes()) {
        return Err(Problem::too_large(format!(
            "the request body is larger than {} bytes",
            limits.max_body_bytes()
        )));
    }
    let need = declared.unwrap_or_else(|| limits.max_body_bytes());
    let permits = u32::try_from(need.div_ceil(1024).max(1))
        .unwrap_or(u32::MAX)
        .min(
            u32::try_from(limits.max_inflight_body_bytes / 1024)
                .unwrap_or(u32::MAX)
                .max(1),
        );
    let _admitted = match tokio::time::timeout(
        std::time::Duration::from_millis(limits.admission_wait_ms),
        state.admission.clone().acquire_many_owned(permits),
    )
    .await
    {
        Ok(Ok(permit)) => permit,
        Ok(Err(_)) | Err(_) => {
            metrics::counter!("rvc_ingest_requests_total", "outcome" => "busy").increment(1);
            // Read and drop the body (nothing is kept) so the client, still sending, gets
            // this answer rather than a reset connection.
            let _ = tokio::time::timeout(
                std::time::Duration::from_secs(limits.body_read_timeout_secs),
                drain(payload, limits.max_body_bytes()),
            )
            .await;
            return Err(Problem::unavailable(
                "the server is receiving as many photos as it holds at once; nothing was written, retry later",
            )
            .retry_after(1));
        }
    };
    let product = tokio::time::timeout(
        std::time::Duration::from_secs(limits.body_read_timeout_secs),
        form::read_product(Multipart::new(req.headers(), payload), limits),
    )
    .await
    .map_err(|_| Problem::body_timeout(limits.body_read_timeout_secs))??;
    let request_hash = product.content_hash();

    let mut client = state.pool.get().await?;
    let tx = tokio_postgres::Client::transaction(&mut client).await?;
    if let Some(key) = &key {
        if let Some(stored) = idempotency::lock_and_find(&tx, key).await? {
            if stored.request_hash != request_hash {
                return Err(Problem::unprocessable(
                    "idempotency-key-reused",
                    "this Idempotency-Key was used for a different request; use a new key for new content",
                ));
            }
            metrics::counter!("rvc_ingest_requests_total", "outcome" => "replayed").increment(1);
            return Ok(replay(&stored));
        }
    }
    let outcome = products::ingest(&tx, &product, None).await?;
    let (status, ack) = match outcome {
        IngestOutcome::Accepted {
            product_id,
            version,
            event_id,
            created,
        } => {
            tracing::info!(%product_id, sku = %product.sku, version, created, images = product.images.len(), "product accepted");
            (
                StatusCode::ACCEPTED,
                ProductAck {
                    product_id,
                    sku: product.sku.to_string(),
                    version,
                    status: rvc_domain::ProductStatus::Registered,
                    event_id: Some(event_id),
                },
            )
        }
        IngestOutcome::Unchanged {
            product_id,
            version,
            status,
        } => (
            StatusCode::OK,
            ProductAck {
                product_id,
                sku: product.sku.to_string(),
                version,
                status,
                event_id: None,
            },
        ),
    };
    let body = serde_json::to_vec(&ack).map_err(|e| {
        tracing::error!(error = %e, "serialising the answer");
        Problem::internal()
    })?;
    let stored = Stored {
        request_hash,
        status: status.as_u16(),
        location: Some(format!("/api/v1/products/{}", ack.product_id)),
        body,
    };
    if let Some(key) = &key {
        idempotency::store(&tx, key, &stored).await?;
    }
    // The revision this commit publishes, for the read side's cache tombstone below.
    let revision = match (&state.cache, status == StatusCode::ACCEPTED) {
        (Some(_), true) => rvc_store::catalog::revision(&tx, ack.product_id).await?,
        _ => None,
    };
    tx.commit().await?;
    if let (Some(cache), Some(revision)) = (&state.cache, revision) {
        // Prompt invalidation right after commit, so the next read sees this write. The
        // `cache_invalidations` row written by the products trigger in this transaction
        // guarantees it even if this call fails or the process dies here.
        if let Err(e) = cache.invalidate_many(&[(ack.product_id, revision)]).await {
            metrics::counter!("rvc_ingest_cache_invalidation_errors_total").increment(1);
            tracing::warn!(product_id = %ack.product_id, error = %e,
                "cache invalidation after commit failed; rvc-catalog's invalidator will apply it");
        }
    }
    let outcome = if status == StatusCode::ACCEPTED {
        "accepted"
    } else {
        "unchanged"
    };
    metrics::counter!("rvc_ingest_requests_total", "outcome" => outcome).increment(1);
    Ok(respond(&stored, false))
}

fn respond(s: &Stored, replayed: bool) -> HttpResponse {
    let mut r = HttpResponse::build(StatusCode::from_u16(s.status).unwrap_or(StatusCode::OK));
    r.content_type("application/json");
    if let Some(loc) = &s.location {
        r.insert_header((header::LOCATION, loc.as_str()));
    }
    if replayed {
        r.insert_header(("Idempotent-Replayed", "true"));
    }
    r.body(s.body.clone())
}

fn replay(s: &Stored) -> HttpResponse {
    respond(s, true)
}

/// A product with its photos and pipeline timeline.
#[utoipa::path(
    get,
    path = "/api/v1/products/{id}",
    params(("id" = Uuid, Path, description = "Product id")),
    responses(
        (status = 200, body = PublicProductView),
        (status = 400, description = "Not a UUID", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_by_id(
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, Problem> {
    let id = Uuid::parse_str(&path.into_inner())
        .map_err(|_| Problem::bad_request("the product id must be a UUID"))?;
    let client = state.pool.get().await?;
    match products::find(&**client, &ProductRef::Id(id)).await? {
        Some(p) => Ok(HttpResponse::Ok().json(PublicProductView::from(p))),
        None => Err(Problem::not_found(format!("no product with id {id}"))),
    }
}

/// Look a product up by SKU.
#[utoipa::path(
    get,
    path = "/api/v1/products",
    params(SkuQuery),
    responses(
        (status = 200, body = PublicProductView),
        (status = 400, description = "sku missing or not a valid SKU", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_by_sku(
    query: web::Query<SkuQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, Problem> {
    let sku = query
        .into_inner()
        .sku
        .ok_or_else(|| Problem::missing_field("sku").with_field("sku"))?;
    // Parsed like a POSTed SKU: a string no product can have (a NUL byte, say, which Postgres
    // refuses in text) is a 400, not a query.
    let sku = rvc_domain::Sku::parse(&sku)
        .map_err(|e| Problem::invalid_field("sku", e.to_string()))?
        .as_str()
        .to_owned();
    let client = state.pool.get().await?;
    match products::find(&**client, &ProductRef::Sku(sku.clone())).await? {
        Some(p) => Ok(HttpResponse::Ok().json(PublicProductView::from(p))),
        None => Err(Problem::not_found(format!("no product with sku {sku:?}"))),
    }
}

/// What a DELETE answers. The same body for every DELETE of one archive (a repeated DELETE
/// writes nothing), so a client may retry freely.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ArchiveAck {
    pub product_id: Uuid,
    pub sku: String,
    /// The archive version: the version the `delete` event on Kafka carries.
    pub version: i32,
    /// Always true.
    pub archived: bool,
    /// When the product was archived (null only for rows archived by hand before archiving
    /// existed).
    pub archived_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// Archive a product by id.
///
/// In one transaction the product gets a new version that is archived, and the pipeline
/// starts for it: its points leave the vector index, a `delete` event with the version goes
/// to Kafka, and its photos are collected from object storage after ARCHIVE_RETENTION_SECS
/// (the uploader's GC). Reads report it archived and recognition skips it from the commit on.
/// Idempotent: archiving an archived product writes nothing and answers the same. Re-POSTing
/// the SKU un-archives it as a new version. There is no 409: any product can be archived.
#[utoipa::path(
    delete,
    path = "/api/v1/products/{id}",
    params(("id" = Uuid, Path, description = "Product id")),
    responses(
        (status = 200, description = "Archived (now, or already before this request)", body = ArchiveAck),
        (status = 400, description = "Not a UUID", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No product with this id", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn archive_by_id(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, Problem> {
    let id = Uuid::parse_str(&path.into_inner())
        .map_err(|_| Problem::bad_request("the product id must be a UUID"))?;
    archive(&req, &state, ProductRef::Id(id), || {
        format!("no product with id {id}")
    })
    .await
}

/// Archive a product by SKU (as [`archive_by_id`]).
#[utoipa::path(
    delete,
    path = "/api/v1/products",
    params(SkuQuery),
    responses(
        (status = 200, description = "Archived (now, or already before this request)", body = ArchiveAck),
        (status = 400, description = "sku missing or not a valid SKU", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No product with this SKU", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn archive_by_sku(
    req: HttpRequest,
    query: web::Query<SkuQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, Problem> {
    let sku = query
        .into_inner()
        .sku
        .ok_or_else(|| Problem::missing_field("sku").with_field("sku"))?;
    let sku = rvc_domain::Sku::parse(&sku)
        .map_err(|e| Problem::invalid_field("sku", e.to_string()))?
        .as_str()
        .to_owned();
    let missing = format!("no product with sku {sku:?}");
    archive(&req, &state, ProductRef::Sku(sku), || missing).await
}

async fn archive(
    req: &HttpRequest,
    state: &AppState,
    which: ProductRef,
    not_found: impl FnOnce() -> String,
) -> Result<HttpResponse, Problem> {
    let traceparent = req
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut client = state.pool.get().await?;
    let tx = tokio_postgres::Client::transaction(&mut client).await?;
    let Some(done) = rvc_store::archive::archive(&tx, &which, traceparent).await? else {
        return Err(Problem::not_found(not_found()));
    };
    let revision = match (&state.cache, done.event_id) {
        (Some(_), Some(_)) => rvc_store::catalog::revision(&tx, done.product_id).await?,
        _ => None,
    };
    tx.commit().await?;
    if let (Some(cache), Some(revision)) = (&state.cache, revision) {
        // As after a POST: prompt, and guaranteed anyway by the trigger's invalidation row.
        if let Err(e) = cache.invalidate_many(&[(done.product_id, revision)]).await {
            metrics::counter!("rvc_ingest_cache_invalidation_errors_total").increment(1);
            tracing::warn!(product_id = %done.product_id, error = %e,
                "cache invalidation after archive failed; rvc-catalog's invalidator will apply it");
        }
    }
    let outcome = if done.event_id.is_some() {
        tracing::info!(product_id = %done.product_id, sku = %done.sku, version = done.version,
            "product archived");
        "archived"
    } else {
        "already_archived"
    };
    metrics::counter!("rvc_ingest_requests_total", "outcome" => outcome).increment(1);
    Ok(HttpResponse::Ok().json(ArchiveAck {
        product_id: done.product_id,
        sku: done.sku,
        version: done.version,
        archived: true,
        archived_at: done.archived_at,
    }))
}
