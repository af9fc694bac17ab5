//! Errors that stop the vectorizer from starting (a step's own failures are `StepError`s).
use rvc_objects::ObjectStoreError;
use rvc_vectors::VectorIndexError;

#[derive(Debug, thiserror::Error)]
pub enum VectorizerError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("invalid ML_SERVICE_URL {url:?}: {message}")]
    MlUrl { url: String, message: String },
    #[error("the ML service at {url} did not answer GetModelInfo: {message}")]
    MlUnavailable { url: String, message: String },
    #[error("the ML service at {url} reports an unusable model: {message}")]
    MlModel { url: String, message: String },
    #[error("vector index: {0}")]
    Index(#[from] VectorIndexError),
    #[error("object store: {0}")]
    ObjectStore(#[from] ObjectStoreError),
    #[error("database: {0}")]
    Database(String),
}
