//! The pipeline's side of the outbox: what a finished step means for its product.
//!
//! The outbox engine (`rvc-outbox`) is a generic queue: it moves its own rows and calls the
//! [`RowHooks`] it was given inside the finishing transaction. These hooks are where a
//! product's pipeline status moves, and [`set_status`] is the one function that moves it
//! (a version is born `registered` when ingest or archive writes it; every later change
//! comes through here).
use crate::{DbContext, StoreError};
use rvc_domain::{OutboxKind, ProductStatus};
use rvc_outbox::{HookFuture, OutboxError, RowHooks, RowRef};
use std::sync::Arc;
use tokio_postgres::{GenericClient, Transaction};
use uuid::Uuid;

/// The hooks every pipeline worker runs its outbox with.
pub fn hooks() -> Arc<dyn RowHooks> {
    Arc::new(PipelineHooks)
}

/// A done step leaves its product version at the step's status (`OutboxKind::status_when_done`);
/// a dead row of a pipeline step fails the version. Rows of an older version leave the
/// product alone (a newer version owns its status). A dead `embed` row (a model migration's)
/// leaves the product alone too: the product is fine, the migration waits.
#[derive(Debug, Clone, Copy, Default)]
pub struct PipelineHooks;

impl RowHooks for PipelineHooks {
    fn done<'a>(
        &'a self,
        tx: &'a Transaction<'_>,
        kind: OutboxKind,
        rows: &'a [RowRef],
    ) -> HookFuture<'a> {
        Box::pin(async move {
            if let Some(status) = kind.status_when_done() {
                set_status(tx, rows, status, None)
                    .await
                    .map_err(|e| hook_error("step done", e))?;
            }
            Ok(())
        })
    }

    fn dead<'a>(
        &'a self,
        tx: &'a Transaction<'_>,
        kind: OutboxKind,
        rows: &'a [RowRef],
    ) -> HookFuture<'a> {
        Box::pin(async move {
            if kind.is_pipeline_step() {
                set_status(tx, rows, ProductStatus::Failed, None)
                    .await
                    .map_err(|e| hook_error("step dead", e))?;
            }
            Ok(())
        })
    }

    /// When the step that leaves a version `indexed` has committed:
    /// `rvc_product_registered_to_indexed_seconds`, once per product version.
    fn committed<'a>(
        &'a self,
        db: &'a tokio_postgres::Client,
        kind: OutboxKind,
        rows: &'a [RowRef],
    ) -> HookFuture<'a> {
        Box::pin(async move {
            if kind.status_when_done() != Some(ProductStatus::Indexed) {
                return Ok(());
            }
            let ages = registered_ages(db, rows)
                .await
                .map_err(|e| hook_error("registered to indexed", e))?;
            let h = metrics::histogram!("rvc_product_registered_to_indexed_seconds");
            for secs in ages {
                h.record(secs.max(0.0));
            }
            Ok(())
        })
    }
}

/// Seconds since each version was registered: when its photos were written (the ingest
/// transaction), or for an archive version (no photos) when it was archived. A version with
/// neither is left out.
pub async fn registered_ages<C: GenericClient>(
    db: &C,
    rows: &[RowRef],
) -> Result<Vec<f64>, StoreError> {
    let ids: Vec<Uuid> = rows.iter().map(|r| r.product_id).collect();
    let versions: Vec<i32> = rows.iter().map(|r| r.product_version).collect();
    let rows = db
        .query(
            "SELECT extract(epoch FROM now() - coalesce(
                      (SELECT min(i.created_at) FROM product_images i
                        WHERE i.product_id = t.id AND i.version = t.version),
                      (SELECT p.archived_at FROM products p
                        WHERE p.id = t.id AND p.version = t.version AND p.archived)
                    ))::float8 AS age_secs
             FROM unnest($1::uuid[], $2::int[]) AS t(id, version)",
            &[&ids, &versions],
        )
        .await
        .ctx("registered ages")?;
    rows.iter()
        .filter_map(|r| r.try_get::<_, Option<f64>>("age_secs").transpose())
        .collect::<Result<_, _>>()
        .ctx("registered ages")
        .map_err(Into::into)
}

fn hook_error(what: &'static str, e: StoreError) -> OutboxError {
    OutboxError::Hook {
        what,
        source: Box::new(e),
    }
}

/// Moves each of `rows`' products to `to`, where the product is still at that version (and,
/// with `only_from`, only out of that status). Returns how many products moved.
pub async fn set_status<C: GenericClient>(
    db: &C,
    rows: &[RowRef],
    to: ProductStatus,
    only_from: Option<ProductStatus>,
) -> Result<u64, StoreError> {
    if rows.is_empty() {
        return Ok(0);
    }
    let ids: Vec<Uuid> = rows.iter().map(|r| r.product_id).collect();
    let versions: Vec<i32> = rows.iter().map(|r| r.product_version).collect();
    let from = only_from.map(ProductStatus::as_str);
    let n = db
        .execute(
            "UPDATE products p SET status = $3, updated_at = now()
             FROM unnest($1::uuid[], $2::int[]) AS t(id, version)
             WHERE p.id = t.id AND p.version = t.version
               AND ($4::text IS NULL OR p.status = $4)",
            &[&ids, &versions, &to.as_str(), &from],
        )
        .await
        .ctx("product status")?;
    Ok(n)
}
