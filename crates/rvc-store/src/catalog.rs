//! Read-side queries of `rvc-catalog`: products by id or SKU as the POS sees them, a keyset
//! listing, and the cache-invalidation rows the `products` trigger writes (migration V4).
//!
//! Rows are mapped by column name (`try_get("…")`) into typed structs.
use crate::{DbContext, StoreError};
use chrono::{DateTime, Utc};
use tokio_postgres::{GenericClient, Row};
use uuid::Uuid;

/// A product's current committed state, as the read API returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogProduct {
    pub id: Uuid,
    pub sku: String,
    pub name: String,
    pub category: String,
    pub price_minor: i64,
    pub currency: String,
    pub status: rvc_domain::ProductStatus,
    pub archived: bool,
    pub version: i32,
    /// Changes on every committed change of the row (trigger `products_revision`).
    pub revision: i64,
    pub updated_at: DateTime<Utc>,
    /// Object keys of the current version's photos that are already in object storage.
    pub image_keys: Vec<String>,
}

const SELECT: &str = "SELECT p.id, p.sku, p.name, c.name AS category, p.price_minor,
            p.currency::text AS currency, p.status, p.archived, p.version, p.revision,
            p.updated_at,
            COALESCE((SELECT array_agg(i.object_key ORDER BY i.ordinal) FROM product_images i
                      WHERE i.product_id = p.id AND i.version = p.version
                        AND i.object_key IS NOT NULL), '{}') AS image_keys
     FROM products p JOIN categories c ON c.id = p.category_id";

impl CatalogProduct {
    fn from_row(row: &Row) -> Result<Self, StoreError> {
        const CTX: &str = "catalog product row";
        Ok(Self {
            id: row.try_get("id").ctx(CTX)?,
            sku: row.try_get("sku").ctx(CTX)?,
            name: row.try_get("name").ctx(CTX)?,
            category: row.try_get("category").ctx(CTX)?,
            price_minor: row.try_get("price_minor").ctx(CTX)?,
            currency: row.try_get("currency").ctx(CTX)?,
            status: crate::text_col(row, "status", CTX)?,
            archived: row.try_get("archived").ctx(CTX)?,
            version: row.try_get("version").ctx(CTX)?,
            revision: row.try_get("revision").ctx(CTX)?,
            updated_at: row.try_get("updated_at").ctx(CTX)?,
            image_keys: row.try_get("image_keys").ctx(CTX)?,
        })
    }
}

/// The products among `ids` that exist (any order; missing ids are simply absent).
pub async fn products_by_ids<C: GenericClient>(
    db: &C,
    ids: &[Uuid],
) -> Result<Vec<CatalogProduct>, StoreError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    db.query(&format!("{SELECT} WHERE p.id = ANY($1)"), &[&ids])
        .await
        .ctx("products by ids")?
        .iter()
        .map(CatalogProduct::from_row)
        .collect()
}

pub async fn product_by_sku<C: GenericClient>(
    db: &C,
    sku: &str,
) -> Result<Option<CatalogProduct>, StoreError> {
    db.query_opt(&format!("{SELECT} WHERE p.sku = $1"), &[&sku])
        .await
        .ctx("product by sku")?
        .as_ref()
        .map(CatalogProduct::from_row)
        .transpose()
}

/// Filters of the product listing.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub category: Option<String>,
    pub status: Option<rvc_domain::ProductStatus>,
    pub updated_since: Option<DateTime<Utc>>,
}

/// One page of the listing ordered by id, starting after `after` (keyset pagination: a row's
/// key never changes, so rows that exist for the whole walk are returned exactly once however
/// many rows are inserted or updated meanwhile). Returns up to `limit` rows.
pub async fn list_products<C: GenericClient>(
    db: &C,
    filter: &ListFilter,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<CatalogProduct>, StoreError> {
    db.query(
        &format!(
            "{SELECT}
             WHERE ($1::uuid IS NULL OR p.id > $1)
               AND ($2::text IS NULL OR c.name = $2)
               AND ($3::text IS NULL OR p.status = $3)
               AND ($4::timestamptz IS NULL OR p.updated_at >= $4)
             ORDER BY p.id
             LIMIT $5"
        ),
        &[
            &after,
            &filter.category,
            &filter.status.map(rvc_domain::ProductStatus::as_str),
            &filter.updated_since,
            &limit,
        ],
    )
    .await
    .ctx("list products")?
    .iter()
    .map(CatalogProduct::from_row)
    .collect()
}

/// The current revision of a product (inside the writer's transaction: the revision its
/// commit will publish).
pub async fn revision<C: GenericClient>(db: &C, id: Uuid) -> Result<Option<i64>, StoreError> {
    db.query_opt("SELECT revision FROM products WHERE id = $1", &[&id])
        .await
        .ctx("product revision")?
        .map(|r| r.try_get("revision").ctx("product revision"))
        .transpose()
        .map_err(Into::into)
}

/// A pending cache invalidation: the cache entry of `product_id` must not serve anything
/// older than `revision`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingInvalidation {
    pub product_id: Uuid,
    pub revision: i64,
}

/// The oldest pending invalidations, up to `limit`.
pub async fn pending_invalidations<C: GenericClient>(
    db: &C,
    limit: i64,
) -> Result<Vec<PendingInvalidation>, StoreError> {
    db.query(
        "SELECT product_id, revision FROM cache_invalidations ORDER BY enqueued_at LIMIT $1",
        &[&limit],
    )
    .await
    .ctx("pending invalidations")?
    .iter()
    .map(|r| {
        Ok(PendingInvalidation {
            product_id: r.try_get("product_id").ctx("invalidation row")?,
            revision: r.try_get("revision").ctx("invalidation row")?,
        })
    })
    .collect()
}

/// Deletes the rows of `done` whose revision is still at most the applied one (a newer
/// change enqueued meanwhile keeps its row). Returns how many were deleted.
pub async fn ack_invalidations<C: GenericClient>(
    db: &C,
    done: &[PendingInvalidation],
) -> Result<u64, StoreError> {
    if done.is_empty() {
        return Ok(0);
    }
    let ids: Vec<Uuid> = done.iter().map(|d| d.product_id).collect();
    let revs: Vec<i64> = done.iter().map(|d| d.revision).collect();
    db.execute(
        "DELETE FROM cache_invalidations c
         USING unnest($1::uuid[], $2::bigint[]) AS t(id, rev)
         WHERE c.product_id = t.id AND c.revision <= t.rev",
        &[&ids, &revs],
    )
    .await
    .ctx("ack invalidations")
    .map_err(Into::into)
}

/// Rows waiting in `cache_invalidations` (a gauge; 0 when every change reached the cache).
pub async fn invalidation_backlog<C: GenericClient>(db: &C) -> Result<i64, StoreError> {
    db.query_one("SELECT count(*) AS n FROM cache_invalidations", &[])
        .await
        .ctx("invalidation backlog")?
        .try_get("n")
        .ctx("invalidation backlog")
        .map_err(Into::into)
}
