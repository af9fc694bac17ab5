//! Errors of the maintenance library (the binary wraps them in `anyhow`).
use rvc_objects::ObjectStoreError;

#[derive(Debug, thiserror::Error)]
pub enum MaintenanceError {
    #[error(transparent)]
    Objects(#[from] ObjectStoreError),
    #[error(transparent)]
    Db(#[from] rvc_runtime::db::DbError),
    #[error("could not get a database connection: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error(transparent)]
    Outbox(#[from] rvc_outbox::OutboxError),
    #[error(transparent)]
    Store(#[from] rvc_store::StoreError),
    #[error(transparent)]
    Runtime(#[from] rvc_runtime::RuntimeError),
    #[error("invalid GC_SCHEDULE {schedule:?}: {reason}")]
    Schedule { schedule: String, reason: String },
}

pub(crate) use rvc_runtime::db::DbContext;
