//! The outbox side of a recognition-model migration: `embed` rows (one per product, payload
//! `{"model_version": …}`), enqueued in bulk when a migration starts and one by one when a
//! step finds a product that still needs the building model's points; and their counts, which
//! are the migration's progress.
use crate::error::{DbContext, OutboxError};
use crate::queue::notify;
use rvc_domain::OutboxKind;
use tokio_postgres::GenericClient;
use uuid::Uuid;

/// The payload field of an `embed` row that names the model it builds.
pub const MODEL_VERSION_KEY: &str = "model_version";

/// The model an `embed` row builds points for.
pub fn embed_model(payload: &serde_json::Value) -> Option<&str> {
    payload
        .get(MODEL_VERSION_KEY)
        .and_then(serde_json::Value::as_str)
}

/// Enqueues one `embed` row for `model_version` per product that is not archived (at its
/// current version) inside the caller's transaction. Returns how many.
pub async fn enqueue_backfill<C: GenericClient>(
    db: &C,
    model_version: &str,
) -> Result<u64, OutboxError> {
    let n = db
        .execute(
            "INSERT INTO outbox (event_id, product_id, product_version, kind, payload)
             SELECT gen_random_uuid(), id, version, $1, jsonb_build_object($2::text, $3::text)
             FROM products WHERE NOT archived",
            &[
                &OutboxKind::Embed.as_str(),
                &MODEL_VERSION_KEY,
                &model_version,
            ],
        )
        .await
        .ctx("enqueue embed backfill")?;
    notify(db, OutboxKind::Embed).await?;
    Ok(n)
}

/// Counts of a model's `embed` rows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EmbedCounts {
    pub pending: i64,
    pub leased: i64,
    pub done: i64,
    pub dead: i64,
    /// Rows completed in the last five minutes (the rate behind an ETA).
    pub done_last_5m: i64,
}

impl EmbedCounts {
    pub fn total(&self) -> i64 {
        self.pending + self.leased + self.done + self.dead
    }

    /// Rows that still have to run (a dead row counts: it holds the migration until it is
    /// replayed or cancelled).
    pub fn outstanding(&self) -> i64 {
        self.pending + self.leased + self.dead
    }
}

/// The `embed` rows of `model_version` by state.
pub async fn counts<C: GenericClient>(
    db: &C,
    model_version: &str,
) -> Result<EmbedCounts, OutboxError> {
    let r = db
        .query_one(
            "SELECT count(*) FILTER (WHERE state = 'pending') AS pending,
                    count(*) FILTER (WHERE state = 'leased') AS leased,
                    count(*) FILTER (WHERE state = 'done') AS done,
                    count(*) FILTER (WHERE state = 'dead') AS dead,
                    count(*) FILTER (WHERE state = 'done'
                                       AND completed_at > now() - interval '5 minutes') AS recent
             FROM outbox WHERE kind = $1 AND payload ->> $2 = $3",
            &[
                &OutboxKind::Embed.as_str(),
                &MODEL_VERSION_KEY,
                &model_version,
            ],
        )
        .await
        .ctx("count embed rows")?;
    Ok(EmbedCounts {
        pending: r.try_get("pending").ctx("count embed rows")?,
        leased: r.try_get("leased").ctx("count embed rows")?,
        done: r.try_get("done").ctx("count embed rows")?,
        dead: r.try_get("dead").ctx("count embed rows")?,
        done_last_5m: r.try_get("recent").ctx("count embed rows")?,
    })
}

/// Enqueues one `embed` row for a product version (a step that could not write the building
/// model's points hands the product to the migration's worker instead).
pub async fn enqueue_one<C: GenericClient>(
    db: &C,
    product_id: Uuid,
    version: i32,
    model_version: &str,
) -> Result<Uuid, OutboxError> {
    let mut row = crate::NewOutboxRow::new(product_id, version, OutboxKind::Embed);
    row.payload = serde_json::json!({ MODEL_VERSION_KEY: model_version });
    crate::enqueue(db, &row).await
}
