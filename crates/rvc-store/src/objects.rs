//! What Postgres says about stored objects: which photo keys a row still needs (object
//! collection asks before it deletes), the per-product object lock that GC and the upload
//! step share, and the lock that lets one process run a maintenance tick.
use crate::{DbContext, StoreError};
use rvc_domain::ImageKey;
use std::collections::HashMap;
use std::time::Duration;
use tokio_postgres::GenericClient;
use uuid::Uuid;

/// First key of the advisory lock on one product's objects (the second is
/// `hashtext(product_id)`); "OBJS".
const OBJECTS_LOCK_CLASS: i32 = 0x4F42_4A53;

/// Advisory-lock key of the maintenance tick ("rvc-gc" in ASCII).
const MAINTENANCE_LOCK: i64 = 0x7276_632d_6763;

/// Keys classified per query.
const BATCH: usize = 500;

/// Takes the transaction-scoped lock on `product_id`'s objects. GC holds it from its last
/// classification of a product's keys to their DELETEs. The upload step, when GC held it while
/// the step loaded its photos ([`objects_lock_free`]), holds it from verifying its objects to
/// dropping the staged bytes. So either the upload's commit sees the object gone (and keeps
/// the bytes, to PUT again) or GC sees the new version's row (and keeps the object): no window
/// is left in between.
pub async fn lock_product_objects<C: GenericClient>(
    tx: &C,
    product_id: Uuid,
) -> Result<(), StoreError> {
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, hashtext($2::uuid::text))",
        &[&OBJECTS_LOCK_CLASS, &product_id],
    )
    .await
    .ctx("lock product objects")?;
    Ok(())
}

/// Whether nobody holds `product_id`'s object lock right now: it takes the lock and lets it go
/// at once. Call it outside a transaction (on a transaction the lock would stay until its end).
///
/// GC deletes a product's objects only while it holds this lock, from a classification that
/// sees every committed row to the DELETEs. So when the lock is free at some instant, a GC
/// pass that deletes one of the product's objects later took the lock later and classified
/// later: it sees every row committed before that instant, and keeps what they still need.
/// The upload step asks this when it loads a version's photos; only when GC held the lock then
/// does it check at commit that its objects are still there.
pub async fn objects_lock_free<C: GenericClient>(
    db: &C,
    product_id: Uuid,
) -> Result<bool, StoreError> {
    db.query_one(
        "SELECT pg_try_advisory_xact_lock($1, hashtext($2::uuid::text)) AS free",
        &[&OBJECTS_LOCK_CLASS, &product_id],
    )
    .await
    .ctx("probe product objects lock")?
    .try_get("free")
    .ctx("probe product objects lock")
    .map_err(Into::into)
}

/// How Postgres sees an object key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRefs {
    /// No row refers to it.
    None,
    /// Only rows of superseded versions refer to it.
    SupersededOnly,
    /// Only rows of versions superseded by an archive past its retention refer to it.
    ArchivedOnly,
    /// A row that still needs it refers to it.
    Live,
}

/// Classifies `keys` against `product_images`. A row refers to a key by its `object_key`,
/// or (staged or not) by its product id and sha256, the parts of the deterministic
/// [`ImageKey`]: a photo still staged is thus protected before its upload has committed.
///
/// A row "still needs" its key unless its version is older than the product's current one,
/// the product is `indexed`, no outbox work of that version is pending or leased, and the
/// product is not archived more recently than `archive_retention` ago (within it the photos
/// stay, so an un-archive finds them). Every key of `keys` is in the answer.
pub async fn classify_keys<C: GenericClient>(
    db: &C,
    keys: &[&str],
    archive_retention: Duration,
) -> Result<HashMap<String, KeyRefs>, StoreError> {
    let mut out = HashMap::with_capacity(keys.len());
    for chunk in keys.chunks(BATCH) {
        let parsed: Vec<Option<ImageKey>> = chunk.iter().map(|k| ImageKey::parse(k).ok()).collect();
        let pids: Vec<Option<Uuid>> = parsed
            .iter()
            .map(|k| k.as_ref().map(ImageKey::product_id))
            .collect();
        let shas: Vec<Option<&str>> = parsed
            .iter()
            .map(|k| k.as_ref().map(ImageKey::sha256))
            .collect();
        let rows = db
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
                                              AND o.state IN ('pending', 'leased'))
                            AND NOT (p.archived AND coalesce(
                                p.archived_at > now() - make_interval(secs => $4), FALSE))))
                          AS live,
                        bool_and(p.archived) AS archived
                 FROM refs r JOIN products p ON p.id = r.product_id
                 GROUP BY r.key",
                &[&chunk, &pids, &shas, &archive_retention.as_secs_f64()],
            )
            .await
            .ctx("classify object keys")?;
        for k in chunk {
            out.insert((*k).to_owned(), KeyRefs::None);
        }
        for r in rows {
            let key: String = r.try_get("key").ctx("classified key")?;
            let live: bool = r.try_get("live").ctx("classified key")?;
            let archived: bool = r.try_get("archived").ctx("classified key")?;
            out.insert(
                key,
                match (live, archived) {
                    (true, _) => KeyRefs::Live,
                    (false, true) => KeyRefs::ArchivedOnly,
                    (false, false) => KeyRefs::SupersededOnly,
                },
            );
        }
    }
    Ok(out)
}

/// Tries to take the maintenance lock on this session (connection); `false` when another
/// process holds it. Give it back with [`release_maintenance_lock`] before the connection
/// returns to a pool.
pub async fn try_maintenance_lock<C: GenericClient>(db: &C) -> Result<bool, StoreError> {
    db.query_one(
        "SELECT pg_try_advisory_lock($1) AS locked",
        &[&MAINTENANCE_LOCK],
    )
    .await
    .ctx("maintenance lock")?
    .try_get("locked")
    .ctx("maintenance lock")
    .map_err(Into::into)
}

/// Gives the maintenance lock back (if this fails, the connection is broken and its lock went
/// with it).
pub async fn release_maintenance_lock<C: GenericClient>(db: &C) -> Result<(), StoreError> {
    db.execute("SELECT pg_advisory_unlock($1)", &[&MAINTENANCE_LOCK])
        .await
        .ctx("release maintenance lock")?;
    Ok(())
}
