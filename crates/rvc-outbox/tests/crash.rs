//! A worker process killed with SIGKILL while holding leases: another process takes the rows
//! over once the leases expire and completes each exactly once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use rvc_domain::OutboxKind;
use rvc_outbox::testing::{seed_rows, STEP_LOG_DDL};
use rvc_test_support::process::ChildGuard;
use rvc_test_support::{wait_until, TestDb};
use std::process::Command;
use std::time::Duration;

fn worker(db: &TestDb, owner: &str, sleep_ms: u64, lease_secs: f64) -> ChildGuard {
    ChildGuard::spawn(
        owner,
        Command::new(env!("CARGO_BIN_EXE_rvc-outbox-noop-worker"))
            .env("DATABASE_URL", &db.url)
            .env("NOOP_KIND", "publish")
            .env("NOOP_SLEEP_MS", sleep_ms.to_string())
            .env("NOOP_LOG", "true")
            .env("WORKER_ID", owner)
            .env("OUTBOX_LEASE_SECS", lease_secs.to_string())
            .env("OUTBOX_BATCH_SIZE", "20")
            .env("OUTBOX_CONCURRENCY", "20")
            .env("OUTBOX_POLL_INTERVAL_MS", "100")
            .env("RUST_LOG", "warn"),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_worker_leases_are_reclaimed_and_completed_by_another_process() {
    let db = TestDb::new().await;
    let client = db.client().await;
    client.batch_execute(STEP_LOG_DDL).await.unwrap();
    seed_rows(&client, 200, OutboxKind::Publish).await.unwrap();

    // The victim works slowly (10 s a step) with a 2 s lease kept alive by its heartbeat.
    let mut victim = worker(&db, "victim", 10_000, 2.0);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let leased = db
            .count("SELECT count(*) FROM outbox WHERE state = 'leased' AND lease_owner = 'victim'")
            .await;
        if leased == 20 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "victim never claimed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Past the first lease length the heartbeat must have kept the rows: wait until the
    // database clock is past the latest first expiry and every lease has been extended
    // beyond it (no other worker runs, so an expired lease would just stay behind).
    let first_expiry: f64 = client
        .query_one(
            "SELECT extract(epoch FROM max(lease_expires_at))::float8 AS t FROM outbox
             WHERE lease_owner = 'victim' AND state = 'leased'",
            &[],
        )
        .await
        .unwrap()
        .get("t");
    assert!(
        wait_until(Duration::from_secs(10), || async {
            db.count(&format!(
                "SELECT count(*) FROM outbox
                 WHERE lease_owner = 'victim' AND state = 'leased'
                   AND extract(epoch FROM lease_expires_at) > {first_expiry}
                   AND extract(epoch FROM now()) > {first_expiry}"
            ))
            .await
                == 20
        })
        .await,
        "heartbeat extends leases while the step runs"
    );
    victim.kill();

    let _rescuer = worker(&db, "rescuer", 0, 2.0);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while db
        .count("SELECT count(*) FROM outbox WHERE state = 'done'")
        .await
        < 200
    {
        assert!(std::time::Instant::now() < deadline, "rows not completed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(db.count("SELECT count(*) FROM outbox_step_log").await, 200);
    assert_eq!(
        db.count("SELECT count(*) FROM outbox_step_log WHERE owner = 'victim'")
            .await,
        0,
        "the killed process completed nothing"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM outbox WHERE attempts = 2")
            .await,
        20,
        "the 20 abandoned rows were attempted twice, the rest once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_in_flight_work_and_exits_cleanly() {
    let db = TestDb::new().await;
    let client = db.client().await;
    client.batch_execute(STEP_LOG_DDL).await.unwrap();
    seed_rows(&client, 5, OutboxKind::Publish).await.unwrap();
    let mut w = worker(&db, "graceful", 1500, 30.0);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while db
        .count("SELECT count(*) FROM outbox WHERE state = 'leased'")
        .await
        < 5
    {
        assert!(std::time::Instant::now() < deadline, "never claimed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = w
        .terminate(Duration::from_secs(15))
        .expect("exits after SIGTERM");
    assert!(status.success(), "clean exit: {status:?}");
    assert_eq!(
        db.count("SELECT count(*) FROM outbox WHERE state = 'done'")
            .await,
        5,
        "in-flight steps finished within the grace period"
    );
}
