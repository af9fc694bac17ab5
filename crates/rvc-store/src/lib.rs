//! Postgres access: the pool, the embedded migrations and the product repository.

pub mod api_keys;
pub mod catalog;
pub mod migrations;
pub mod products;
pub mod recognizable;
pub mod retention;

pub use deadpool_postgres::Pool as PgPool;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use std::str::FromStr;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("invalid DATABASE_URL: {0}")]
    Config(String),
    #[error("database error during {context}: {source}")]
    Db {
        context: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
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
}

pub(crate) trait DbContext<T> {
    fn ctx(self, context: &'static str) -> Result<T, StoreError>;
}

impl<T> DbContext<T> for Result<T, tokio_postgres::Error> {
    fn ctx(self, context: &'static str) -> Result<T, StoreError> {
        self.map_err(|source| StoreError::Db { context, source })
    }
}

/// Parses a `postgres://` URL (or key=value string).
pub fn pg_config(url: &str) -> Result<tokio_postgres::Config, StoreError> {
    tokio_postgres::Config::from_str(url).map_err(|e| StoreError::Config(e.to_string()))
}

/// A connection pool (no TLS: the database is reached on a private network or loopback).
pub fn pool(url: &str, max_size: usize) -> Result<Pool, StoreError> {
    build_pool(url, max_size, None)
}

/// [`pool`] whose `get` gives up after `wait` when every connection is taken
/// ([`deadpool_postgres::PoolError::Timeout`]) instead of queueing without bound.
pub fn pool_with_wait(
    url: &str,
    max_size: usize,
    wait: std::time::Duration,
) -> Result<Pool, StoreError> {
    build_pool(url, max_size, Some(wait))
}

fn build_pool(
    url: &str,
    max_size: usize,
    wait: Option<std::time::Duration>,
) -> Result<Pool, StoreError> {
    let cfg = pg_config(url)?;
    let mgr = Manager::from_config(
        cfg,
        tokio_postgres::NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(mgr)
        .max_size(max_size.max(1))
        .wait_timeout(wait)
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()
        .map_err(|e| StoreError::Config(e.to_string()))
}

/// `SELECT 1` through the pool.
pub async fn ping(pool: &Pool) -> Result<(), StoreError> {
    let client = pool.get().await?;
    client.execute("SELECT 1", &[]).await.ctx("ping")?;
    Ok(())
}
