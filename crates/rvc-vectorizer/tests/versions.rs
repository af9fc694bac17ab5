//! Versions racing each other through the vectorize step (issue 11, item 1).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use rvc_domain::OutboxKind;
use rvc_outbox::{Outbox, Step};
use rvc_test_support::proxy::GateProxy;
use rvc_test_support::TestDb;
use rvc_vectorizer::{IndexArgs, VectorizeStep};
use std::sync::Arc;
use std::time::Duration;

/// v1 is at the ML service (held by a proxy) when v2, a price-only change with the same
/// photos, is vectorized by another process. When v1 resumes it must neither overwrite nor
/// delete v2's points: before the fix it upserted the shared ids with `product_version = 1`
/// and then deleted them as "below the latest version", leaving v2 with no points at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_old_version_never_removes_the_current_versions_points() {
    let db = TestDb::new().await;
    let objects = tempfile::tempdir().unwrap();
    let store = dir_store(objects.path()).await;
    let ml = MlServer::start().await;
    let proxy = GateProxy::start(ml.addr).await;
    let index = IndexServer::start().await;
    let p = photos();

    let slow = VectorizeStep::start(
        db.pool.clone(),
        store.clone(),
        &ml_args(&proxy.url()),
        &IndexArgs::new(&index.url, COLLECTION),
    )
    .await
    .unwrap();
    let fast = VectorizeStep::start(
        db.pool.clone(),
        store.clone(),
        &ml_args(&ml.url()),
        &IndexArgs::new(&index.url, COLLECTION),
    )
    .await
    .unwrap();
    let mv = fast.model().version.clone();
    let outbox = Outbox::new(db.pool.clone(), "test", rvc_store::pipeline::hooks());
    let lease = Duration::from_secs(60);

    let v1 = seed_product_priced(&db, store.as_ref(), "RACE-1", &p[0..2], 1999).await;
    let jobs1 = outbox
        .claim(OutboxKind::Vectorize, 1, lease, false)
        .await
        .unwrap();
    assert_eq!(jobs1.len(), 1);
    proxy.close();
    let slow = Arc::new(slow);
    let slow_task = {
        let (slow, job) = (slow.clone(), jobs1[0].clone());
        tokio::spawn(async move { slow.execute(&job).await })
    };
    proxy.wait_held(Duration::from_secs(30)).await;

    // v2: same photos, new price, vectorized to the end while v1 is held.
    let v2 = seed_product_priced(&db, store.as_ref(), "RACE-1", &p[0..2], 2499).await;
    assert_eq!((v1.product_id, v2.version), (v2.product_id, 2));
    let jobs2 = outbox
        .claim(OutboxKind::Vectorize, 1, lease, false)
        .await
        .unwrap();
    assert_eq!(jobs2[0].product_version, 2);
    let out2 = fast.execute(&jobs2[0]).await.unwrap();
    assert_eq!(out2.models.len(), 1, "one live model");
    assert_eq!(out2.models[0].points.len(), 2);

    proxy.open();
    let out1 = tokio::time::timeout(Duration::from_secs(60), slow_task)
        .await
        .expect("v1 finishes")
        .unwrap();
    assert!(out1.is_ok(), "v1's step completes: {out1:?}");

    let vi = index.index();
    let expected = v2.point_ids(&mv);
    assert_eq!(
        vi.product_point_ids(v2.product_id).await.unwrap(),
        expected,
        "the current version's points survive the slow old version"
    );
    let payloads = index
        .qdrant()
        .get_points(
            qdrant_client::qdrant::GetPointsBuilder::new(
                COLLECTION,
                expected
                    .iter()
                    .map(|id| id.to_string().into())
                    .collect::<Vec<_>>(),
            )
            .with_payload(true),
        )
        .await
        .unwrap();
    for pt in payloads.result {
        let v = pt.payload["product_version"].clone().into_json();
        assert_eq!(v, serde_json::json!(2), "payload keeps the current version");
    }
    ml.stop().await;
}
