//! Producer and reader against a real Kafka-protocol broker (tansu, started per test).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{collections::BTreeMap, time::Duration};

use chrono::{TimeZone, Utc};
use rvc_kafka::{
    partition_for_key, KafkaOptions, KafkaProducer, KafkaReader, OutRecord, TopicSpec,
};
use rvc_test_support::kafka::TestKafka;

fn record(key: &str, value: &[u8], seq: usize) -> OutRecord {
    let mut headers = BTreeMap::new();
    headers.insert(
        "event_id".to_owned(),
        format!("ev-{key}-{seq}").into_bytes(),
    );
    headers.insert("product_id".to_owned(), key.as_bytes().to_vec());
    headers.insert("binary".to_owned(), vec![0, 255, seq as u8]);
    OutRecord {
        key: key.as_bytes().to_vec(),
        value: value.to_vec(),
        headers,
        timestamp: Utc
            .timestamp_millis_opt(1_700_000_000_000 + seq as i64)
            .unwrap(),
    }
}

fn topic() -> String {
    format!("test.events-{}", uuid::Uuid::new_v4().simple())
}

fn opts() -> KafkaOptions {
    KafkaOptions {
        request_timeout: Duration::from_secs(5),
        ..KafkaOptions::default()
    }
}

#[tokio::test]
async fn ensure_topic_is_idempotent() {
    let kafka = TestKafka::start().await;
    let topic = topic();
    let producer = KafkaProducer::connect(kafka.brokers(), &topic, opts())
        .await
        .unwrap();
    assert_eq!(producer.ensure_topic(3, 1).await.unwrap(), 3);
    // Second call: topic exists, no error, same count.
    assert_eq!(producer.ensure_topic(3, 1).await.unwrap(), 3);
    // A second producer racing to create it also succeeds.
    let other = KafkaProducer::connect(kafka.brokers(), &topic, opts())
        .await
        .unwrap();
    assert_eq!(other.ensure_topic(3, 1).await.unwrap(), 3);

    let reader = KafkaReader::connect(kafka.brokers(), opts()).await.unwrap();
    assert_eq!(reader.partitions(&topic).await.unwrap(), vec![0, 1, 2]);
    assert!(reader.fetch_all(&topic).await.unwrap().is_empty());
}

#[tokio::test]
async fn produce_then_fetch_round_trips_keys_values_headers() {
    let kafka = TestKafka::start().await;
    let topic = topic();
    let producer = KafkaProducer::connect(kafka.brokers(), &topic, opts())
        .await
        .unwrap();
    producer.ensure_topic(4, 1).await.unwrap();

    let records: Vec<OutRecord> = (0..40)
        .map(|i| {
            record(
                &format!("product-{}", i % 7),
                format!("value {i}").as_bytes(),
                i,
            )
        })
        .collect();
    let delivered = producer.produce(records.clone()).await.unwrap();
    assert_eq!(delivered.len(), records.len());

    let fetched = KafkaReader::connect(kafka.brokers(), opts())
        .await
        .unwrap()
        .fetch_all(&topic)
        .await
        .unwrap();
    assert_eq!(fetched.len(), records.len());

    for (sent, at) in records.iter().zip(&delivered) {
        let got = fetched
            .iter()
            .find(|f| f.partition == at.partition && f.offset == at.offset)
            .unwrap_or_else(|| panic!("record at {at:?} not fetched"));
        assert_eq!(got.key.as_deref(), Some(sent.key.as_slice()));
        assert_eq!(got.value.as_deref(), Some(sent.value.as_slice()));
        assert_eq!(got.headers, sent.headers);
        assert_eq!(got.timestamp, sent.timestamp);
        assert_eq!(at.partition, partition_for_key(&sent.key, 4));
    }
    // More than one partition was used, so grouping by partition was exercised.
    let used: std::collections::BTreeSet<i32> = delivered.iter().map(|d| d.partition).collect();
    assert!(used.len() > 1, "all records on one partition: {used:?}");
}

#[tokio::test]
async fn one_key_lands_on_its_murmur2_partition_in_produce_order() {
    let kafka = TestKafka::start().await;
    let topic = topic();
    let producer = KafkaProducer::connect(kafka.brokers(), &topic, opts())
        .await
        .unwrap();
    producer.ensure_topic(6, 1).await.unwrap();

    let keys: Vec<String> = (0..10).map(|i| format!("sku-{i}")).collect();
    // Several produce calls, keys interleaved within and across calls.
    let mut seq: usize = 0;
    for _round in 0..4 {
        let batch: Vec<OutRecord> = (0..3)
            .flat_map(|_| keys.iter())
            .map(|k| {
                seq += 1;
                record(k, &seq.to_be_bytes(), seq)
            })
            .collect();
        producer.produce(batch).await.unwrap();
    }

    let fetched = rvc_kafka::fetch_all(kafka.brokers(), &topic).await.unwrap();
    assert_eq!(fetched.len(), seq);
    for key in &keys {
        let expected_partition = partition_for_key(key.as_bytes(), 6);
        let mine: Vec<_> = fetched
            .iter()
            .filter(|f| f.key.as_deref() == Some(key.as_bytes()))
            .collect();
        assert_eq!(mine.len(), 12, "records of {key}");
        assert!(
            mine.iter().all(|f| f.partition == expected_partition),
            "{key} expected on partition {expected_partition}"
        );
        // fetch_all is ordered by offset within a partition: the sequence numbers we wrote
        // (the value) must then be increasing, i.e. the broker kept produce order.
        let seqs: Vec<usize> = mine
            .iter()
            .map(|f| usize::from_be_bytes(f.value.clone().unwrap().try_into().unwrap()))
            .collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{key}: {seqs:?}");
    }
}

#[tokio::test]
async fn unknown_topic_is_reported_and_auto_created_when_asked() {
    let kafka = TestKafka::start().await;
    let topic = topic();
    let plain = KafkaProducer::connect(kafka.brokers(), &topic, opts())
        .await
        .unwrap();
    let err = plain
        .produce(vec![record("k", b"v", 0)])
        .await
        .expect_err("topic does not exist");
    assert!(err.is_unknown_topic(), "{err}");
    assert!(err.is_retryable(), "{err}");

    let auto = KafkaProducer::connect(
        kafka.brokers(),
        &topic,
        KafkaOptions {
            auto_create_topic: Some(TopicSpec {
                partitions: 2,
                replication: 1,
            }),
            ..opts()
        },
    )
    .await
    .unwrap();
    let d = auto.produce(vec![record("k", b"v", 0)]).await.unwrap();
    assert_eq!(d[0].partition, partition_for_key(b"k", 2));
    assert_eq!(
        rvc_kafka::fetch_all(kafka.brokers(), &topic)
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn broker_outage_gives_retryable_error_then_recovers_after_restart() {
    let mut kafka = TestKafka::start().await;
    let topic = topic();
    let producer = KafkaProducer::connect(
        kafka.brokers(),
        &topic,
        KafkaOptions {
            request_timeout: Duration::from_secs(2),
            // tansu runs with memory storage: the restarted broker has no topics.
            auto_create_topic: Some(TopicSpec {
                partitions: 3,
                replication: 1,
            }),
            ..opts()
        },
    )
    .await
    .unwrap();
    producer.ensure_topic(3, 1).await.unwrap();
    producer
        .produce(vec![record("before", b"1", 1)])
        .await
        .unwrap();

    kafka.stop();
    let started = std::time::Instant::now();
    let err = producer
        .produce(vec![record("during", b"2", 2)])
        .await
        .expect_err("broker is down");
    eprintln!(
        "produce while the broker is down failed after {:?}: {err}",
        started.elapsed()
    );
    assert!(err.is_retryable(), "not retryable: {err}");
    // Bounded by request_timeout (2 s), with some slack.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    kafka.restart().await;
    // rskafka reconnects on its own; the first calls after a restart may still fail while it
    // notices the broken connection, so retry like the relay would.
    let mut last_err = None;
    let mut delivered = None;
    for _ in 0..20 {
        match producer.produce(vec![record("after", b"3", 3)]).await {
            Ok(d) => {
                delivered = Some(d);
                break;
            }
            Err(e) => {
                assert!(e.is_retryable(), "non-retryable after restart: {e}");
                last_err = Some(e);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    eprintln!("after restart: last error before success: {last_err:?}");
    let delivered = delivered.unwrap_or_else(|| panic!("never recovered: {last_err:?}"));
    assert_eq!(delivered[0].partition, partition_for_key(b"after", 3));

    let fetched = rvc_kafka::fetch_all(kafka.brokers(), &topic).await.unwrap();
    let keys: Vec<&[u8]> = fetched.iter().filter_map(|f| f.key.as_deref()).collect();
    // Memory storage: "before" is gone with the old broker; "during" was never written.
    assert_eq!(keys, vec![b"after".as_slice()]);
}
