//! `rvc-relay`: the publish step of the pipeline.
//!
//! Claims `publish` outbox rows (a product's versions strictly in order, other products never
//! held back), builds one `rvc.events.v1.ProductChangeEvent` upsert per row from Postgres (and
//! the embedding vectors from the vector index), produces the whole batch to Kafka in one
//! call (key = product id, partition = murmur2 like the Java client, acks from all replicas),
//! and on the broker's ack the engine completes the rows and marks the products `indexed`.
//!
//! Delivery is at-least-once: a crash between the ack and the commit re-sends the row with
//! the same `event_id` (its outbox id). See docs/events.md for the consumer's rules.

mod error;
pub mod event;
mod step;

pub use error::RelayError;
pub use rvc_kafka::KafkaArgs;
pub use step::{EmbeddingArgs, PublishStep};

/// Default address of `/healthz`, `/readyz` and `/metrics`.
pub const DEFAULT_METRICS_ADDR: &str = "127.0.0.1:9103";
#[cfg(feature = "testing")]
pub mod testing;
