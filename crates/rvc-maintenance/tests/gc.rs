//! Orphan collection against real Postgres and real object storage: planted orphans go,
//! referenced objects stay, an upload in flight (object PUT, row not committed) stays, the
//! objects of superseded versions go once the newer version is indexed; dry runs delete
//! nothing; the apalis schedule runs it; `rvc-maintenance --once --dry-run` prints what it
//! would delete, and the binary on its schedule collects until SIGTERM stops it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use bytes::Bytes;
use common::*;
use rvc_image_uploader::UploadStep;
use rvc_maintenance::{collect_orphans, schedule, GcReason, Maintenance, MaintenanceArgs};
use rvc_objects::{Metadata, ObjectStore};
use rvc_outbox::{Outbox, Step};
use rvc_test_support::TestDb;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

const HOUR: Duration = Duration::from_secs(3600);
const TWO_HOURS: Duration = Duration::from_secs(7200);

async fn plant(store: &dyn ObjectStore, key: &str) {
    store
        .put(
            key,
            Bytes::from_static(b"\x89PNG orphan"),
            "image/png",
            &Metadata::new(),
        )
        .await
        .unwrap();
}

fn sha(seed: u8) -> String {
    format!("{seed:02x}").repeat(32)
}

async fn keys(store: &dyn ObjectStore) -> BTreeSet<String> {
    bucket_keys(store).await.into_iter().collect()
}

async fn orphans_and_races(backend: Backend) {
    let name = backend.name();
    let db = TestDb::new().await;
    let store = backend.store().await;
    let seeded = seed(&db, 3, 2, 16).await;
    let w = worker(&db, store.clone(), worker_config());
    drain(&w, &db, Duration::from_secs(30)).await;
    let referenced: BTreeSet<String> = referenced_keys(&db).await.into_iter().collect();
    assert_eq!(referenced.len(), 6);
    for k in &referenced {
        backend.age(k, TWO_HOURS); // old, but referenced: must stay
    }

    // Old orphans: an unknown product, a stray sha of a known product, a key of another shape.
    let old_orphans: BTreeSet<String> = [
        format!("products/{}/{}.png", Uuid::now_v7(), sha(1)),
        format!("products/{}/{}.jpg", seeded[0].0, sha(2)),
        "products/not-a-uuid/leftover.bin".to_owned(),
    ]
    .into();
    for k in &old_orphans {
        plant(store.as_ref(), k).await;
        backend.age(k, TWO_HOURS);
    }
    // The race: an upload in flight, PUT a moment ago, its row not committed/visible yet.
    let young = format!("products/{}/{}.png", Uuid::now_v7(), sha(3));
    plant(store.as_ref(), &young).await;
    // An upload whose PUT happened long ago but whose commit never came (crash): the photo is
    // still staged, so its deterministic key is referenced.
    let (pid, _) = ingest_one(&db, &product("SKU-STAGED", &[png(77, 16, 16)])).await;
    let step = UploadStep::new(db.pool.clone(), store.clone());
    let jobs = Outbox::new(db.pool.clone(), "crashed", rvc_store::pipeline::hooks())
        .claim(step.kind(), 1, Duration::from_secs(60), false)
        .await
        .unwrap();
    assert_eq!(jobs[0].product_id, pid);
    let staged_key = step.execute(&jobs[0]).await.unwrap().photos[0].key.clone();
    backend.age(&staged_key, TWO_HOURS);
    let before = keys(store.as_ref()).await;
    assert_eq!(before.len(), 6 + 3 + 1 + 1);

    // Dry run: reports exactly the old orphans, deletes nothing.
    let dry = collect_orphans(&db.pool, store.as_ref(), HOUR, true)
        .await
        .unwrap();
    let listed: BTreeSet<String> = dry.deleted.iter().map(|i| i.key.clone()).collect();
    assert_eq!(listed, old_orphans, "{name}: dry run lists the old orphans");
    assert!(dry.deleted.iter().all(|i| i.reason == GcReason::Orphan));
    assert_eq!(dry.young, 1, "{name}");
    assert_eq!(
        keys(store.as_ref()).await,
        before,
        "{name}: dry run deletes nothing"
    );
    assert!(dry.to_string().contains("would delete"), "{dry}");

    let report = collect_orphans(&db.pool, store.as_ref(), HOUR, false)
        .await
        .unwrap();
    assert_eq!(report.count(GcReason::Orphan), 3, "{name}: {report}");
    assert_eq!(report.referenced, 7, "{name}: six uploaded + one staged");
    let after = keys(store.as_ref()).await;
    let expected: BTreeSet<String> = referenced
        .iter()
        .cloned()
        .chain([young.clone(), staged_key.clone()])
        .collect();
    assert_eq!(
        after, expected,
        "{name}: every referenced object and the young one stay"
    );

    // Once the young object is old and still unreferenced it goes too (grace 0 here).
    let report = collect_orphans(&db.pool, store.as_ref(), Duration::ZERO, false)
        .await
        .unwrap();
    assert_eq!(
        report
            .deleted
            .iter()
            .map(|i| i.key.clone())
            .collect::<Vec<_>>(),
        vec![young],
        "{name}"
    );
}

#[tokio::test]
async fn gc_removes_old_orphans_and_keeps_references_and_uploads_in_flight_on_s3() {
    orphans_and_races(Backend::s3().await).await;
}

#[tokio::test]
async fn gc_removes_old_orphans_and_keeps_references_and_uploads_in_flight_on_the_directory_store()
{
    orphans_and_races(Backend::fs()).await;
}

/// v1 has photos A and B, v2 has B and C. A goes only when v2 is indexed and no work of v1 is
/// left; B (shared with the current version) and C stay.
#[tokio::test]
async fn gc_deletes_superseded_versions_only_once_the_newer_one_is_indexed() {
    let backend = Backend::s3().await;
    let db = TestDb::new().await;
    let store = backend.store().await;
    let (a, b, c) = (png(1, 16, 16), png(2, 16, 16), png(3, 16, 16));
    let (pid, v1) = ingest_one(&db, &product("SKU-V", &[a.clone(), b.clone()])).await;
    let w = worker(&db, store.clone(), worker_config());
    drain(&w, &db, Duration::from_secs(30)).await;
    let (pid2, v2) = ingest_one(&db, &product("SKU-V", &[b.clone(), c.clone()])).await;
    assert_eq!((pid2, v1 + 1), (pid, v2));
    drain(&w, &db, Duration::from_secs(30)).await;
    let key = |bytes: &[u8]| format!("products/{pid}/{}.png", rvc_domain::sha256_hex(bytes));
    let all: BTreeSet<String> = [key(&a), key(&b), key(&c)].into();
    assert_eq!(keys(store.as_ref()).await, all);

    // v2 is not indexed yet: nothing goes, even with no grace at all.
    let r = collect_orphans(&db.pool, store.as_ref(), Duration::ZERO, false)
        .await
        .unwrap();
    assert!(r.deleted.is_empty(), "{r}");
    // v2 indexed, but v1's vectorize row is still pending: v1 still in the pipeline.
    let pg = db.pool.get().await.unwrap();
    pg.execute("UPDATE products SET status = 'indexed'", &[])
        .await
        .unwrap();
    let r = collect_orphans(&db.pool, store.as_ref(), Duration::ZERO, false)
        .await
        .unwrap();
    assert!(r.deleted.is_empty(), "v1 work in flight: {r}");
    // v1's pipeline finished (its rows done).
    pg.execute(
        "UPDATE outbox SET state = 'done', completed_at = now(), lease_token = NULL WHERE product_version = $1",
        &[&v1],
    )
    .await
    .unwrap();
    let dry = collect_orphans(&db.pool, store.as_ref(), HOUR, true)
        .await
        .unwrap();
    assert_eq!(dry.deleted.len(), 1);
    assert_eq!(keys(store.as_ref()).await, all, "dry run");
    let r = collect_orphans(&db.pool, store.as_ref(), HOUR, false)
        .await
        .unwrap();
    assert_eq!(
        r.deleted
            .iter()
            .map(|i| (i.key.clone(), i.reason))
            .collect::<Vec<_>>(),
        vec![(key(&a), GcReason::Superseded)],
        "{r}"
    );
    assert_eq!(keys(store.as_ref()).await, [key(&b), key(&c)].into());
}

/// The apalis cron worker runs maintenance: done outbox rows past retention are pruned and
/// orphans collected, on schedule.
#[tokio::test]
async fn the_schedule_prunes_the_outbox_and_collects_orphans() {
    let backend = Backend::fs();
    let db = TestDb::new().await;
    let store = backend.store().await;
    seed(&db, 2, 1, 16).await;
    let w = worker(&db, store.clone(), worker_config());
    drain(&w, &db, Duration::from_secs(30)).await;
    let orphan = format!("products/{}/{}.png", Uuid::now_v7(), sha(9));
    plant(store.as_ref(), &orphan).await;
    backend.age(&orphan, TWO_HOURS);
    let pg = db.pool.get().await.unwrap();
    pg.execute(
        "UPDATE outbox SET completed_at = now() - interval '8 days' WHERE state = 'done'",
        &[],
    )
    .await
    .unwrap();
    assert_eq!(
        db.count("SELECT count(*) FROM outbox WHERE state = 'done'")
            .await,
        2
    );
    // Issue 11, item 9: idempotency keys are pruned by age (before, never).
    pg.batch_execute(
        "INSERT INTO idempotency_keys (idempotency_key, request_hash, response_status, response_body, created_at)
         VALUES ('old', 'h', 202, '\\x00', now() - interval '25 hours'),
                ('fresh', 'h', 202, '\\x00', now() - interval '1 hour')",
    )
    .await
    .unwrap();

    let args = MaintenanceArgs {
        gc_enabled: true,
        gc_schedule: "* * * * * *".into(), // every second
        gc_grace_secs: 3600,
        archive_retention_secs: 7 * 24 * 3600,
        outbox_retention_hours: 168,
        idempotency_retention_hours: 24,
    };
    let stop = tokio_util::sync::CancellationToken::new();
    let task = schedule::spawn(
        Maintenance::new(db.pool.clone(), store.clone(), &args),
        args.schedule().unwrap(),
        stop.clone(),
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while store.head(&orphan).await.unwrap().is_some()
        || db
            .count("SELECT count(*) FROM outbox WHERE state = 'done'")
            .await
            > 0
        || db.count("SELECT count(*) FROM idempotency_keys").await > 1
    {
        assert!(
            std::time::Instant::now() < deadline,
            "maintenance did not run"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        bucket_keys(store.as_ref()).await.len(),
        2,
        "referenced objects stay"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM outbox WHERE kind = 'vectorize'")
            .await,
        2,
        "pending rows stay"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM idempotency_keys WHERE idempotency_key = 'fresh'")
            .await,
        1,
        "keys younger than the retention stay"
    );

    // Bad schedules are refused with the variable's name.
    let bad = MaintenanceArgs {
        gc_schedule: "every tuesday".into(),
        ..args
    };
    assert!(bad
        .schedule()
        .unwrap_err()
        .to_string()
        .contains("GC_SCHEDULE"));
    let five = MaintenanceArgs {
        gc_schedule: "*/15 * * * *".into(),
        ..bad
    };
    five.schedule().unwrap();
}

/// `rvc-maintenance --once --dry-run` prints what it would delete and deletes nothing;
/// `--once` deletes it.
#[tokio::test]
async fn once_flag_of_the_binary() {
    let backend = Backend::s3().await;
    let db = TestDb::new().await;
    let store = backend.store().await;
    let orphan = format!("products/{}/{}.png", Uuid::now_v7(), sha(5));
    plant(store.as_ref(), &orphan).await;
    backend.age(&orphan, TWO_HOURS);
    let run = |dry: bool| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_rvc-maintenance"));
        cmd.arg("--once")
            .env("DATABASE_URL", &db.url)
            .env("RUST_LOG", "warn")
            .env("GC_GRACE_SECS", "3600")
            .envs(backend.env());
        if dry {
            cmd.arg("--dry-run");
        }
        cmd.output().unwrap()
    };
    let out = run(true);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("would delete orphan     {orphan}")),
        "{stdout}"
    );
    assert!(
        store.head(&orphan).await.unwrap().is_some(),
        "dry run deleted nothing"
    );
    let out = run(false);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("deleted orphan     {orphan}")));
    assert!(store.head(&orphan).await.unwrap().is_none());
}

/// v1 has photos A and B, v2 only B (A superseded, everything indexed), then v3 re-adds A and
/// its upload row is claimed. Returns the step, the claimed job, A's key, and the product.
async fn readd_superseded_photo(
    db: &TestDb,
    store: Arc<dyn ObjectStore>,
) -> (UploadStep, Outbox, rvc_outbox::Job, String, Uuid, i32) {
    let (a, b) = (png(11, 16, 16), png(12, 16, 16));
    let w = worker(db, store.clone(), worker_config());
    let (pid, _) = ingest_one(db, &product("SKU-RE", &[a.clone(), b.clone()])).await;
    drain(&w, db, Duration::from_secs(30)).await;
    let (_, v2) = ingest_one(db, &product("SKU-RE", std::slice::from_ref(&b))).await;
    drain(&w, db, Duration::from_secs(30)).await;
    let pg = db.pool.get().await.unwrap();
    pg.batch_execute(
        "UPDATE products SET status = 'indexed';
         UPDATE outbox SET state = 'done', completed_at = now(), lease_token = NULL",
    )
    .await
    .unwrap();
    let key_a = format!("products/{pid}/{}.png", rvc_domain::sha256_hex(&a));
    let (_, v3) = ingest_one(db, &product("SKU-RE", &[a, b])).await;
    assert_eq!(v3, v2 + 1);
    let outbox = Outbox::new(db.pool.clone(), "race", rvc_store::pipeline::hooks());
    let step = UploadStep::new(db.pool.clone(), store);
    let mut jobs = outbox
        .claim(
            rvc_domain::OutboxKind::UploadImages,
            1,
            Duration::from_secs(30),
            false,
        )
        .await
        .unwrap();
    (step, outbox, jobs.remove(0), key_a, pid, v3)
}

/// Issue 11, item 2. v3 re-adds A: its upload HEADs A (still there) and skips the PUT, while a
/// GC pass that classified A before v3 existed still holds the product's object lock; that
/// pass's DELETE of A lands before the upload commits. Before the fix the commit dropped A's
/// staged bytes anyway and the only copy was gone. Now the step sees at its load that GC holds
/// the lock, checks its objects at commit under that lock (which GC holds from its last
/// classification to its DELETEs), keeps the bytes and fails retryably; the retry PUTs A.
#[tokio::test]
async fn an_object_deleted_between_upload_and_commit_is_put_again_not_lost() {
    let backend = Backend::fs();
    let db = TestDb::new().await;
    let store = backend.store().await;
    let (step, outbox, job, key_a, pid, v3) = readd_superseded_photo(&db, store.clone()).await;

    // The GC pass: it took the lock and classified A (superseded) before v3 was ingested.
    let mut gc = db.client().await;
    let gc_tx = gc.transaction().await.unwrap();
    rvc_store::objects::lock_product_objects(&gc_tx, pid)
        .await
        .unwrap();
    let out = step.execute(&job).await.unwrap();
    // A was stored by v1, so the step looks first: it finds A and skips the PUT.
    assert!(
        out.photos.iter().any(|p| p.key == key_a && !p.put),
        "A was still there: PUT skipped"
    );
    assert!(out.verify_at_commit, "GC held the object lock at the load");
    // Its DELETE, then its commit (which lets the lock go).
    store.delete(&key_a).await.unwrap();
    gc_tx.commit().await.unwrap();

    let mut c = db.client().await;
    let tx = c.transaction().await.unwrap();
    let committed = step.commit(&tx, &job, out).await;
    assert!(
        committed
            .as_ref()
            .is_err_and(|e| e.to_string().contains("disappeared")),
        "the commit finds A gone: {committed:?}"
    );
    drop(tx);
    outbox
        .fail(
            &job,
            &rvc_outbox::StepError::retryable("object vanished"),
            &rvc_outbox::Backoff {
                base: Duration::from_millis(1),
                max: Duration::from_millis(1),
            },
            HOUR,
        )
        .await
        .unwrap();
    let w = worker(&db, store.clone(), worker_config());
    drain(&w, &db, Duration::from_secs(30)).await;

    let staged_or_stored: bool = db
        .client()
        .await
        .query_one(
            "SELECT staged_bytes IS NOT NULL OR object_key IS NOT NULL FROM product_images
             WHERE product_id = $1 AND version = $2 AND ordinal = 0",
            &[&pid, &v3],
        )
        .await
        .unwrap()
        .get(0);
    assert!(staged_or_stored);
    assert!(
        store.head(&key_a).await.unwrap().is_some(),
        "the current version's photo A exists in object storage"
    );
    let staged: i64 = db
        .count("SELECT count(*) FROM product_images WHERE staged_bytes IS NOT NULL")
        .await;
    assert_eq!(staged, 0, "every photo uploaded in the end");
}

/// Issue 17: when the object lock was free as the upload loaded its photos, the commit does
/// not HEAD them again. That is safe because a GC pass that runs after the load (here a real
/// one, with no grace period, between the upload's HEAD and its commit) classifies after it,
/// sees v3's row still in the pipeline and keeps A.
#[tokio::test]
async fn a_gc_pass_after_the_upload_loaded_its_photos_keeps_them() {
    let backend = Backend::fs();
    let db = TestDb::new().await;
    let store = backend.store().await;
    let (step, outbox, job, key_a, _, _) = readd_superseded_photo(&db, store.clone()).await;
    let out = step.execute(&job).await.unwrap();
    assert!(out.photos.iter().any(|p| p.key == key_a && !p.put));
    assert!(
        !out.verify_at_commit,
        "nobody held the object lock at the load"
    );

    let report = collect_orphans(&db.pool, store.as_ref(), Duration::ZERO, false)
        .await
        .unwrap();
    assert!(
        report.deleted.iter().all(|d| d.key != key_a),
        "GC keeps the photo a version in the pipeline re-adds: {report}"
    );
    assert!(store.head(&key_a).await.unwrap().is_some());

    let mut c = db.client().await;
    let tx = c.transaction().await.unwrap();
    step.commit(&tx, &job, out).await.unwrap();
    outbox
        .complete_in(&tx, rvc_domain::OutboxKind::UploadImages, &[job])
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert!(store.head(&key_a).await.unwrap().is_some());
}

/// The binary on its schedule: an aged orphan goes within a few ticks, `/metrics` counts it,
/// and SIGTERM stops the process cleanly.
#[tokio::test]
async fn the_binary_collects_on_its_schedule_and_stops_on_sigterm() {
    let backend = Backend::fs();
    let db = TestDb::new().await;
    let store = backend.store().await;
    let orphan = format!("products/{}/{}.png", Uuid::now_v7(), sha(6));
    plant(store.as_ref(), &orphan).await;
    backend.age(&orphan, TWO_HOURS);
    let port = rvc_test_support::net::free_port();
    let mut child = rvc_test_support::process::ChildGuard::spawn(
        "rvc-maintenance",
        std::process::Command::new(env!("CARGO_BIN_EXE_rvc-maintenance"))
            .env("DATABASE_URL", &db.url)
            .env("RUST_LOG", "warn")
            .env("GC_GRACE_SECS", "3600")
            .env("GC_SCHEDULE", "* * * * * *")
            .env("METRICS_ADDR", format!("127.0.0.1:{port}"))
            .envs(backend.env()),
    )
    .unwrap();
    assert!(
        rvc_test_support::wait_until(Duration::from_secs(20), || async {
            store.head(&orphan).await.unwrap().is_none()
        })
        .await,
        "the scheduled collection deleted the orphan"
    );
    let metrics = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("rvc_gc_deleted_total{reason=\"orphan\"} 1"),
        "{metrics}"
    );
    let status = child.terminate(Duration::from_secs(10));
    assert!(
        status.is_some_and(|s| s.success()),
        "clean exit on SIGTERM: {status:?}"
    );
}
