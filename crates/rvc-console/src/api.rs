//! The console's JSON routes (behind rvc-auth) and its problem+json errors.
use crate::{ConsoleState, MAX_DEAD_ROWS};
use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpResponse, ResponseError};
use chrono::{DateTime, Utc};
use rvc_domain::{OutboxKind, OutboxState};
use rvc_store::products::{ProductRef, PublicProductView, StepError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use uuid::Uuid;

/// An RFC 7807 `application/problem+json` error (the same shape as the read API's).
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl Problem {
    fn new(status: StatusCode, slug: &str, title: &str, detail: impl Into<String>) -> Self {
        Self {
            kind: format!("/problems/{slug}"),
            title: title.to_owned(),
            status: status.as_u16(),
            detail: detail.into(),
            field: None,
        }
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", "Not found", detail)
    }

    fn invalid_field(field: &str, detail: impl Into<String>) -> Self {
        let mut p = Self::new(
            StatusCode::BAD_REQUEST,
            "invalid-field",
            "Invalid field",
            detail,
        );
        p.field = Some(field.to_owned());
        p
    }

    fn unavailable(what: &str) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "Service unavailable",
            format!("{what} is unavailable; retry later"),
        )
    }

    fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
            "the request could not be completed; retry later",
        )
    }

    pub(crate) fn into_response(self) -> HttpResponse {
        self.error_response()
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

/// The cause goes to the log, never to the client.
impl From<rvc_store::StoreError> for Problem {
    fn from(e: rvc_store::StoreError) -> Self {
        if matches!(e, rvc_store::StoreError::Pool(_)) {
            tracing::error!(error = %e, "console: database unavailable");
            Problem::unavailable("the database")
        } else {
            tracing::error!(error = %e, "console: read failed");
            Problem::internal()
        }
    }
}

impl From<rvc_outbox::OutboxError> for Problem {
    fn from(e: rvc_outbox::OutboxError) -> Self {
        if matches!(e, rvc_outbox::OutboxError::Pool(_)) {
            tracing::error!(error = %e, "console: database unavailable");
            Problem::unavailable("the database")
        } else {
            tracing::error!(error = %e, "console: outbox read failed");
            Problem::internal()
        }
    }
}

impl From<deadpool_postgres::PoolError> for Problem {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        rvc_store::StoreError::from(e).into()
    }
}

pub(crate) async fn no_such_route() -> Result<HttpResponse, Problem> {
    Err(Problem::not_found(
        "no such console route; see the rvc-console crate docs",
    ))
}

/// `GET /console/api/products/{id or SKU}`: the product as the ingest API's public read shows
/// it (photos, redacted step timeline).
pub(crate) async fn product(
    state: web::Data<ConsoleState>,
    which: web::Path<String>,
) -> Result<web::Json<PublicProductView>, Problem> {
    let which = which.into_inner();
    let client = state.pool.get().await?;
    match rvc_store::products::find(&**client, &ProductRef::parse(&which)).await? {
        Some(p) => Ok(web::Json(p.into())),
        None => Err(Problem::not_found(format!(
            "no product with id or SKU {which:?}"
        ))),
    }
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// `GET /console/api/products/{id}/images/{sha256}`: a photo of the product's current version,
/// from object storage. Only keys recorded for that photo in Postgres are read.
pub(crate) async fn image(
    state: web::Data<ConsoleState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, Problem> {
    let (id, sha) = path.into_inner();
    let id = Uuid::try_parse(&id)
        .map_err(|_| Problem::invalid_field("id", format!("id: {id:?} is not a product id")))?;
    if !is_sha256_hex(&sha) {
        return Err(Problem::invalid_field(
            "sha256",
            "sha256: expected 64 lowercase hex digits",
        ));
    }
    let client = state.pool.get().await?;
    let product = rvc_store::products::find(&**client, &ProductRef::Id(id))
        .await?
        .ok_or_else(|| Problem::not_found(format!("no product with id {id}")))?;
    drop(client);
    let photo = product
        .images
        .into_iter()
        .find(|i| i.sha256 == sha)
        .ok_or_else(|| {
            Problem::not_found(format!(
                "product {id} has no photo {sha} in its current version"
            ))
        })?;
    let key = photo.object_key.ok_or_else(|| {
        Problem::not_found(format!(
            "photo {sha} is not in object storage yet (still staged for the uploader)"
        ))
    })?;
    let object = state.objects.get(&key).await.map_err(|e| {
        tracing::error!(error = %e, key = %key, "console: object storage read failed");
        Problem::unavailable("object storage")
    })?;
    let Some(object) = object else {
        tracing::warn!(key = %key, "console: a recorded photo is missing from object storage");
        return Err(Problem::not_found(format!(
            "photo {sha} is recorded but missing from object storage"
        )));
    };
    // Content type from Postgres (sniffed at ingest), not from the object's metadata.
    let content_type = match photo.content_type.as_str() {
        ct @ ("image/jpeg" | "image/png" | "image/webp") => ct,
        _ => "application/octet-stream",
    };
    Ok(HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        // content-addressed: the bytes under this sha never change
        .insert_header((header::CACHE_CONTROL, "private, max-age=86400, immutable"))
        .body(object.bytes))
}

#[derive(Debug, Deserialize)]
pub(crate) struct OutboxQuery {
    /// Most dead rows listed (1..=200, default 50).
    dead_limit: Option<i64>,
}

/// A dead outbox row as the console shows it: no internal error text.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeadRow {
    pub event_id: Uuid,
    pub product_id: Uuid,
    pub sku: String,
    pub name: String,
    pub product_version: i32,
    pub kind: OutboxKind,
    pub attempts: i32,
    pub max_attempts: i32,
    /// The public code and message (`<step>_failed`), as product reads show them.
    pub error_code: String,
    pub error_message: String,
    pub first_failed_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

/// `GET /console/api/outbox`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OutboxView {
    /// step → state → rows (every state of every step, zeros included).
    pub counts: BTreeMap<String, BTreeMap<String, i64>>,
    /// step → seconds since its oldest claimable row became claimable (absent: none waiting).
    pub oldest_claimable_secs: BTreeMap<String, f64>,
    pub dead_total: i64,
    /// The newest dead rows, newest first.
    pub dead: Vec<DeadRow>,
}

pub(crate) async fn outbox(
    state: web::Data<ConsoleState>,
    q: web::Query<OutboxQuery>,
) -> Result<web::Json<OutboxView>, Problem> {
    let limit = q.dead_limit.unwrap_or(50);
    if !(1..=MAX_DEAD_ROWS).contains(&limit) {
        return Err(Problem::invalid_field(
            "dead_limit",
            format!("dead_limit: {limit} is outside 1..={MAX_DEAD_ROWS}"),
        ));
    }
    let stats = rvc_outbox::stats(&state.pool).await?;
    let client = state.pool.get().await?;
    let dead = rvc_outbox::dead_entries(&**client, limit).await?;
    let mut counts: BTreeMap<String, BTreeMap<String, i64>> = OutboxKind::PIPELINE
        .iter()
        .map(|k| {
            (
                k.to_string(),
                OutboxState::ALL
                    .iter()
                    .map(|s| (s.to_string(), 0))
                    .collect(),
            )
        })
        .collect();
    for c in stats.counts {
        *counts
            .entry(c.kind.to_string())
            .or_default()
            .entry(c.state.to_string())
            .or_default() += c.rows;
    }
    Ok(web::Json(OutboxView {
        counts,
        oldest_claimable_secs: stats
            .oldest_claimable_secs
            .into_iter()
            .map(|(k, secs)| (k.to_string(), secs))
            .collect(),
        dead_total: stats.dead,
        dead: dead
            .into_iter()
            .map(|d| {
                let public = StepError::public(d.kind, OutboxState::Dead);
                DeadRow {
                    event_id: d.event_id,
                    product_id: d.product_id,
                    sku: d.sku,
                    name: d.name,
                    product_version: d.product_version,
                    kind: d.kind,
                    attempts: d.attempts,
                    max_attempts: d.max_attempts,
                    error_code: public.code,
                    error_message: public.message,
                    first_failed_at: d.first_failed_at,
                    updated_at: d.updated_at,
                }
            })
            .collect(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn photo_hashes_are_64_lowercase_hex() {
        assert!(is_sha256_hex(&"a1".repeat(32)));
        assert!(!is_sha256_hex(&"A1".repeat(32)));
        assert!(!is_sha256_hex("../../etc/passwd"));
        assert!(!is_sha256_hex(&"a".repeat(63)));
    }
}
