//! What an operator does to outbox rows by hand (`rvcctl outbox list|show|replay|cancel`,
//! `rvcctl reconcile --repair`): the queries, and the audit record every hand-made change
//! writes. The caller owns the transaction; these functions only run statements in it.
use crate::error::{DbContext, OutboxError};
use crate::queue::OutboxRow;
use chrono::{DateTime, Utc};
use rvc_domain::{OutboxKind, OutboxState};
use tokio_postgres::types::ToSql;
use tokio_postgres::{GenericClient, Row};
use uuid::Uuid;

/// An outbox row with its product's SKU.
#[derive(Debug, Clone)]
pub struct OutboxEntryRow {
    pub row: OutboxRow,
    pub sku: String,
}

impl OutboxEntryRow {
    fn from_row(row: &Row) -> Result<Self, OutboxError> {
        Ok(Self {
            sku: row.try_get("sku").ctx("outbox row")?,
            row: OutboxRow::from_row(row)?,
        })
    }
}

/// Rows joined with their product's SKU; filters go over the columns of `outbox` plus `sku`.
const ENTRY_SELECT: &str = "SELECT x.* FROM (SELECT o.*, p.sku AS sku FROM outbox o \
     JOIN products p ON p.id = o.product_id) x";

/// Which rows [`count_entries`] and [`list_entries`] look at (all given conditions hold).
#[derive(Debug, Clone, Default)]
pub struct EntryFilter {
    pub state: Option<OutboxState>,
    pub kind: Option<OutboxKind>,
    pub product_id: Option<Uuid>,
    /// Rows whose last change (`updated_at`) is at or after this time.
    pub changed_since: Option<DateTime<Utc>>,
}

/// The order of [`list_entries`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryOrder {
    /// Newest change first (`updated_at DESC, event_id`).
    NewestChange,
    /// Oldest first (`created_at, event_id`): the order a replay works in.
    Created,
}

impl EntryFilter {
    /// ` WHERE ...` (or nothing) and its parameters, numbered from `$1`.
    fn clause(&self) -> (String, Vec<Box<dyn ToSql + Sync + Send>>) {
        let mut conds: Vec<String> = Vec::new();
        let mut params: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
        let mut push = |cond: &str, v: Box<dyn ToSql + Sync + Send>| {
            params.push(v);
            conds.push(cond.replace('?', &format!("${}", params.len())));
        };
        if let Some(s) = self.state {
            push("state = ?", Box::new(s.as_str().to_owned()));
        }
        if let Some(k) = self.kind {
            push("kind = ?", Box::new(k.as_str().to_owned()));
        }
        if let Some(p) = self.product_id {
            push("product_id = ?", Box::new(p));
        }
        if let Some(t) = self.changed_since {
            push("updated_at >= ?", Box::new(t));
        }
        let clause = if conds.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", conds.join(" AND "))
        };
        (clause, params)
    }
}

fn refs(params: &[Box<dyn ToSql + Sync + Send>]) -> Vec<&(dyn ToSql + Sync)> {
    params
        .iter()
        .map(|p| p.as_ref() as &(dyn ToSql + Sync))
        .collect()
}

/// How many rows match `filter`.
pub async fn count_entries<C: GenericClient>(
    db: &C,
    filter: &EntryFilter,
) -> Result<i64, OutboxError> {
    let (clause, params) = filter.clause();
    db.query_one(
        &format!("SELECT count(*) AS n FROM outbox{clause}"),
        &refs(&params),
    )
    .await
    .ctx("count outbox rows")?
    .try_get("n")
    .ctx("count outbox rows")
    .map_err(Into::into)
}

/// The rows matching `filter`, in `order`, at most `limit` (all when `None`).
pub async fn list_entries<C: GenericClient>(
    db: &C,
    filter: &EntryFilter,
    order: EntryOrder,
    limit: Option<i64>,
) -> Result<Vec<OutboxEntryRow>, OutboxError> {
    let (clause, params) = filter.clause();
    let mut params = refs(&params);
    let order = match order {
        EntryOrder::NewestChange => "updated_at DESC, event_id",
        EntryOrder::Created => "created_at, event_id",
    };
    let limit_clause = match &limit {
        Some(n) => {
            params.push(n);
            format!(" LIMIT ${}", params.len())
        }
        None => String::new(),
    };
    db.query(
        &format!("{ENTRY_SELECT}{clause} ORDER BY {order}{limit_clause}"),
        &params,
    )
    .await
    .ctx("list outbox rows")?
    .iter()
    .map(OutboxEntryRow::from_row)
    .collect()
}

/// The rows with these event ids (those that exist), oldest first.
pub async fn entries_by_ids<C: GenericClient>(
    db: &C,
    event_ids: &[Uuid],
) -> Result<Vec<OutboxEntryRow>, OutboxError> {
    db.query(
        &format!("{ENTRY_SELECT} WHERE event_id = ANY($1) ORDER BY created_at, event_id"),
        &[&event_ids],
    )
    .await
    .ctx("select outbox rows by id")?
    .iter()
    .map(OutboxEntryRow::from_row)
    .collect()
}

/// One row, if it exists.
pub async fn get_entry<C: GenericClient>(
    db: &C,
    event_id: Uuid,
) -> Result<Option<OutboxEntryRow>, OutboxError> {
    db.query_opt(&format!("{ENTRY_SELECT} WHERE event_id = $1"), &[&event_id])
        .await
        .ctx("get outbox row")?
        .as_ref()
        .map(OutboxEntryRow::from_row)
        .transpose()
}

/// What a hand-made change was (`outbox_audit.action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditAction {
    Replay,
    Cancel,
    ReconcileEnqueue,
}

impl AuditAction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Replay => "replay",
            Self::Cancel => "cancel",
            Self::ReconcileEnqueue => "reconcile_enqueue",
        }
    }
}

/// One `outbox_audit` row.
#[derive(Debug, Clone)]
pub struct AuditRecord {
    pub id: i64,
    pub event_id: Uuid,
    pub action: String,
    pub actor: String,
    pub reason: Option<String>,
    pub details: serde_json::Value,
    pub at: DateTime<Utc>,
}

/// Records who changed `event_id` by hand, how and why (in the caller's transaction).
pub async fn record_audit<C: GenericClient>(
    db: &C,
    event_id: Uuid,
    action: AuditAction,
    actor: &str,
    reason: Option<&str>,
    details: &serde_json::Value,
) -> Result<(), OutboxError> {
    db.execute(
        "INSERT INTO outbox_audit (event_id, action, actor, reason, details)
         VALUES ($1, $2, $3, $4, $5)",
        &[&event_id, &action.as_str(), &actor, &reason, details],
    )
    .await
    .ctx("write audit row")?;
    Ok(())
}

/// The audit rows of `event_id`, oldest first.
pub async fn audit_of<C: GenericClient>(
    db: &C,
    event_id: Uuid,
) -> Result<Vec<AuditRecord>, OutboxError> {
    db.query(
        "SELECT id, event_id, action, actor, reason, details, at FROM outbox_audit
         WHERE event_id = $1 ORDER BY at, id",
        &[&event_id],
    )
    .await
    .ctx("audit rows")?
    .iter()
    .map(|r| {
        Ok(AuditRecord {
            id: r.try_get("id").ctx("audit row")?,
            event_id: r.try_get("event_id").ctx("audit row")?,
            action: r.try_get("action").ctx("audit row")?,
            actor: r.try_get("actor").ctx("audit row")?,
            reason: r.try_get("reason").ctx("audit row")?,
            details: r.try_get("details").ctx("audit row")?,
            at: r.try_get("at").ctx("audit row")?,
        })
    })
    .collect()
}

/// Locks those of `event_ids` that are still dead (in event id order); returns how many.
pub async fn lock_dead<C: GenericClient>(db: &C, event_ids: &[Uuid]) -> Result<usize, OutboxError> {
    Ok(db
        .query(
            "SELECT event_id FROM outbox WHERE event_id = ANY($1) AND state = 'dead'
             ORDER BY event_id FOR UPDATE",
            &[&event_ids],
        )
        .await
        .ctx("lock rows")?
        .len())
}

/// Sends dead rows back to the workers: pending, attempts 0, due now, no lease. Rows that
/// are not dead are left alone. Returns the number of rows changed.
pub async fn replay_dead<C: GenericClient>(db: &C, event_ids: &[Uuid]) -> Result<u64, OutboxError> {
    db.execute(
        "UPDATE outbox SET state = 'pending', attempts = 0, next_attempt_at = now(),
                first_failed_at = NULL, lease_expiries = 0,
                lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL,
                completed_at = NULL, updated_at = now()
         WHERE event_id = ANY($1) AND state = 'dead'",
        &[&event_ids],
    )
    .await
    .ctx("replay rows")
    .map_err(Into::into)
}

/// Locks the row `event_id`; false when there is no such row.
pub async fn lock_row<C: GenericClient>(db: &C, event_id: Uuid) -> Result<bool, OutboxError> {
    Ok(db
        .query_opt(
            "SELECT 1 FROM outbox WHERE event_id = $1 FOR UPDATE",
            &[&event_id],
        )
        .await
        .ctx("lock row")?
        .is_some())
}

/// Marks a row resolved without running it: done, completed now, `last_error` prefixed with
/// `note`. Returns the new `last_error`.
pub async fn cancel<C: GenericClient>(
    db: &C,
    event_id: Uuid,
    note: &str,
) -> Result<String, OutboxError> {
    db.query_one(
        "UPDATE outbox SET state = 'done', completed_at = now(), updated_at = now(),
                last_error = $2 || coalesce(last_error, '')
         WHERE event_id = $1 RETURNING last_error",
        &[&event_id, &note],
    )
    .await
    .ctx("cancel row")?
    .try_get("last_error")
    .ctx("cancel row")
    .map_err(Into::into)
}

/// A pending or leased row of one product version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueuedStep {
    pub event_id: Uuid,
    pub kind: OutboxKind,
}

/// The pending or leased rows of `product_id` version `version`, oldest first (rows of a
/// kind this build does not know are left out).
pub async fn queued_steps<C: GenericClient>(
    db: &C,
    product_id: Uuid,
    version: i32,
) -> Result<Vec<QueuedStep>, OutboxError> {
    let mut out = Vec::new();
    for r in db
        .query(
            "SELECT event_id, kind FROM outbox
             WHERE product_id = $1 AND product_version = $2
               AND state IN ('pending', 'leased')
             ORDER BY created_at",
            &[&product_id, &version],
        )
        .await
        .ctx("queued rows of product")?
    {
        out.push(QueuedStep {
            event_id: r.try_get("event_id").ctx("queued rows of product")?,
            kind: crate::error::text_col(&r, "kind", "queued rows of product")?,
        });
    }
    Ok(out)
}
