//! One error type for every backend, split into retryable and permanent failures.

/// What can go wrong talking to an object store.
///
/// [`ObjectStoreError::is_retryable`] tells a worker whether to back off and try again
/// (network trouble, timeouts, 5xx, throttling) or to give up at once (bad credentials,
/// a missing bucket, an invalid key, any other 4xx).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ObjectStoreError {
    /// The key is not usable (empty, `..`, leading `/`, control characters, too long).
    #[error("invalid object key {key:?}: {reason}")]
    InvalidKey { key: String, reason: &'static str },

    /// A metadata name or value, or the content type, is not representable as an HTTP header.
    #[error("invalid object metadata {name:?}: {reason}")]
    InvalidMetadata { name: String, reason: &'static str },

    /// The store configuration is unusable (bad endpoint URL, missing credentials).
    #[error("object store configuration: {0}")]
    Config(String),

    /// The request never got an HTTP answer: connection refused/reset, DNS, TLS, body cut short.
    #[error("object store unreachable during {op}: {message}")]
    Transport { op: &'static str, message: String },

    /// The request took longer than the configured timeout.
    #[error("object store timed out during {op}")]
    Timeout { op: &'static str },

    /// The credentials were refused (HTTP 401/403: bad key, bad signature, access denied).
    #[error("object store refused the credentials during {op}: HTTP {status} {code}")]
    Auth {
        op: &'static str,
        status: u16,
        code: String,
    },

    /// The bucket does not exist.
    #[error("bucket {bucket:?} does not exist")]
    NoSuchBucket { bucket: String },

    /// Any other HTTP error answer. Retryable for 5xx, 408 and 429.
    #[error("object store answered HTTP {status} {code} during {op} of {key:?}")]
    Http {
        op: &'static str,
        key: String,
        status: u16,
        code: String,
    },

    /// The server answered something that is not S3 (unparseable listing, bad date).
    #[error("unexpected object store response during {op}: {message}")]
    Protocol { op: &'static str, message: String },

    /// A local file-system operation failed (directory backend).
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl ObjectStoreError {
    /// True when the same request may succeed later (network, timeout, 5xx, 408, 429,
    /// most local I/O errors); false for failures that a retry cannot fix.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Transport { .. } | Self::Timeout { .. } => true,
            Self::Http { status, .. } => is_retryable_status(*status),
            Self::Io { source, .. } => !matches!(
                source.kind(),
                std::io::ErrorKind::PermissionDenied
                    | std::io::ErrorKind::InvalidInput
                    | std::io::ErrorKind::InvalidData
                    | std::io::ErrorKind::NotADirectory
                    | std::io::ErrorKind::IsADirectory
                    | std::io::ErrorKind::ReadOnlyFilesystem
            ),
            Self::InvalidKey { .. }
            | Self::InvalidMetadata { .. }
            | Self::Config(_)
            | Self::Auth { .. }
            | Self::NoSuchBucket { .. }
            | Self::Protocol { .. } => false,
        }
    }

    /// The HTTP status behind this error, when there was one.
    pub fn http_status(&self) -> Option<u16> {
        match self {
            Self::Auth { status, .. } | Self::Http { status, .. } => Some(*status),
            Self::NoSuchBucket { .. } => Some(404),
            _ => None,
        }
    }

    pub(crate) fn io(op: &'static str, path: &std::path::Path, source: std::io::Error) -> Self {
        Self::Io {
            op,
            path: path.display().to_string(),
            source,
        }
    }
}

/// 5xx, 408 Request Timeout and 429 Too Many Requests are worth retrying.
pub(crate) fn is_retryable_status(status: u16) -> bool {
    status >= 500 || status == 408 || status == 429
}

pub type Result<T, E = ObjectStoreError> = std::result::Result<T, E>;
