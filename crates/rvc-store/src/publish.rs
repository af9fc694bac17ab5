//! What the relay reads to build events: each publish row's product (as it is now), the row's
//! creation time, and the photos of the row's version.
use crate::{DbContext, StoreError};
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use tokio_postgres::GenericClient;
use uuid::Uuid;

/// The product row as it is now (Postgres keeps only the current version's fields).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductRow {
    pub id: Uuid,
    pub sku: String,
    pub name: String,
    pub category: String,
    pub price_minor: i64,
    pub currency: String,
    /// The product's current version.
    pub version: i32,
}

/// One photo of one version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRow {
    pub ordinal: i16,
    pub sha256: String,
    pub content_type: String,
    pub width: i32,
    pub height: i32,
    pub object_key: Option<String>,
    pub point_id: Option<Uuid>,
    pub model_version: Option<String>,
}

/// What one publish row's event is built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub product: ProductRow,
    /// The publish row's `created_at` (stable across re-sends).
    pub recorded_at: DateTime<Utc>,
    pub images: Vec<ImageRow>,
}

/// A publish row to load: its event id, product and version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowRef {
    pub event_id: Uuid,
    pub product_id: Uuid,
    pub version: i32,
}

/// The snapshots of `rows` by event id (a row whose product is gone is missing).
pub async fn load<C: GenericClient>(
    db: &C,
    rows: &[RowRef],
) -> Result<HashMap<Uuid, Snapshot>, StoreError> {
    const CTX: &str = "load products to publish";
    const CTX_IMAGES: &str = "load photos to publish";
    let event_ids: Vec<Uuid> = rows.iter().map(|j| j.event_id).collect();
    let product_ids: Vec<Uuid> = rows.iter().map(|j| j.product_id).collect();
    let versions: Vec<i32> = rows.iter().map(|j| j.version).collect();
    let products = db
        .query(
            "SELECT o.event_id, o.created_at, p.id, p.sku, p.name, c.name AS category,
                    p.price_minor, p.currency::text AS currency, p.version
             FROM outbox o
             JOIN products p ON p.id = o.product_id
             JOIN categories c ON c.id = p.category_id
             WHERE o.event_id = ANY($1)",
            &[&event_ids],
        )
        .await
        .ctx(CTX)?;
    let mut out = HashMap::with_capacity(products.len());
    for r in products {
        out.insert(
            r.try_get::<_, Uuid>("event_id").ctx(CTX)?,
            Snapshot {
                recorded_at: r.try_get("created_at").ctx(CTX)?,
                product: ProductRow {
                    id: r.try_get("id").ctx(CTX)?,
                    sku: r.try_get("sku").ctx(CTX)?,
                    name: r.try_get("name").ctx(CTX)?,
                    category: r.try_get("category").ctx(CTX)?,
                    price_minor: r.try_get("price_minor").ctx(CTX)?,
                    currency: r.try_get("currency").ctx(CTX)?,
                    version: r.try_get("version").ctx(CTX)?,
                },
                images: Vec::new(),
            },
        );
    }
    let images = db
        .query(
            "SELECT i.product_id, i.version, i.ordinal, i.sha256, i.content_type, i.width,
                    i.height, i.object_key, i.point_id, i.model_version
             FROM product_images i
             JOIN unnest($1::uuid[], $2::int[]) AS t(id, version)
               ON i.product_id = t.id AND i.version = t.version
             ORDER BY i.product_id, i.version, i.ordinal",
            &[&product_ids, &versions],
        )
        .await
        .ctx(CTX_IMAGES)?;
    let mut by_version: HashMap<(Uuid, i32), Vec<ImageRow>> = HashMap::new();
    for r in images {
        by_version
            .entry((
                r.try_get("product_id").ctx(CTX_IMAGES)?,
                r.try_get("version").ctx(CTX_IMAGES)?,
            ))
            .or_default()
            .push(ImageRow {
                ordinal: r.try_get("ordinal").ctx(CTX_IMAGES)?,
                sha256: r.try_get("sha256").ctx(CTX_IMAGES)?,
                content_type: r.try_get("content_type").ctx(CTX_IMAGES)?,
                width: r.try_get("width").ctx(CTX_IMAGES)?,
                height: r.try_get("height").ctx(CTX_IMAGES)?,
                object_key: r.try_get("object_key").ctx(CTX_IMAGES)?,
                point_id: r.try_get("point_id").ctx(CTX_IMAGES)?,
                model_version: r.try_get("model_version").ctx(CTX_IMAGES)?,
            });
    }
    for row in rows {
        if let Some(s) = out.get_mut(&row.event_id) {
            s.images = by_version
                .get(&(row.product_id, row.version))
                .cloned()
                .unwrap_or_default();
        }
    }
    Ok(out)
}
