//! The guaranteed invalidation path: applies the rows the `products` trigger writes to
//! `cache_invalidations` (in the transaction of every change) as Redis tombstones, then
//! deletes them — only up to the revision applied, so a newer change keeps its row.
//!
//! Idempotent and crash-safe: a row is deleted only after Redis acknowledged its tombstone,
//! so a process killed at any point leaves the row for the next pass (of this process after a
//! restart, or of another replica). Woken by `NOTIFY rvc_cache_invalidate` (sent at commit by
//! the trigger) and by readers that saw a cache error; polling is the safety net.
use crate::reader::Catalog;
use futures::StreamExt;
use rvc_store::catalog::{ack_invalidations, pending_invalidations};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_postgres::AsyncMessage;
use tokio_util::sync::CancellationToken;

pub const NOTIFY_CHANNEL: &str = "rvc_cache_invalidate";

#[derive(Debug, Clone)]
pub struct InvalidatorConfig {
    /// Rows per pass.
    pub batch: i64,
    /// Idle poll interval (NOTIFY usually wakes the loop within milliseconds).
    pub poll_interval: Duration,
}

impl Default for InvalidatorConfig {
    fn default() -> Self {
        Self {
            batch: 500,
            poll_interval: Duration::from_millis(500),
        }
    }
}

/// Applies one batch; returns how many rows it applied.
pub async fn run_pass(catalog: &Catalog, batch: i64) -> Result<usize, String> {
    let client = catalog
        .pool()
        .get()
        .await
        .map_err(|e| format!("database: {e}"))?;
    let rows = pending_invalidations(&**client, batch)
        .await
        .map_err(|e| e.to_string())?;
    metrics::gauge!("rvc_catalog_invalidation_batch").set(rows.len() as f64);
    if rows.is_empty() {
        return Ok(0);
    }
    let items: Vec<(uuid::Uuid, i64)> = rows.iter().map(|r| (r.product_id, r.revision)).collect();
    catalog
        .cache()
        .invalidate_many(&items)
        .await
        .map_err(|e| format!("redis: {e}"))?;
    ack_invalidations(&**client, &rows)
        .await
        .map_err(|e| e.to_string())?;
    metrics::counter!("rvc_catalog_invalidations_total").increment(rows.len() as u64);
    Ok(rows.len())
}

/// Runs passes until `shutdown`. `pg` is used for the LISTEN connection.
pub async fn run(
    catalog: Arc<Catalog>,
    pg: tokio_postgres::Config,
    cfg: InvalidatorConfig,
    shutdown: CancellationToken,
) {
    let wake = catalog.invalidator_wake();
    let listener = spawn_listener(pg, wake.clone(), shutdown.clone());
    let mut backoff = Duration::from_millis(50);
    tracing::info!("cache invalidator started");
    while !shutdown.is_cancelled() {
        let gen = catalog.generation();
        match run_pass(&catalog, cfg.batch).await {
            Ok(n) if i64::try_from(n).unwrap_or(i64::MAX) >= cfg.batch => {
                backoff = Duration::from_millis(50);
                continue;
            }
            Ok(_) => {
                backoff = Duration::from_millis(50);
                catalog.mark_drained(gen);
                tokio::select! {
                    _ = wake.notified() => {}
                    _ = tokio::time::sleep(cfg.poll_interval) => {}
                    _ = shutdown.cancelled() => {}
                }
            }
            Err(e) => {
                metrics::counter!("rvc_catalog_invalidation_errors_total").increment(1);
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64,
                    "cache invalidation pass failed; rows stay queued");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.cancelled() => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
    let _ = listener.await;
    tracing::info!("cache invalidator stopped");
}

fn spawn_listener(
    config: tokio_postgres::Config,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(200);
        while !shutdown.is_cancelled() {
            let result = listen_once(&config, &wake, &shutdown).await;
            if shutdown.is_cancelled() {
                break;
            }
            let why = match result {
                Ok(()) => "connection closed".to_owned(),
                Err(e) => e.to_string(),
            };
            tracing::warn!(error = %why, retry_in_ms = backoff.as_millis() as u64,
                "LISTEN connection lost; polling covers the gap");
            wake.notify_one();
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = shutdown.cancelled() => break,
            }
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
    })
}

async fn listen_once(
    config: &tokio_postgres::Config,
    wake: &Notify,
    shutdown: &CancellationToken,
) -> Result<(), tokio_postgres::Error> {
    let (client, mut connection) = config.connect(tokio_postgres::NoTls).await?;
    let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
    let sql = format!("LISTEN {NOTIFY_CHANNEL}");
    let listen = client.batch_execute(&sql);
    tokio::pin!(listen);
    // drive the connection while LISTEN runs
    loop {
        tokio::select! {
            r = &mut listen => { r?; break; }
            m = messages.next() => match m {
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e),
                None => return Ok(()),
            }
        }
    }
    wake.notify_one();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            m = messages.next() => match m {
                Some(Ok(AsyncMessage::Notification(_))) => wake.notify_one(),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e),
                None => return Ok(()),
            }
        }
    }
}
