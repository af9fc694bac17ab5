//! Archiving against a real Postgres: one transaction writes the archive version and its
//! outbox row; a second archive writes nothing; the read side sees it (the cache-invalidation
//! trigger fires, recognition leaves it out); a re-POST un-archives it as a new version.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{create, product};

use rvc_store::archive::archive;
use rvc_store::products::{ingest, IngestOutcome, ProductRef};
use rvc_test_support::TestDb;
use uuid::Uuid;

#[tokio::test]
async fn archive_writes_one_version_and_one_outbox_row_and_is_idempotent() {
    let db = TestDb::new().await;
    let id = create(&db, "AR-1").await;
    let revision_before = db
        .count(&format!("SELECT revision FROM products WHERE id = '{id}'"))
        .await;
    db.client()
        .await
        .execute("DELETE FROM cache_invalidations", &[])
        .await
        .unwrap();

    let mut c = db.client().await;
    let tx = c.transaction().await.unwrap();
    let first = archive(&tx, &ProductRef::Sku("AR-1".into()), None)
        .await
        .unwrap()
        .expect("found");
    tx.commit().await.unwrap();
    assert_eq!(first.product_id, id);
    assert_eq!(first.version, 2);
    assert!(first.archived_at.is_some());
    let event_id = first.event_id.expect("an outbox row");

    // The archive version: archived, registered, no photos; its first step carries the change.
    let row = c
        .query_one(
            "SELECT version, status, archived, archived_at IS NOT NULL AS dated FROM products
             WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>("version"), 2);
    assert_eq!(row.get::<_, String>("status"), "registered");
    assert!(row.get::<_, bool>("archived"));
    assert!(row.get::<_, bool>("dated"));
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) FROM product_images WHERE product_id = '{id}' AND version = 2"
        ))
        .await,
        0
    );
    let out = c
        .query_one(
            "SELECT kind, product_version, payload->>'change' AS change FROM outbox
             WHERE event_id = $1",
            &[&event_id],
        )
        .await
        .unwrap();
    assert_eq!(out.get::<_, String>("kind"), "upload_images");
    assert_eq!(out.get::<_, i32>("product_version"), 2);
    assert_eq!(out.get::<_, String>("change"), "archive");

    // The read side's cache invalidation fired with the new revision.
    let rev_after = db
        .count(&format!("SELECT revision FROM products WHERE id = '{id}'"))
        .await;
    assert!(rev_after > revision_before);
    assert_eq!(
        db.count(&format!(
            "SELECT revision FROM cache_invalidations WHERE product_id = '{id}'"
        ))
        .await,
        rev_after
    );
    // The catalog reports it archived; recognition leaves it out even once indexed.
    let read = rvc_store::catalog::products_by_ids(&c, &[id])
        .await
        .unwrap();
    assert!(read[0].archived);
    c.execute(
        "UPDATE products SET status = 'indexed' WHERE id = $1",
        &[&id],
    )
    .await
    .unwrap();
    assert!(rvc_store::recognizable::recognizable(&c, &[id])
        .await
        .unwrap()
        .is_empty());

    // Again, by id: the same answer, nothing written.
    let outbox_rows = db.count("SELECT count(*) FROM outbox").await;
    let tx = c.transaction().await.unwrap();
    let again = archive(&tx, &ProductRef::Id(id), None)
        .await
        .unwrap()
        .expect("found");
    tx.commit().await.unwrap();
    assert_eq!(again.version, first.version);
    assert_eq!(again.archived_at, first.archived_at);
    assert_eq!(again.event_id, None);
    assert_eq!(db.count("SELECT count(*) FROM outbox").await, outbox_rows);
    assert_eq!(
        db.count(&format!(
            "SELECT version::bigint FROM products WHERE id = '{id}'"
        ))
        .await,
        2
    );

    // Unknown products are None (the API's 404), and nothing is written.
    let tx = c.transaction().await.unwrap();
    assert!(archive(&tx, &ProductRef::Id(Uuid::now_v7()), None)
        .await
        .unwrap()
        .is_none());
    assert!(archive(&tx, &ProductRef::Sku("NOPE".into()), None)
        .await
        .unwrap()
        .is_none());
    tx.commit().await.unwrap();
    assert_eq!(db.count("SELECT count(*) FROM outbox").await, outbox_rows);
}

#[tokio::test]
async fn re_posting_an_archived_sku_unarchives_it_as_a_new_version() {
    let db = TestDb::new().await;
    let id = create(&db, "AR-2").await;
    let mut c = db.client().await;
    let tx = c.transaction().await.unwrap();
    archive(&tx, &ProductRef::Id(id), None).await.unwrap();
    tx.commit().await.unwrap();

    // The same content as version 1: not "unchanged", since the product is archived.
    let tx = c.transaction().await.unwrap();
    let out = ingest(&tx, &product("AR-2"), None).await.unwrap();
    tx.commit().await.unwrap();
    let IngestOutcome::Accepted {
        product_id,
        version,
        created,
        ..
    } = out
    else {
        panic!("expected a new version, got {out:?}")
    };
    assert_eq!((product_id, version, created), (id, 3, false));
    let row = c
        .query_one(
            "SELECT archived, archived_at FROM products WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    assert!(!row.get::<_, bool>("archived"));
    assert!(row
        .get::<_, Option<chrono::DateTime<chrono::Utc>>>("archived_at")
        .is_none());
    // Its outbox row is an ordinary update (no change in the payload).
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) FROM outbox WHERE product_id = '{id}' AND product_version = 3
               AND payload->>'change' IS NULL"
        ))
        .await,
        1
    );
}
