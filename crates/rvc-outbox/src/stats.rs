//! Outbox gauges: rows by kind × state and the age of the oldest claimable row.
use crate::error::{text_col, DbContext, OutboxError};
use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use rvc_domain::{OutboxKind, OutboxState};
use serde::Serialize;
use std::time::Duration;
use tokio_postgres::GenericClient;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct KindStateCount {
    pub kind: OutboxKind,
    pub state: OutboxState,
    pub rows: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct OutboxStats {
    pub counts: Vec<KindStateCount>,
    /// Per kind: seconds since the oldest claimable row became claimable.
    pub oldest_claimable_secs: Vec<(OutboxKind, f64)>,
    pub dead: i64,
}

/// Every row by kind × state, `done` included (for `rvcctl outbox stats`, on demand).
const ALL_COUNTS_SQL: &str =
    "SELECT kind, state, count(*) AS n FROM outbox GROUP BY kind, state ORDER BY kind, state";

pub async fn stats(pool: &Pool) -> Result<OutboxStats, OutboxError> {
    stats_with(pool, ALL_COUNTS_SQL).await
}

/// Rows by kind × state for the gauges, `done` left out: only pending/leased and dead rows
/// are counted, each from its partial index (`outbox_claimable`, `outbox_dead`), so every
/// worker process refreshing its gauges never scans the done rows, which are nearly all of
/// the table. (`rvcctl outbox stats` still counts everything, on demand.)
pub const LIVE_COUNTS_SQL: &str =
    "SELECT kind, state, count(*) AS n FROM outbox WHERE state IN ('pending', 'leased')
     GROUP BY kind, state
     UNION ALL
     SELECT kind, 'dead', count(*) FROM outbox WHERE state = 'dead' GROUP BY kind";

async fn live_stats(pool: &Pool) -> Result<OutboxStats, OutboxError> {
    stats_with(pool, LIVE_COUNTS_SQL).await
}

/// Counts by `counts_sql` (kind, state, count), the oldest claimable row per kind, and the
/// dead total.
async fn stats_with(pool: &Pool, counts_sql: &str) -> Result<OutboxStats, OutboxError> {
    let client = pool.get().await?;
    let counts: Vec<KindStateCount> = client
        .query(counts_sql, &[])
        .await
        .ctx("outbox counts")?
        .iter()
        .map(|r| {
            Ok(KindStateCount {
                kind: text_col(r, "kind", "outbox counts")?,
                state: text_col(r, "state", "outbox counts")?,
                rows: r.try_get("n").ctx("outbox counts")?,
            })
        })
        .collect::<Result<_, OutboxError>>()?;
    let oldest = client
        .query(
            "SELECT kind, extract(epoch FROM now() - min(next_attempt_at))::float8 AS age_secs
             FROM outbox WHERE state IN ('pending', 'leased') AND next_attempt_at <= now()
             GROUP BY kind ORDER BY kind",
            &[],
        )
        .await
        .ctx("oldest claimable")?
        .iter()
        .map(|r| {
            Ok((
                text_col(r, "kind", "oldest claimable")?,
                r.try_get("age_secs").ctx("oldest claimable")?,
            ))
        })
        .collect::<Result<_, OutboxError>>()?;
    let dead = counts
        .iter()
        .filter(|c| c.state == OutboxState::Dead)
        .map(|c| c.rows)
        .sum();
    Ok(OutboxStats {
        counts,
        oldest_claimable_secs: oldest,
        dead,
    })
}

/// A dead-lettered row with its product's SKU and name (the web console's dead list).
/// `last_error` is the internal text (hosts, SQL, driver messages): public surfaces show
/// only a code derived from `kind` (`rvc_store::products::StepError::public`).
#[derive(Debug, Clone)]
pub struct DeadEntry {
    pub event_id: Uuid,
    pub product_id: Uuid,
    pub sku: String,
    pub name: String,
    pub product_version: i32,
    pub kind: OutboxKind,
    pub attempts: i32,
    pub max_attempts: i32,
    pub last_error: Option<String>,
    pub first_failed_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

/// The newest `limit` dead rows (by last change), from the `outbox_dead` partial index.
pub async fn dead_entries<C: GenericClient>(
    db: &C,
    limit: i64,
) -> Result<Vec<DeadEntry>, OutboxError> {
    let rows = db
        .query(
            "SELECT o.event_id, o.product_id, p.sku, p.name, o.product_version, o.kind,
                    o.attempts, o.max_attempts, o.last_error, o.first_failed_at, o.updated_at
             FROM outbox o JOIN products p ON p.id = o.product_id
             WHERE o.state = 'dead'
             ORDER BY o.updated_at DESC, o.event_id
             LIMIT $1",
            &[&limit],
        )
        .await
        .ctx("dead entries")?;
    rows.iter()
        .map(|r| {
            Ok(DeadEntry {
                event_id: r.try_get("event_id").ctx("dead entry")?,
                product_id: r.try_get("product_id").ctx("dead entry")?,
                sku: r.try_get("sku").ctx("dead entry")?,
                name: r.try_get("name").ctx("dead entry")?,
                product_version: r.try_get("product_version").ctx("dead entry")?,
                kind: text_col(r, "kind", "dead entry")?,
                attempts: r.try_get("attempts").ctx("dead entry")?,
                max_attempts: r.try_get("max_attempts").ctx("dead entry")?,
                last_error: r.try_get("last_error").ctx("dead entry")?,
                first_failed_at: r.try_get("first_failed_at").ctx("dead entry")?,
                updated_at: r.try_get("updated_at").ctx("dead entry")?,
            })
        })
        .collect()
}

/// Refreshes the `rvc_outbox_rows{kind,state}` and `rvc_outbox_oldest_claimable_seconds{kind}`
/// gauges (states pending, leased and dead: see [`LIVE_COUNTS_SQL`]) every `every` until
/// shutdown.
pub fn spawn_stats_refresher(
    pool: Pool,
    every: Duration,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            match live_stats(&pool).await {
                Ok(s) => {
                    for kind in rvc_domain::OutboxKind::ALL {
                        for state in rvc_domain::OutboxState::ALL
                            .iter()
                            .filter(|s| **s != rvc_domain::OutboxState::Done)
                        {
                            let rows = s
                                .counts
                                .iter()
                                .find(|c| c.kind == *kind && c.state == *state)
                                .map_or(0, |c| c.rows);
                            metrics::gauge!("rvc_outbox_rows", "kind" => kind.as_str(), "state" => state.as_str())
                                .set(rows as f64);
                        }
                        let age = s
                            .oldest_claimable_secs
                            .iter()
                            .find(|(k, _)| k == kind)
                            .map_or(0.0, |(_, a)| *a);
                        metrics::gauge!("rvc_outbox_oldest_claimable_seconds", "kind" => kind.as_str())
                            .set(age);
                    }
                }
                Err(e) => tracing::debug!(error = %e, "outbox stats refresh failed"),
            }
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = shutdown.cancelled() => break,
            }
        }
    })
}
