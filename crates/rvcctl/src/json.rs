//! The `--output json` shapes (documented in docs/rvcctl-json.md). These are a contract:
//! add fields, never rename or remove them. Timestamps are RFC 3339 in UTC; kinds, states and
//! statuses are their lower-case names.
use chrono::{DateTime, Utc};
use rvc_domain::{OutboxKind, OutboxState, ProductStatus};
use serde::Serialize;
use uuid::Uuid;

/// `rvcctl outbox stats`
#[derive(Debug, Clone, Serialize)]
pub struct StatsOutput {
    /// One entry per kind, in pipeline order, always all three.
    pub kinds: Vec<KindStats>,
    /// Dead rows of every kind.
    pub dead_total: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct KindStats {
    pub kind: OutboxKind,
    pub pending: i64,
    pub leased: i64,
    pub done: i64,
    pub dead: i64,
    /// Seconds since the oldest claimable row of this kind became due; null when none is due.
    pub oldest_claimable_age_secs: Option<f64>,
}

/// One outbox row with its product's SKU.
#[derive(Debug, Clone, Serialize)]
pub struct OutboxEntry {
    pub event_id: Uuid,
    pub product_id: Uuid,
    pub sku: String,
    pub product_version: i32,
    pub kind: OutboxKind,
    pub state: OutboxState,
    pub attempts: i32,
    pub max_attempts: i32,
    pub next_attempt_at: DateTime<Utc>,
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub traceparent: Option<String>,
    pub payload: serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

impl OutboxEntry {
    pub fn new(row: rvc_outbox::OutboxRow, sku: String) -> Self {
        Self {
            event_id: row.event_id,
            product_id: row.product_id,
            sku,
            product_version: row.product_version,
            kind: row.kind,
            state: row.state,
            attempts: row.attempts,
            max_attempts: row.max_attempts,
            next_attempt_at: row.next_attempt_at,
            lease_owner: row.lease_owner,
            lease_expires_at: row.lease_expires_at,
            last_error: row.last_error,
            traceparent: row.traceparent,
            payload: row.payload,
            created_at: row.created_at,
            updated_at: row.updated_at,
            completed_at: row.completed_at,
        }
    }
}

/// `rvcctl outbox list`
#[derive(Debug, Clone, Serialize)]
pub struct ListOutput {
    /// Newest change first.
    pub rows: Vec<OutboxEntry>,
    /// Rows matching the filters (may exceed `rows.len()` when `limit` cut the list).
    pub total_matching: i64,
    pub limit: i64,
}

/// One `outbox_audit` row.
#[derive(Debug, Clone, Serialize)]
pub struct AuditEntry {
    pub id: i64,
    pub event_id: Uuid,
    /// `replay`, `cancel` or `reconcile_enqueue`.
    pub action: String,
    pub actor: String,
    pub reason: Option<String>,
    pub details: serde_json::Value,
    pub at: DateTime<Utc>,
}

/// The product an outbox row belongs to.
#[derive(Debug, Clone, Serialize)]
pub struct ProductSummary {
    pub id: Uuid,
    pub sku: String,
    pub name: String,
    /// The product's current version (a row may belong to an older one).
    pub version: i32,
    pub status: ProductStatus,
    pub archived: bool,
}

/// One step of a product's pipeline (one outbox row), oldest first.
#[derive(Debug, Clone, Serialize)]
pub struct TimelineStep {
    pub event_id: Uuid,
    pub product_version: i32,
    pub kind: OutboxKind,
    pub state: OutboxState,
    pub attempts: i32,
    pub max_attempts: i32,
    pub last_error: Option<String>,
    pub next_attempt_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

impl From<rvc_store::products::TimelineEntry> for TimelineStep {
    fn from(t: rvc_store::products::TimelineEntry) -> Self {
        Self {
            event_id: t.event_id,
            product_version: t.product_version,
            kind: t.kind,
            state: t.state,
            attempts: t.attempts,
            max_attempts: t.max_attempts,
            last_error: t.last_error,
            next_attempt_at: t.next_attempt_at,
            created_at: t.created_at,
            updated_at: t.updated_at,
            completed_at: t.completed_at,
        }
    }
}

/// `rvcctl outbox show EVENT_ID`
#[derive(Debug, Clone, Serialize)]
pub struct ShowOutput {
    pub row: OutboxEntry,
    /// Manual actions on this row, oldest first.
    pub audit: Vec<AuditEntry>,
    pub product: ProductSummary,
    /// Every outbox row of the product (all versions), oldest first.
    pub timeline: Vec<TimelineStep>,
}

/// `rvcctl outbox replay` (also with `--dry-run`).
#[derive(Debug, Clone, Serialize)]
pub struct ReplayOutput {
    /// True: nothing was changed, this is what would change.
    pub dry_run: bool,
    pub actor: String,
    pub reason: Option<String>,
    pub rows: Vec<ReplayRow>,
    /// Products moved out of `failed`.
    pub products: Vec<ProductTransition>,
    /// Kinds whose workers are (or would be) woken with NOTIFY.
    pub notified_kinds: Vec<OutboxKind>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReplayRow {
    pub event_id: Uuid,
    pub product_id: Uuid,
    pub sku: String,
    pub product_version: i32,
    pub kind: OutboxKind,
    pub state_before: OutboxState,
    pub state_after: OutboxState,
    pub attempts_before: i32,
    pub last_error: Option<String>,
    /// The product's current version when it is newer than `product_version`: replaying a
    /// superseded version's step publishes an older version after a newer one (consumers keep
    /// the highest `product_version`, docs/events.md).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub superseded_by: Option<i32>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProductTransition {
    pub product_id: Uuid,
    pub sku: String,
    pub version: i32,
    pub status_before: ProductStatus,
    pub status_after: ProductStatus,
}

/// `rvcctl outbox cancel EVENT_ID`
#[derive(Debug, Clone, Serialize)]
pub struct CancelOutput {
    pub event_id: Uuid,
    pub product_id: Uuid,
    pub sku: String,
    pub product_version: i32,
    pub kind: OutboxKind,
    pub state_before: OutboxState,
    pub state_after: OutboxState,
    pub actor: String,
    pub reason: String,
    /// The row's last_error after the cancel (prefixed with who cancelled and why).
    pub last_error: String,
    /// The product's status (a cancel does not change it).
    pub product_status: ProductStatus,
}

/// A photo of the product's current version.
#[derive(Debug, Clone, Serialize)]
pub struct PhotoView {
    pub ordinal: i16,
    pub sha256: String,
    pub content_type: String,
    pub width: i32,
    pub height: i32,
    pub size_bytes: i32,
    /// The bytes still wait in Postgres for the uploader.
    pub staged: bool,
    pub object_key: Option<String>,
    pub point_id: Option<Uuid>,
    pub model_version: Option<String>,
}

/// `rvcctl product status SKU|ID`
#[derive(Debug, Clone, Serialize)]
pub struct ProductStatusOutput {
    pub id: Uuid,
    pub sku: String,
    pub name: String,
    pub category: String,
    pub price: String,
    pub currency: String,
    pub version: i32,
    pub status: ProductStatus,
    pub archived: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub photos: Vec<PhotoView>,
    pub timeline: Vec<TimelineStep>,
}

/// `rvcctl reconcile`
#[derive(Debug, Clone, Serialize)]
pub struct ReconcileOutput {
    /// Whether `--repair` was given.
    pub repair: bool,
    /// Checks that ran.
    pub checks_run: Vec<String>,
    /// Checks that did not run, with why.
    pub checks_skipped: Vec<SkippedCheck>,
    pub findings: Vec<Finding>,
    /// Rows enqueued by this run (empty without `--repair`, and on a second `--repair`).
    pub enqueued: Vec<Enqueued>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SkippedCheck {
    pub check: String,
    pub reason: String,
}

/// One piece of drift.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// `photo_missing_object_key`, `indexed_photo_missing_point`, `product_stuck`,
    /// `object_missing`, `object_unreferenced` or `point_missing`.
    pub check: String,
    pub product_id: Option<Uuid>,
    pub sku: Option<String>,
    pub product_version: Option<i32>,
    pub status: Option<ProductStatus>,
    pub ordinal: Option<i16>,
    pub object_key: Option<String>,
    pub point_id: Option<Uuid>,
    pub detail: String,
    /// The step that fixes it (null: no automatic repair, see `detail`).
    pub fix_step: Option<OutboxKind>,
    /// `none` (not repairable automatically), `not_repaired` (run with --repair),
    /// `enqueued` (this run), `already_queued` (a pending/leased row of this or an earlier
    /// step exists: it will fix it).
    pub repair: RepairState,
    /// The row that fixes it (enqueued now or already queued).
    pub repair_event_id: Option<Uuid>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RepairState {
    None,
    NotRepaired,
    Enqueued,
    AlreadyQueued,
}

#[derive(Debug, Clone, Serialize)]
pub struct Enqueued {
    pub event_id: Uuid,
    pub product_id: Uuid,
    pub product_version: i32,
    pub kind: OutboxKind,
    /// Set when the product was moved out of `failed` along with the enqueue.
    pub status_after: Option<ProductStatus>,
}
