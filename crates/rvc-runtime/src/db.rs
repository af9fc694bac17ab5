//! The one Postgres connection pool builder every binary uses (no TLS: the database is
//! reached on a private network or loopback).
use crate::args::DatabaseArgs;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use std::time::Duration;

/// The pool could not be built (the URL does not parse, or the pool settings are invalid).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PoolConfigError(String);

/// The pool `args` describe: `DATABASE_URL`, at most `DATABASE_POOL_SIZE` connections, and a
/// `get` that gives up after `DATABASE_POOL_WAIT_MS` ([`deadpool_postgres::PoolError::Timeout`]).
pub fn pool(args: &DatabaseArgs) -> Result<Pool, PoolConfigError> {
    build(args.url(), args.database_pool_size, Some(args.pool_wait()))
}

/// A pool on `url` of at most `max_size` connections (at least 1); `wait: None` lets `get`
/// wait for a connection without bound (tests and tools only).
pub fn build(url: &str, max_size: usize, wait: Option<Duration>) -> Result<Pool, PoolConfigError> {
    let cfg: tokio_postgres::Config = url
        .parse()
        .map_err(|e: tokio_postgres::Error| PoolConfigError(e.to_string()))?;
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
        .map_err(|e| PoolConfigError(format!("connection pool: {e}")))
}

/// A Postgres error with what was being done; every crate's error enum wraps it
/// (`Db(#[from] DbError)`), so `query(..).await.ctx("what")?` reads the same everywhere.
#[derive(Debug, thiserror::Error)]
#[error("database error during {context}: {source}")]
pub struct DbError {
    pub context: &'static str,
    #[source]
    pub source: tokio_postgres::Error,
}

/// Adds what was being done to a Postgres error ([`DbError`]).
pub trait DbContext<T> {
    fn ctx(self, context: &'static str) -> Result<T, DbError>;
}

impl<T> DbContext<T> for Result<T, tokio_postgres::Error> {
    fn ctx(self, context: &'static str) -> Result<T, DbError> {
        self.map_err(|source| DbError { context, source })
    }
}
