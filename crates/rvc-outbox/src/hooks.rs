//! What the queue tells its owner when rows finish.
//!
//! The engine moves only its own state (`outbox` rows: done, dead, the next step's row). What a
//! finished row means
//! for the product (its pipeline status) belongs to the pipeline, which lives beside the
//! products table: `rvc_store::pipeline::hooks()`. The engine calls these hooks inside the
//! same transaction that finishes the rows, so a row is never done while its product has not
//! moved, and a crash between the two cannot happen.
use crate::error::OutboxError;
use rvc_domain::OutboxKind;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tokio_postgres::Transaction;
use uuid::Uuid;

/// The product version one finished row was about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RowRef {
    pub product_id: Uuid,
    pub product_version: i32,
}

/// A hook's future (boxed so that the hooks can sit behind `dyn`).
pub type HookFuture<'a> = Pin<Box<dyn Future<Output = Result<(), OutboxError>> + Send + 'a>>;

/// Called by the engine inside the transaction that finishes rows of `kind`.
pub trait RowHooks: Send + Sync + 'static {
    /// `rows` just went `done` (the step's own writes are in `tx` too).
    fn done<'a>(
        &'a self,
        tx: &'a Transaction<'_>,
        kind: OutboxKind,
        rows: &'a [RowRef],
    ) -> HookFuture<'a>;

    /// `rows` just went `dead` (a permanent error, the retry window passed, or the lease
    /// expired `max_attempts` times).
    fn dead<'a>(
        &'a self,
        tx: &'a Transaction<'_>,
        kind: OutboxKind,
        rows: &'a [RowRef],
    ) -> HookFuture<'a>;

    /// After the transaction that made `rows` done has committed: for what may only be
    /// observed once it holds (metrics). Best effort: an error is logged, nothing retried.
    fn committed<'a>(
        &'a self,
        _db: &'a tokio_postgres::Client,
        _kind: OutboxKind,
        _rows: &'a [RowRef],
    ) -> HookFuture<'a> {
        Box::pin(async { Ok(()) })
    }
}

/// A queue with no owner to tell: the outbox's own tests and benchmarks.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoHooks;

impl RowHooks for NoHooks {
    fn done<'a>(
        &'a self,
        _: &'a Transaction<'_>,
        _: OutboxKind,
        _: &'a [RowRef],
    ) -> HookFuture<'a> {
        Box::pin(async { Ok(()) })
    }

    fn dead<'a>(
        &'a self,
        _: &'a Transaction<'_>,
        _: OutboxKind,
        _: &'a [RowRef],
    ) -> HookFuture<'a> {
        Box::pin(async { Ok(()) })
    }
}

/// [`NoHooks`] as the engine takes it.
pub fn none() -> Arc<dyn RowHooks> {
    Arc::new(NoHooks)
}
