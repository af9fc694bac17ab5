//! A model migration at the vectorize step: while the building model's ML service is down,
//! products still go through with the active model, and each is handed to the migration's
//! `embed` worker instead of waiting (the migration never holds up ingest).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use rvc_domain::OutboxKind;
use rvc_outbox::{Outbox, Step};
use rvc_test_support::net::free_port;
use rvc_test_support::TestDb;
use rvc_vectorizer::{IndexArgs, VectorizeStep};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_building_model_whose_ml_service_is_down_never_holds_up_a_product() {
    let db = TestDb::new().await;
    let objects = tempfile::tempdir().unwrap();
    let store = dir_store(objects.path()).await;
    let ml = MlServer::start().await;
    let index = IndexServer::start().await;
    let step = VectorizeStep::start(
        db.pool.clone(),
        store.clone(),
        &ml_args(&ml.url()),
        &IndexArgs::new(&index.url, COLLECTION),
    )
    .await
    .unwrap();
    // A migration to a model whose ML service does not answer (nothing listens there).
    let down = format!("http://127.0.0.1:{}", free_port());
    {
        let mut c = db.client().await;
        let tx = c.transaction().await.unwrap();
        rvc_store::models::start_migration(&tx, "down@1", "images_down", &down)
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }
    let p = photos();
    let outbox = Outbox::new(db.pool.clone(), "test", rvc_store::pipeline::hooks());
    for (i, sku) in ["MIG-1", "MIG-2"].iter().enumerate() {
        let seeded = seed_product_priced(&db, store.as_ref(), sku, &p[i..i + 1], 100).await;
        let job = outbox
            .claim(OutboxKind::Vectorize, 1, Duration::from_secs(60), false)
            .await
            .unwrap()
            .pop()
            .unwrap();
        let started = Instant::now();
        let out = step.execute(&job).await.unwrap();
        if i == 1 {
            // the failed lane is remembered: the second product does not wait for it again
            assert!(
                started.elapsed() < Duration::from_secs(1),
                "{:?}",
                started.elapsed()
            );
        }
        assert_eq!(out.models.len(), 1, "only the active model's points");
        assert_eq!(out.models[0].model_version, step.model().version);
        assert_eq!(out.deferred, vec!["down@1".to_owned()]);
        let mut c = db.pool.get().await.unwrap();
        let tx = tokio_postgres::Client::transaction(&mut c).await.unwrap();
        step.commit(&tx, &job, out).await.unwrap();
        outbox
            .complete_in(&tx, OutboxKind::Vectorize, std::slice::from_ref(&job))
            .await
            .unwrap();
        tx.commit().await.unwrap();
        // the product moved on, with its active-model points, and the migration has its row
        assert_eq!(
            db.count(&format!(
                "SELECT count(*) FROM products WHERE id = '{}' AND status = 'vectorized'",
                seeded.product_id
            ))
            .await,
            1
        );
        assert_eq!(
            db.count(&format!(
                "SELECT count(*) FROM outbox WHERE kind = 'embed' AND state = 'pending'
                   AND product_id = '{}' AND payload ->> 'model_version' = 'down@1'",
                seeded.product_id
            ))
            .await,
            1
        );
        assert_eq!(
            index.index().count(Some(seeded.product_id)).await.unwrap(),
            2
        );
    }
}
