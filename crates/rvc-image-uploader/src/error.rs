//! Errors of the uploader library (the binary wraps them in `anyhow`).
use rvc_objects::ObjectStoreError;

#[derive(Debug, thiserror::Error)]
pub enum UploaderError {
    #[error(transparent)]
    Objects(#[from] ObjectStoreError),
    #[error("database error during {context}: {source}")]
    Db {
        context: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("could not get a database connection: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error(transparent)]
    Outbox(#[from] rvc_outbox::OutboxError),
    #[error(transparent)]
    Store(#[from] rvc_store::StoreError),
    #[error("invalid GC_SCHEDULE {schedule:?}: {reason}")]
    Schedule { schedule: String, reason: String },
}

pub(crate) trait DbContext<T> {
    fn ctx(self, context: &'static str) -> Result<T, UploaderError>;
}

impl<T> DbContext<T> for Result<T, tokio_postgres::Error> {
    fn ctx(self, context: &'static str) -> Result<T, UploaderError> {
        self.map_err(|source| UploaderError::Db { context, source })
    }
}
