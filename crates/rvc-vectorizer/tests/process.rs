//! The real `rvc-vectorizer` binary: SIGKILL in the middle of a run and a restart converge to
//! exactly one point per photo; a collection of another dimension stops it at start.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use rvc_test_support::process::ChildGuard;
use rvc_test_support::TestDb;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BIN: &str = env!("CARGO_BIN_EXE_rvc-vectorizer");

fn vectorizer_cmd(db: &TestDb, objects: &Path, ml_url: &str, index_url: &str) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("DATABASE_URL", &db.url)
        .env("ML_SERVICE_URL", ml_url)
        .env("ML_CONCURRENCY", "2")
        .env("ML_STARTUP_WAIT_SECS", "5")
        .env("QDRANT_URL", index_url)
        .env("QDRANT_COLLECTION", COLLECTION)
        .env("QDRANT_STARTUP_WAIT_SECS", "5")
        .env("OBJECT_STORE_DIR", objects)
        .env("OUTBOX_BATCH_SIZE", "4")
        .env("OUTBOX_CONCURRENCY", "4")
        .env("OUTBOX_LEASE_SECS", "3")
        .env("OUTBOX_POLL_INTERVAL_MS", "100")
        .env("OUTBOX_BACKOFF_BASE_MS", "200")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    cmd
}

/// `GET path` on `addr`; returns the status code.
async fn http_status(addr: &str, path: &str) -> Option<u16> {
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.ok()?;
    let text = String::from_utf8_lossy(&buf);
    text.split_whitespace().nth(1)?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_run_then_restart_leaves_exactly_one_point_per_photo() {
    let db = TestDb::new().await;
    let objects = tempfile::tempdir().unwrap();
    let store = dir_store(objects.path()).await;
    let ml = MlServer::start().await;
    let index = IndexServer::start().await;
    let p = photos();
    let mut seeded = Vec::new();
    for i in 0..20 {
        let two = [p[i % 5].clone(), p[(i + 1) % 5].clone()];
        seeded.push(seed_product(&db, store.as_ref(), &format!("KILL-{i:02}"), &two).await);
    }

    let mut victim = ChildGuard::spawn(
        "victim",
        vectorizer_cmd(&db, objects.path(), &ml.url(), &index.url)
            .env("WORKER_ID", "victim")
            .env("METRICS_ADDR", "127.0.0.1:0")
            .stderr(Stdio::null()),
    )
    .unwrap();
    // Kill it once it has completed some products and holds leases on others.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let done = db.count(VECTORIZED_SQL).await;
        let leased = db
            .count("SELECT count(*) FROM outbox WHERE kind = 'vectorize' AND state = 'leased'")
            .await;
        if done >= 3 && leased > 0 {
            assert!(done < 20, "the victim finished before it could be killed");
            break;
        }
        assert!(victim.is_running(), "the victim exited on its own");
        assert!(Instant::now() < deadline, "the victim made no progress");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    victim.kill();
    let done_at_kill = db.count(VECTORIZED_SQL).await;

    let metrics_port = rvc_test_support::net::free_port();
    let metrics_addr = format!("127.0.0.1:{metrics_port}");
    let _rescuer = ChildGuard::spawn(
        "rescuer",
        vectorizer_cmd(&db, objects.path(), &ml.url(), &index.url)
            .env("WORKER_ID", "rescuer")
            .env("METRICS_ADDR", &metrics_addr)
            .stderr(Stdio::inherit()),
    )
    .unwrap();
    wait_count(&db, VECTORIZED_SQL, 20, Duration::from_secs(180)).await;

    assert_eq!(
        http_status(&metrics_addr, "/readyz").await,
        Some(200),
        "ready: database, ML service and vector index reachable"
    );
    let vi = index.index();
    let model = ml_model_version(&ml.url()).await;
    assert_eq!(
        vi.count(None).await.unwrap(),
        80,
        "exactly one point per view of each photo"
    );
    for s in &seeded {
        assert_eq!(
            vi.product_point_ids(s.product_id).await.unwrap(),
            s.point_ids(&model)
        );
    }
    assert_eq!(
        db.count("SELECT count(*) FROM product_images WHERE point_id IS NULL")
            .await,
        0
    );
    assert_eq!(
        db.count("SELECT count(*) FROM outbox WHERE state = 'dead'")
            .await,
        0
    );
    assert_eq!(
        db.count("SELECT count(*) FROM outbox WHERE kind = 'publish'")
            .await,
        20,
        "each product completed exactly once"
    );
    assert!(
        db.count("SELECT count(*) FROM outbox WHERE kind = 'vectorize' AND attempts >= 2")
            .await
            >= 1,
        "the killed worker's leases were taken over ({done_at_kill} done at the kill)"
    );
    ml.stop().await;
}

const VECTORIZED_SQL: &str = "SELECT count(*) FROM products WHERE status = 'vectorized'";

async fn ml_model_version(url: &str) -> String {
    rvc_vectorizer::MlClient::new(&ml_args(url))
        .unwrap()
        .model_info()
        .await
        .unwrap()
        .model_version
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_refuses_to_start_on_a_dimension_mismatch() {
    let db = TestDb::new().await;
    let objects = tempfile::tempdir().unwrap();
    let ml = MlServer::start().await;
    let index = IndexServer::start().await;
    index.index().ensure_collection(3).await.unwrap();

    let mut cmd = vectorizer_cmd(&db, objects.path(), &ml.url(), &index.url);
    cmd.env("METRICS_ADDR", "127.0.0.1:0");
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "must exit non-zero; stderr: {stderr}"
    );
    assert!(
        stderr.contains("vector size 3") && stderr.contains("1280"),
        "stderr names both dimensions: {stderr}"
    );
    ml.stop().await;
}
