//! The ingest transaction against a real Postgres: all or nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use rvc_store::products::{ingest, FailPoint, IngestOutcome, NewProduct};
use rvc_store::StoreError;
use rvc_test_support::TestDb;

/// [`common::product_priced`] with a trace context, as the API writes it.
fn product(sku: &str, price: &str) -> NewProduct {
    NewProduct {
        traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
        ..common::product_priced(sku, price)
    }
}

async fn counts(db: &TestDb) -> (i64, i64, i64) {
    (
        db.count("SELECT count(*) FROM products").await,
        db.count("SELECT count(*) FROM product_images").await,
        db.count("SELECT count(*) FROM outbox").await,
    )
}

#[tokio::test]
async fn a_fault_after_the_product_insert_leaves_no_row_at_all() {
    let db = TestDb::new().await;
    for point in [FailPoint::AfterProductWrite, FailPoint::AfterImages] {
        let mut c = db.client().await;
        let tx = c.transaction().await.unwrap();
        let err = ingest(&tx, &product("T-1", "1.00"), Some(point))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::InjectedFault(p) if p == point));
        drop(tx); // the caller never commits on error
        assert_eq!(counts(&db).await, (0, 0, 0), "{point:?}");
        assert_eq!(db.count("SELECT count(*) FROM categories").await, 0);
    }
    // The same fault on an update leaves version 1 untouched.
    let mut c = db.client().await;
    let tx = c.transaction().await.unwrap();
    ingest(&tx, &product("T-1", "1.00"), None).await.unwrap();
    tx.commit().await.unwrap();
    let tx = c.transaction().await.unwrap();
    ingest(&tx, &product("T-1", "2.00"), Some(FailPoint::AfterImages))
        .await
        .unwrap_err();
    drop(tx);
    assert_eq!(counts(&db).await, (1, 1, 1));
    assert_eq!(
        db.count("SELECT count(*) FROM products WHERE version = 1 AND price_minor = 100")
            .await,
        1
    );
}

#[tokio::test]
async fn the_outbox_row_carries_version_and_traceparent() {
    let db = TestDb::new().await;
    let mut c = db.client().await;
    let tx = c.transaction().await.unwrap();
    let out = ingest(&tx, &product("T-2", "1.00"), None).await.unwrap();
    tx.commit().await.unwrap();
    let IngestOutcome::Accepted {
        event_id,
        version,
        created,
        ..
    } = out
    else {
        panic!("expected Accepted, got {out:?}")
    };
    assert!(created);
    let r = c
        .query_one(
            "SELECT product_version, traceparent, kind FROM outbox WHERE event_id = $1",
            &[&event_id],
        )
        .await
        .unwrap();
    assert_eq!(r.get::<_, i32>(0), version);
    assert!(r.get::<_, String>(1).starts_with("00-0af7651916cd43dd"));
    assert_eq!(r.get::<_, String>(2), "upload_images");
}

#[tokio::test]
async fn concurrent_first_posts_of_one_sku_make_one_product() {
    let db = TestDb::new().await;
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let url = db.url.clone();
        tasks.push(tokio::spawn(async move {
            let (mut c, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(conn);
            let tx = c.transaction().await.unwrap();
            let out = ingest(&tx, &product("RACE", "3.00"), None).await.unwrap();
            tx.commit().await.unwrap();
            out
        }));
    }
    let mut accepted = 0;
    for t in tasks {
        if matches!(t.await.unwrap(), IngestOutcome::Accepted { .. }) {
            accepted += 1;
        }
    }
    assert_eq!(accepted, 1, "the others saw an unchanged product");
    assert_eq!(counts(&db).await, (1, 1, 1));
}

/// Issue 11, item 5: an ingest whose transaction is still open (streaming photos, say) must
/// not hold back another ingest of the same existing category. Before the fix the second one
/// waited on the category row lock of `ON CONFLICT DO UPDATE` until the first committed.
#[tokio::test]
async fn ingests_of_one_category_do_not_wait_for_each_other() {
    let db = TestDb::new().await;
    // The category exists already.
    {
        let mut c = db.client().await;
        let tx = c.transaction().await.unwrap();
        ingest(&tx, &product("CAT-0", "1.00"), None).await.unwrap();
        tx.commit().await.unwrap();
    }
    let mut c1 = db.client().await;
    let tx1 = c1.transaction().await.unwrap();
    ingest(&tx1, &product("CAT-1", "1.00"), None).await.unwrap();
    // tx1 stays open while a second ingest of the same category runs.
    let mut c2 = db.client().await;
    let second = tokio::time::timeout(std::time::Duration::from_secs(3), async {
        let tx2 = c2.transaction().await.unwrap();
        ingest(&tx2, &product("CAT-2", "1.00"), None).await.unwrap();
        tx2.commit().await.unwrap();
    })
    .await;
    assert!(
        second.is_ok(),
        "the second ingest waited for the first one's category lock"
    );
    tx1.commit().await.unwrap();
    assert_eq!(
        db.count("SELECT count(*) FROM categories WHERE name = 'Drinks'")
            .await,
        1
    );
    assert_eq!(db.count("SELECT count(*) FROM products").await, 3);
}
