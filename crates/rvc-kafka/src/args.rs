//! The Kafka connection and topic as command-line/environment arguments, written once for every
//! binary that produces or reads the product events.

/// Kafka settings (`#[command(flatten)]` into a binary's args).
#[derive(Debug, Clone, clap::Args)]
pub struct KafkaArgs {
    /// Bootstrap brokers, `host:port[,host:port]`.
    #[arg(long, env = "KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    pub kafka_brokers: String,
    /// Topic of the product change events.
    #[arg(long, env = "KAFKA_TOPIC", default_value = "catalog.product-events")]
    pub kafka_topic: String,
    /// Partitions of the topic when the relay creates it (an existing topic keeps its own).
    #[arg(long, env = "KAFKA_PARTITIONS", default_value_t = 6)]
    pub kafka_partitions: i32,
    /// Replication factor of the topic when the relay creates it.
    #[arg(long, env = "KAFKA_REPLICATION", default_value_t = 1)]
    pub kafka_replication: i16,
    /// Upper bound of one Kafka call (connect, metadata, produce), retries included, in seconds.
    #[arg(long, env = "KAFKA_REQUEST_TIMEOUT_SECS", default_value_t = 10.0)]
    pub kafka_request_timeout_secs: f64,
    /// At start, how long to wait for the broker to answer, in seconds.
    #[arg(long, env = "KAFKA_STARTUP_WAIT_SECS", default_value_t = 60)]
    pub kafka_startup_wait_secs: u64,
}

impl KafkaArgs {
    /// `brokers` and `topic`, every other setting at its default.
    pub fn new(brokers: impl Into<String>, topic: impl Into<String>) -> Self {
        Self {
            kafka_brokers: brokers.into(),
            kafka_topic: topic.into(),
            ..rvc_runtime::args::defaults()
        }
    }
}
