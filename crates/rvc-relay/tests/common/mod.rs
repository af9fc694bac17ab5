//! Shared setup of the relay tests: a fresh database, a broker, a producer, a worker.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use rvc_kafka::{KafkaOptions, KafkaProducer, KafkaReader, TopicSpec};
use rvc_outbox::{Backoff, Outbox, Worker, WorkerConfig};
use rvc_relay::testing::{decode_all, SeenEvent};
use rvc_relay::PublishStep;
use rvc_test_support::kafka::TestKafka;
use rvc_test_support::TestDb;

pub const PARTITIONS: i32 = 6;

pub fn topic() -> String {
    format!("test.product-events-{}", uuid::Uuid::new_v4().simple())
}

pub fn kafka_opts() -> KafkaOptions {
    KafkaOptions {
        request_timeout: Duration::from_secs(2),
        auto_create_topic: Some(TopicSpec {
            partitions: PARTITIONS,
            replication: 1,
        }),
        ..KafkaOptions::default()
    }
}

pub async fn producer(kafka: &TestKafka, topic: &str) -> Arc<KafkaProducer> {
    let p = KafkaProducer::connect(kafka.brokers(), topic, kafka_opts())
        .await
        .unwrap();
    p.ensure_topic(PARTITIONS, 1).await.unwrap();
    Arc::new(p)
}

pub fn config(batch_size: usize) -> WorkerConfig {
    WorkerConfig {
        batch_size,
        concurrency: 8,
        lease: Duration::from_secs(10),
        poll_interval: Duration::from_millis(50),
        backoff: Backoff {
            base: Duration::from_millis(500),
            max: Duration::from_secs(8),
        },
        shutdown_grace: Duration::from_secs(5),
        retry_window: Duration::from_secs(3600),
    }
}

pub fn worker(db: &TestDb, step: Arc<PublishStep>, cfg: WorkerConfig) -> Worker<PublishStep> {
    Worker::new(
        Outbox::new(db.pool.clone(), "relay-test", rvc_store::pipeline::hooks()),
        step,
        cfg,
    )
}

/// Waits until no publish row is pending or leased.
pub async fn wait_drained(db: &TestDb, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let open = db
            .count("SELECT count(*) FROM outbox WHERE kind = 'publish' AND state IN ('pending', 'leased')")
            .await;
        if open == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{open} publish rows still open after {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn read_events(kafka: &TestKafka, topic: &str) -> Vec<SeenEvent> {
    let reader = KafkaReader::connect(kafka.brokers(), kafka_opts())
        .await
        .unwrap();
    let records = reader.fetch_all(topic).await.unwrap();
    decode_all(&records).unwrap()
}
