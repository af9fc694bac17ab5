//! GC and archived products: an archived product's photos stay for the archive retention
//! (an un-archive re-uses them) and are collected, as `archived`, after it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use rvc_maintenance::{collect_orphans_with, GcReason};
use rvc_objects::{FsStore, Metadata, ObjectStore};
use rvc_test_support::TestDb;
use std::time::Duration;
use uuid::Uuid;

const HOUR: Duration = Duration::from_secs(3600);

/// A product archived `archived_mins_ago` minutes ago (archive version 2, indexed) whose
/// version 1 had one photo, stored under its key.
async fn archived_product(db: &TestDb, store: &dyn ObjectStore, archived_mins_ago: f64) -> String {
    let id = Uuid::now_v7();
    let sha = rvc_domain::sha256_hex(id.as_bytes());
    let key = format!("products/{id}/{sha}.png");
    let c = db.pool.get().await.unwrap();
    c.execute(
        "INSERT INTO categories (name) VALUES ('gc') ON CONFLICT (name) DO NOTHING",
        &[],
    )
    .await
    .unwrap();
    c.execute(
        "INSERT INTO products (id, sku, name, category_id, price_minor, currency, version,
                               content_hash, status, archived, archived_at)
         SELECT $1, $2, 'Archived', id, 100, 'EUR', 2, 'h', 'indexed', TRUE,
                now() - make_interval(secs => $3)
         FROM categories WHERE name = 'gc'",
        &[&id, &format!("SKU-{id}"), &(archived_mins_ago * 60.0)],
    )
    .await
    .unwrap();
    c.execute(
        "INSERT INTO product_images (product_id, version, ordinal, sha256, content_type, width,
                                     height, size_bytes, object_key)
         VALUES ($1, 1, 0, $2, 'image/png', 1, 1, 10, $3)",
        &[&id, &sha, &key],
    )
    .await
    .unwrap();
    store
        .put(
            &key,
            Bytes::from_static(b"\x89PNG photo"),
            "image/png",
            &Metadata::new(),
        )
        .await
        .unwrap();
    key
}

#[tokio::test]
async fn archived_photos_are_kept_for_the_retention_and_collected_after() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::new(dir.path());
    store.ensure_bucket().await.unwrap();
    let recent = archived_product(&db, &store, 10.0).await;
    let old = archived_product(&db, &store, 120.0).await;

    // Retention 1 h: the product archived 2 h ago goes, the one archived 10 min ago stays.
    let dry = collect_orphans_with(&db.pool, &store, HOUR, HOUR, true)
        .await
        .unwrap();
    assert_eq!(
        dry.deleted
            .iter()
            .map(|i| (&*i.key, i.reason))
            .collect::<Vec<_>>(),
        vec![(old.as_str(), GcReason::Archived)],
        "{dry}"
    );
    let report = collect_orphans_with(&db.pool, &store, HOUR, HOUR, false)
        .await
        .unwrap();
    assert_eq!(report.count(GcReason::Archived), 1, "{report}");
    assert!(report.to_string().contains("1 archived"), "{report}");
    assert!(store.head(&old).await.unwrap().is_none());
    assert!(store.head(&recent).await.unwrap().is_some());
    assert_eq!(report.referenced, 1);

    // With a retention of 5 minutes the recent one goes too.
    let report = collect_orphans_with(&db.pool, &store, HOUR, Duration::from_secs(300), false)
        .await
        .unwrap();
    assert_eq!(report.count(GcReason::Archived), 1, "{report}");
    assert!(store.head(&recent).await.unwrap().is_none());
}

#[tokio::test]
async fn an_unarchived_product_keeps_its_photos_whatever_the_retention() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::new(dir.path());
    store.ensure_bucket().await.unwrap();
    let key = archived_product(&db, &store, 120.0).await;
    // Un-archived as version 3 with the same photo (what a re-POST writes).
    let c = db.pool.get().await.unwrap();
    c.execute(
        "UPDATE products SET version = 3, archived = FALSE, archived_at = NULL,
                status = 'registered'",
        &[],
    )
    .await
    .unwrap();
    c.execute(
        "INSERT INTO product_images (product_id, version, ordinal, sha256, content_type, width,
                                     height, size_bytes, staged_bytes)
         SELECT product_id, 3, 0, sha256, content_type, 1, 1, 10, '\\x00'::bytea
         FROM product_images",
        &[],
    )
    .await
    .unwrap();
    let report = collect_orphans_with(&db.pool, &store, HOUR, Duration::ZERO, false)
        .await
        .unwrap();
    assert!(report.deleted.is_empty(), "{report}");
    assert!(store.head(&key).await.unwrap().is_some());
}
