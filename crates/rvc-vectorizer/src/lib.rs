//! The `vectorize` step of the pipeline, on the outbox engine (`rvc-outbox`).
//!
//! For each claimed `vectorize` row (one product version) [`VectorizeStep`]:
//! 1. reads the version's photos from object storage (`product_images.object_key`);
//! 2. embeds each photo's gallery views ([`rvc_vectors::GalleryView`]: the whole photo and its
//!    central 60 %) with `rvc-ml-service` (one `EmbedRegions` per photo), at most
//!    `ML_CONCURRENCY` calls in flight per process (a semaphore shared by every job of every
//!    batch), each under a deadline, retried briefly within the attempt only on UNAVAILABLE /
//!    DEADLINE_EXCEEDED / RESOURCE_EXHAUSTED. Still failing → `StepError::Retryable` (the
//!    outbox backs off and retries); INVALID_ARGUMENT (a corrupt photo) →
//!    `StepError::Permanent` naming the photo's ordinal and key (the row goes dead, the product
//!    `failed`);
//! 3. upserts one point per view of each photo: the whole view's id is
//!    `rvc_vectors::point_id(product_id, sha256, model_version)` (recorded on the photo), the
//!    centre view's derives from it ([`rvc_vectors::GalleryView::point_id`]); payload
//!    `{product_id, sku, product_version, image_key, model_version, created_at}` (`created_at`
//!    is the photo row's, so a re-run writes identical points), with `wait = true`;
//! 4. deletes the points of the product's older versions.
//!
//! `commit` records `point_id` and `model_version` on the photos; the engine, in the same
//! transaction, marks the row done, moves the product to `vectorized` and enqueues `publish`.
//! Every external write is idempotent, so a crash anywhere means a re-run that converges.
//!
//! At start ([`VectorizeStep::start`]) the vectorizer asks the ML service for its model
//! (`GetModelInfo`), registers it as the active recognition model when the deployment has
//! none, and creates the collection with that dimension (cosine, payload indexes), or refuses
//! to start when an existing collection has another dimension.
//!
//! **Model migration** ([`embed`], docs/operations.md "Model migration"): while a new model is
//! being built, steps 2-4 run for every live model ([`lanes`]: each its ML service and its own
//! collection); the same process runs the `embed` step (the backfill, throttled) and the model
//! keeper, which switches recognition to the new model once it is complete.

pub mod embed;
pub mod error;
pub mod lanes;
pub mod ml;
pub mod step;

pub use embed::{EmbedArgs, EmbedStep};
pub use error::VectorizerError;
pub use lanes::{Lanes, Pacer};
pub use ml::{MlClient, MlClientArgs};
pub use step::{IndexArgs, Model, ModelPoints, VectorizeStep, Vectorized};

use rvc_objects::ObjectStoreConfig;

/// Default address of `/healthz`, `/readyz` and `/metrics`.
pub const DEFAULT_METRICS_ADDR: &str = "127.0.0.1:9102";

/// The vectorizer's own settings (flattened into the binary's args).
#[derive(Debug, Clone, clap::Args)]
pub struct VectorizerArgs {
    #[command(flatten)]
    pub ml: MlClientArgs,
    #[command(flatten)]
    pub index: IndexArgs,
    #[command(flatten)]
    pub objects: ObjectStoreConfig,
    #[command(flatten)]
    pub embed: EmbedArgs,
}

impl VectorizerArgs {
    /// Opens the object store and runs [`VectorizeStep::start`].
    pub async fn build(
        &self,
        pool: deadpool_postgres::Pool,
    ) -> Result<VectorizeStep, VectorizerError> {
        let store = rvc_objects::from_config(&self.objects).await?;
        VectorizeStep::start(pool, store, &self.ml, &self.index).await
    }
}
