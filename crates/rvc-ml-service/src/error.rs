//! The crate's error type and its mapping to gRPC status codes.
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum MlError {
    /// The ONNX model is missing or cannot be loaded.
    #[error("cannot load the model {path}: {message} (run scripts/setup-model.sh to install it)")]
    ModelLoad { path: PathBuf, message: String },
    /// The model loaded but does not fit the configuration.
    #[error("the model does not fit the configuration: {0}")]
    ModelShape(String),
    /// The bytes are not a decodable JPEG/PNG/WebP image (the caller's fault).
    #[error("invalid image: {0}")]
    InvalidImage(String),
    /// The request is malformed (empty batch, batch larger than allowed ...).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The bounded inference queue is full.
    #[error("overloaded: {0}")]
    Overloaded(String),
    /// The network failed on an input that was accepted.
    #[error("inference failed: {0}")]
    Inference(String),
    /// The inference workers are gone (shutdown).
    #[error("the inference workers are shutting down")]
    ShuttingDown,
    /// Invalid settings.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The gRPC server failed.
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("cannot start inference worker: {0}")]
    Spawn(#[source] std::io::Error),
}

impl From<MlError> for tonic::Status {
    fn from(e: MlError) -> Self {
        let msg = e.to_string();
        match e {
            MlError::InvalidImage(_) | MlError::InvalidRequest(_) => {
                tonic::Status::invalid_argument(msg)
            }
            MlError::Overloaded(_) => tonic::Status::resource_exhausted(msg),
            MlError::ShuttingDown => tonic::Status::unavailable(msg),
            MlError::ModelLoad { .. }
            | MlError::ModelShape(_)
            | MlError::Inference(_)
            | MlError::Config(_)
            | MlError::Transport(_)
            | MlError::Spawn(_) => tonic::Status::internal(msg),
        }
    }
}
