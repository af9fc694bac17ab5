//! Products, their photos and their pipeline timeline.
use crate::{DbContext, StoreError};
use chrono::{DateTime, Utc};
use rvc_domain::{
    CategoryName, Currency, OutboxKind, OutboxState, Price, ProductName, ProductStatus, Sku,
    SniffedImage,
};
use rvc_outbox::NewOutboxRow;
use serde::Serialize;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::GenericClient;
use uuid::Uuid;

/// A photo as received, with what its header told us.
#[derive(Debug, Clone)]
pub struct StagedImage {
    pub bytes: Vec<u8>,
    pub meta: SniffedImage,
}

/// A validated product submission.
#[derive(Debug, Clone)]
pub struct NewProduct {
    pub sku: Sku,
    pub name: ProductName,
    pub category: CategoryName,
    pub price: Price,
    pub currency: Currency,
    pub images: Vec<StagedImage>,
    pub traceparent: Option<String>,
}

impl NewProduct {
    /// sha256 over the canonical fields and the ordered photo hashes: equal exactly when a
    /// re-submission changes nothing.
    pub fn content_hash(&self) -> String {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        for part in [
            self.sku.as_str(),
            self.name.as_str(),
            self.category.as_str(),
            &self.price.minor_units().to_string(),
            self.currency.as_str(),
        ] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part.as_bytes());
        }
        for img in &self.images {
            h.update(img.meta.sha256.as_bytes());
        }
        hex::encode(h.finalize())
    }
}

/// Where to fail on purpose inside [`ingest`] (tests prove the transaction is atomic).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailPoint {
    AfterProductWrite,
    AfterImages,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IngestOutcome {
    /// A new product or a new version: photos staged, `upload_images` enqueued.
    Accepted {
        product_id: Uuid,
        version: i32,
        event_id: Uuid,
        created: bool,
    },
    /// Same fields and photos as the current version: nothing written.
    Unchanged {
        product_id: Uuid,
        version: i32,
        status: ProductStatus,
    },
}

/// The id of category `name`, created when missing, without locking an existing category's
/// row: `ON CONFLICT DO UPDATE` would hold a row lock on it until the ingest transaction
/// (photo bytes included) commits, so ingests of one category would run one at a time. Only
/// two ingests creating the same new category wait for each other, once.
async fn category_id<C: GenericClient>(tx: &C, name: &str) -> Result<i64, StoreError> {
    for _ in 0..3 {
        let row = tx
            .query_typed_opt(
                "WITH existing AS (SELECT id FROM categories WHERE name = $1),
                      created AS (INSERT INTO categories (name)
                                  SELECT $1 WHERE NOT EXISTS (SELECT 1 FROM existing)
                                  ON CONFLICT (name) DO NOTHING RETURNING id)
                 SELECT id FROM existing UNION ALL SELECT id FROM created",
                &[(&name, Type::TEXT)],
            )
            .await
            .ctx("category")?;
        if let Some(row) = row {
            return Ok(row.try_get("id").ctx("category")?);
        }
        // Another transaction created it after this statement's snapshot: a new statement
        // sees it.
    }
    let row = tx
        .query_one("SELECT id FROM categories WHERE name = $1", &[&name])
        .await
        .ctx("category")?;
    row.try_get("id").ctx("category").map_err(Into::into)
}

/// Writes a submission inside `tx`: category, product (new version when anything changed),
/// staged photos and the `upload_images` outbox row. The caller commits.
///
/// Every statement of the common path (a new SKU) is typed, so none needs a prepare round
/// trip, and the photo rows go out pipelined: BEGIN, category, product, photos, outbox row,
/// COMMIT are six round trips whatever the number of photos (issue 17, item 1; the measured
/// effect is in docs/benchmarks.md).
pub async fn ingest<C: GenericClient>(
    tx: &C,
    p: &NewProduct,
    fail: Option<FailPoint>,
) -> Result<IngestOutcome, StoreError> {
    let hash = p.content_hash();
    let category_id = category_id(tx, p.category.as_str()).await?;

    let new_id = Uuid::now_v7();
    let inserted = tx
        .query_typed_opt(
            "INSERT INTO products (id, sku, name, category_id, price_minor, currency, content_hash)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (sku) DO NOTHING RETURNING id, version",
            &[
                (&new_id, Type::UUID),
                (&p.sku.as_str(), Type::TEXT),
                (&p.name.as_str(), Type::TEXT),
                (&category_id, Type::INT8),
                (&p.price.minor_units(), Type::INT8),
                (&p.currency.as_str(), Type::TEXT),
                (&hash, Type::TEXT),
            ],
        )
        .await
        .ctx("insert product")?;

    let (product_id, version, created) = match inserted {
        Some(row) => (
            row.try_get::<_, Uuid>("id").ctx("insert product")?,
            row.try_get::<_, i32>("version").ctx("insert product")?,
            true,
        ),
        None => {
            // Existing SKU: lock it, and compare with what we were sent.
            let row = tx
                .query_one(
                    "SELECT id, version, content_hash, status, archived FROM products
                     WHERE sku = $1 FOR UPDATE",
                    &[&p.sku.as_str()],
                )
                .await
                .ctx("lock product")?;
            let id: Uuid = row.try_get("id").ctx("lock product")?;
            let version: i32 = row.try_get("version").ctx("lock product")?;
            let old_hash: String = row.try_get("content_hash").ctx("lock product")?;
            let status: String = row.try_get("status").ctx("lock product")?;
            let archived: bool = row.try_get("archived").ctx("lock product")?;
            if old_hash == hash && !archived {
                let status = status.parse().map_err(|e: String| StoreError::Corrupt(e))?;
                return Ok(IngestOutcome::Unchanged {
                    product_id: id,
                    version,
                    status,
                });
            }
            let version: i32 = tx
                .query_one(
                    "UPDATE products SET name = $2, category_id = $3, price_minor = $4,
                            currency = $5, content_hash = $6, version = version + 1,
                            status = 'registered', archived = FALSE, archived_at = NULL,
                            updated_at = now()
                     WHERE id = $1 RETURNING version",
                    &[
                        &id,
                        &p.name.as_str(),
                        &category_id,
                        &p.price.minor_units(),
                        &p.currency.as_str(),
                        &hash,
                    ],
                )
                .await
                .ctx("new product version")?
                .try_get("version")
                .ctx("new product version")?;
            (id, version, false)
        }
    };
    if fail == Some(FailPoint::AfterProductWrite) {
        return Err(StoreError::InjectedFault(FailPoint::AfterProductWrite));
    }

    // One row per photo, all sent before the first answer is awaited (pipelined).
    let mut rows = Vec::with_capacity(p.images.len());
    for (i, img) in p.images.iter().enumerate() {
        let ordinal =
            i16::try_from(i).map_err(|_| StoreError::Corrupt("too many images".into()))?;
        let size = i32::try_from(img.bytes.len())
            .map_err(|_| StoreError::Corrupt("image larger than 2 GiB".into()))?;
        let (w, h) = (
            i32::try_from(img.meta.width).unwrap_or(i32::MAX),
            i32::try_from(img.meta.height).unwrap_or(i32::MAX),
        );
        rows.push((ordinal, img, img.meta.format.content_type(), w, h, size));
    }
    let params: Vec<[(&(dyn ToSql + Sync), Type); 9]> = rows
        .iter()
        .map(|(ordinal, img, content_type, w, h, size)| {
            [
                (&product_id as &(dyn ToSql + Sync), Type::UUID),
                (&version, Type::INT4),
                (ordinal, Type::INT2),
                (&img.meta.sha256, Type::TEXT),
                (content_type, Type::TEXT),
                (w, Type::INT4),
                (h, Type::INT4),
                (size, Type::INT4),
                (&img.bytes, Type::BYTEA),
            ]
        })
        .collect();
    let inserts = params.iter().map(|params| {
        tx.execute_typed(
            "INSERT INTO product_images (product_id, version, ordinal, sha256, content_type,
                                         width, height, size_bytes, staged_bytes)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            params,
        )
    });
    for staged in futures::future::join_all(inserts).await {
        staged.ctx("stage image")?;
    }
    if fail == Some(FailPoint::AfterImages) {
        return Err(StoreError::InjectedFault(FailPoint::AfterImages));
    }

    let mut row = NewOutboxRow::new(product_id, version, OutboxKind::UploadImages);
    row.traceparent = p.traceparent.clone();
    let event_id = rvc_outbox::enqueue(tx, &row).await?;
    Ok(IngestOutcome::Accepted {
        product_id,
        version,
        event_id,
        created,
    })
}

/// A photo of the current version, as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ImageView {
    pub ordinal: i16,
    pub sha256: String,
    pub content_type: String,
    pub width: i32,
    pub height: i32,
    pub size_bytes: i32,
    /// Still waiting in Postgres for the uploader.
    pub staged: bool,
    pub object_key: Option<String>,
    pub point_id: Option<Uuid>,
    pub model_version: Option<String>,
}

/// One outbox row of the product: a step of its pipeline.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TimelineEntry {
    pub event_id: Uuid,
    pub product_version: i32,
    #[schema(value_type = String, example = "vectorize")]
    pub kind: OutboxKind,
    #[schema(value_type = String, example = "done")]
    pub state: OutboxState,
    pub attempts: i32,
    pub max_attempts: i32,
    pub last_error: Option<String>,
    pub next_attempt_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ProductView {
    pub id: Uuid,
    pub sku: String,
    pub name: String,
    pub category: String,
    pub price_minor: i64,
    pub price: String,
    pub currency: String,
    pub version: i32,
    #[schema(value_type = String, example = "indexed")]
    pub status: ProductStatus,
    pub archived: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub images: Vec<ImageView>,
    pub timeline: Vec<TimelineEntry>,
}

const PRODUCT_SELECT: &str =
    "SELECT p.id, p.sku, p.name, c.name AS category, p.price_minor, p.currency, p.version,
            p.status, p.archived, p.created_at, p.updated_at
     FROM products p JOIN categories c ON c.id = p.category_id";

/// Which product to look up.
#[derive(Debug, Clone)]
pub enum ProductRef {
    Id(Uuid),
    Sku(String),
}

impl ProductRef {
    /// A UUID is an id, anything else a SKU.
    pub fn parse(s: &str) -> Self {
        match Uuid::parse_str(s) {
            Ok(id) => Self::Id(id),
            Err(_) => Self::Sku(s.to_owned()),
        }
    }
}

pub async fn find<C: GenericClient>(
    db: &C,
    which: &ProductRef,
) -> Result<Option<ProductView>, StoreError> {
    let row = match which {
        ProductRef::Id(id) => db
            .query_opt(&format!("{PRODUCT_SELECT} WHERE p.id = $1"), &[id])
            .await
            .ctx("get product")?,
        ProductRef::Sku(sku) => db
            .query_opt(&format!("{PRODUCT_SELECT} WHERE p.sku = $1"), &[sku])
            .await
            .ctx("get product by sku")?,
    };
    let Some(row) = row else { return Ok(None) };
    const CTX: &str = "get product";
    let id: Uuid = row.try_get("id").ctx(CTX)?;
    let version: i32 = row.try_get("version").ctx(CTX)?;
    let price_minor: i64 = row.try_get("price_minor").ctx(CTX)?;
    let images = db
        .query(
            "SELECT ordinal, sha256, content_type, width, height, size_bytes,
                    staged_bytes IS NOT NULL AS staged, object_key, point_id, model_version
             FROM product_images WHERE product_id = $1 AND version = $2 ORDER BY ordinal",
            &[&id, &version],
        )
        .await
        .ctx("product images")?
        .iter()
        .map(|r| {
            const CTX: &str = "product images";
            Ok(ImageView {
                ordinal: r.try_get("ordinal").ctx(CTX)?,
                sha256: r.try_get("sha256").ctx(CTX)?,
                content_type: r.try_get("content_type").ctx(CTX)?,
                width: r.try_get("width").ctx(CTX)?,
                height: r.try_get("height").ctx(CTX)?,
                size_bytes: r.try_get("size_bytes").ctx(CTX)?,
                staged: r.try_get("staged").ctx(CTX)?,
                object_key: r.try_get("object_key").ctx(CTX)?,
                point_id: r.try_get("point_id").ctx(CTX)?,
                model_version: r.try_get("model_version").ctx(CTX)?,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok(Some(ProductView {
        id,
        sku: row.try_get("sku").ctx(CTX)?,
        name: row.try_get("name").ctx(CTX)?,
        category: row.try_get("category").ctx(CTX)?,
        price_minor,
        price: Price::from_minor(price_minor)
            .map(|p| p.to_string())
            .unwrap_or_default(),
        currency: row.try_get::<_, String>("currency").ctx(CTX)?,
        version,
        status: crate::text_col(&row, "status", CTX)?,
        archived: row.try_get("archived").ctx(CTX)?,
        created_at: row.try_get("created_at").ctx(CTX)?,
        updated_at: row.try_get("updated_at").ctx(CTX)?,
        images,
        timeline: timeline(db, id).await?,
    }))
}

/// Every outbox row of a product, oldest first.
pub async fn timeline<C: GenericClient>(
    db: &C,
    product_id: Uuid,
) -> Result<Vec<TimelineEntry>, StoreError> {
    const CTX: &str = "timeline";
    db.query(
        "SELECT event_id, product_version, kind, state, attempts, max_attempts, last_error,
                next_attempt_at, created_at, updated_at, completed_at
         FROM outbox WHERE product_id = $1 ORDER BY created_at, event_id",
        &[&product_id],
    )
    .await
    .ctx(CTX)?
    .iter()
    .map(|r| {
        Ok(TimelineEntry {
            event_id: r.try_get("event_id").ctx(CTX)?,
            product_version: r.try_get("product_version").ctx(CTX)?,
            kind: crate::text_col(r, "kind", CTX)?,
            state: crate::text_col(r, "state", CTX)?,
            attempts: r.try_get("attempts").ctx(CTX)?,
            max_attempts: r.try_get("max_attempts").ctx(CTX)?,
            last_error: r.try_get("last_error").ctx(CTX)?,
            next_attempt_at: r.try_get("next_attempt_at").ctx(CTX)?,
            created_at: r.try_get("created_at").ctx(CTX)?,
            updated_at: r.try_get("updated_at").ctx(CTX)?,
            completed_at: r.try_get("completed_at").ctx(CTX)?,
        })
    })
    .collect()
}

/// A failed attempt as public responses show it: a stable code and a short message. The
/// full error (which may name hosts, SQL or driver details) stays in `outbox.last_error`, the
/// workers' logs and `rvcctl outbox show`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct StepError {
    /// `<step>_retrying` (will be retried automatically) or `<step>_failed` (given up; an
    /// operator replays it), where step is `upload`, `vectorize` or `publish`.
    pub code: String,
    pub message: String,
}

/// One pipeline step as public responses show it (no internal error text).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PublicTimelineEntry {
    pub event_id: Uuid,
    pub product_version: i32,
    #[schema(value_type = String, example = "vectorize")]
    pub kind: OutboxKind,
    #[schema(value_type = String, example = "done")]
    pub state: OutboxState,
    pub attempts: i32,
    pub max_attempts: i32,
    /// Present when the last attempt failed.
    pub error: Option<StepError>,
    pub next_attempt_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

impl StepError {
    /// The public form of a step's `last_error` (whose text is dropped).
    pub fn public(kind: OutboxKind, state: OutboxState) -> Self {
        let step = match kind {
            OutboxKind::UploadImages => "upload",
            OutboxKind::Vectorize => "vectorize",
            OutboxKind::Publish => "publish",
            _ => "step",
        };
        let what = match step {
            "upload" => "storing the photos",
            "vectorize" => "computing the photos' embeddings",
            "publish" => "publishing the product event",
            _ => "this step",
        };
        if state == OutboxState::Dead {
            Self {
                code: format!("{step}_failed"),
                message: format!("{what} failed and was given up; an operator has to replay it"),
            }
        } else {
            Self {
                code: format!("{step}_retrying"),
                message: format!("{what} failed; it is retried automatically"),
            }
        }
    }
}

impl From<TimelineEntry> for PublicTimelineEntry {
    fn from(t: TimelineEntry) -> Self {
        let failed = t.last_error.is_some() && t.state != OutboxState::Done;
        Self {
            error: failed.then(|| StepError::public(t.kind, t.state)),
            event_id: t.event_id,
            product_version: t.product_version,
            kind: t.kind,
            state: t.state,
            attempts: t.attempts,
            max_attempts: t.max_attempts,
            next_attempt_at: t.next_attempt_at,
            created_at: t.created_at,
            updated_at: t.updated_at,
            completed_at: t.completed_at,
        }
    }
}

/// A product as public APIs show it: [`ProductView`] with a redacted timeline.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PublicProductView {
    pub id: Uuid,
    pub sku: String,
    pub name: String,
    pub category: String,
    pub price_minor: i64,
    pub price: String,
    pub currency: String,
    pub version: i32,
    #[schema(value_type = String, example = "indexed")]
    pub status: ProductStatus,
    pub archived: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub images: Vec<ImageView>,
    pub timeline: Vec<PublicTimelineEntry>,
}

impl From<ProductView> for PublicProductView {
    fn from(p: ProductView) -> Self {
        Self {
            id: p.id,
            sku: p.sku,
            name: p.name,
            category: p.category,
            price_minor: p.price_minor,
            price: p.price,
            currency: p.currency,
            version: p.version,
            status: p.status,
            archived: p.archived,
            created_at: p.created_at,
            updated_at: p.updated_at,
            images: p.images,
            timeline: p.timeline.into_iter().map(Into::into).collect(),
        }
    }
}
