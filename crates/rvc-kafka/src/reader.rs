//! A small, non-group consumer for tests and tools: reads whole topics.
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rskafka::client::{partition::UnknownTopicHandling, Client};

use crate::{
    client::{bounded, connect, topic_partitions, KafkaOptions},
    error::KafkaError,
    producer::map_topic_error,
};

/// A record read back from Kafka.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedRecord {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: BTreeMap<String, Vec<u8>>,
    pub timestamp: DateTime<Utc>,
}

/// Reads topics without a consumer group (no committed offsets).
pub struct KafkaReader {
    client: Client,
    opts: KafkaOptions,
}

impl std::fmt::Debug for KafkaReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaReader").finish_non_exhaustive()
    }
}

/// Largest fetch response we ask for per request.
const FETCH_MAX_BYTES: i32 = 4 * 1024 * 1024;

impl KafkaReader {
    pub async fn connect(
        brokers: impl IntoIterator<Item = impl Into<String>>,
        opts: KafkaOptions,
    ) -> Result<Self, KafkaError> {
        let brokers: Vec<String> = brokers.into_iter().map(Into::into).collect();
        let client = connect(brokers, &opts).await?;
        Ok(Self { client, opts })
    }

    /// The partition ids of `topic`.
    pub async fn partitions(&self, topic: &str) -> Result<Vec<i32>, KafkaError> {
        topic_partitions(&self.client, topic, &self.opts)
            .await?
            .ok_or_else(|| KafkaError::UnknownTopic(topic.to_owned()))
    }

    /// Every record of every partition, from offset 0 up to the high watermark read at the
    /// start of each partition's read, ordered by (partition, offset).
    pub async fn fetch_all(&self, topic: &str) -> Result<Vec<FetchedRecord>, KafkaError> {
        let mut out = Vec::new();
        for partition in self.partitions(topic).await? {
            out.extend(self.fetch_partition(topic, partition).await?);
        }
        Ok(out)
    }

    /// Every record of one partition from offset 0 up to its high watermark (as reported by
    /// the first fetch).
    pub async fn fetch_partition(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<Vec<FetchedRecord>, KafkaError> {
        let pc = self
            .client
            .partition_client(topic, partition, UnknownTopicHandling::Error)
            .await
            .map_err(|e| map_topic_error(topic, "connect to partition leader", e))?;
        // The high watermark comes from the first fetch response, not from ListOffsets: tansu
        // 0.6.0 answers ListOffsets(latest) with "base offset of the newest batch + 1", which is
        // too small as soon as a batch holds more than one record.
        let mut out = Vec::new();
        let mut next = 0_i64;
        let mut high: Option<i64> = None;
        loop {
            let (records, hw) = bounded(&self.opts, "fetch", async {
                pc.fetch_records(next, 1..FETCH_MAX_BYTES, 100)
                    .await
                    .map_err(|e| map_topic_error(topic, "fetch", e))
            })
            .await?;
            let high = *high.get_or_insert(hw);
            let before = next;
            for r in records {
                // A fetch returns whole batches, which may start before `next`.
                if r.offset < next || r.offset >= high {
                    continue;
                }
                next = r.offset + 1;
                out.push(FetchedRecord {
                    partition,
                    offset: r.offset,
                    key: r.record.key,
                    value: r.record.value,
                    headers: r.record.headers,
                    timestamp: r.record.timestamp,
                });
            }
            if next >= high {
                break;
            }
            if next == before {
                // Nothing new below the watermark: a gap (compaction, aborted transaction
                // markers) or a broker that under-reports. Stop instead of spinning.
                tracing::debug!(
                    topic,
                    partition,
                    next,
                    high,
                    "fetch made no progress; stopping"
                );
                break;
            }
        }
        Ok(out)
    }
}

/// Connects and reads every record of `topic` (see [`KafkaReader::fetch_all`]).
pub async fn fetch_all(
    brokers: impl IntoIterator<Item = impl Into<String>>,
    topic: &str,
) -> Result<Vec<FetchedRecord>, KafkaError> {
    KafkaReader::connect(brokers, KafkaOptions::default())
        .await?
        .fetch_all(topic)
        .await
}
