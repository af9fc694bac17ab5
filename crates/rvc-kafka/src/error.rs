//! Errors of the Kafka producer and reader.
use std::time::Duration;

use rskafka::client::error::{Error as ClientError, ProtocolError, RequestError};

/// Everything that can go wrong talking to Kafka.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    /// The options or arguments are unusable (no broker, empty topic name, ...).
    #[error("invalid kafka configuration: {0}")]
    Config(String),

    /// An rskafka call failed; `op` names what we were doing.
    #[error("kafka {op} failed: {source}")]
    Client {
        op: &'static str,
        #[source]
        source: ClientError,
    },

    /// A call did not finish within the configured time (broker down, hung or overloaded).
    #[error("kafka {op} timed out after {after:?}")]
    Timeout { op: &'static str, after: Duration },

    /// The topic does not exist (or the broker does not know it yet).
    #[error("kafka topic {0:?} does not exist")]
    UnknownTopic(String),

    /// The broker answered something we cannot use.
    #[error("unexpected kafka response: {0}")]
    Protocol(String),
}

impl KafkaError {
    pub(crate) fn client(op: &'static str, source: ClientError) -> Self {
        Self::Client { op, source }
    }

    /// Whether trying the same call again later can succeed: broker down or restarting,
    /// timeouts, leadership moves, a topic that is not (yet) known. Configuration errors,
    /// oversized records, authorization failures and the like are not retryable.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Config(_) | Self::Protocol(_) => false,
            Self::Timeout { .. } | Self::UnknownTopic(_) => true,
            Self::Client { source, .. } => client_error_is_retryable(source),
        }
    }

    /// The Kafka protocol error code the broker returned, if this is a broker-side error.
    pub fn protocol_error(&self) -> Option<ProtocolError> {
        match self {
            Self::Client {
                source: ClientError::ServerError { protocol_error, .. },
                ..
            } => Some(*protocol_error),
            _ => None,
        }
    }

    /// True when the broker said the topic or partition does not exist.
    pub fn is_unknown_topic(&self) -> bool {
        matches!(self, Self::UnknownTopic(_))
            || self.protocol_error() == Some(ProtocolError::UnknownTopicOrPartition)
    }
}

fn client_error_is_retryable(e: &ClientError) -> bool {
    match e {
        // Could not connect / metadata unavailable / the connection broke.
        ClientError::Connection(_) => true,
        ClientError::Request(r) => request_error_is_retryable(r),
        // rskafka's own backoff gave up after its deadline: it only retries errors it considers
        // transient (connection, leader moves, unknown topic), so the cause is transient too.
        ClientError::RetryFailed(_) => true,
        ClientError::Timeout => true,
        ClientError::InvalidResponse(_) => false,
        ClientError::ServerError { protocol_error, .. } => {
            protocol_error_is_retryable(*protocol_error)
        }
        // `ClientError` is non-exhaustive: unknown future variants are treated as permanent.
        _ => false,
    }
}

fn request_error_is_retryable(e: &RequestError) -> bool {
    match e {
        // I/O failure or a connection poisoned by an earlier failure: reconnecting can help.
        RequestError::IO(_) | RequestError::Poisoned(_) => true,
        _ => false,
    }
}

/// The codes the Java client maps to a `RetriableException`.
fn protocol_error_is_retryable(e: ProtocolError) -> bool {
    matches!(
        e,
        ProtocolError::UnknownTopicOrPartition
            | ProtocolError::LeaderNotAvailable
            | ProtocolError::NotLeaderOrFollower
            | ProtocolError::RequestTimedOut
            | ProtocolError::BrokerNotAvailable
            | ProtocolError::ReplicaNotAvailable
            | ProtocolError::NetworkException
            | ProtocolError::CoordinatorLoadInProgress
            | ProtocolError::CoordinatorNotAvailable
            | ProtocolError::NotCoordinator
            | ProtocolError::NotEnoughReplicas
            | ProtocolError::NotEnoughReplicasAfterAppend
            | ProtocolError::NotController
            | ProtocolError::KafkaStorageError
            | ProtocolError::OffsetNotAvailable
            | ProtocolError::CorruptMessage
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        assert!(KafkaError::Timeout {
            op: "produce",
            after: Duration::from_secs(1)
        }
        .is_retryable());
        assert!(KafkaError::UnknownTopic("t".into()).is_retryable());
        assert!(!KafkaError::Config("no brokers".into()).is_retryable());
        assert!(!KafkaError::Protocol("bad".into()).is_retryable());
        let io = KafkaError::client(
            "produce",
            ClientError::Request(RequestError::IO(std::io::Error::from(
                std::io::ErrorKind::ConnectionReset,
            ))),
        );
        assert!(io.is_retryable());
        let invalid = KafkaError::client("produce", ClientError::InvalidResponse("x".into()));
        assert!(!invalid.is_retryable());
        assert!(protocol_error_is_retryable(
            ProtocolError::NotLeaderOrFollower
        ));
        assert!(!protocol_error_is_retryable(ProtocolError::MessageTooLarge));
        assert!(!protocol_error_is_retryable(
            ProtocolError::TopicAuthorizationFailed
        ));
    }
}
