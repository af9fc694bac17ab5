//! Outbox gauges: rows by kind × state and the age of the oldest claimable row.
use crate::error::{DbContext, OutboxError};
use deadpool_postgres::Pool;
use serde::Serialize;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct KindStateCount {
    pub kind: String,
    pub state: String,
    pub rows: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct OutboxStats {
    pub counts: Vec<KindStateCount>,
    /// Per kind: seconds since the oldest claimable row became claimable.
    pub oldest_claimable_secs: Vec<(String, f64)>,
    pub dead: i64,
}

/// Every row by kind × state, `done` included (for `rvcctl outbox stats`, on demand).
const ALL_COUNTS_SQL: &str =
    "SELECT kind, state, count(*) FROM outbox GROUP BY kind, state ORDER BY kind, state";

pub async fn stats(pool: &Pool) -> Result<OutboxStats, OutboxError> {
    stats_with(pool, ALL_COUNTS_SQL).await
}

/// Rows by kind × state for the gauges, `done` left out: only pending/leased and dead rows
/// are counted, each from its partial index (`outbox_claimable`, `outbox_dead`), so every
/// worker process refreshing its gauges never scans the done rows, which are nearly all of
/// the table. (`rvcctl outbox stats` still counts everything, on demand.)
pub const LIVE_COUNTS_SQL: &str =
    "SELECT kind, state, count(*) FROM outbox WHERE state IN ('pending', 'leased')
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
        .map(|r| KindStateCount {
            kind: r.get(0),
            state: r.get(1),
            rows: r.get(2),
        })
        .collect();
    let oldest = client
        .query(
            "SELECT kind, extract(epoch FROM now() - min(next_attempt_at))::float8
             FROM outbox WHERE state IN ('pending', 'leased') AND next_attempt_at <= now()
             GROUP BY kind ORDER BY kind",
            &[],
        )
        .await
        .ctx("oldest claimable")?
        .iter()
        .map(|r| (r.get::<_, String>(0), r.get::<_, f64>(1)))
        .collect();
    let dead = counts
        .iter()
        .filter(|c| c.state == "dead")
        .map(|c| c.rows)
        .sum();
    Ok(OutboxStats {
        counts,
        oldest_claimable_secs: oldest,
        dead,
    })
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
                                .find(|c| c.kind == kind.as_str() && c.state == state.as_str())
                                .map_or(0, |c| c.rows);
                            metrics::gauge!("rvc_outbox_rows", "kind" => kind.as_str(), "state" => state.as_str())
                                .set(rows as f64);
                        }
                        let age = s
                            .oldest_claimable_secs
                            .iter()
                            .find(|(k, _)| k == kind.as_str())
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
