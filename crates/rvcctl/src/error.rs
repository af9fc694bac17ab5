//! Errors of `rvcctl` and the exit code each maps to.
//!
//! Messages are written for an operator at 3 a.m.: each says what happened and what to do
//! next (either in the message itself or in [`CtlError::hint`]).

/// Everything a command can fail with.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    /// Bad arguments or filters (exit 2).
    #[error("{0}")]
    Usage(String),
    /// An id, SKU or event that does not exist (exit 2).
    #[error("{0}")]
    NotFound(String),
    /// The request is understood but refused, nothing was changed (exit 1).
    #[error("{0}")]
    Refused(String),
    /// Drift found and not (fully) repaired (exit 1).
    #[error("{0}")]
    Drift(String),
    #[error(transparent)]
    Store(#[from] rvc_store::StoreError),
    #[error(transparent)]
    Outbox(#[from] rvc_outbox::OutboxError),
    #[error(transparent)]
    Db(#[from] rvc_runtime::db::DbError),
    #[error("could not get a database connection: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("{context}: {source}")]
    Io {
        context: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("could not encode the output as JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// An external check (object store, vector index) failed.
    #[error("{0}")]
    Check(#[from] crate::reconcile::CheckError),
}

impl CtlError {
    /// 0 ok, 1 failure, 2 usage.
    pub fn exit_code(&self) -> u8 {
        match self {
            CtlError::Usage(_) | CtlError::NotFound(_) => 2,
            _ => 1,
        }
    }

    /// What to do next, for errors whose message does not already say it.
    pub fn hint(&self) -> Option<&'static str> {
        const DB: &str =
            "check DATABASE_URL (or --database-url) and that Postgres is up: `pg_isready -h HOST`";
        match self {
            CtlError::Store(
                rvc_store::StoreError::Migration(_)
                | rvc_store::StoreError::Db(_)
                | rvc_store::StoreError::Pool(_),
            )
            | CtlError::Store(rvc_store::StoreError::Outbox(_))
            | CtlError::Outbox(_)
            | CtlError::Db(_)
            | CtlError::Pool(_) => Some(DB),
            CtlError::Store(rvc_store::StoreError::Config(_)) => {
                Some("DATABASE_URL must look like postgres://USER[:PASSWORD]@HOST:PORT/DB")
            }
            CtlError::Io { .. } => Some("re-run the command; nothing was changed"),
            CtlError::Check(_) => Some(
                "the external system did not answer; check it is up, or re-run without that check",
            ),
            _ => None,
        }
    }
}

pub(crate) use rvc_runtime::db::DbContext;
