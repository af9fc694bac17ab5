//! Issue 14 at the vectorize step: a version that keeps its photos needs no ML call (it runs
//! with the ML service unreachable), a changed photo set embeds the new photo, and an archive
//! version removes the product's points — unless the product was un-archived meanwhile.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use rvc_domain::{OutboxKind, VersionChange};
use rvc_outbox::{Outbox, Step};
use rvc_store::products::ProductRef;
use rvc_test_support::proxy::GateProxy;
use rvc_test_support::TestDb;
use rvc_vectorizer::{IndexArgs, VectorizeStep};
use std::sync::Arc;
use std::time::Duration;

const LEASE: Duration = Duration::from_secs(60);

async fn claim_one(outbox: &Outbox, kind: OutboxKind) -> rvc_outbox::Job {
    let mut jobs = outbox.claim(kind, 1, LEASE, false).await.unwrap();
    assert_eq!(jobs.len(), 1, "one {kind} row to claim");
    jobs.pop().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_photos_reuse_their_points_and_only_new_photos_reach_the_ml_service() {
    let db = TestDb::new().await;
    let objects = tempfile::tempdir().unwrap();
    let store = dir_store(objects.path()).await;
    let ml = MlServer::start().await;
    let proxy = GateProxy::start(ml.addr).await;
    let index = IndexServer::start().await;
    let p = photos();
    let step = Arc::new(
        VectorizeStep::start(
            db.pool.clone(),
            store.clone(),
            &ml_args(&proxy.url()),
            &IndexArgs::new(&index.url, COLLECTION),
        )
        .await
        .unwrap(),
    );
    let mv = step.model().version.clone();
    let outbox = Outbox::new(db.pool.clone(), "test", rvc_store::pipeline::hooks());
    let vi = index.index();

    let v1 = seed_product_priced(&db, store.as_ref(), "KEEP-1", &p[0..2], 1000).await;
    let out1 = step
        .execute(&claim_one(&outbox, OutboxKind::Vectorize).await)
        .await
        .unwrap();
    assert_eq!(out1.models[0].points.len(), 2);

    // The ML service is unreachable from here on (every byte towards it is held): a price-only
    // version still vectorizes, from the stored points.
    proxy.close();
    let v2 = seed_product_priced(&db, store.as_ref(), "KEEP-1", &p[0..2], 1500).await;
    let job2 = claim_one(&outbox, OutboxKind::Vectorize).await;
    let out2 = tokio::time::timeout(Duration::from_secs(30), step.execute(&job2))
        .await
        .expect("a price-only version needs no ML call")
        .unwrap();
    assert_eq!(out2.models[0].points.len(), 2);
    assert_eq!(
        vi.product_point_ids(v2.product_id).await.unwrap(),
        v1.point_ids(&mv),
        "the same points"
    );
    let hits = vi.vectors(&v1.point_ids(&mv)).await.unwrap();
    assert_eq!(hits.len(), 4, "vectors kept (two views of two photos)");

    // Drop photo 1, add photo 2: the new photo is embedded (its request reaches the closed
    // gate), the kept one is not; the points are exactly the new set.
    let v3 = seed_product_priced(
        &db,
        store.as_ref(),
        "KEEP-1",
        &[p[0].clone(), p[2].clone()],
        1500,
    )
    .await;
    let job3 = claim_one(&outbox, OutboxKind::Vectorize).await;
    let task = {
        let (step, job) = (step.clone(), job3.clone());
        tokio::spawn(async move { step.execute(&job).await })
    };
    proxy.wait_held(Duration::from_secs(30)).await;
    proxy.open();
    let out3 = tokio::time::timeout(Duration::from_secs(60), task)
        .await
        .expect("v3 finishes")
        .unwrap()
        .unwrap();
    assert_eq!(out3.models[0].points.len(), 2);
    assert_eq!(
        vi.product_point_ids(v3.product_id).await.unwrap(),
        v3.point_ids(&mv)
    );
    ml.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_archive_removes_the_points_unless_the_product_came_back_meanwhile() {
    let db = TestDb::new().await;
    let objects = tempfile::tempdir().unwrap();
    let store = dir_store(objects.path()).await;
    let ml = MlServer::start().await;
    let index = IndexServer::start().await;
    let p = photos();
    let step = VectorizeStep::start(
        db.pool.clone(),
        store.clone(),
        &ml_args(&ml.url()),
        &IndexArgs::new(&index.url, COLLECTION),
    )
    .await
    .unwrap();
    let mv = step.model().version.clone();
    let outbox = Outbox::new(db.pool.clone(), "test", rvc_store::pipeline::hooks());
    let vi = index.index();

    // A: archived; the archive's upload row, completed by the engine, hands the change on.
    let a = seed_product_priced(&db, store.as_ref(), "GONE-A", &p[0..2], 1000).await;
    // B: archived, then POSTed again before the archive reaches the vectorizer.
    let b = seed_product_priced(&db, store.as_ref(), "BACK-B", &p[2..4], 1000).await;
    for _ in 0..2 {
        step.execute(&claim_one(&outbox, OutboxKind::Vectorize).await)
            .await
            .unwrap();
    }
    assert_eq!(vi.count(None).await.unwrap(), 8);

    let mut c = db.client().await;
    for id in [a.product_id, b.product_id] {
        let tx = c.transaction().await.unwrap();
        let done = rvc_store::archive::archive(&tx, &ProductRef::Id(id), None)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(done.version, 2);
        tx.commit().await.unwrap();
        let upload = claim_one(&outbox, OutboxKind::UploadImages).await;
        assert_eq!(upload.change(), Ok(VersionChange::Archive));
        let tx = c.transaction().await.unwrap();
        outbox
            .complete_in(&tx, OutboxKind::UploadImages, &[upload])
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }
    let b3 = seed_product_priced(&db, store.as_ref(), "BACK-B", &p[2..4], 1000).await;
    assert_eq!(b3.version, 3);

    let mut jobs = outbox
        .claim(OutboxKind::Vectorize, 10, LEASE, false)
        .await
        .unwrap();
    jobs.sort_by_key(|j| (j.product_version, j.product_id));
    assert_eq!(jobs.len(), 3);
    // B's v3 first (its points come back at v3), then both archives.
    let (archives, b3_job): (Vec<_>, Vec<_>) =
        jobs.into_iter().partition(|j| j.product_version == 2);
    for j in &archives {
        assert_eq!(
            j.change(),
            Ok(VersionChange::Archive),
            "the payload was handed on"
        );
    }
    step.execute(&b3_job[0]).await.unwrap();
    for j in &archives {
        let out = step.execute(j).await.unwrap();
        assert!(out.models.is_empty());
    }
    assert_eq!(
        vi.count(Some(a.product_id)).await.unwrap(),
        0,
        "archived: no point"
    );
    assert_eq!(
        vi.product_point_ids(b.product_id).await.unwrap(),
        b3.point_ids(&mv),
        "un-archived meanwhile: v3's points stay"
    );
    // Idempotent: the archive again changes nothing.
    step.execute(&archives[0]).await.unwrap();
    assert_eq!(vi.count(None).await.unwrap(), 4);
    ml.stop().await;
}
