//! The product and photo queries an operator's tool runs (`rvcctl outbox`, `rvcctl reconcile`):
//! looking products up, locking them, moving a failed product back into the pipeline, and the
//! drift checks of reconcile. The caller owns the transaction.
use crate::{DbContext, StoreError};
use rvc_domain::{OutboxKind, ProductStatus};
use std::collections::BTreeMap;
use tokio_postgres::{GenericClient, Row};
use uuid::Uuid;

/// Whether a product with this id exists.
pub async fn product_exists<C: GenericClient>(db: &C, id: Uuid) -> Result<bool, StoreError> {
    Ok(db
        .query_opt("SELECT 1 FROM products WHERE id = $1", &[&id])
        .await
        .ctx("look up product")?
        .is_some())
}

/// The id of the product with this SKU.
pub async fn product_id_by_sku<C: GenericClient>(
    db: &C,
    sku: &str,
) -> Result<Option<Uuid>, StoreError> {
    db.query_opt("SELECT id FROM products WHERE sku = $1", &[&sku])
        .await
        .ctx("look up product by sku")?
        .map(|r| r.try_get("id").ctx("look up product by sku"))
        .transpose()
        .map_err(Into::into)
}

/// A product's identity and where it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductHead {
    pub id: Uuid,
    pub sku: String,
    pub name: String,
    /// The current version.
    pub version: i32,
    pub status: ProductStatus,
    pub archived: bool,
}

const HEAD_SELECT: &str = "SELECT id, sku, name, version, status, archived FROM products";

fn head_from_row(r: &Row) -> Result<ProductHead, StoreError> {
    Ok(ProductHead {
        id: r.try_get("id").ctx("product row")?,
        sku: r.try_get("sku").ctx("product row")?,
        name: r.try_get("name").ctx("product row")?,
        version: r.try_get("version").ctx("product row")?,
        status: crate::text_col(r, "status", "product row")?,
        archived: r.try_get("archived").ctx("product row")?,
    })
}

/// One product (an error when it does not exist: the caller got the id from a row).
pub async fn product_head<C: GenericClient>(db: &C, id: Uuid) -> Result<ProductHead, StoreError> {
    let r = db
        .query_one(&format!("{HEAD_SELECT} WHERE id = $1"), &[&id])
        .await
        .ctx("get product")?;
    head_from_row(&r)
}

/// The products with these ids (those that exist), by SKU.
pub async fn product_heads<C: GenericClient>(
    db: &C,
    ids: &[Uuid],
) -> Result<Vec<ProductHead>, StoreError> {
    db.query(
        &format!("{HEAD_SELECT} WHERE id = ANY($1) ORDER BY sku"),
        &[&ids],
    )
    .await
    .ctx("get products")?
    .iter()
    .map(head_from_row)
    .collect()
}

/// The current version of each of these products.
pub async fn current_versions<C: GenericClient>(
    db: &C,
    ids: &[Uuid],
) -> Result<BTreeMap<Uuid, i32>, StoreError> {
    Ok(product_heads(db, ids)
        .await?
        .into_iter()
        .map(|p| (p.id, p.version))
        .collect())
}

/// Locks the products with these ids (in id order, so two lockers cannot deadlock).
pub async fn lock_products<C: GenericClient>(db: &C, ids: &[Uuid]) -> Result<(), StoreError> {
    db.query(
        "SELECT 1 FROM products WHERE id = ANY($1) ORDER BY id FOR UPDATE",
        &[&ids],
    )
    .await
    .ctx("lock products")?;
    Ok(())
}

/// Locks one product and returns its current version and status (`None`: no such product).
pub async fn lock_product<C: GenericClient>(
    db: &C,
    id: Uuid,
) -> Result<Option<(i32, ProductStatus)>, StoreError> {
    db.query_opt(
        "SELECT version, status FROM products WHERE id = $1 FOR UPDATE",
        &[&id],
    )
    .await
    .ctx("lock product")?
    .map(|r| {
        Ok((
            r.try_get("version").ctx("lock product")?,
            crate::text_col(&r, "status", "lock product")?,
        ))
    })
    .transpose()
}

/// A product's status.
pub async fn product_status<C: GenericClient>(
    db: &C,
    id: Uuid,
) -> Result<ProductStatus, StoreError> {
    let row = db
        .query_one("SELECT status FROM products WHERE id = $1", &[&id])
        .await
        .ctx("product status")?;
    crate::text_col(&row, "status", "product status")
}

/// How an operator's tool changes a product's status: a `failed` product whose current
/// version is `version` moves to `to` (the status before the step that will run again). Any
/// other product is left alone. Returns whether the product moved.
pub async fn move_out_of_failed<C: GenericClient>(
    db: &C,
    id: Uuid,
    version: i32,
    to: ProductStatus,
) -> Result<bool, StoreError> {
    let row = rvc_outbox::RowRef {
        product_id: id,
        product_version: version,
    };
    let n = crate::pipeline::set_status(db, &[row], to, Some(ProductStatus::Failed)).await?;
    Ok(n > 0)
}

/// A photo of a product's current version, with its product (what the reconcile checks on
/// photos read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentPhoto {
    pub product_id: Uuid,
    pub sku: String,
    pub version: i32,
    pub status: ProductStatus,
    pub ordinal: i16,
    pub object_key: Option<String>,
    pub point_id: Option<Uuid>,
    pub staged: bool,
}

/// Which photos of current versions of live (not archived) products [`current_photos`] lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhotoCheck {
    /// Products at images_stored, vectorized or indexed whose photo has no object key.
    MissingObjectKey,
    /// Indexed products whose photo has no vector point id.
    IndexedWithoutPoint,
    /// Photos with an object key.
    WithObjectKey,
    /// Photos of indexed products with a vector point id.
    IndexedWithPoint,
}

/// The photos `check` selects, by SKU and ordinal.
pub async fn current_photos<C: GenericClient>(
    db: &C,
    check: PhotoCheck,
) -> Result<Vec<CurrentPhoto>, StoreError> {
    let (filter, context) = match check {
        PhotoCheck::MissingObjectKey => (
            "p.status IN ('images_stored', 'vectorized', 'indexed') AND i.object_key IS NULL",
            "check photos without object key",
        ),
        PhotoCheck::IndexedWithoutPoint => (
            "p.status = 'indexed' AND i.point_id IS NULL",
            "check indexed photos without point",
        ),
        PhotoCheck::WithObjectKey => ("i.object_key IS NOT NULL", "photos with object keys"),
        PhotoCheck::IndexedWithPoint => (
            "p.status = 'indexed' AND i.point_id IS NOT NULL",
            "photos with points",
        ),
    };
    db.query(
        &format!(
            "SELECT p.id AS product_id, p.sku, p.version, p.status, i.ordinal, i.object_key,
                    i.point_id, i.staged_bytes IS NOT NULL AS staged
             FROM products p
             JOIN product_images i ON i.product_id = p.id AND i.version = p.version
             WHERE NOT p.archived AND {filter}
             ORDER BY p.sku, i.ordinal"
        ),
        &[],
    )
    .await
    .ctx(context)?
    .iter()
    .map(|r| {
        Ok(CurrentPhoto {
            product_id: r.try_get("product_id").ctx(context)?,
            sku: r.try_get("sku").ctx(context)?,
            version: r.try_get("version").ctx(context)?,
            status: crate::text_col(r, "status", context)?,
            ordinal: r.try_get("ordinal").ctx(context)?,
            object_key: r.try_get("object_key").ctx(context)?,
            point_id: r.try_get("point_id").ctx(context)?,
            staged: r.try_get("staged").ctx(context)?,
        })
    })
    .collect()
}

/// Every object key some photo row (of any version) refers to.
pub async fn referenced_object_keys<C: GenericClient>(db: &C) -> Result<Vec<String>, StoreError> {
    db.query(
        "SELECT DISTINCT object_key FROM product_images WHERE object_key IS NOT NULL",
        &[],
    )
    .await
    .ctx("referenced object keys")?
    .iter()
    .map(|r| Ok(r.try_get("object_key").ctx("referenced object keys")?))
    .collect()
}

/// A live product that is not indexed and has nothing queued for its current version (and
/// is not a failed product waiting on a dead row).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StuckProduct {
    pub product_id: Uuid,
    pub sku: String,
    pub version: i32,
    pub status: ProductStatus,
    /// Kinds of the done (and not cancelled) rows of the current version.
    pub done_kinds: Vec<OutboxKind>,
}

/// The stuck products, by SKU.
pub async fn stuck_products<C: GenericClient>(db: &C) -> Result<Vec<StuckProduct>, StoreError> {
    const CTX: &str = "check stuck products";
    db.query(
        "SELECT p.id AS product_id, p.sku, p.version, p.status,
                coalesce((SELECT array_agg(o.kind) FROM outbox o
                          WHERE o.product_id = p.id AND o.product_version = p.version
                            AND o.state = 'done'
                            -- a cancelled row is done without having run
                            AND NOT EXISTS (SELECT 1 FROM outbox_audit a
                                            WHERE a.event_id = o.event_id
                                              AND a.action = 'cancel')),
                         '{}') AS done_kinds
         FROM products p
         WHERE NOT p.archived AND p.status <> 'indexed'
           AND NOT EXISTS (SELECT 1 FROM outbox o
                           WHERE o.product_id = p.id AND o.product_version = p.version
                             AND o.state IN ('pending', 'leased'))
           AND NOT (p.status = 'failed' AND EXISTS (
                           SELECT 1 FROM outbox o
                           WHERE o.product_id = p.id AND o.product_version = p.version
                             AND o.state = 'dead'))
         ORDER BY p.sku",
        &[],
    )
    .await
    .ctx(CTX)?
    .iter()
    .map(|r| {
        Ok(StuckProduct {
            product_id: r.try_get("product_id").ctx(CTX)?,
            sku: r.try_get("sku").ctx(CTX)?,
            version: r.try_get("version").ctx(CTX)?,
            status: crate::text_col(r, "status", CTX)?,
            done_kinds: r
                .try_get::<_, Vec<String>>("done_kinds")
                .ctx(CTX)?
                .iter()
                .map(|k| k.parse().map_err(StoreError::Corrupt))
                .collect::<Result<_, _>>()?,
        })
    })
    .collect()
}
