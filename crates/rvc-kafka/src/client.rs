//! Connection options shared by the producer and the reader.
use std::time::Duration;

use rskafka::{
    client::{Client, ClientBuilder},
    BackoffConfig,
};

use crate::error::KafkaError;

/// Topic layout used by [`crate::KafkaProducer::ensure_topic`] and auto-creation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicSpec {
    pub partitions: i32,
    pub replication: i16,
}

/// Options of a Kafka connection.
#[derive(Debug, Clone)]
pub struct KafkaOptions {
    /// Kafka `client.id` sent to the broker.
    pub client_id: String,
    /// Upper bound for one call (connect, metadata, create topic, produce, fetch), internal
    /// retries included. When it passes, the call fails with a retryable error.
    pub request_timeout: Duration,
    /// Largest frame accepted from a broker (bounds a fetch response).
    pub max_message_size: usize,
    /// When set, `produce` creates the topic with this layout if the broker says it does not
    /// exist (for example after a broker with in-memory storage restarted), then retries once.
    pub auto_create_topic: Option<TopicSpec>,
}

impl Default for KafkaOptions {
    fn default() -> Self {
        Self {
            client_id: "rvc".to_owned(),
            request_timeout: Duration::from_secs(10),
            max_message_size: 64 * 1024 * 1024,
            auto_create_topic: None,
        }
    }
}

/// Splits a `KAFKA_BROKERS` style list (`host:port,host:port`) into bootstrap addresses.
pub fn parse_brokers(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(ToOwned::to_owned)
        .collect()
}

pub(crate) fn backoff(opts: &KafkaOptions) -> BackoffConfig {
    BackoffConfig {
        init_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_secs(1),
        base: 2.0,
        // Without a deadline rskafka retries connection errors forever.
        deadline: Some(opts.request_timeout),
    }
}

/// Runs `fut` with the call timeout of `opts`.
pub(crate) async fn bounded<T, F>(
    opts: &KafkaOptions,
    op: &'static str,
    fut: F,
) -> Result<T, KafkaError>
where
    F: std::future::Future<Output = Result<T, KafkaError>>,
{
    match tokio::time::timeout(opts.request_timeout, fut).await {
        Ok(r) => r,
        Err(_) => Err(KafkaError::Timeout {
            op,
            after: opts.request_timeout,
        }),
    }
}

pub(crate) async fn connect(
    brokers: Vec<String>,
    opts: &KafkaOptions,
) -> Result<Client, KafkaError> {
    if brokers.is_empty() {
        return Err(KafkaError::Config("no kafka bootstrap broker given".into()));
    }
    let builder = ClientBuilder::new(brokers)
        .client_id(opts.client_id.as_str())
        .max_message_size(opts.max_message_size)
        .backoff_config(backoff(opts));
    bounded(opts, "connect", async {
        builder
            .build()
            .await
            .map_err(|e| KafkaError::client("connect", e))
    })
    .await
}

/// The partition ids of `topic`, or `None` if the broker does not know the topic.
pub(crate) async fn topic_partitions(
    client: &Client,
    topic: &str,
    opts: &KafkaOptions,
) -> Result<Option<Vec<i32>>, KafkaError> {
    let topics = bounded(opts, "list topics", async {
        client
            .list_topics()
            .await
            .map_err(|e| KafkaError::client("list topics", e))
    })
    .await?;
    Ok(topics
        .into_iter()
        .find(|t| t.name == topic)
        .filter(|t| !t.partitions.is_empty())
        .map(|t| t.partitions.into_iter().collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_broker_lists() {
        assert_eq!(
            parse_brokers(" a:1, b:2 ,,"),
            vec!["a:1".to_owned(), "b:2".to_owned()]
        );
        assert!(parse_brokers("").is_empty());
    }
}
