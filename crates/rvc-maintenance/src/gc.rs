//! Orphan collection: objects under `products/` that Postgres does not need any more.
//!
//! An object is deleted when
//! * **orphan**: no `product_images` row refers to it (neither by `object_key` nor, for a
//!   photo still staged, by the key its upload will use) and it is older than the grace
//!   period; the grace period covers an upload whose row is not visible yet;
//! * **superseded**: every row that refers to it belongs to a version older than its
//!   product's current one, the product is `indexed` (the newer version is fully in place),
//!   and no outbox work of that old version is pending or leased;
//! * **archived**: superseded by an archive version (the product is archived and its archive
//!   is `indexed`) and archived longer than the archive retention ago
//!   (`ARCHIVE_RETENTION_SECS`): within it the objects stay, so an un-archive (a re-POST of
//!   the SKU) finds them and uploads nothing.
//!
//! A key referred to by any other row (the current version, a version still in the pipeline,
//! a photo still staged) is kept, whatever its age: the same photo (same sha256, same key) is
//! shared by versions. Every orphan is HEADed again (an upload may just have rewritten it),
//! and right before deleting a product's keys they are classified again in Postgres while GC
//! holds that product's object lock ([`lock_product_objects`]). An upload that found the lock
//! held as it loaded its photos takes it too before dropping staged bytes; one that found it
//! free is seen by every later pass. So a newer version that re-adds a photo either is seen by
//! GC (object kept) or finds the object gone at its commit (bytes kept, PUT again).
use crate::error::{DbContext, MaintenanceError};
use chrono::{DateTime, Utc};
use rvc_domain::ImageKey;
use rvc_objects::{ObjectMeta, ObjectStore};
use rvc_store::objects::{classify_keys, lock_product_objects, KeyRefs};
use serde::Serialize;
use std::time::Duration;
use uuid::Uuid;

/// Where product images live ([`ImageKey::PREFIX`]).
pub const PRODUCTS_PREFIX: &str = ImageKey::PREFIX;
/// Candidate objects re-checked and deleted per pass.
const BATCH: usize = 500;
/// Why an object is (or would be) deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GcReason {
    Orphan,
    Superseded,
    /// Photos of an archived product, past the archive retention.
    Archived,
}

impl GcReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Orphan => "orphan",
            Self::Superseded => "superseded",
            Self::Archived => "archived",
        }
    }
}

/// How long an archived product's photos are kept by default (7 days).
pub const DEFAULT_ARCHIVE_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// One object deleted (or, in a dry run, to be deleted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GcItem {
    pub key: String,
    pub reason: GcReason,
    pub size: u64,
    pub last_modified: DateTime<Utc>,
}

/// What one collection pass saw and did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GcReport {
    pub dry_run: bool,
    pub grace_secs: u64,
    /// Objects listed under `products/`.
    pub scanned: usize,
    /// Kept because a live row refers to them.
    pub referenced: usize,
    /// Unreferenced but younger than the grace period (an upload may be in flight).
    pub young: usize,
    /// Candidates kept after the last-moment re-check (a reference or a newer write appeared).
    pub rechecked_kept: usize,
    /// Deleted objects (or, in a dry run, the objects that would be deleted).
    pub deleted: Vec<GcItem>,
}

impl GcReport {
    pub fn count(&self, reason: GcReason) -> usize {
        self.deleted.iter().filter(|i| i.reason == reason).count()
    }

    pub fn bytes(&self) -> u64 {
        self.deleted.iter().map(|i| i.size).sum()
    }
}

impl std::fmt::Display for GcReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let verb = if self.dry_run {
            "would delete"
        } else {
            "deleted"
        };
        for item in &self.deleted {
            writeln!(
                f,
                "{verb} {:<10} {} ({} bytes, last modified {})",
                item.reason.as_str(),
                item.key,
                item.size,
                item.last_modified.to_rfc3339()
            )?;
        }
        write!(
            f,
            "gc{}: scanned {} objects under {PRODUCTS_PREFIX}; kept {} referenced, {} younger than \
             the {} s grace period, {} after re-check; {verb} {} orphans, {} superseded and {} \
             archived ({} bytes)",
            if self.dry_run { " (dry run)" } else { "" },
            self.scanned,
            self.referenced,
            self.young,
            self.grace_secs,
            self.rechecked_kept,
            self.count(GcReason::Orphan),
            self.count(GcReason::Superseded),
            self.count(GcReason::Archived),
            self.bytes()
        )
    }
}

/// A photo key ([`ImageKey`]) → (product id, sha256); `None` for other keys.
fn parse_key(key: &str) -> Option<(Uuid, String)> {
    let k = ImageKey::parse(key).ok()?;
    Some((k.product_id(), k.sha256().to_owned()))
}

/// Deletes (or with `dry_run` only lists) the objects under `products/` that Postgres does
/// not need: orphans older than `grace`, and the objects of superseded versions (an archived
/// product's after [`DEFAULT_ARCHIVE_RETENTION`]; see [`collect_orphans_with`]).
pub async fn collect_orphans(
    pool: &deadpool_postgres::Pool,
    store: &dyn ObjectStore,
    grace: Duration,
    dry_run: bool,
) -> Result<GcReport, MaintenanceError> {
    collect_orphans_with(pool, store, grace, DEFAULT_ARCHIVE_RETENTION, dry_run).await
}

/// [`collect_orphans`] with the archive retention given: the photos of a product archived
/// less than `archive_retention` ago are kept.
pub async fn collect_orphans_with(
    pool: &deadpool_postgres::Pool,
    store: &dyn ObjectStore,
    grace: Duration,
    archive_retention: Duration,
    dry_run: bool,
) -> Result<GcReport, MaintenanceError> {
    let started = std::time::Instant::now();
    let mut report = GcReport {
        dry_run,
        grace_secs: grace.as_secs(),
        ..GcReport::default()
    };
    let grace_chrono = chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX);
    // Anything modified after the listing started is younger than the cutoff.
    let cutoff = Utc::now()
        .checked_sub_signed(grace_chrono)
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    let objects = store.list(PRODUCTS_PREFIX).await?;
    report.scanned = objects.len();
    let mut client = pool.get().await?;

    let mut candidates: Vec<(ObjectMeta, GcReason)> = Vec::new();
    for chunk in objects.chunks(BATCH) {
        let keys: Vec<&str> = chunk.iter().map(|o| o.key.as_str()).collect();
        let refs = classify_keys(pg_client(&client), &keys, archive_retention).await?;
        for o in chunk {
            match refs.get(&o.key).copied().unwrap_or(KeyRefs::Live) {
                KeyRefs::Live => report.referenced += 1,
                KeyRefs::SupersededOnly => candidates.push((o.clone(), GcReason::Superseded)),
                KeyRefs::ArchivedOnly => candidates.push((o.clone(), GcReason::Archived)),
                KeyRefs::None if o.last_modified <= cutoff => {
                    candidates.push((o.clone(), GcReason::Orphan))
                }
                KeyRefs::None => report.young += 1,
            }
        }
    }

    for batch in candidates.chunks(BATCH) {
        let mut batch: Vec<(ObjectMeta, GcReason)> = batch.to_vec();
        if !dry_run {
            // An orphan may have been written again since the listing (a new upload under
            // the same key): look at it once more.
            let mut fresh = Vec::with_capacity(batch.len());
            for (o, reason) in batch {
                if reason == GcReason::Orphan {
                    match store.head(&o.key).await? {
                        Some(now) if now.last_modified <= cutoff => fresh.push((o, reason)),
                        Some(_) => report.rechecked_kept += 1,
                        None => {} // already gone
                    }
                } else {
                    fresh.push((o, reason));
                }
            }
            batch = fresh;
        }
        if dry_run {
            for (o, reason) in batch {
                report.deleted.push(GcItem {
                    key: o.key,
                    reason,
                    size: o.size,
                    last_modified: o.last_modified,
                });
            }
            continue;
        }
        // Then, product by product under the product's object lock, ask Postgres again and
        // delete what is still unreferenced or superseded before releasing the lock.
        let mut by_product: std::collections::BTreeMap<Uuid, Vec<(ObjectMeta, GcReason)>> =
            Default::default();
        let mut unparsed = Vec::new();
        for (o, reason) in batch {
            match parse_key(&o.key) {
                Some((pid, _)) => by_product.entry(pid).or_default().push((o, reason)),
                None => unparsed.push((o, reason)),
            }
        }
        for (pid, items) in by_product {
            let tx = tokio_postgres::Client::transaction(&mut client)
                .await
                .ctx("gc begin")?;
            lock_product_objects(&tx, pid).await?;
            delete_rechecked(&tx, store, items, archive_retention, &mut report).await?;
            tx.commit().await.ctx("gc commit")?;
        }
        if !unparsed.is_empty() {
            // Keys that name no product (planted by hand) cannot be re-added by an upload.
            delete_rechecked(
                pg_client(&client),
                store,
                unparsed,
                archive_retention,
                &mut report,
            )
            .await?;
        }
    }
    tracing::info!(
        dry_run,
        scanned = report.scanned,
        referenced = report.referenced,
        young = report.young,
        rechecked_kept = report.rechecked_kept,
        orphans = report.count(GcReason::Orphan),
        superseded = report.count(GcReason::Superseded),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "orphan collection finished"
    );
    Ok(report)
}

fn pg_client(c: &deadpool_postgres::Client) -> &tokio_postgres::Client {
    c
}

/// Classifies `items` again in `db` and deletes those still unreferenced (orphans) or
/// superseded; the caller holds the product's object lock in `db` when the keys name one.
async fn delete_rechecked<C: tokio_postgres::GenericClient>(
    db: &C,
    store: &dyn ObjectStore,
    mut items: Vec<(ObjectMeta, GcReason)>,
    archive_retention: Duration,
    report: &mut GcReport,
) -> Result<(), MaintenanceError> {
    let keys: Vec<&str> = items.iter().map(|(o, _)| o.key.as_str()).collect();
    let refs = classify_keys(db, &keys, archive_retention).await?;
    items.retain(|(o, reason)| {
        let still = matches!(
            (refs.get(&o.key).copied().unwrap_or(KeyRefs::Live), reason),
            (KeyRefs::None, GcReason::Orphan)
                | (
                    KeyRefs::SupersededOnly | KeyRefs::ArchivedOnly,
                    GcReason::Superseded
                )
                | (
                    KeyRefs::ArchivedOnly | KeyRefs::SupersededOnly,
                    GcReason::Archived
                )
        );
        if !still {
            report.rechecked_kept += 1;
        }
        still
    });
    for (o, reason) in items {
        store.delete(&o.key).await?;
        metrics::counter!("rvc_gc_deleted_total", "reason" => reason.as_str()).increment(1);
        tracing::info!(key = %o.key, reason = reason.as_str(), size = o.size,
            last_modified = %o.last_modified, "gc deleted object");
        report.deleted.push(GcItem {
            key: o.key,
            reason,
            size: o.size,
            last_modified: o.last_modified,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn parses_deterministic_keys_only() {
        let id = Uuid::now_v7();
        let sha = "ab".repeat(32);
        assert_eq!(
            parse_key(&format!("products/{id}/{sha}.png")),
            Some((id, sha.clone()))
        );
        assert_eq!(parse_key(&format!("products/{id}/short.png")), None);
        assert_eq!(parse_key(&format!("products/nope/{sha}.png")), None);
        assert_eq!(parse_key(&format!("other/{id}/{sha}.png")), None);
        assert_eq!(parse_key(&format!("products/{id}/{sha}.bin")), None);
    }
}
