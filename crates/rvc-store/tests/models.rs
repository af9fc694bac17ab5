//! Recognition models against a real Postgres: the first model is registered once; a
//! migration enqueues one `embed` row per product that is not archived, in one transaction,
//! and is refused when it would clash; the switch waits for every `embed` row (a dead one
//! holds it and never fails the product) and moves the photos' points in one transaction.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::create;

use rvc_domain::{ModelState, OutboxKind};
use rvc_outbox::{Outbox, StepError};
use rvc_store::archive::archive;
use rvc_store::models;
use rvc_store::products::ProductRef;
use rvc_store::StoreError;
use rvc_test_support::TestDb;
use std::time::Duration;
use uuid::Uuid;

async fn start(db: &TestDb, version: &str, collection: &str) -> Result<u64, StoreError> {
    let mut c = db.client().await;
    let tx = c.transaction().await.unwrap();
    let started = models::start_migration(&tx, version, collection, "http://ml-b:50051").await?;
    tx.commit().await.unwrap();
    Ok(started.enqueued)
}

#[tokio::test]
async fn the_first_model_is_registered_once() {
    let db = TestDb::new().await;
    let c = db.client().await;
    let a = models::seed_active(&c, "m@1", "images_a", "http://ml:1")
        .await
        .unwrap();
    assert_eq!(
        (a.model_version.as_str(), a.state),
        ("m@1", ModelState::Active)
    );
    // another vectorizer with another model does not take over
    let again = models::seed_active(&c, "m@2", "images_b", "http://ml:2")
        .await
        .unwrap();
    assert_eq!(again.model_version, "m@1");
    assert_eq!(models::list(&c).await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_migration_enqueues_one_embed_row_per_live_product_and_refuses_clashes() {
    let db = TestDb::new().await;
    // no active model yet: nothing to migrate from
    let err = start(&db, "m@2", "images_b").await.unwrap_err();
    assert!(err.to_string().contains("no active model"), "{err}");

    let c = db.client().await;
    models::seed_active(&c, "m@1", "images_a", "http://ml:1")
        .await
        .unwrap();
    let (p1, p2, gone) = (
        create(&db, "MOD-1").await,
        create(&db, "MOD-2").await,
        create(&db, "MOD-3").await,
    );
    let mut tx_client = db.client().await;
    let tx = tx_client.transaction().await.unwrap();
    archive(&tx, &ProductRef::Id(gone), None).await.unwrap();
    tx.commit().await.unwrap();

    for (version, collection, why) in [
        ("m@1", "images_x", "nothing to migrate"),
        ("m@2", "images_a", "choose another collection"),
    ] {
        let err = start(&db, version, collection).await.unwrap_err();
        assert!(err.to_string().contains(why), "{err}");
    }
    assert_eq!(start(&db, "m@2", "images_b").await.unwrap(), 2);
    let rows = c
        .query(
            "SELECT product_id, payload ->> 'model_version' AS m FROM outbox
             WHERE kind = 'embed' ORDER BY product_id",
            &[],
        )
        .await
        .unwrap();
    let mut got: Vec<(Uuid, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let mut want = vec![(p1, "m@2".to_owned()), (p2, "m@2".to_owned())];
    got.sort();
    want.sort();
    assert_eq!(got, want, "the archived product gets no embed row");
    // one migration at a time
    let err = start(&db, "m@3", "images_c").await.unwrap_err();
    assert!(err.to_string().contains("already being built"), "{err}");
    assert_eq!(
        db.count("SELECT count(*) FROM outbox WHERE kind = 'embed'")
            .await,
        2,
        "a refused start writes nothing"
    );
}

#[tokio::test]
async fn the_switch_waits_for_every_embed_row_and_a_dead_one_never_fails_the_product() {
    let db = TestDb::new().await;
    let c = db.client().await;
    models::seed_active(&c, "m@1", "images_a", "http://ml:1")
        .await
        .unwrap();
    let (p1, p2) = (create(&db, "SW-1").await, create(&db, "SW-2").await);
    c.batch_execute(
        "UPDATE products SET status = 'indexed';
         UPDATE outbox SET state = 'done', completed_at = now();",
    )
    .await
    .unwrap();
    start(&db, "m@2", "images_b").await.unwrap();
    let mut pooled = db.pool.get().await.unwrap();
    assert_eq!(
        models::activate_if_complete(&mut pooled, "m@2")
            .await
            .unwrap(),
        None,
        "two embed rows to go"
    );

    // p1's row is done (with its points recorded); p2's dies.
    let outbox = Outbox::new(db.pool.clone(), "test", rvc_store::pipeline::hooks());
    let jobs = outbox
        .claim(OutboxKind::Embed, 10, Duration::from_secs(30), false)
        .await
        .unwrap();
    assert_eq!(jobs.len(), 2);
    let (j1, j2) = if jobs[0].product_id == p1 {
        (&jobs[0], &jobs[1])
    } else {
        (&jobs[1], &jobs[0])
    };
    let point = Uuid::now_v7();
    {
        let tx = tokio_postgres::Client::transaction(&mut pooled)
            .await
            .unwrap();
        models::record_points(&tx, "m@2", p1, 1, &[(0, point)])
            .await
            .unwrap();
        outbox
            .complete_in(&tx, OutboxKind::Embed, std::slice::from_ref(j1))
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }
    outbox
        .fail(
            j2,
            &StepError::permanent("the new ML service rejects it"),
            &Default::default(),
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) FROM products WHERE id = '{p2}' AND status = 'indexed'"
        ))
        .await,
        1,
        "a dead embed row leaves its product indexed"
    );
    assert_eq!(
        models::activate_if_complete(&mut pooled, "m@2")
            .await
            .unwrap(),
        None,
        "the dead row holds the switch"
    );
    let status = models::status(&c).await.unwrap();
    let b = status
        .iter()
        .find(|m| m.model.model_version == "m@2")
        .unwrap();
    assert_eq!((b.done, b.total, b.dead), (1, 2, 1));

    // cancelled by the operator: the switch happens, the photos name the new points
    c.execute(
        "UPDATE outbox SET state = 'done', completed_at = now() WHERE state = 'dead'",
        &[],
    )
    .await
    .unwrap();
    let a = models::activate_if_complete(&mut pooled, "m@2")
        .await
        .unwrap()
        .expect("activated");
    assert_eq!(a.retired_model_version.as_deref(), Some("m@1"));
    assert_eq!(a.photos_switched, 1);
    let r = c
        .query_one(
            "SELECT point_id, model_version FROM product_images WHERE product_id = $1",
            &[&p1],
        )
        .await
        .unwrap();
    assert_eq!(r.get::<_, Option<Uuid>>(0), Some(point));
    assert_eq!(r.get::<_, Option<String>>(1).as_deref(), Some("m@2"));
    assert_eq!(db.count("SELECT count(*) FROM model_points").await, 0);
    let active = models::active(&c).await.unwrap().unwrap();
    assert_eq!(active.model_version, "m@2");
    // the retired model is due for its drop only after the grace
    assert!(models::due_for_drop(&c, Duration::from_secs(3600))
        .await
        .unwrap()
        .is_empty());
    let due = models::due_for_drop(&c, Duration::ZERO).await.unwrap();
    assert_eq!(due.len(), 1);
    models::mark_dropped(&c, "m@1").await.unwrap();
    assert!(models::due_for_drop(&c, Duration::ZERO)
        .await
        .unwrap()
        .is_empty());
}
