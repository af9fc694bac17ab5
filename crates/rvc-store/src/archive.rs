//! Archiving a product (issue 14): one transaction writes an archive **version** and its
//! first outbox row; the pipeline then takes the product's points out of the vector index and
//! publishes a delete event, each step idempotent and crash-safe like an update's.
//!
//! * The archive version is the current version + 1, with `archived = TRUE`, `archived_at`
//!   set, status `registered` and no photos. Its outbox rows carry
//!   `{"change": "archive", "archived_at": …}` ([`rvc_domain::VersionChange`]), passed on
//!   from step to step, so the vectorizer and the relay know what the version is even after
//!   the product has moved on.
//! * Archiving an archived product writes nothing and answers what the first archive did.
//! * Re-POSTing the SKU (`products::ingest`) un-archives it as a new version.
use crate::products::ProductRef;
use crate::{DbContext, StoreError};
use chrono::{DateTime, Utc};
use rvc_domain::{OutboxKind, VersionChange};
use rvc_outbox::NewOutboxRow;
use tokio_postgres::GenericClient;
use uuid::Uuid;

/// What [`archive`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Archived {
    pub product_id: Uuid,
    pub sku: String,
    /// The archive version (the product's current version).
    pub version: i32,
    /// When the product was archived (`None` only for rows archived by hand before V5).
    pub archived_at: Option<DateTime<Utc>>,
    /// The `upload_images` row this call enqueued; `None` when the product was already
    /// archived (nothing written).
    pub event_id: Option<Uuid>,
}

/// Archives the product `which` inside `tx` (the caller commits). `Ok(None)` when no such
/// product exists.
pub async fn archive<C: GenericClient>(
    tx: &C,
    which: &ProductRef,
    traceparent: Option<String>,
) -> Result<Option<Archived>, StoreError> {
    const CTX: &str = "lock product to archive";
    let row = match which {
        ProductRef::Id(id) => tx
            .query_opt(
                "SELECT id, sku, version, archived, archived_at FROM products
                 WHERE id = $1 FOR UPDATE",
                &[id],
            )
            .await
            .ctx(CTX)?,
        ProductRef::Sku(sku) => tx
            .query_opt(
                "SELECT id, sku, version, archived, archived_at FROM products
                 WHERE sku = $1 FOR UPDATE",
                &[sku],
            )
            .await
            .ctx(CTX)?,
    };
    let Some(row) = row else { return Ok(None) };
    let product_id: Uuid = row.try_get("id").ctx(CTX)?;
    let sku: String = row.try_get("sku").ctx(CTX)?;
    if row.try_get::<_, bool>("archived").ctx(CTX)? {
        return Ok(Some(Archived {
            product_id,
            sku,
            version: row.try_get("version").ctx(CTX)?,
            archived_at: row.try_get("archived_at").ctx(CTX)?,
            event_id: None,
        }));
    }
    const NEW: &str = "archive version";
    let row = tx
        .query_one(
            "UPDATE products SET version = version + 1, archived = TRUE, archived_at = now(),
                    status = 'registered', updated_at = now()
             WHERE id = $1 RETURNING version, archived_at",
            &[&product_id],
        )
        .await
        .ctx(NEW)?;
    let version: i32 = row.try_get("version").ctx(NEW)?;
    let archived_at: DateTime<Utc> = row.try_get("archived_at").ctx(NEW)?;
    let mut out = NewOutboxRow::new(product_id, version, OutboxKind::UploadImages);
    out.payload = serde_json::json!({
        VersionChange::PAYLOAD_KEY: VersionChange::Archive.as_str(),
        "archived_at": archived_at.to_rfc3339(),
    });
    out.traceparent = traceparent;
    let event_id = rvc_outbox::enqueue(tx, &out).await?;
    Ok(Some(Archived {
        product_id,
        sku,
        version,
        archived_at: Some(archived_at),
        event_id: Some(event_id),
    }))
}
