//! Produces N keyed sample records with rvc headers, to check third-party consumers
//! (`scripts/read-events.py`) against what `KafkaProducer` writes.
//!
//! `cargo run -p rvc-kafka --example produce-sample -- 127.0.0.1:9092 catalog.product-events 50`
#![allow(clippy::print_stderr)]

use std::collections::BTreeMap;

use rvc_kafka::{parse_brokers, KafkaOptions, KafkaProducer, OutRecord};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let brokers = parse_brokers(&args.next().unwrap_or_else(|| "127.0.0.1:9092".into()));
    let topic = args
        .next()
        .unwrap_or_else(|| "catalog.product-events".into());
    let n: usize = args.next().map_or(Ok(50), |s| s.parse())?;

    let producer = KafkaProducer::connect(brokers, &topic, KafkaOptions::default()).await?;
    let partitions = producer.ensure_topic(6, 1).await?;
    let records = (0..n)
        .map(|i| {
            let product = format!("00000000-0000-0000-0000-{:012}", i % 9);
            let mut headers = BTreeMap::new();
            headers.insert("event_id".to_owned(), format!("ev-{i}").into_bytes());
            headers.insert("event_type".to_owned(), b"product.upserted".to_vec());
            headers.insert("product_id".to_owned(), product.clone().into_bytes());
            headers.insert(
                "product_version".to_owned(),
                (i / 9 + 1).to_string().into_bytes(),
            );
            OutRecord {
                key: product.into_bytes(),
                value: vec![b'v'; 100 + i],
                headers,
                timestamp: chrono::Utc::now(),
            }
        })
        .collect();
    let delivered = producer.produce(records).await?;
    eprintln!(
        "produced {} records to {topic} ({partitions} partitions)",
        delivered.len()
    );
    Ok(())
}
