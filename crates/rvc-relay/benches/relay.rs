//! Relay throughput against a local tansu (started by the bench), beside the raw produce rate
//! of the same records on the same broker in the same run.
//!
//! Usage: `cargo bench -p rvc-relay --bench relay -- [ROWS] [BATCH]` (default 5000 64).
//! 0. the outbox alone: ROWS publish rows drained by the same worker loop and config with a
//!    step that does nothing (`NoopStep`): the rate issue 17, item 3 compares the relay with;
//! 1. relay: ROWS pending publish rows (2 photos each, events without vectors) drained by one
//!    in-process worker (claim → load from Postgres → one produce call → commit), batch BATCH;
//! 2. the same encoded records (read back from the topic) produced again, BATCH per call:
//!    raw rskafka `PartitionClient::produce` on one partition, then `KafkaProducer::produce`
//!    (murmur2 over 6 partitions, as the relay does). Neither touches Postgres.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use rskafka::client::partition::{Compression, UnknownTopicHandling};
use rskafka::client::ClientBuilder;
use rskafka::record::Record;
use rvc_domain::OutboxKind;
use rvc_kafka::{KafkaOptions, KafkaProducer, KafkaReader, OutRecord};
use rvc_outbox::testing::{seed_rows, NullStep};
use rvc_outbox::{Backoff, Outbox, Step, Worker, WorkerConfig};
use rvc_relay::testing::seed_publish_rows;
use rvc_relay::PublishStep;
use rvc_test_support::kafka::TestKafka;
use rvc_test_support::TestDb;
use tokio_util::sync::CancellationToken;

/// Drains every claimable row with one worker calling `run_once` in a loop; the time it took.
async fn drain<S: Step>(worker: &Worker<S>, rows: usize) -> Duration {
    let stop = CancellationToken::new();
    let start = Instant::now();
    let mut done = 0;
    while done < rows {
        let r = worker.run_once(&stop).await.unwrap();
        assert!(r.claimed > 0, "nothing left to claim at {done}/{rows}");
        done += r.completed;
    }
    start.elapsed()
}

fn line(name: &str, n: usize, elapsed: Duration) {
    println!(
        "{name}: {n} events in {:.2} s = {:.0} events/s",
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64()
    );
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let rows: usize = args.first().and_then(|s| s.parse().ok()).unwrap_or(5000);
    let batch: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(64);
    let (db, kafka) = tokio::join!(TestDb::new(), TestKafka::start());

    // --- the relay ---
    let topic = "bench.relay";
    let producer = KafkaProducer::connect(kafka.brokers(), topic, KafkaOptions::default())
        .await
        .unwrap();
    producer.ensure_topic(6, 1).await.unwrap();
    let client = db.client().await;
    let cfg = WorkerConfig {
        batch_size: batch,
        poll_interval: Duration::from_millis(20),
        backoff: Backoff::default(),
        ..WorkerConfig::default()
    };
    let outbox = || Outbox::new(db.pool.clone(), "bench", rvc_store::pipeline::hooks());

    // --- the outbox alone, same loop and config ---
    let noop = Worker::new(
        outbox(),
        Arc::new(NullStep(OutboxKind::Publish)),
        cfg.clone(),
    );
    // Warm-up, not timed: the pool's connections and the server's plans and caches, so the
    // first measured run does not pay for them.
    seed_rows(&client, 20 * batch as i64, OutboxKind::Publish)
        .await
        .unwrap();
    drain(&noop, 20 * batch).await;
    seed_rows(&client, rows as i64, OutboxKind::Publish)
        .await
        .unwrap();
    client.batch_execute("VACUUM ANALYZE outbox").await.unwrap();
    let alone = drain(&noop, rows).await;
    line(
        &format!("outbox alone (claim + no-op step + commit, batch {batch})"),
        rows,
        alone,
    );

    // --- the relay ---
    seed_publish_rows(&client, rows, 1, 2).await.unwrap();
    client.batch_execute("VACUUM ANALYZE outbox").await.unwrap();
    let step = Arc::new(PublishStep::new(db.pool.clone(), Arc::new(producer), None));
    let relay = drain(&Worker::new(outbox(), step, cfg), rows).await;
    line(
        &format!("rvc-relay (Postgres claim + load + produce + commit, batch {batch})"),
        rows,
        relay,
    );

    // --- the same records, produced directly ---
    let records = KafkaReader::connect(kafka.brokers(), KafkaOptions::default())
        .await
        .unwrap()
        .fetch_all(topic)
        .await
        .unwrap();
    assert_eq!(records.len(), rows);
    let bytes: usize = records
        .iter()
        .map(|r| r.value.as_ref().map_or(0, Vec::len))
        .sum();
    println!(
        "event size: {} B on average (2 photos, no vectors)",
        bytes / rows
    );

    let raw = ClientBuilder::new(kafka.brokers()).build().await.unwrap();
    raw.controller_client()
        .unwrap()
        .create_topic("bench.raw", 1, 1, 5_000)
        .await
        .unwrap();
    let pc = raw
        .partition_client("bench.raw", 0, UnknownTopicHandling::Retry)
        .await
        .unwrap();
    let start = Instant::now();
    for chunk in records.chunks(batch) {
        let recs: Vec<Record> = chunk
            .iter()
            .map(|r| Record {
                key: r.key.clone(),
                value: r.value.clone(),
                headers: r.headers.clone(),
                timestamp: r.timestamp,
            })
            .collect();
        pc.produce(recs, Compression::NoCompression).await.unwrap();
    }
    line(
        &format!("raw rskafka PartitionClient::produce, 1 partition, batch {batch}"),
        rows,
        start.elapsed(),
    );

    let keyed = KafkaProducer::connect(kafka.brokers(), "bench.keyed", KafkaOptions::default())
        .await
        .unwrap();
    keyed.ensure_topic(6, 1).await.unwrap();
    let start = Instant::now();
    for chunk in records.chunks(batch) {
        let recs: Vec<OutRecord> = chunk
            .iter()
            .map(|r| OutRecord {
                key: r.key.clone().unwrap_or_default(),
                value: r.value.clone().unwrap_or_default(),
                headers: r.headers.clone(),
                timestamp: r.timestamp,
            })
            .collect();
        keyed.produce(recs).await.unwrap();
    }
    let direct = start.elapsed();
    line(
        &format!("rvc-kafka KafkaProducer::produce, 6 partitions, batch {batch}"),
        rows,
        direct,
    );
    println!(
        "relay / direct produce time: {:.2}x (the rest is the outbox: claim, load, commit)",
        relay.as_secs_f64() / direct.as_secs_f64()
    );
    println!(
        "relay / outbox-alone rate: {:.2}x (issue 17, item 3: at least 0.5x)",
        alone.as_secs_f64() / relay.as_secs_f64()
    );
}
