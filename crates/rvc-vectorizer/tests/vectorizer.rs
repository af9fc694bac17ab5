//! The vectorize step in-process against real services: Postgres, s3s-fs or a directory store,
//! the ML service with the real model, and the real `rvc-vector-index` binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use qdrant_client::qdrant::GetPointsBuilder;
use rvc_test_support::s3::TestS3;
use rvc_test_support::TestDb;
use rvc_vectorizer::{IndexArgs, VectorizeStep, VectorizerError};
use rvc_vectors::{GalleryView, PointPayload, VectorIndexError};
use std::collections::HashMap;
use std::time::Duration;
use uuid::Uuid;

const VECTORIZED: &str = "SELECT count(*) FROM products WHERE status = 'vectorized'";

/// Payloads of `ids` read straight from the index with qdrant-client.
async fn payloads(index: &IndexServer, ids: &[Uuid]) -> HashMap<Uuid, PointPayload> {
    let q = index.qdrant();
    let resp = q
        .get_points(
            GetPointsBuilder::new(
                COLLECTION,
                ids.iter()
                    .map(|id| id.to_string().into())
                    .collect::<Vec<_>>(),
            )
            .with_payload(true)
            .with_vectors(false),
        )
        .await
        .unwrap();
    resp.result
        .into_iter()
        .map(|p| {
            let id = match p.id.unwrap().point_id_options.unwrap() {
                qdrant_client::qdrant::point_id::PointIdOptions::Uuid(s) => s.parse().unwrap(),
                other => panic!("unexpected id {other:?}"),
            };
            let json: serde_json::Map<String, serde_json::Value> = p
                .payload
                .into_iter()
                .map(|(k, v)| (k, v.into_json()))
                .collect();
            (id, serde_json::from_value(json.into()).unwrap())
        })
        .collect()
}

async fn photo_rows(
    db: &TestDb,
    product: Uuid,
    version: i32,
) -> Vec<(i16, Option<Uuid>, Option<String>)> {
    db.client()
        .await
        .query(
            "SELECT ordinal, point_id, model_version FROM product_images
             WHERE product_id = $1 AND version = $2 ORDER BY ordinal",
            &[&product, &version],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn happy_path_indexes_one_point_per_photo_with_deterministic_ids_and_payloads() {
    let db = TestDb::new().await;
    let s3 = TestS3::start().await;
    let store = rvc_objects::from_config(&s3.store_config()).await.unwrap();
    let ml = MlServer::start().await;
    let index = IndexServer::start().await;
    let p = photos();
    let a = seed_product(&db, store.as_ref(), "VEC-A", &p[0..2]).await;
    let b = seed_product(&db, store.as_ref(), "VEC-B", &p[2..5]).await;

    let worker = RunningWorker::start(&db, store.clone(), &ml.url(), &index).await;
    let mv = worker.model.version.clone();
    assert_eq!(worker.model.dimension, 1280);
    wait_count(&db, VECTORIZED, 2, Duration::from_secs(120)).await;
    worker.stop().await;

    let vi = index.index();
    assert_eq!(
        vi.count(None).await.unwrap(),
        10,
        "one point per view of each photo"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM outbox WHERE kind = 'vectorize' AND state = 'done'")
            .await,
        2
    );
    assert_eq!(
        db.count("SELECT count(*) FROM outbox WHERE kind = 'publish' AND state = 'pending'")
            .await,
        2,
        "publish enqueued once per product"
    );
    for s in [&a, &b] {
        let expected = s.point_ids(&mv);
        assert_eq!(expected.len(), s.photos.len() * GalleryView::ALL.len());
        assert_eq!(vi.product_point_ids(s.product_id).await.unwrap(), expected);
        // point_id and model_version recorded on each photo
        for (ordinal, pid, rmv) in photo_rows(&db, s.product_id, s.version).await {
            let photo = &s.photos[ordinal as usize];
            assert_eq!(
                pid,
                Some(rvc_vectors::point_id(s.product_id, &photo.sha256, &mv))
            );
            assert_eq!(rmv.as_deref(), Some(mv.as_str()));
        }
        let created: HashMap<i16, chrono::DateTime<chrono::Utc>> = db
            .client()
            .await
            .query(
                "SELECT ordinal, created_at FROM product_images WHERE product_id = $1",
                &[&s.product_id],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let got = payloads(&index, &expected).await;
        for photo in &s.photos {
            let photo_point = rvc_vectors::point_id(s.product_id, &photo.sha256, &mv);
            for id in GalleryView::point_ids(photo_point) {
                assert_eq!(
                    got[&id],
                    PointPayload {
                        product_id: s.product_id,
                        sku: s.sku.clone(),
                        product_version: 1,
                        image_key: photo.key.clone(),
                        model_version: mv.clone(),
                        created_at: created[&photo.ordinal],
                    }
                );
            }
        }
    }
    // The centre view's point is the model's embedding of the photo's central 60 %.
    let photo = &a.photos[0];
    let centre =
        GalleryView::Centre.point_id(rvc_vectors::point_id(a.product_id, &photo.sha256, &mv));
    let stored = vi.vectors(&[centre]).await.unwrap();
    let want = embedder()
        .embed(&rvc_test_support::images::crop_png(
            &photo.bytes,
            GalleryView::Centre.frac_box(),
        ))
        .unwrap();
    let cos: f32 = stored[&centre].iter().zip(&want).map(|(a, b)| a * b).sum();
    assert!(cos > 0.999, "centre view cosine {cos}");
    // The stored vector is the model's embedding of the photo: searching with it finds it.
    let emb = embedder();
    for (s, photo) in [(&a, &a.photos[0]), (&b, &b.photos[1])] {
        let v = emb.embed(&photo.bytes).unwrap();
        let hits = vi.search(v, 1).await.unwrap();
        assert_eq!(
            hits[0].id,
            rvc_vectors::point_id(s.product_id, &photo.sha256, &mv)
        );
        assert!(hits[0].score > 0.999, "score {}", hits[0].score);
    }
    ml.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rerun_after_reset_changes_nothing_in_the_index() {
    let db = TestDb::new().await;
    let objects = tempfile::tempdir().unwrap();
    let store = dir_store(objects.path()).await;
    let ml = MlServer::start().await;
    let index = IndexServer::start().await;
    let p = photos();
    let a = seed_product(&db, store.as_ref(), "RERUN-A", &p[1..3]).await;

    let worker = RunningWorker::start(&db, store.clone(), &ml.url(), &index).await;
    let mv = worker.model.version.clone();
    wait_count(&db, VECTORIZED, 1, Duration::from_secs(120)).await;
    let vi = index.index();
    let first = vi.product_point_ids(a.product_id).await.unwrap();
    assert_eq!(first, a.point_ids(&mv));

    // An operator replays the step (or a crash lost the completion): same rows again.
    db.client()
        .await
        .batch_execute(
            "UPDATE products SET status = 'images_stored';
             UPDATE outbox SET state = 'pending', attempts = 0, completed_at = NULL,
                    next_attempt_at = now() WHERE kind = 'vectorize';
             SELECT pg_notify('rvc_outbox', 'vectorize');",
        )
        .await
        .unwrap();
    wait_count(&db, VECTORIZED, 1, Duration::from_secs(120)).await;
    wait_count(
        &db,
        "SELECT count(*) FROM outbox WHERE kind = 'publish'",
        2,
        Duration::from_secs(10),
    )
    .await;
    worker.stop().await;
    assert_eq!(vi.count(None).await.unwrap(), 4, "no stray points");
    assert_eq!(vi.product_point_ids(a.product_id).await.unwrap(), first);
    assert_eq!(
        db.count("SELECT count(*) FROM outbox WHERE kind = 'vectorize' AND state = 'done'")
            .await,
        1
    );
    ml.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_version_replaces_the_points_of_the_old_one() {
    let db = TestDb::new().await;
    let objects = tempfile::tempdir().unwrap();
    let store = dir_store(objects.path()).await;
    let ml = MlServer::start().await;
    let index = IndexServer::start().await;
    let p = photos();
    // an unrelated product stays untouched
    let other = seed_product(&db, store.as_ref(), "OTHER", &p[3..4]).await;
    let v1 = seed_product(&db, store.as_ref(), "VERS", &[p[0].clone(), p[1].clone()]).await;

    let worker = RunningWorker::start(&db, store.clone(), &ml.url(), &index).await;
    let mv = worker.model.version.clone();
    wait_count(&db, VECTORIZED, 2, Duration::from_secs(120)).await;
    let vi = index.index();
    assert_eq!(
        vi.product_point_ids(v1.product_id).await.unwrap(),
        v1.point_ids(&mv)
    );

    // version 2 keeps coffee (same sha → same point id) and swaps the cat for the rocket
    let v2 = seed_product(&db, store.as_ref(), "VERS", &[p[1].clone(), p[2].clone()]).await;
    assert_eq!((v2.product_id, v2.version), (v1.product_id, 2));
    wait_count(
        &db,
        "SELECT count(*) FROM outbox WHERE kind = 'vectorize' AND state = 'done'",
        3,
        Duration::from_secs(120),
    )
    .await;
    worker.stop().await;
    assert_eq!(
        db.count("SELECT count(*) FROM products WHERE sku = 'VERS' AND version = 2 AND status = 'vectorized'")
            .await,
        1
    );
    let ids = vi.product_point_ids(v2.product_id).await.unwrap();
    assert_eq!(ids, v2.point_ids(&mv), "only version 2's photos remain");
    let cat_v1 = rvc_vectors::point_id(v1.product_id, &v1.photos[0].sha256, &mv);
    assert!(!ids.contains(&cat_v1), "the old version's photo is gone");
    let got = payloads(&index, &ids).await;
    assert!(got.values().all(|p| p.product_version == 2));
    assert_eq!(
        vi.product_point_ids(other.product_id).await.unwrap(),
        other.point_ids(&mv)
    );
    assert_eq!(vi.count(None).await.unwrap(), 6);
    ml.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ml_outage_is_retried_past_max_attempts_then_completes() {
    let db = TestDb::new().await;
    let objects = tempfile::tempdir().unwrap();
    let store = dir_store(objects.path()).await;
    let ml = MlServer::start().await;
    let addr = ml.addr;
    let index = IndexServer::start().await;
    let mut cfg = worker_config();
    cfg.backoff = rvc_outbox::Backoff {
        base: Duration::from_secs(1),
        max: Duration::from_secs(4),
    };
    let worker = RunningWorker::start_with(&db, store.clone(), &ml.url(), &index, cfg).await;
    let mv = worker.model.version.clone();

    ml.stop().await;
    let p = photos();
    let mut seeded = Vec::new();
    for i in 0..3 {
        seeded.push(seed_product(&db, store.as_ref(), &format!("OUT-{i}"), &p[i..i + 2]).await);
    }
    // A count-based budget would dead-letter the rows after max_attempts failures; the
    // retry window (24 h) keeps them. Lower max_attempts so the outage outlasts it quickly.
    db.client()
        .await
        .execute(
            "UPDATE outbox SET max_attempts = 2 WHERE kind = 'vectorize'",
            &[],
        )
        .await
        .unwrap();
    rvc_test_support::wait::wait_for(
        "a vectorize row failing more often than max_attempts",
        Duration::from_secs(60),
        || async {
            db.count("SELECT count(*) FROM outbox WHERE kind = 'vectorize' AND attempts > 2")
                .await
                >= 1
        },
    )
    .await;
    assert_eq!(
        db.count(VECTORIZED).await,
        0,
        "nothing can be vectorized while ML is down"
    );
    assert!(
        db.count("SELECT count(*) FROM outbox WHERE kind = 'vectorize' AND attempts >= 2")
            .await
            >= 1,
        "the step was retried during the outage"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM outbox WHERE state = 'dead'")
            .await,
        0
    );
    let last_error: String = db
        .client()
        .await
        .query_one(
            "SELECT last_error FROM outbox WHERE kind = 'vectorize' AND last_error IS NOT NULL LIMIT 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(last_error.contains("Unavailable"), "{last_error}");

    let ml = MlServer::start_on(addr).await;
    wait_count(&db, VECTORIZED, 3, Duration::from_secs(60)).await;
    worker.stop().await;
    assert_eq!(
        db.count("SELECT count(*) FROM outbox WHERE state = 'dead'")
            .await,
        0
    );
    let vi = index.index();
    assert_eq!(vi.count(None).await.unwrap(), 12);
    for s in &seeded {
        assert_eq!(
            vi.product_point_ids(s.product_id).await.unwrap(),
            s.point_ids(&mv)
        );
    }
    ml.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_photo_kills_only_its_product() {
    let db = TestDb::new().await;
    let objects = tempfile::tempdir().unwrap();
    let store = dir_store(objects.path()).await;
    let ml = MlServer::start().await;
    let index = IndexServer::start().await;
    let p = photos();
    let good1 = seed_product(&db, store.as_ref(), "GOOD-1", &p[0..2]).await;
    let bad = seed_product(&db, store.as_ref(), "BAD", &p[2..4]).await;
    let good2 = seed_product(&db, store.as_ref(), "GOOD-2", &p[3..5]).await;
    // The stored object of BAD's second photo is cut short: a JPEG header and nothing after.
    let broken = &bad.photos[1];
    store
        .put(
            &broken.key,
            bytes::Bytes::copy_from_slice(&broken.bytes[..300]),
            "image/jpeg",
            &rvc_objects::Metadata::new(),
        )
        .await
        .unwrap();

    let worker = RunningWorker::start(&db, store.clone(), &ml.url(), &index).await;
    let mv = worker.model.version.clone();
    wait_count(&db, VECTORIZED, 2, Duration::from_secs(120)).await;
    wait_count(
        &db,
        "SELECT count(*) FROM outbox WHERE state = 'dead'",
        1,
        Duration::from_secs(30),
    )
    .await;
    worker.stop().await;

    let row = db
        .client()
        .await
        .query_one(
            "SELECT o.product_id, o.attempts, o.last_error, p.status FROM outbox o
             JOIN products p ON p.id = o.product_id WHERE o.state = 'dead'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, Uuid>(0), bad.product_id);
    assert_eq!(row.get::<_, i32>(1), 1, "a corrupt photo is not retried");
    let err: String = row.get(2);
    assert!(err.contains("photo 1"), "{err}");
    assert!(err.contains(&broken.key), "{err}");
    assert!(err.contains("not a usable image"), "{err}");
    assert_eq!(row.get::<_, String>(3), "failed");

    let vi = index.index();
    assert!(vi
        .product_point_ids(bad.product_id)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        vi.product_point_ids(good1.product_id).await.unwrap(),
        good1.point_ids(&mv)
    );
    assert_eq!(
        vi.product_point_ids(good2.product_id).await.unwrap(),
        good2.point_ids(&mv)
    );
    assert_eq!(vi.count(None).await.unwrap(), 8);
    ml.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_collection_of_another_dimension_stops_the_start() {
    let db = TestDb::new().await;
    let objects = tempfile::tempdir().unwrap();
    let ml = MlServer::start().await;
    let index = IndexServer::start().await;
    index.index().ensure_collection(3).await.unwrap();

    let err = VectorizeStep::start(
        db.pool.clone(),
        dir_store(objects.path()).await,
        &ml_args(&ml.url()),
        &IndexArgs::new(&index.url, COLLECTION),
    )
    .await
    .unwrap_err();
    match &err {
        VectorizerError::Index(VectorIndexError::DimensionMismatch {
            existing, expected, ..
        }) => assert_eq!((*existing, *expected), (3, 1280)),
        other => panic!("unexpected error {other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains("vector size 3") && msg.contains("1280"),
        "{msg}"
    );
    ml.stop().await;
}
