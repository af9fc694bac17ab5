//! Produce throughput against a local tansu (started by the bench): 1 KiB records in batches
//! of 100, sequential batches (one in flight), acks from all replicas.
//!
//! Measures the raw rskafka `PartitionClient::produce` rate on one partition, then the rate of
//! `KafkaProducer::produce` (murmur2 grouping over 6 partitions, partitions in parallel).
//! `BENCH_SECONDS` (default 5) bounds each phase.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use rskafka::{
    client::{
        partition::{Compression, UnknownTopicHandling},
        ClientBuilder,
    },
    record::Record,
};
use rvc_kafka::{KafkaOptions, KafkaProducer, OutRecord};
use rvc_test_support::kafka::TestKafka;

const RECORD_BYTES: usize = 1024;
const BATCH: usize = 100;
const MAX_BATCHES: usize = 2_000;

fn report(name: &str, records: usize, elapsed: Duration, latencies: &mut [Duration]) {
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 - 1.0) * p) as usize];
    let secs = elapsed.as_secs_f64();
    println!(
        "{name}: {records} records ({BATCH}/batch, {RECORD_BYTES} B) in {secs:.2} s = {:.0} records/s, {:.1} MiB/s; batch latency p50 {:?} p99 {:?}",
        records as f64 / secs,
        (records * RECORD_BYTES) as f64 / secs / (1024.0 * 1024.0),
        pct(0.5),
        pct(0.99),
    );
}

#[tokio::main]
async fn main() {
    let budget = Duration::from_secs(
        std::env::var("BENCH_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(5),
    );
    let kafka = TestKafka::start().await;
    let value = vec![b'x'; RECORD_BYTES];

    // --- raw rskafka, one partition ---
    let client = ClientBuilder::new(kafka.brokers()).build().await.unwrap();
    client
        .controller_client()
        .unwrap()
        .create_topic("bench.raw", 1, 1, 5_000)
        .await
        .unwrap();
    let pc = client
        .partition_client("bench.raw", 0, UnknownTopicHandling::Retry)
        .await
        .unwrap();
    let mut headers = BTreeMap::new();
    headers.insert("event_id".to_owned(), b"0123456789abcdef".to_vec());
    let make_batch = |i: usize| -> Vec<Record> {
        (0..BATCH)
            .map(|j| Record {
                key: Some(format!("product-{}", i * BATCH + j).into_bytes()),
                value: Some(value.clone()),
                headers: headers.clone(),
                timestamp: chrono::Utc::now(),
            })
            .collect()
    };
    // Warm-up.
    pc.produce(make_batch(0), Compression::NoCompression)
        .await
        .unwrap();
    let mut lat = Vec::new();
    let start = Instant::now();
    let mut n = 0;
    while n < MAX_BATCHES && start.elapsed() < budget {
        let batch = make_batch(n);
        let t = Instant::now();
        pc.produce(batch, Compression::NoCompression).await.unwrap();
        lat.push(t.elapsed());
        n += 1;
    }
    report(
        "raw rskafka, 1 partition",
        n * BATCH,
        start.elapsed(),
        &mut lat,
    );

    // Latency of single produce calls by batch size, one partition (shows the ~40 ms
    // Nagle/delayed-ACK stall of mid-sized requests, see the producer's notes).
    for size in [1, 5, 10, 20, 50, 64] {
        let t = Instant::now();
        for i in 0..20 {
            let mut b = make_batch(i);
            b.truncate(size);
            pc.produce(b, Compression::NoCompression).await.unwrap();
        }
        println!(
            "raw rskafka, {size} x {RECORD_BYTES} B per call: {:?} per call",
            t.elapsed() / 20
        );
    }

    for partitions in [1, 6] {
        keyed_phase(&kafka, partitions, budget, &value, &headers).await;
    }
}

/// `KafkaProducer::produce` of 100-record calls on a topic with `partitions` partitions.
async fn keyed_phase(
    kafka: &TestKafka,
    partitions: i32,
    budget: Duration,
    value: &[u8],
    headers: &BTreeMap<String, Vec<u8>>,
) {
    let topic = format!("bench.keyed-{partitions}");
    let producer = KafkaProducer::connect(kafka.brokers(), &topic, KafkaOptions::default())
        .await
        .unwrap();
    producer.ensure_topic(partitions, 1).await.unwrap();
    let make_out = |i: usize| -> Vec<OutRecord> {
        (0..BATCH)
            .map(|j| OutRecord {
                key: format!("product-{}", i * BATCH + j).into_bytes(),
                value: value.to_vec(),
                headers: headers.clone(),
                timestamp: chrono::Utc::now(),
            })
            .collect()
    };
    producer.produce(make_out(0)).await.unwrap();
    let mut lat = Vec::new();
    let start = Instant::now();
    let mut n = 0;
    while n < MAX_BATCHES && start.elapsed() < budget {
        let batch = make_out(n);
        let t = Instant::now();
        producer.produce(batch).await.unwrap();
        lat.push(t.elapsed());
        n += 1;
    }
    report(
        &format!("KafkaProducer, {partitions} partition(s)"),
        n * BATCH,
        start.elapsed(),
        &mut lat,
    );
}
