//! The real `rvc-image-uploader` binary SIGKILLed in the middle of a batch of 200 products
//! and started again: every product ends `images_stored` once, and the bucket holds exactly
//! the keys Postgres refers to.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use rvc_test_support::process::ChildGuard;
use rvc_test_support::TestDb;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn spawn_uploader(db: &TestDb, backend: &Backend, log: &std::path::Path) -> ChildGuard {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rvc-image-uploader"));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("DATABASE_URL", &db.url)
        .env("METRICS_ADDR", "127.0.0.1:0")
        .env("OUTBOX_BATCH_SIZE", "10")
        .env("OUTBOX_CONCURRENCY", "2")
        .env("OUTBOX_LEASE_SECS", "2")
        .env("OUTBOX_POLL_INTERVAL_MS", "100")
        .env("OUTBOX_BACKOFF_BASE_MS", "100")
        .env("GC_ENABLED", "false")
        .env("RUST_LOG", "warn")
        .envs(backend.env())
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log));
    ChildGuard::spawn("rvc-image-uploader", &mut cmd).unwrap()
}

#[tokio::test]
async fn sigkill_mid_batch_then_restart_completes_everything_once() {
    let backend = Backend::s3().await;
    let db = TestDb::new().await;
    let store = backend.store().await;
    seed(&db, 200, 1, 64).await; // ~12 KB PNGs
    let logdir = tempfile::tempdir().unwrap();
    let log = logdir.path().join("uploader.log");

    let mut child = spawn_uploader(&db, &backend, &log);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let done = db
            .count("SELECT count(*) FROM outbox WHERE kind = 'upload_images' AND state = 'done'")
            .await;
        let leased = db
            .count("SELECT count(*) FROM outbox WHERE kind = 'upload_images' AND state = 'leased'")
            .await;
        if done >= 20 && leased > 0 {
            break;
        }
        assert!(
            child.is_running(),
            "uploader exited: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        assert!(
            Instant::now() < deadline,
            "no progress: done={done} leased={leased}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    child.kill(); // SIGKILL: leases stay behind
    let after_kill_done = db
        .count("SELECT count(*) FROM outbox WHERE kind = 'upload_images' AND state = 'done'")
        .await;
    let left_leased = db
        .count("SELECT count(*) FROM outbox WHERE kind = 'upload_images' AND state = 'leased'")
        .await;
    assert!(
        after_kill_done < 200,
        "killed before the end ({after_kill_done} done)"
    );
    assert!(left_leased > 0, "the kill left leases behind");

    let mut child = spawn_uploader(&db, &backend, &log);
    let deadline = Instant::now() + Duration::from_secs(120);
    while db
        .count("SELECT count(*) FROM products WHERE status = 'images_stored'")
        .await
        < 200
    {
        assert!(
            child.is_running(),
            "uploader exited: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        assert!(
            Instant::now() < deadline,
            "not all products stored after the restart"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = child.terminate(Duration::from_secs(10));
    assert!(
        status.is_some_and(|s| s.success()),
        "clean exit on SIGTERM: {status:?}"
    );

    assert_eq!(
        db.count("SELECT count(*) FROM outbox WHERE kind = 'upload_images' AND state = 'done'")
            .await,
        200
    );
    assert_eq!(
        db.count("SELECT count(*) FROM outbox WHERE kind = 'vectorize'")
            .await,
        200,
        "each step completed exactly once"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM product_images WHERE staged_bytes IS NOT NULL OR object_key IS NULL")
            .await,
        0
    );
    let mut keys = bucket_keys(store.as_ref()).await;
    keys.sort();
    assert_eq!(keys.len(), 200);
    assert_eq!(
        keys,
        referenced_keys(&db).await,
        "bucket == references, exactly"
    );
}
