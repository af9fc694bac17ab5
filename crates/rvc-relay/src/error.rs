//! Errors of the relay.
use rvc_kafka::KafkaError;
use rvc_vectors::VectorIndexError;

/// What can stop the relay from starting or from publishing.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("invalid relay configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    #[error(transparent)]
    VectorIndex(#[from] VectorIndexError),
    #[error(transparent)]
    Db(#[from] rvc_runtime::db::DbError),
    #[error("could not get a database connection: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error(transparent)]
    Store(#[from] rvc_store::StoreError),
}

impl RelayError {
    /// Whether the same batch can succeed later (broker or index down, database blip).
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Config(_) => false,
            Self::Kafka(e) => e.is_retryable(),
            Self::VectorIndex(e) => e.is_retryable(),
            Self::Db(_) | Self::Pool(_) | Self::Store(_) => true,
        }
    }
}

pub(crate) use rvc_runtime::db::DbContext;
