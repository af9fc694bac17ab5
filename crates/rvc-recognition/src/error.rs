//! Errors of recognition.
#[derive(Debug, thiserror::Error)]
pub enum RecognitionError {
    /// The bytes are not an image the ML service can decode (the caller's fault).
    #[error("invalid image: {0}")]
    InvalidImage(String),
    /// A request parameter is out of range.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The ML service failed or is unreachable.
    #[error("ML service: {0}")]
    Ml(String),
    /// The vector index failed or is unreachable.
    #[error("vector index: {0}")]
    Index(#[from] rvc_vectors::VectorIndexError),
    /// Product information could not be read.
    #[error("product lookup: {0}")]
    Lookup(String),
}

impl RecognitionError {
    /// True for the caller's errors (4xx / INVALID_ARGUMENT).
    pub fn is_client_error(&self) -> bool {
        matches!(self, Self::InvalidImage(_) | Self::InvalidRequest(_))
    }
}

impl From<RecognitionError> for tonic::Status {
    fn from(e: RecognitionError) -> Self {
        let msg = e.to_string();
        match e {
            RecognitionError::InvalidImage(_) | RecognitionError::InvalidRequest(_) => {
                tonic::Status::invalid_argument(msg)
            }
            // the cause (addresses, driver text) goes to the log, not to the caller
            RecognitionError::Ml(_) | RecognitionError::Index(_) | RecognitionError::Lookup(_) => {
                tracing::error!(error = %msg, "recognition failed");
                tonic::Status::unavailable(
                    "recognition is unavailable (ML service, vector index or catalog); retry later",
                )
            }
        }
    }
}
