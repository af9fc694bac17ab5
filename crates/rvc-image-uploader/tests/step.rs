//! The upload step against real Postgres and real object storage (s3s-fs and the directory
//! backend): happy path, idempotent re-runs, refused credentials, a missing bucket, an outage.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use rvc_image_uploader::{photo_key, UploadStep, SHA256_METADATA};
use rvc_objects::{ObjectStore, S3Config, S3Store};
use rvc_outbox::{Outbox, Step, WorkerConfig};
use rvc_test_support::{wait_until, TestDb};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

async fn happy_path(backend: Backend) {
    let db = TestDb::new().await;
    let store = backend.store().await;
    let seeded = seed(&db, 3, 2, 24).await;
    let w = worker(&db, store.clone(), worker_config());
    drain(&w, &db, Duration::from_secs(30)).await;

    let name = backend.name();
    assert_eq!(
        db.count("SELECT count(*) FROM products WHERE status = 'images_stored'")
            .await,
        3,
        "{name}"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM product_images WHERE staged_bytes IS NOT NULL")
            .await,
        0,
        "{name}: staged bytes dropped"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM outbox WHERE kind = 'upload_images' AND state = 'done'")
            .await,
        3
    );
    assert_eq!(
        db.count("SELECT count(*) FROM outbox WHERE kind = 'vectorize' AND state = 'pending'")
            .await,
        3,
        "{name}: vectorize enqueued once per product"
    );
    let c = db.pool.get().await.unwrap();
    let rows = c
        .query(
            "SELECT product_id, sha256, content_type, object_key, size_bytes FROM product_images ORDER BY 1, ordinal",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 6);
    for r in &rows {
        let (pid, sha, ct, key, size): (uuid::Uuid, String, String, String, i32) =
            (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4));
        assert!(seeded.iter().any(|(id, _)| *id == pid));
        assert_eq!(
            key,
            format!("products/{pid}/{sha}.png"),
            "{name}: deterministic key"
        );
        assert_eq!(Some(key.clone()), photo_key(pid, &sha, &ct));
        let obj = store.get(&key).await.unwrap().expect("object stored");
        assert_eq!(obj.bytes.len() as i32, size);
        assert_eq!(
            rvc_domain::sha256_hex(&obj.bytes),
            sha,
            "{name}: bytes intact"
        );
        let head = store.head(&key).await.unwrap().unwrap();
        assert_eq!(head.content_type.as_deref(), Some("image/png"), "{name}");
        assert_eq!(head.metadata.get(SHA256_METADATA), Some(&sha), "{name}");
    }
    let mut keys = bucket_keys(store.as_ref()).await;
    keys.sort();
    assert_eq!(
        keys,
        referenced_keys(&db).await,
        "{name}: bucket == references"
    );

    // Idempotent re-run: the row back to pending (as after a lost completion) creates nothing.
    c.execute(
        "UPDATE outbox SET state = 'pending', attempts = 0, completed_at = NULL, next_attempt_at = now()
         WHERE kind = 'upload_images'",
        &[],
    )
    .await
    .unwrap();
    drain(&w, &db, Duration::from_secs(30)).await;
    assert_eq!(
        bucket_keys(store.as_ref()).await.len(),
        6,
        "{name}: no new object"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM products WHERE status = 'images_stored'")
            .await,
        3
    );
}

#[tokio::test]
async fn happy_path_on_s3() {
    happy_path(Backend::s3().await).await;
}

#[tokio::test]
async fn happy_path_on_the_directory_store() {
    happy_path(Backend::fs()).await;
}

/// A crash after the PUTs but before the completion commit: the re-run HEADs, finds the
/// identical objects and PUTs nothing; the bucket ends up with exactly the referenced keys.
#[tokio::test]
async fn a_rerun_after_a_lost_commit_puts_nothing_again() {
    for backend in [Backend::s3().await, Backend::fs()] {
        let db = TestDb::new().await;
        let store = backend.store().await;
        seed(&db, 2, 2, 16).await;
        let step = UploadStep::new(db.pool.clone(), store.clone());
        let outbox = Outbox::new(db.pool.clone(), "crashing", rvc_store::pipeline::hooks());
        let jobs = outbox
            .claim(step.kind(), 10, Duration::from_millis(200), false)
            .await
            .unwrap();
        assert_eq!(jobs.len(), 2);
        for j in &jobs {
            let out = step.execute(j).await.unwrap();
            assert_eq!(out.photos.len(), 2);
            assert!(out.photos.iter().all(|p| p.put), "first run PUTs");
        }
        // ... and the process dies here: no commit. The row is claimed again (a retry), and
        // the second execute sees the objects.
        for j in &jobs {
            let retry = rvc_outbox::Job {
                attempts: j.attempts + 1,
                ..j.clone()
            };
            let out = step.execute(&retry).await.unwrap();
            assert!(
                out.photos.iter().all(|p| !p.put),
                "{}: re-run skips the PUT",
                backend.name()
            );
        }
        // The crashed holder's 200 ms lease expires.
        rvc_test_support::wait::wait_for("the lease to expire", Duration::from_secs(10), || async {
            db.count("SELECT count(*) FROM outbox WHERE state = 'leased' AND lease_expires_at > now()")
                .await
                == 0
        })
        .await;
        let w = worker(&db, store.clone(), worker_config());
        drain(&w, &db, Duration::from_secs(30)).await;
        let mut keys = bucket_keys(store.as_ref()).await;
        keys.sort();
        assert_eq!(keys.len(), 4);
        assert_eq!(keys, referenced_keys(&db).await);
        assert_eq!(
            db.count("SELECT count(*) FROM outbox WHERE kind = 'vectorize'")
                .await,
            2,
            "the step completed once per product"
        );
    }
}

/// Photos already uploaded (staged bytes gone, key set) are skipped, not re-read.
#[tokio::test]
async fn photos_already_uploaded_are_skipped() {
    let db = TestDb::new().await;
    let backend = Backend::fs();
    let store = backend.store().await;
    seed(&db, 1, 2, 16).await;
    let c = db.pool.get().await.unwrap();
    c.execute(
        "UPDATE product_images SET object_key = 'products/elsewhere/x.png', staged_bytes = NULL WHERE ordinal = 0",
        &[],
    )
    .await
    .unwrap();
    let w = worker(&db, store.clone(), worker_config());
    drain(&w, &db, Duration::from_secs(30)).await;
    assert_eq!(
        bucket_keys(store.as_ref()).await.len(),
        1,
        "only the staged photo was PUT"
    );
    assert_eq!(
        db.count(
            "SELECT count(*) FROM product_images WHERE object_key = 'products/elsewhere/x.png'"
        )
        .await,
        1
    );
    assert_eq!(
        db.count("SELECT count(*) FROM products WHERE status = 'images_stored'")
            .await,
        1
    );
}

async fn dead_letter_case(store: Arc<dyn ObjectStore>, db: &TestDb) -> String {
    seed(db, 1, 1, 8).await;
    let c = db.pool.get().await.unwrap();
    c.execute("UPDATE outbox SET max_attempts = 2", &[])
        .await
        .unwrap();
    let w = worker(db, store, worker_config());
    drain(&w, db, Duration::from_secs(30)).await;
    let row = c
        .query_one(
            "SELECT state, attempts, last_error FROM outbox WHERE kind = 'upload_images'",
            &[],
        )
        .await
        .unwrap();
    let (state, attempts, last_error): (String, i32, Option<String>) =
        (row.get(0), row.get(1), row.get(2));
    let last_error = last_error.unwrap_or_default();
    assert_eq!(state, "dead");
    assert!(attempts <= 2, "attempts {attempts}");
    assert_eq!(
        db.count("SELECT count(*) FROM products WHERE status = 'failed'")
            .await,
        1
    );
    assert_eq!(
        db.count("SELECT count(*) FROM product_images WHERE staged_bytes IS NOT NULL")
            .await,
        1,
        "the photo stays staged for a replay"
    );
    last_error
}

#[tokio::test]
async fn refused_credentials_dead_letter_the_row_with_a_clear_error() {
    let s3 = rvc_test_support::s3::TestS3::start().await;
    let db = TestDb::new().await;
    let wrong_secret = "definitely-not-the-secret-0123456789";
    let store: Arc<dyn ObjectStore> = Arc::new(
        S3Store::new(S3Config::new(
            &s3.endpoint,
            &s3.region,
            &s3.bucket,
            &s3.access_key,
            wrong_secret,
        ))
        .unwrap(),
    );
    let err = dead_letter_case(store, &db).await;
    assert!(err.contains(&s3.bucket), "names the bucket: {err}");
    assert!(err.contains(&s3.endpoint), "names the endpoint: {err}");
    assert!(err.contains("credentials"), "says what is wrong: {err}");
    assert!(
        !err.contains(wrong_secret) && !err.contains(&s3.secret_key),
        "no secret: {err}"
    );
    assert!(
        std::fs::read_dir(s3.data_dir().join(&s3.bucket))
            .unwrap()
            .next()
            .is_none(),
        "nothing written"
    );
}

/// A missing bucket is permanent. Shown on the directory backend: s3s-fs 0.14.1 accepts a PUT
/// into a bucket that does not exist (it creates the directory), so it cannot show it.
#[tokio::test]
async fn a_missing_bucket_dead_letters_the_row() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("never-created");
    let store: Arc<dyn ObjectStore> = Arc::new(rvc_objects::FsStore::new(&root));
    let err = dead_letter_case(store, &db).await;
    assert!(
        err.contains(&root.display().to_string()) && err.contains("does not exist"),
        "{err}"
    );
    assert!(!root.exists(), "nothing created");
}

/// The S3 server is down for 20 s while the worker runs: rows back off and retry, and all
/// complete once it is back; none is dead-lettered.
#[tokio::test]
async fn an_s3_outage_of_20_seconds_loses_nothing() {
    let mut s3 = rvc_test_support::s3::TestS3::start().await;
    let db = TestDb::new().await;
    let store: Arc<dyn ObjectStore> = Arc::new(S3Store::new(s3.config()).unwrap());
    let mut cfg: WorkerConfig = worker_config();
    cfg.backoff.base = Duration::from_millis(500);
    cfg.backoff.max = Duration::from_secs(4);
    let w = worker(&db, store.clone(), cfg);
    let stop = CancellationToken::new();
    let task = tokio::spawn(w.run(stop.clone()));

    seed(&db, 20, 2, 16).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while db
        .count("SELECT count(*) FROM products WHERE status = 'images_stored'")
        .await
        < 5
    {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    s3.stop();
    // More work arrives during the outage.
    let more: Vec<Vec<u8>> = (0..2).map(|i| png(9000 + i, 16, 16)).collect();
    ingest_one(&db, &product("SKU-DURING-OUTAGE", &more)).await;
    // Wait until attempts failed against the stopped store and were retried.
    assert!(
        wait_until(Duration::from_secs(30), || async {
            db.count("SELECT count(*) FROM outbox WHERE attempts > 1")
                .await
                > 0
        })
        .await,
        "failed attempts were retried"
    );
    let during = db
        .count("SELECT count(*) FROM outbox WHERE kind = 'upload_images' AND state <> 'done'")
        .await;
    assert!(during > 0, "the outage held work back");
    s3.restart().await;

    let deadline = Instant::now() + Duration::from_secs(60);
    while db
        .count("SELECT count(*) FROM products WHERE status = 'images_stored'")
        .await
        < 21
    {
        assert!(
            Instant::now() < deadline,
            "not all completed after the outage"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.cancel();
    task.await.unwrap();
    assert_eq!(
        db.count("SELECT count(*) FROM outbox WHERE state = 'dead'")
            .await,
        0
    );
    let mut keys = bucket_keys(store.as_ref()).await;
    keys.sort();
    assert_eq!(keys.len(), 42);
    assert_eq!(keys, referenced_keys(&db).await);
}

/// Issue 17: a first attempt PUTs each photo and HEADs nothing: not before the PUT (the key is
/// the bytes' hash), and not at commit either, since no GC pass held the product's object lock
/// when the step loaded the photos (see `a_gc_pass_after_the_upload_loaded_its_photos_keeps_them`
/// in rvc-maintenance for why that is safe). Before, every photo cost HEAD + PUT + HEAD.
#[tokio::test]
async fn a_first_attempt_puts_and_heads_nothing() {
    let backend = Backend::s3().await;
    let db = TestDb::new().await;
    let store = rvc_test_support::objects::CountingStore::new(backend.store().await);
    seed(&db, 3, 2, 16).await;
    let w = worker(&db, store.clone(), worker_config());
    drain(&w, &db, Duration::from_secs(30)).await;
    assert_eq!(store.puts(), 6, "one PUT per photo");
    assert_eq!(store.heads(), 0, "no HEAD before the PUT nor at commit");
    let mut keys = bucket_keys(store.as_ref()).await;
    keys.sort();
    assert_eq!(keys, referenced_keys(&db).await);
}
