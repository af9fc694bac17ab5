//! The vectorizer reads a photo from object storage only once it holds an ML slot (issue 11,
//! item 9): however many photos a claimed batch holds, at most `ML_CONCURRENCY` are in memory.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use rvc_domain::OutboxKind;
use rvc_outbox::{Outbox, Step};
use rvc_test_support::objects::CountingStore;
use rvc_test_support::proxy::GateProxy;
use rvc_test_support::TestDb;
use rvc_vectorizer::{IndexArgs, VectorizeStep};
use std::sync::Arc;
use std::time::Duration;

/// Five photos, one ML slot, the ML service held by a proxy: while the first photo waits at
/// the ML service, no other photo is read. Before the fix the step fetched all five first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn photos_are_read_only_once_an_ml_slot_is_held() {
    let db = TestDb::new().await;
    let objects = tempfile::tempdir().unwrap();
    let dir = dir_store(objects.path()).await;
    let store = CountingStore::new(dir.clone());
    let ml = MlServer::start().await;
    let proxy = GateProxy::start(ml.addr).await;
    let index = IndexServer::start().await;

    let mut args = ml_args(&proxy.url());
    args.ml_concurrency = 1;
    let step = VectorizeStep::start(
        db.pool.clone(),
        store.clone(),
        &args,
        &IndexArgs::new(&index.url, COLLECTION),
    )
    .await
    .unwrap();
    let seeded = seed_product(&db, dir.as_ref(), "SLOT-1", &photos()).await;
    assert_eq!(seeded.photos.len(), 5);
    let jobs = Outbox::new(db.pool.clone(), "test", rvc_store::pipeline::hooks())
        .claim(OutboxKind::Vectorize, 1, Duration::from_secs(60), false)
        .await
        .unwrap();
    assert_eq!(jobs.len(), 1);

    proxy.close();
    let step = Arc::new(step);
    let task = {
        let (step, job) = (step.clone(), jobs[0].clone());
        tokio::spawn(async move { step.execute(&job).await })
    };
    // The first photo is at the ML service (its request is held by the proxy) ...
    proxy.wait_held(Duration::from_secs(30)).await;
    assert_eq!(store.gets(), 1);
    // ... and while it stays there, the other four wait for the slot without their bytes.
    // (A negative: it can only be watched for a while; 1 s is many times a local file read.)
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        store.gets(),
        1,
        "photos were read before an ML slot was free"
    );

    proxy.open();
    let out = tokio::time::timeout(Duration::from_secs(60), task)
        .await
        .expect("the step finishes")
        .unwrap()
        .expect("the step succeeds");
    assert_eq!(out.models[0].points.len(), 5, "every photo embedded");
    assert_eq!(store.gets(), 5);
}
