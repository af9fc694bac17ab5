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
    #[error("database error during {context}: {source}")]
    Db {
        context: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("could not get a database connection: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
}

impl RelayError {
    /// Whether the same batch can succeed later (broker or index down, database blip).
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Config(_) => false,
            Self::Kafka(e) => e.is_retryable(),
            Self::VectorIndex(e) => e.is_retryable(),
            Self::Db { .. } | Self::Pool(_) => true,
        }
    }
}

pub(crate) trait DbContext<T> {
    fn ctx(self, context: &'static str) -> Result<T, RelayError>;
}

impl<T> DbContext<T> for Result<T, tokio_postgres::Error> {
    fn ctx(self, context: &'static str) -> Result<T, RelayError> {
        self.map_err(|source| RelayError::Db { context, source })
    }
}
