//! The outbox table: enqueue, claim, heartbeat, complete, fail, release, prune.
use crate::error::{text_col, DbContext, OutboxError, StepError};
use crate::hooks::{RowHooks, RowRef};
use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use rand::Rng;
use rvc_domain::{OutboxKind, OutboxState};
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{GenericClient, Row, Transaction};
use uuid::Uuid;

/// The channel workers LISTEN on; the payload is the kind of the new row.
pub const NOTIFY_CHANNEL: &str = "rvc_outbox";

/// A row to insert.
#[derive(Debug, Clone)]
pub struct NewOutboxRow {
    pub event_id: Uuid,
    pub product_id: Uuid,
    pub product_version: i32,
    pub kind: OutboxKind,
    pub payload: serde_json::Value,
    pub traceparent: Option<String>,
    pub max_attempts: i32,
}

impl NewOutboxRow {
    pub fn new(product_id: Uuid, product_version: i32, kind: OutboxKind) -> Self {
        Self {
            event_id: Uuid::now_v7(),
            product_id,
            product_version,
            kind,
            payload: serde_json::Value::Object(Default::default()),
            traceparent: None,
            max_attempts: 10,
        }
    }
}

/// Inserts `row` in the caller's transaction and signals the workers (the NOTIFY is
/// delivered at commit, and not at all on rollback).
///
/// The insert and the NOTIFY go out as typed statements, pipelined: one round trip, with no
/// prepare (this runs inside every ingest transaction; issue 17, item 1).
pub async fn enqueue<C: GenericClient>(db: &C, row: &NewOutboxRow) -> Result<Uuid, OutboxError> {
    let kind = row.kind.as_str();
    let params: [(&(dyn ToSql + Sync), Type); 7] = [
        (&row.event_id, Type::UUID),
        (&row.product_id, Type::UUID),
        (&row.product_version, Type::INT4),
        (&kind, Type::TEXT),
        (&row.payload, Type::JSONB),
        (&row.traceparent, Type::TEXT),
        (&row.max_attempts, Type::INT4),
    ];
    let insert = db.execute_typed(
        "INSERT INTO outbox (event_id, product_id, product_version, kind, payload, traceparent, max_attempts)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &params,
    );
    let (inserted, notified) = futures::join!(insert, notify(db, row.kind));
    inserted.ctx("outbox insert")?;
    notified?;
    Ok(row.event_id)
}

/// NOTIFY the workers of `kind` (a wake-up only; polling is the safety net).
pub async fn notify<C: GenericClient>(db: &C, kind: OutboxKind) -> Result<(), OutboxError> {
    db.execute_typed(
        "SELECT pg_notify($1, $2)",
        &[(&NOTIFY_CHANNEL, Type::TEXT), (&kind.as_str(), Type::TEXT)],
    )
    .await
    .ctx("notify")?;
    Ok(())
}

/// One outbox row as stored.
#[derive(Debug, Clone, Serialize)]
pub struct OutboxRow {
    pub event_id: Uuid,
    pub product_id: Uuid,
    pub product_version: i32,
    pub kind: OutboxKind,
    pub payload: serde_json::Value,
    pub state: OutboxState,
    pub attempts: i32,
    pub max_attempts: i32,
    pub next_attempt_at: DateTime<Utc>,
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub traceparent: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

/// Columns selected for [`OutboxRow::from_row`].
pub const OUTBOX_COLUMNS: &str =
    "event_id, product_id, product_version, kind, payload, state, attempts, \
     max_attempts, next_attempt_at, lease_owner, lease_expires_at, last_error, traceparent, \
     created_at, updated_at, completed_at";

impl OutboxRow {
    pub fn from_row(row: &Row) -> Result<Self, OutboxError> {
        Ok(Self {
            event_id: row.try_get("event_id").ctx("outbox row")?,
            product_id: row.try_get("product_id").ctx("outbox row")?,
            product_version: row.try_get("product_version").ctx("outbox row")?,
            kind: text_col(row, "kind", "outbox row")?,
            payload: row.try_get("payload").ctx("outbox row")?,
            state: text_col(row, "state", "outbox row")?,
            attempts: row.try_get("attempts").ctx("outbox row")?,
            max_attempts: row.try_get("max_attempts").ctx("outbox row")?,
            next_attempt_at: row.try_get("next_attempt_at").ctx("outbox row")?,
            lease_owner: row.try_get("lease_owner").ctx("outbox row")?,
            lease_expires_at: row.try_get("lease_expires_at").ctx("outbox row")?,
            last_error: row.try_get("last_error").ctx("outbox row")?,
            traceparent: row.try_get("traceparent").ctx("outbox row")?,
            created_at: row.try_get("created_at").ctx("outbox row")?,
            updated_at: row.try_get("updated_at").ctx("outbox row")?,
            completed_at: row.try_get("completed_at").ctx("outbox row")?,
        })
    }
}

/// A claimed row: what a step gets to work on, plus the lease token that fences completion.
#[derive(Debug, Clone)]
pub struct Job {
    pub event_id: Uuid,
    pub product_id: Uuid,
    pub product_version: i32,
    pub kind: OutboxKind,
    pub payload: serde_json::Value,
    /// Claims including this one.
    pub attempts: i32,
    /// Lease expiries (crashes or hangs of a worker on this row) that dead-letter it.
    pub max_attempts: i32,
    pub traceparent: Option<String>,
    pub lease_token: Uuid,
}

impl Job {
    /// The product version this row is about.
    pub fn row_ref(&self) -> RowRef {
        RowRef {
            product_id: self.product_id,
            product_version: self.product_version,
        }
    }

    /// What the row's product version is (`payload.change`; absent: an update).
    pub fn change(&self) -> Result<rvc_domain::VersionChange, String> {
        rvc_domain::VersionChange::from_payload_field(
            self.payload
                .get(rvc_domain::VersionChange::PAYLOAD_KEY)
                .and_then(serde_json::Value::as_str),
        )
    }
}

/// Exponential backoff with jitter: attempt n waits `base * 2^(n-1)` capped at `max`,
/// of which a random half is jitter (so retries of many rows spread out).
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(1),
            max: Duration::from_secs(300),
        }
    }
}

impl Backoff {
    /// The delay before retrying after failed attempt number `attempt` (1-based).
    pub fn delay(&self, attempt: i32) -> Duration {
        let exp = u32::try_from(attempt.saturating_sub(1))
            .unwrap_or(0)
            .min(30);
        let full = self
            .base
            .saturating_mul(1u32 << exp)
            .min(self.max)
            .max(Duration::from_millis(1));
        let half = full / 2;
        let jitter = rand::rng().random_range(0..=half.as_millis().max(1));
        half + Duration::from_millis(u64::try_from(jitter).unwrap_or(0))
    }
}

/// Outcome of completing a batch.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CompleteOutcome {
    /// Rows marked done.
    pub completed: Vec<Uuid>,
    /// The product versions of the rows marked done (as told to the hooks).
    pub completed_rows: Vec<RowRef>,
    /// Rows whose lease was taken over (expired and reclaimed): not completed here.
    pub lease_lost: Vec<Uuid>,
}

/// The outbox as seen by one worker process (`owner` names it in `lease_owner`; `hooks`
/// hear about rows that finish, see [`RowHooks`]).
#[derive(Clone)]
pub struct Outbox {
    pool: Pool,
    owner: String,
    hooks: Arc<dyn RowHooks>,
}

impl Outbox {
    pub fn new(pool: Pool, owner: impl Into<String>, hooks: Arc<dyn RowHooks>) -> Self {
        Self {
            pool,
            owner: owner.into(),
            hooks,
        }
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// What this outbox tells about finished rows.
    pub fn hooks(&self) -> &dyn RowHooks {
        self.hooks.as_ref()
    }

    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Claims up to `limit` claimable rows of `kind` into a lease of `lease` length.
    ///
    /// With `ordered_per_product`, a row is only claimable when no older version of the same
    /// product still has work pending or leased, so one product's events go out in version
    /// order while other products proceed.
    pub async fn claim(
        &self,
        kind: OutboxKind,
        limit: usize,
        lease: Duration,
        ordered_per_product: bool,
    ) -> Result<Vec<Job>, OutboxError> {
        let mut client = self.pool.get().await?;
        let tx = tokio_postgres::Client::transaction(&mut client)
            .await
            .ctx("claim begin")?;
        // Rows whose lease expired for the max_attempts-th time: a worker died or hung on
        // them every time (a poison row that crashes the process). Dead-letter them. Only
        // lease expiries count here; failures the step reported are bounded by time.
        let dead = tx
            .query(
                "UPDATE outbox SET state = 'dead', lease_owner = NULL, lease_token = NULL,
                        lease_expires_at = NULL, updated_at = now(),
                        lease_expiries = lease_expiries + 1,
                        last_error = concat_ws(' | ', last_error,
                          'lease expired ' || (lease_expiries + 1) || ' times (the worker crashed or hung on this row every time)')
                 WHERE kind = $1 AND state = 'leased' AND next_attempt_at <= now()
                   AND lease_expiries + 1 >= max_attempts
                 RETURNING product_id, product_version",
                &[&kind.as_str()],
            )
            .await
            .ctx("sweep exhausted leases")?;
        let dead = dead
            .iter()
            .map(|r| {
                Ok(RowRef {
                    product_id: r.try_get("product_id")?,
                    product_version: r.try_get("product_version")?,
                })
            })
            .collect::<Result<Vec<_>, tokio_postgres::Error>>()
            .ctx("sweep exhausted leases")?;
        if !dead.is_empty() {
            self.hooks.dead(&tx, kind, &dead).await?;
            metrics::counter!("rvc_outbox_dead_total", "kind" => kind.as_str())
                .increment(dead.len() as u64);
        }
        let order_filter = if ordered_per_product {
            "AND NOT EXISTS (SELECT 1 FROM outbox e
                              WHERE e.product_id = o.product_id
                                AND e.product_version < o.product_version
                                AND e.state IN ('pending', 'leased'))"
        } else {
            ""
        };
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let owner_lease: [&(dyn tokio_postgres::types::ToSql + Sync); 4] =
            [&kind.as_str(), &limit, &self.owner, &lease.as_secs_f64()];
        // An abandoned lease is taken over alone, in a batch of one: if its row is what
        // killed the previous holder, the next crash costs only that row a lease expiry, so
        // rows that merely shared a batch with it never reach max_attempts with it.
        let expired_sql = format!(
            "WITH c AS (
               SELECT event_id FROM outbox o
               WHERE kind = $1 AND state = 'leased' AND next_attempt_at <= now() {order_filter}
               ORDER BY next_attempt_at
               LIMIT least($2::bigint, 1)
               FOR UPDATE SKIP LOCKED)
             UPDATE outbox o SET lease_owner = $3,
                    lease_token = gen_random_uuid(),
                    lease_expires_at = now() + make_interval(secs => $4),
                    next_attempt_at = now() + make_interval(secs => $4),
                    attempts = o.attempts + 1, lease_expiries = o.lease_expiries + 1,
                    updated_at = now()
             FROM c WHERE o.event_id = c.event_id
             RETURNING o.event_id, o.product_id, o.product_version, o.payload, o.attempts,
                       o.max_attempts, o.traceparent, o.lease_token"
        );
        let mut rows = tx
            .query(&expired_sql, &owner_lease)
            .await
            .ctx("claim expired lease")?;
        if rows.is_empty() {
            let sql = format!(
                "WITH c AS (
                   SELECT event_id FROM outbox o
                   WHERE kind = $1 AND state = 'pending' AND next_attempt_at <= now() {order_filter}
                   ORDER BY next_attempt_at
                   LIMIT $2
                   FOR UPDATE SKIP LOCKED)
                 UPDATE outbox o SET state = 'leased', lease_owner = $3,
                        lease_token = gen_random_uuid(),
                        lease_expires_at = now() + make_interval(secs => $4),
                        next_attempt_at = now() + make_interval(secs => $4),
                        attempts = o.attempts + 1, updated_at = now()
                 FROM c WHERE o.event_id = c.event_id
                 RETURNING o.event_id, o.product_id, o.product_version, o.payload, o.attempts,
                           o.max_attempts, o.traceparent, o.lease_token"
            );
            rows = tx.query(&sql, &owner_lease).await.ctx("claim")?;
        }
        tx.commit().await.ctx("claim commit")?;
        let mut jobs = rows
            .iter()
            .map(|r| {
                Ok(Job {
                    event_id: r.try_get("event_id").ctx("claim row")?,
                    product_id: r.try_get("product_id").ctx("claim row")?,
                    product_version: r.try_get("product_version").ctx("claim row")?,
                    kind,
                    payload: r.try_get("payload").ctx("claim row")?,
                    attempts: r.try_get("attempts").ctx("claim row")?,
                    max_attempts: r.try_get("max_attempts").ctx("claim row")?,
                    traceparent: r.try_get("traceparent").ctx("claim row")?,
                    lease_token: r.try_get("lease_token").ctx("claim row")?,
                })
            })
            .collect::<Result<Vec<_>, OutboxError>>()?;
        jobs.sort_by_key(|j| (j.product_id, j.product_version));
        if !jobs.is_empty() {
            metrics::counter!("rvc_outbox_claimed_total", "kind" => kind.as_str())
                .increment(jobs.len() as u64);
        }
        Ok(jobs)
    }

    /// Extends the leases of `jobs` that this worker still holds; returns how many.
    pub async fn heartbeat(&self, jobs: &[Job], lease: Duration) -> Result<u64, OutboxError> {
        if jobs.is_empty() {
            return Ok(0);
        }
        let (ids, tokens) = ids_and_tokens(jobs);
        let client = self.pool.get().await?;
        client
            .execute(
                "UPDATE outbox o SET lease_expires_at = now() + make_interval(secs => $3),
                        next_attempt_at = now() + make_interval(secs => $3), updated_at = now()
                 FROM unnest($1::uuid[], $2::uuid[]) AS t(id, token)
                 WHERE o.event_id = t.id AND o.lease_token = t.token AND o.state = 'leased'",
                &[&ids, &tokens, &lease.as_secs_f64()],
            )
            .await
            .ctx("heartbeat")
            .map_err(Into::into)
    }

    /// Marks `jobs` done in `tx` (fenced by their lease tokens), tells the hooks (the
    /// pipeline moves the products' status) and enqueues the next step.
    /// Call it inside the transaction that holds the step's own writes.
    pub async fn complete_in(
        &self,
        tx: &Transaction<'_>,
        kind: OutboxKind,
        jobs: &[Job],
    ) -> Result<CompleteOutcome, OutboxError> {
        let mut outcome = CompleteOutcome::default();
        if jobs.is_empty() {
            return Ok(outcome);
        }
        let (ids, tokens) = ids_and_tokens(jobs);
        let done = tx
            .query(
                "UPDATE outbox o SET state = 'done', completed_at = now(), updated_at = now(),
                        lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL
                 FROM unnest($1::uuid[], $2::uuid[]) AS t(id, token)
                 WHERE o.event_id = t.id AND o.lease_token = t.token AND o.state = 'leased'
                 RETURNING o.event_id",
                &[&ids, &tokens],
            )
            .await
            .ctx("complete")?;
        let done: std::collections::HashSet<Uuid> = done
            .iter()
            .map(|r| r.try_get("event_id"))
            .collect::<Result<_, _>>()
            .ctx("complete")?;
        let held: Vec<&Job> = jobs.iter().filter(|j| done.contains(&j.event_id)).collect();
        outcome.lease_lost = jobs
            .iter()
            .filter(|j| !done.contains(&j.event_id))
            .map(|j| j.event_id)
            .collect();
        if held.is_empty() {
            return Ok(outcome);
        }
        let refs: Vec<RowRef> = held.iter().map(|j| j.row_ref()).collect();
        self.hooks.done(tx, kind, &refs).await?;
        let products: Vec<Uuid> = held.iter().map(|j| j.product_id).collect();
        let versions: Vec<i32> = held.iter().map(|j| j.product_version).collect();
        if let Some(next) = kind.next() {
            let next_ids: Vec<Uuid> = held.iter().map(|_| Uuid::now_v7()).collect();
            let tps: Vec<Option<String>> = held.iter().map(|j| j.traceparent.clone()).collect();
            // The next step's row carries the same payload (what the version is: an update or
            // an archive, see `rvc_domain::VersionChange`).
            let payloads: Vec<&serde_json::Value> = held.iter().map(|j| &j.payload).collect();
            tx.execute(
                "INSERT INTO outbox (event_id, product_id, product_version, kind, traceparent, payload)
                 SELECT t.id, t.product_id, t.version, $5, t.tp, t.payload
                 FROM unnest($1::uuid[], $2::uuid[], $3::int[], $4::text[], $6::jsonb[])
                      AS t(id, product_id, version, tp, payload)",
                &[&next_ids, &products, &versions, &tps, &next.as_str(), &payloads],
            )
            .await
            .ctx("enqueue next step")?;
            notify(tx, next).await?;
        }
        outcome.completed = held.iter().map(|j| j.event_id).collect();
        outcome.completed_rows = refs;
        Ok(outcome)
    }

    /// Records a failed attempt: back to `pending` after a backoff, or `dead` (and the product
    /// `failed`) when the error is permanent or `retry_window` has passed since the row's
    /// first failure. Returns the new state.
    pub async fn fail(
        &self,
        job: &Job,
        error: &StepError,
        backoff: &Backoff,
        retry_window: Duration,
    ) -> Result<Option<OutboxState>, OutboxError> {
        let mut client = self.pool.get().await?;
        let tx = tokio_postgres::Client::transaction(&mut client)
            .await
            .ctx("fail begin")?;
        let state = self.fail_in(&tx, job, error, backoff, retry_window).await?;
        tx.commit().await.ctx("fail commit")?;
        Ok(state)
    }

    /// Gives leases back without counting an attempt (graceful shutdown).
    pub async fn release(&self, jobs: &[Job]) -> Result<u64, OutboxError> {
        if jobs.is_empty() {
            return Ok(0);
        }
        let (ids, tokens) = ids_and_tokens(jobs);
        let client = self.pool.get().await?;
        client
            .execute(
                "UPDATE outbox o SET state = 'pending', lease_owner = NULL, lease_token = NULL,
                        lease_expires_at = NULL, next_attempt_at = now(),
                        attempts = greatest(o.attempts - 1, 0), updated_at = now()
                 FROM unnest($1::uuid[], $2::uuid[]) AS t(id, token)
                 WHERE o.event_id = t.id AND o.lease_token = t.token AND o.state = 'leased'",
                &[&ids, &tokens],
            )
            .await
            .ctx("release")
            .map_err(Into::into)
    }

    /// Deletes done rows completed more than `retention` ago, in chunks; returns how many.
    pub async fn prune_done(&self, retention: Duration) -> Result<u64, OutboxError> {
        let client = self.pool.get().await?;
        let mut total = 0;
        loop {
            let n = client
                .execute(
                    "DELETE FROM outbox WHERE event_id IN (
                       SELECT event_id FROM outbox
                       WHERE state = 'done' AND completed_at < now() - make_interval(secs => $1)
                       LIMIT 5000)",
                    &[&retention.as_secs_f64()],
                )
                .await
                .ctx("prune done rows")?;
            total += n;
            if n < 5000 {
                break;
            }
        }
        if total > 0 {
            tracing::info!(rows = total, "pruned done outbox rows");
        }
        Ok(total)
    }
}

/// How long retryable failures of one row may go on, counted from its first failure, before
/// it goes dead (`OUTBOX_RETRY_WINDOW_SECS`).
pub const DEFAULT_RETRY_WINDOW: Duration = Duration::from_secs(24 * 3600);

impl Outbox {
    /// [`Outbox::fail`] inside the caller's transaction.
    ///
    /// A permanent error is dead at once. A retryable one goes back to `pending` after
    /// `backoff`, until `retry_window` has passed since the row's first failure: an outage of
    /// any length shorter than that ends with the work done, however many attempts it took.
    pub async fn fail_in(
        &self,
        tx: &Transaction<'_>,
        job: &Job,
        error: &StepError,
        backoff: &Backoff,
        retry_window: Duration,
    ) -> Result<Option<OutboxState>, OutboxError> {
        let permanent = !error.is_retryable();
        let delay = backoff.delay(job.attempts);
        let kind = job.kind.as_str();
        let msg = truncate(error.message(), 4000);
        let row = tx
            .query_opt(
                "UPDATE outbox SET
                        state = CASE WHEN $3 OR coalesce(first_failed_at, now())
                                      <= now() - make_interval(secs => $6)
                                     THEN 'dead' ELSE 'pending' END,
                        first_failed_at = coalesce(first_failed_at, now()),
                        next_attempt_at = now() + make_interval(secs => $4),
                        last_error = $5, lease_owner = NULL, lease_token = NULL,
                        lease_expires_at = NULL, updated_at = now()
                 WHERE event_id = $1 AND lease_token = $2 AND state = 'leased'
                 RETURNING state",
                &[
                    &job.event_id,
                    &job.lease_token,
                    &permanent,
                    &delay.as_secs_f64(),
                    &msg,
                    &retry_window.as_secs_f64(),
                ],
            )
            .await
            .ctx("fail")?;
        let Some(row) = row else {
            metrics::counter!("rvc_outbox_lease_lost_total", "kind" => kind).increment(1);
            return Ok(None);
        };
        let state: OutboxState = text_col(&row, "state", "fail")?;
        let dead = state == OutboxState::Dead;
        if dead {
            self.hooks.dead(tx, job.kind, &[job.row_ref()]).await?;
            metrics::counter!("rvc_outbox_dead_total", "kind" => kind).increment(1);
            tracing::error!(event_id = %job.event_id, product_id = %job.product_id, kind,
                attempts = job.attempts, permanent, error = %msg, "outbox row dead-lettered");
        } else {
            metrics::counter!("rvc_outbox_retried_total", "kind" => kind).increment(1);
            tracing::warn!(event_id = %job.event_id, product_id = %job.product_id, kind,
                attempts = job.attempts, retry_in_ms = delay.as_millis() as u64, error = %msg,
                "step failed; will retry");
        }
        Ok(Some(state))
    }
}

fn ids_and_tokens(jobs: &[Job]) -> (Vec<Uuid>, Vec<Uuid>) {
    jobs.iter().map(|j| (j.event_id, j.lease_token)).unzip()
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_exponentially_within_jitter_and_is_capped() {
        let b = Backoff {
            base: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        for _ in 0..50 {
            let d1 = b.delay(1);
            assert!(d1 >= Duration::from_millis(50) && d1 <= Duration::from_millis(100));
            let d3 = b.delay(3);
            assert!(d3 >= Duration::from_millis(200) && d3 <= Duration::from_millis(400));
            let d20 = b.delay(20);
            assert!(d20 >= Duration::from_millis(500) && d20 <= Duration::from_secs(1));
        }
    }

    #[test]
    fn truncates_on_char_boundaries() {
        assert_eq!(truncate("abc", 10), "abc");
        assert_eq!(truncate("ééé", 3), "é…");
    }
}
