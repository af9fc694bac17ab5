//! Where the vector index is, as command-line/environment arguments every binary that talks to
//! it flattens (`#[command(flatten)]`), so names, defaults and help are written once.
use crate::{VectorIndex, VectorIndexError};

/// `QDRANT_URL` and `QDRANT_COLLECTION`.
#[derive(Debug, Clone, clap::Args)]
pub struct QdrantArgs {
    /// gRPC URL of Qdrant (or of the local `rvc-vector-index`).
    #[arg(long, env = "QDRANT_URL", default_value = "http://127.0.0.1:6334")]
    pub qdrant_url: String,
    /// Collection holding one point per product photo (the active model's: once a model
    /// migration has switched, the models table names the collection; see `rvcctl model`).
    #[arg(long, env = "QDRANT_COLLECTION", default_value = "product_images")]
    pub qdrant_collection: String,
}

impl QdrantArgs {
    pub fn new(url: impl Into<String>, collection: impl Into<String>) -> Self {
        Self {
            qdrant_url: url.into(),
            qdrant_collection: collection.into(),
        }
    }

    /// A client of the configured collection (nothing is contacted yet).
    pub fn connect(&self) -> Result<VectorIndex, VectorIndexError> {
        VectorIndex::connect(&self.qdrant_url, &self.qdrant_collection)
    }
}
