//! Orphan collection: objects under `products/` that Postgres does not need any more.
//!
//! An object is deleted when
//! * **orphan**: no `product_images` row refers to it (neither by `object_key` nor, for a
//!   photo still staged, by the key its upload will use) and it is older than the grace
//!   period; the grace period covers an upload whose row is not visible yet;
//! * **superseded**: every row that refers to it belongs to a version older than its
//!   product's current one, the product is `indexed` (the newer version is fully in place),
//!   and no outbox work of that old version is pending or leased.
//!
//! A key referred to by any other row (the current version, a version still in the pipeline,
//! a photo still staged) is kept, whatever its age: the same photo (same sha256, same key) is
//! shared by versions. Every orphan is HEADed again (an upload may just have rewritten it),
//! and right before deleting a product's keys they are classified again in Postgres while GC
//! holds that product's object lock ([`lock_product_objects`]), which the upload step takes
//! before dropping staged bytes: a newer version that re-adds a photo either is seen by GC
//! (object kept) or finds the object gone at its commit (bytes kept, PUT again).
use crate::error::{DbContext, UploaderError};
use chrono::{DateTime, Utc};
use rvc_objects::{ObjectMeta, ObjectStore};
use serde::Serialize;
use std::collections::HashMap;
use std::time::Duration;
use uuid::Uuid;

/// Where product images live.
pub const PRODUCTS_PREFIX: &str = "products/";
/// Keys classified per query and deleted per re-check.
const BATCH: usize = 500;
/// First key of the advisory lock on one product's objects (the second is
/// `hashtext(product_id)`); "OBJS".
const OBJECTS_LOCK_CLASS: i32 = 0x4F42_4A53;

/// Takes the transaction-scoped lock on `product_id`'s objects. GC holds it from its last
/// classification of a product's keys to their DELETEs; the upload step holds it from
/// verifying its objects to dropping the staged bytes. So either the upload's commit sees the
/// object gone (and keeps the bytes, to PUT again) or GC sees the new version's row (and
/// keeps the object): no window is left in between.
pub async fn lock_product_objects<C: tokio_postgres::GenericClient>(
    tx: &C,
    product_id: Uuid,
) -> Result<(), tokio_postgres::Error> {
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, hashtext($2::uuid::text))",
        &[&OBJECTS_LOCK_CLASS, &product_id],
    )
    .await?;
    Ok(())
}

/// Why an object is (or would be) deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GcReason {
    Orphan,
    Superseded,
}

impl GcReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Orphan => "orphan",
            Self::Superseded => "superseded",
        }
    }
}

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
             the {} s grace period, {} after re-check; {verb} {} orphans and {} superseded ({} bytes)",
            if self.dry_run { " (dry run)" } else { "" },
            self.scanned,
            self.referenced,
            self.young,
            self.grace_secs,
            self.rechecked_kept,
            self.count(GcReason::Orphan),
            self.count(GcReason::Superseded),
            self.bytes()
        )
    }
}

/// `products/{uuid}/{sha256}.{ext}` → (product id, sha256); `None` for other keys.
fn parse_key(key: &str) -> Option<(Uuid, String)> {
    let rest = key.strip_prefix(PRODUCTS_PREFIX)?;
    let (id, file) = rest.split_once('/')?;
    let (sha, _ext) = file.split_once('.')?;
    let id = Uuid::parse_str(id).ok()?;
    (sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_hexdigit())).then(|| (id, sha.to_owned()))
}

/// How Postgres sees a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refs {
    /// No row refers to it.
    None,
    /// Only rows of superseded versions refer to it.
    SupersededOnly,
    /// A row that still needs it refers to it.
    Live,
}

/// Classifies `keys` against `product_images`. A row refers to a key by its `object_key`,
/// or (staged or not) by its product id and sha256, the parts of the deterministic key: a
/// photo still staged is thus protected before its upload has committed.
async fn classify<C: tokio_postgres::GenericClient>(
    client: &C,
    keys: &[&str],
) -> Result<HashMap<String, Refs>, UploaderError> {
    let mut out = HashMap::with_capacity(keys.len());
    for chunk in keys.chunks(BATCH) {
        let parsed: Vec<Option<(Uuid, String)>> = chunk.iter().map(|k| parse_key(k)).collect();
        let pids: Vec<Option<Uuid>> = parsed.iter().map(|p| p.as_ref().map(|p| p.0)).collect();
        let shas: Vec<Option<&str>> = parsed
            .iter()
            .map(|p| p.as_ref().map(|p| p.1.as_str()))
            .collect();
        let rows = client
            .query(
                "WITH refs AS (
                   SELECT t.key, i.product_id, i.version
                   FROM unnest($1::text[], $2::uuid[], $3::text[]) AS t(key, pid, sha)
                   JOIN product_images i ON i.object_key = t.key
                   UNION
                   SELECT t.key, i.product_id, i.version
                   FROM unnest($1::text[], $2::uuid[], $3::text[]) AS t(key, pid, sha)
                   JOIN product_images i ON i.product_id = t.pid AND i.sha256 = t.sha
                 )
                 SELECT r.key,
                        bool_or(NOT (r.version < p.version AND p.status = 'indexed'
                            AND NOT EXISTS (SELECT 1 FROM outbox o
                                            WHERE o.product_id = r.product_id
                                              AND o.product_version = r.version
                                              AND o.state IN ('pending', 'leased')))) AS live
                 FROM refs r JOIN products p ON p.id = r.product_id
                 GROUP BY r.key",
                &[&chunk, &pids, &shas],
            )
            .await
            .ctx("classify object keys")?;
        for k in chunk {
            out.insert((*k).to_owned(), Refs::None);
        }
        for r in rows {
            let key: String = r.get(0);
            let live: bool = r.get(1);
            out.insert(
                key,
                if live {
                    Refs::Live
                } else {
                    Refs::SupersededOnly
                },
            );
        }
    }
    Ok(out)
}

/// Deletes (or with `dry_run` only lists) the objects under `products/` that Postgres does
/// not need: orphans older than `grace`, and the objects of superseded versions.
pub async fn collect_orphans(
    pool: &deadpool_postgres::Pool,
    store: &dyn ObjectStore,
    grace: Duration,
    dry_run: bool,
) -> Result<GcReport, UploaderError> {
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
        let refs = classify(pg_client(&client), &keys).await?;
        for o in chunk {
            match refs.get(&o.key).copied().unwrap_or(Refs::Live) {
                Refs::Live => report.referenced += 1,
                Refs::SupersededOnly => candidates.push((o.clone(), GcReason::Superseded)),
                Refs::None if o.last_modified <= cutoff => {
                    candidates.push((o.clone(), GcReason::Orphan))
                }
                Refs::None => report.young += 1,
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
            lock_product_objects(&tx, pid)
                .await
                .ctx("lock product objects")?;
            delete_rechecked(&tx, store, items, &mut report).await?;
            tx.commit().await.ctx("gc commit")?;
        }
        if !unparsed.is_empty() {
            // Keys that name no product (planted by hand) cannot be re-added by an upload.
            delete_rechecked(pg_client(&client), store, unparsed, &mut report).await?;
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
    report: &mut GcReport,
) -> Result<(), UploaderError> {
    let keys: Vec<&str> = items.iter().map(|(o, _)| o.key.as_str()).collect();
    let refs = classify(db, &keys).await?;
    items.retain(|(o, reason)| {
        let still = matches!(
            (refs.get(&o.key).copied().unwrap_or(Refs::Live), reason),
            (Refs::None, GcReason::Orphan) | (Refs::SupersededOnly, _)
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
    }
}
