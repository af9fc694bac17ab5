//! Postgres access: the pool, the embedded migrations and the product repository.

pub mod api_keys;
pub mod archive;
pub mod catalog;
pub mod idempotency;
pub mod migrations;
pub mod models;
pub mod objects;
pub mod operator;
pub mod pipeline;
pub mod points;
pub mod products;
pub mod publish;
pub mod recognizable;
pub mod retention;

pub use deadpool_postgres::Pool as PgPool;
use deadpool_postgres::Pool;
use std::str::FromStr;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("invalid DATABASE_URL: {0}")]
    Config(String),
    #[error(transparent)]
    Db(#[from] rvc_runtime::db::DbError),
    #[error("could not get a database connection: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("migration failed: {0}")]
    Migration(String),
    #[error(transparent)]
    Outbox(#[from] rvc_outbox::OutboxError),
    #[error("fault injected at {0:?}")]
    InjectedFault(products::FailPoint),
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
    /// The request is refused as the data stands; the message says why and what to do.
    #[error("{0}")]
    Refused(String),
}

impl From<rvc_runtime::db::PoolConfigError> for StoreError {
    fn from(e: rvc_runtime::db::PoolConfigError) -> Self {
        Self::Config(e.to_string())
    }
}

pub(crate) use rvc_runtime::db::DbContext;

/// Reads a text column into a domain type parsed from text (`ProductStatus`, `OutboxKind`,
/// `OutboxState`, ...): a type mismatch or an unknown value is an error naming `ctx` and the
/// column, never a panic.
pub(crate) fn text_col<T>(
    row: &tokio_postgres::Row,
    col: &str,
    ctx: &'static str,
) -> Result<T, StoreError>
where
    T: FromStr<Err = String>,
{
    let text: String = row.try_get(col).ctx(ctx)?;
    text.parse()
        .map_err(|e: String| StoreError::Corrupt(format!("{ctx}: column {col}: {e}")))
}

/// Parses a `postgres://` URL (or key=value string).
pub fn pg_config(url: &str) -> Result<tokio_postgres::Config, StoreError> {
    tokio_postgres::Config::from_str(url).map_err(|e| StoreError::Config(e.to_string()))
}

/// A pool of at most `max_size` connections whose `get` waits without bound (tests and
/// tools; binaries build theirs from their `DatabaseArgs` with [`rvc_runtime::db::pool`]).
pub fn pool(url: &str, max_size: usize) -> Result<Pool, StoreError> {
    Ok(rvc_runtime::db::build(url, max_size, None)?)
}

/// `SELECT 1` through the pool.
pub async fn ping(pool: &Pool) -> Result<(), StoreError> {
    let client = pool.get().await?;
    client.execute("SELECT 1", &[]).await.ctx("ping")?;
    Ok(())
}
