//! The real `rvc-relay` binary, SIGKILLed while it holds a batch, then restarted: every event
//! is on the topic, and the only duplicates repeat an event id.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use rvc_relay::testing::{check_delivery, seed_publish_rows};
use rvc_test_support::kafka::TestKafka;
use rvc_test_support::process::ChildGuard;
use rvc_test_support::TestDb;

fn relay(db: &TestDb, kafka: &TestKafka, topic: &str, name: &str) -> ChildGuard {
    ChildGuard::spawn(
        name,
        Command::new(env!("CARGO_BIN_EXE_rvc-relay"))
            .env("DATABASE_URL", &db.url)
            .env("KAFKA_BROKERS", kafka.bootstrap())
            .env("KAFKA_TOPIC", topic)
            .env("KAFKA_PARTITIONS", PARTITIONS.to_string())
            .env("RELAY_INCLUDE_VECTORS", "false")
            .env("METRICS_ADDR", "127.0.0.1:0")
            .env("WORKER_ID", name)
            .env("OUTBOX_BATCH_SIZE", "16")
            .env("OUTBOX_LEASE_SECS", "2")
            .env("OUTBOX_POLL_INTERVAL_MS", "100")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null()),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_sigkilled_mid_batch_loses_nothing_and_duplicates_only_repeat_event_ids() {
    let (db, kafka) = tokio::join!(TestDb::new(), TestKafka::start());
    let topic = topic();
    let client = db.client().await;
    // Multi-version products too: order must survive the crashes.
    seed_publish_rows(&client, 600, 1, 2).await.unwrap();
    seed_publish_rows(&client, 20, 4, 1).await.unwrap();
    let total = db.count("SELECT count(*) FROM outbox").await;

    let mut kills_mid_batch = 0;
    for round in 0..6 {
        let mut victim = relay(&db, &kafka, &topic, &format!("victim-{round}"));
        // Let it publish for a while, then kill it while it holds leases (inside a batch).
        let started = Instant::now();
        let done_before = db
            .count("SELECT count(*) FROM outbox WHERE state = 'done'")
            .await;
        loop {
            let done = db
                .count("SELECT count(*) FROM outbox WHERE state = 'done'")
                .await;
            let leased = db
                .count(&format!(
                    "SELECT count(*) FROM outbox WHERE state = 'leased' AND lease_owner = 'victim-{round}'"
                ))
                .await;
            if done > done_before + 40 && leased > 0 {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "relay made no progress"
            );
            tokio::time::sleep(Duration::from_millis(7)).await;
        }
        victim.kill();
        let leased = db
            .count(&format!(
                "SELECT count(*) FROM outbox WHERE state = 'leased' AND lease_owner = 'victim-{round}'"
            ))
            .await;
        if leased > 0 {
            kills_mid_batch += 1;
        }
        if kills_mid_batch >= 3 {
            break;
        }
    }
    assert!(
        kills_mid_batch >= 3,
        "killed mid-batch only {kills_mid_batch} times"
    );

    let _rescuer = relay(&db, &kafka, &topic, "rescuer");
    wait_drained(&db, Duration::from_secs(90)).await;

    let events = read_events(&kafka, &topic).await;
    let report = check_delivery(&events);
    assert!(report.violations.is_empty(), "{:#?}", report.violations);
    assert_eq!(
        report.distinct_event_ids as i64, total,
        "every row's event is on the topic"
    );
    assert_eq!(
        report.records,
        report.distinct_event_ids + report.duplicates
    );
    assert_eq!(
        db.count("SELECT count(*) FROM outbox WHERE state = 'dead'")
            .await,
        0
    );
    assert_eq!(
        db.count("SELECT count(*) FROM products WHERE status <> 'indexed'")
            .await,
        0
    );
    eprintln!(
        "SIGKILL x{kills_mid_batch} mid-batch: {} rows, {} records, {} duplicates (each a repeated event id)",
        total, report.records, report.duplicates
    );
}
