//! The SQL in `migrations/`, embedded at build time and applied with refinery.
use crate::{pg_config, DbContext, StoreError};

mod embedded {
    refinery::embed_migrations!("../../migrations");
}

/// Applies every pending migration; returns the versions applied now.
pub async fn run(url: &str) -> Result<Vec<i32>, StoreError> {
    let cfg = pg_config(url)?;
    let (mut client, conn) = cfg
        .connect(tokio_postgres::NoTls)
        .await
        .ctx("connect for migrations")?;
    let driver = tokio::spawn(conn);
    let report = embedded::migrations::runner()
        .run_async(&mut client)
        .await
        .map_err(|e| StoreError::Migration(e.to_string()))?;
    drop(client);
    let _ = driver.await;
    let applied: Vec<i32> = report
        .applied_migrations()
        .iter()
        .map(|m| m.version())
        .collect();
    for m in report.applied_migrations() {
        tracing::info!(version = m.version(), name = m.name(), "migration applied");
    }
    Ok(applied)
}

/// The newest migration compiled into this binary.
pub fn latest_version() -> i32 {
    embedded::migrations::runner()
        .get_migrations()
        .iter()
        .map(|m| m.version())
        .max()
        .unwrap_or(0)
}

/// Whether the database has every migration this binary knows (readiness).
pub async fn is_current(pool: &deadpool_postgres::Pool) -> Result<bool, StoreError> {
    let client = pool.get().await?;
    let exists: bool = client
        .query_one(
            "SELECT to_regclass('refinery_schema_history') IS NOT NULL AS present",
            &[],
        )
        .await
        .ctx("migration table")?
        .try_get("present")
        .ctx("migration table")?;
    if !exists {
        return Ok(false);
    }
    let v: Option<i32> = client
        .query_one(
            "SELECT max(version) AS version FROM refinery_schema_history",
            &[],
        )
        .await
        .ctx("migration version")?
        .try_get("version")
        .ctx("migration version")?;
    Ok(v.unwrap_or(0) >= latest_version())
}
