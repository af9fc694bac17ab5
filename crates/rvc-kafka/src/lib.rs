//! Kafka for rvc: a keyed producer on rskafka that partitions exactly like the Java client
//! (murmur2), and a small whole-topic reader for tests and tools.
//!
//! ```no_run
//! # async fn demo() -> Result<(), rvc_kafka::KafkaError> {
//! use rvc_kafka::{KafkaOptions, KafkaProducer, OutRecord};
//! let producer = KafkaProducer::connect(["127.0.0.1:9092"], "catalog.product-events",
//!     KafkaOptions::default()).await?;
//! producer.ensure_topic(6, 1).await?;
//! let delivered = producer.produce(vec![OutRecord {
//!     key: b"product-1".to_vec(),
//!     value: b"payload".to_vec(),
//!     headers: [("event_id".to_owned(), b"e1".to_vec())].into(),
//!     timestamp: chrono::Utc::now(),
//! }]).await?;
//! # let _ = delivered; Ok(()) }
//! ```

mod args;
mod client;
mod error;
pub mod partitioner;
mod producer;
mod reader;

pub use args::KafkaArgs;
pub use client::{parse_brokers, KafkaOptions, TopicSpec};
pub use error::KafkaError;
pub use partitioner::{murmur2, partition_for_key, to_positive};
pub use producer::{Delivered, KafkaProducer, OutRecord};
pub use reader::{fetch_all, FetchedRecord, KafkaReader};
pub use rskafka::client::error::ProtocolError;
