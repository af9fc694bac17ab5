//! Recognition at the checkout: which catalog products are in a photo, and where.
//!
//! Pipeline ([`Recognizer::recognize`]): one `EmbedRegions` call to the ML service gives the
//! whole photo's embedding (gallery space) and regional descriptors mean-pooled over a
//! multi-scale grid of the feature map of one forward pass (R-MAC style); each region is searched
//! in the vector index; the best regions per product become proposals (non-maximum
//! suppression), and the few best are verified by embedding their crops like gallery photos
//! (second `EmbedRegions` call). One object per product, best score first; an object must reach
//! `min_score` (open set: nothing in the catalog → no object). Product info comes through
//! [`ProductLookup`] (only products that are indexed and not archived).
//!
//! Mountable pieces for the read-side binary: [`http::configure`] (actix, `POST
//! /api/v1/recognize`) and [`grpc::RecognitionGrpc`] (tonic `rvc.catalog.v1.RecognitionService`).

pub mod error;
pub mod eval;
pub mod geometry;
pub mod grpc;
pub mod http;
pub mod lookup;
pub mod ml;
pub mod recognizer;

pub use error::RecognitionError;
pub use geometry::BoxF;
pub use lookup::{PgProductLookup, ProductInfo, ProductLookup};
pub use ml::MlRegionsClient;
pub use recognizer::{
    Approach, Backend, Candidate, Recognition, RecognizedObject, Recognizer, RecognizerConfig,
    DEFAULT_MIN_SCORE,
};
