//! Image-embedding service: EfficientNet-Lite0 (ONNX, converted by `scripts/setup-model.sh`)
//! run on the CPU with the pure-Rust `tract`, served over gRPC (`rvc.ml.v1.MachineLearningService`
//! plus `grpc.health.v1.Health`).
//!
//! - [`Embedder`]: load a model, `embed(&bytes)` → unit-length vector (usable without gRPC).
//! - [`serve`] / [`serve_with_embedder`]: run the gRPC server on a bound listener until a
//!   shutdown future completes (tests bind port 0 and run it in-process).

pub mod embedder;
pub mod error;
pub mod pool;
pub mod regions;
pub mod service;

pub use embedder::{Embedder, EmbedderConfig};
pub use error::MlError;
pub use pool::InferencePool;
pub use regions::{RegionEmbedder, RegionsConfig};
pub use service::{
    serve, serve_with_embedder, serve_with_health, MlService, ServiceConfig, Serving,
};

/// The default model file, relative to the repository root.
pub const DEFAULT_MODEL_PATH: &str = "var/models/efficientnet-lite0.onnx";
