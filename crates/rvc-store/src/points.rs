//! What the upload and vectorize steps read and record in Postgres: a product version's
//! photos (with their staged bytes for the upload), where they were stored, the per-product
//! lock under which every vector-index write of a product runs, and the photos' point ids.
use crate::{DbContext, StoreError};
use chrono::{DateTime, Utc};
use tokio_postgres::GenericClient;
use uuid::Uuid;

/// First key of the advisory lock that serialises one product's vector-index writes (the
/// second is `hashtext(product_id)`); "VIDX".
const INDEX_LOCK_CLASS: i32 = 0x5649_4458;

/// A product as the vectorizer reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductForIndex {
    pub sku: String,
    /// The product's current version.
    pub current: i32,
    pub archived: bool,
    pub status: rvc_domain::ProductStatus,
}

/// A photo of a product version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhotoForIndex {
    pub ordinal: i16,
    pub sha256: String,
    pub content_type: String,
    /// `None` until the upload step has stored it.
    pub object_key: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// The product, or `None` when it does not exist.
pub async fn product<C: GenericClient>(
    db: &C,
    product_id: Uuid,
) -> Result<Option<ProductForIndex>, StoreError> {
    const CTX: &str = "product for the index";
    db.query_opt(
        "SELECT sku, version, archived, status FROM products WHERE id = $1",
        &[&product_id],
    )
    .await
    .ctx(CTX)?
    .map(|r| {
        Ok(ProductForIndex {
            sku: r.try_get("sku").ctx(CTX)?,
            current: r.try_get("version").ctx(CTX)?,
            archived: r.try_get("archived").ctx(CTX)?,
            status: crate::text_col(&r, "status", CTX)?,
        })
    })
    .transpose()
}

/// The photos of a product version, in order.
pub async fn photos<C: GenericClient>(
    db: &C,
    product_id: Uuid,
    version: i32,
) -> Result<Vec<PhotoForIndex>, StoreError> {
    const CTX: &str = "photos for the index";
    db.query(
        "SELECT ordinal, sha256, content_type, object_key, created_at FROM product_images
         WHERE product_id = $1 AND version = $2 ORDER BY ordinal",
        &[&product_id, &version],
    )
    .await
    .ctx(CTX)?
    .iter()
    .map(|r| {
        Ok(PhotoForIndex {
            ordinal: r.try_get("ordinal").ctx(CTX)?,
            sha256: r.try_get("sha256").ctx(CTX)?,
            content_type: r.try_get("content_type").ctx(CTX)?,
            object_key: r.try_get("object_key").ctx(CTX)?,
            created_at: r.try_get("created_at").ctx(CTX)?,
        })
    })
    .collect()
}

/// Takes the product's index lock for the rest of `tx` (freed at commit, rollback, or when a
/// SIGKILL drops the connection) and returns its current version (`None`: no such product).
pub async fn lock_for_index<C: GenericClient>(
    tx: &C,
    product_id: Uuid,
) -> Result<Option<i32>, StoreError> {
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, hashtext($2::uuid::text))",
        &[&INDEX_LOCK_CLASS, &product_id],
    )
    .await
    .ctx("index lock")?;
    tx.query_opt("SELECT version FROM products WHERE id = $1", &[&product_id])
        .await
        .ctx("index lock")?
        .map(|r| r.try_get("version").ctx("index lock"))
        .transpose()
        .map_err(Into::into)
}

/// Records the active model's point of each photo of a version (`(ordinal, point id)`).
pub async fn record_photo_points<C: GenericClient>(
    tx: &C,
    product_id: Uuid,
    version: i32,
    model_version: &str,
    points: &[(i16, Uuid)],
) -> Result<(), StoreError> {
    let (ordinals, ids): (Vec<i16>, Vec<Uuid>) = points.iter().copied().unzip();
    tx.execute(
        "UPDATE product_images i SET point_id = t.point_id, model_version = $3
         FROM unnest($4::smallint[], $5::uuid[]) AS t(ordinal, point_id)
         WHERE i.product_id = $1 AND i.version = $2 AND i.ordinal = t.ordinal",
        &[&product_id, &version, &model_version, &ordinals, &ids],
    )
    .await
    .ctx("record photo points")?;
    Ok(())
}

/// A photo as the upload step reads it: its staged bytes until they are in object storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhotoToUpload {
    pub ordinal: i16,
    pub sha256: String,
    pub content_type: String,
    pub staged: Option<Vec<u8>>,
    pub object_key: Option<String>,
    /// Another version of the product has stored the same photo (same sha256, so the same
    /// object key): the object may already be there and the upload step looks before it PUTs.
    pub stored_before: bool,
}

/// The photos of a product version with their staged bytes, in order.
pub async fn photos_to_upload<C: GenericClient>(
    db: &C,
    product_id: Uuid,
    version: i32,
) -> Result<Vec<PhotoToUpload>, StoreError> {
    const CTX: &str = "photos to upload";
    db.query(
        "SELECT i.ordinal, i.sha256, i.content_type, i.staged_bytes, i.object_key,
                EXISTS (SELECT 1 FROM product_images o
                        WHERE o.product_id = i.product_id AND o.sha256 = i.sha256
                          AND o.version <> i.version AND o.object_key IS NOT NULL)
                  AS stored_before
         FROM product_images i WHERE i.product_id = $1 AND i.version = $2 ORDER BY i.ordinal",
        &[&product_id, &version],
    )
    .await
    .ctx(CTX)?
    .iter()
    .map(|r| {
        Ok(PhotoToUpload {
            ordinal: r.try_get("ordinal").ctx(CTX)?,
            sha256: r.try_get("sha256").ctx(CTX)?,
            content_type: r.try_get("content_type").ctx(CTX)?,
            staged: r.try_get("staged_bytes").ctx(CTX)?,
            object_key: r.try_get("object_key").ctx(CTX)?,
            stored_before: r.try_get("stored_before").ctx(CTX)?,
        })
    })
    .collect()
}

/// Records where each photo of a version is stored and drops its staged bytes
/// (`(ordinal, object key)`).
pub async fn record_object_keys<C: GenericClient>(
    tx: &C,
    product_id: Uuid,
    version: i32,
    stored: &[(i16, &str)],
) -> Result<(), StoreError> {
    let (ordinals, keys): (Vec<i16>, Vec<&str>) = stored.iter().copied().unzip();
    tx.execute(
        "UPDATE product_images i SET object_key = t.key, staged_bytes = NULL
         FROM unnest($3::smallint[], $4::text[]) AS t(ordinal, key)
         WHERE i.product_id = $1 AND i.version = $2 AND i.ordinal = t.ordinal",
        &[&product_id, &version, &ordinals, &keys],
    )
    .await
    .ctx("record object keys")?;
    Ok(())
}
