//! The `vectorize` step: photos of one product version → ML embeddings → one vector-index
//! point per gallery view of each photo (deterministic ids) in the collection of every live model, then the older
//! versions' points are removed.
use crate::error::VectorizerError;
use crate::lanes::{db_error, IndexWrite, Lane, Lanes, LiveLane};
use crate::ml::MlClientArgs;
use deadpool_postgres::Pool;
use rvc_domain::{ModelState, OutboxKind, VersionChange};
use rvc_objects::ObjectStore;
use rvc_outbox::{Job, Step, StepError};
use rvc_runtime::health::ReadyCheck;
use rvc_vectors::VectorIndex;
use std::sync::Arc;
use uuid::Uuid;

pub use crate::lanes::Model;

/// Vector index settings (`#[command(flatten)]` into the binary's args).
#[derive(Debug, Clone, clap::Args)]
pub struct IndexArgs {
    #[command(flatten)]
    pub qdrant: rvc_vectors::QdrantArgs,
    /// At start, how long to wait for the vector index to answer, in seconds.
    #[arg(long, env = "QDRANT_STARTUP_WAIT_SECS", default_value_t = 60)]
    pub qdrant_startup_wait_secs: u64,
}

impl IndexArgs {
    pub fn new(url: impl Into<String>, collection: impl Into<String>) -> Self {
        Self {
            qdrant: rvc_vectors::QdrantArgs::new(url, collection),
            ..rvc_runtime::args::defaults()
        }
    }
}

/// The points one model got for a version's photos.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelPoints {
    pub model_version: String,
    /// `(ordinal, point id)` of every photo of the version.
    pub points: Vec<(i16, Uuid)>,
}

/// The result of `execute`, recorded by `commit`: the points of each live model; empty when
/// the version was superseded before it was vectorized (or archives the product).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Vectorized {
    pub models: Vec<ModelPoints>,
    /// Building models this step could not write (their ML service or collection failed):
    /// `commit` enqueues an `embed` row for each, so the migration catches up later.
    pub deferred: Vec<String>,
}

/// The vectorize [`Step`].
pub struct VectorizeStep {
    lanes: Arc<Lanes>,
}

impl std::fmt::Debug for VectorizeStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VectorizeStep")
            .field("lanes", &self.lanes)
            .finish()
    }
}

impl VectorizeStep {
    /// Start-up: see [`Lanes::start`] (a dimension mismatch with an existing collection is
    /// a clear start-up error).
    pub async fn start(
        pool: Pool,
        store: Arc<dyn ObjectStore>,
        ml_args: &MlClientArgs,
        index_args: &IndexArgs,
    ) -> Result<Self, VectorizerError> {
        let lanes = Lanes::start(pool, store, ml_args, index_args).await?;
        Ok(Self::on(Arc::new(lanes)))
    }

    /// The step over lanes shared with the `embed` step.
    pub fn on(lanes: Arc<Lanes>) -> Self {
        Self { lanes }
    }

    pub fn lanes(&self) -> &Arc<Lanes> {
        &self.lanes
    }

    /// The model `ML_SERVICE_URL` serves.
    pub fn model(&self) -> &Model {
        &self.lanes.own().model
    }

    /// The collection of that model.
    pub fn index(&self) -> &VectorIndex {
        &self.lanes.own().index
    }

    /// Readiness: the ML service reports SERVING and the vector index answers.
    pub fn ready_check(&self) -> ReadyCheck {
        self.lanes.ready_check()
    }
}

fn lanes_of(live: &[LiveLane]) -> Vec<Arc<Lane>> {
    live.iter().map(|l| l.lane.clone()).collect()
}

impl Step for VectorizeStep {
    type Output = Vectorized;

    fn kind(&self) -> OutboxKind {
        OutboxKind::Vectorize
    }

    async fn execute(&self, job: &Job) -> Result<Vectorized, StepError> {
        let (product_id, version) = (job.product_id, job.product_version);
        let (live, unavailable) = self.lanes.live().await?;
        if job.change().map_err(StepError::permanent)? == VersionChange::Archive {
            // The archive version: every point of the product leaves every live model's
            // collection (or, if the product was un-archived meanwhile, only those below the
            // newer version).
            self.lanes
                .write_index(product_id, version, IndexWrite::Archive(lanes_of(&live)))
                .await?;
            metrics::counter!("rvc_vectorizer_archived_total").increment(1);
            tracing::info!(%product_id, version, "archived: points removed from the index");
            return Ok(Vectorized {
                models: Vec::new(),
                deferred: unavailable,
            });
        }
        let loaded = self.lanes.load(product_id, Some(version)).await?;
        if loaded.current > version {
            // A newer version exists: its own vectorize step indexes it. Embedding this one
            // would waste the ML service; only make sure no point of it is left behind.
            let empty = live.iter().map(|l| (l.lane.clone(), Vec::new())).collect();
            self.lanes
                .write_index(product_id, version, IndexWrite::Points(empty))
                .await?;
            tracing::info!(%product_id, version, current = loaded.current, "version superseded; skipped");
            return Ok(Vectorized::default());
        }
        if let Some(p) = loaded.photos.iter().find(|p| p.object_key.is_none()) {
            return Err(StepError::permanent(format!(
                "photo {} of version {version} has no object_key: it was never stored in object storage (upload step)",
                p.ordinal
            )));
        }

        // Photos whose point is already in a model's collection (an edit that keeps them)
        // are not embedded again by that model.
        let mut writes = Vec::with_capacity(live.len());
        let mut models = Vec::with_capacity(live.len());
        let mut deferred = unavailable;
        for l in &live {
            let embedded = self
                .lanes
                .points(
                    &l.lane,
                    product_id,
                    &loaded.sku,
                    version,
                    &loaded.photos,
                    None,
                )
                .await;
            let (points, ids) = match embedded {
                Ok(p) => p,
                Err(e) if l.state == ModelState::Building => {
                    // The migration's model fails here: leave it to its embed worker rather
                    // than hold up this product.
                    tracing::warn!(%product_id, version, model_version = %l.lane.model.version,
                        error = %e, "building model failed; deferred to the embed step");
                    deferred.push(l.lane.model.version.clone());
                    continue;
                }
                Err(e) => return Err(e),
            };
            writes.push((l.lane.clone(), points));
            models.push(ModelPoints {
                model_version: l.lane.model.version.clone(),
                points: ids,
            });
        }
        if !self
            .lanes
            .write_index(product_id, version, IndexWrite::Points(writes))
            .await?
        {
            // Superseded while the ML service worked: the newer version's step owns the
            // points (shared photos keep their ids), so record nothing for this one.
            tracing::info!(%product_id, version, "version superseded during embedding; its points were not written");
            return Ok(Vectorized::default());
        }
        tracing::debug!(%product_id, version, photos = loaded.photos.len(), models = models.len(), "vectorized");
        Ok(Vectorized { models, deferred })
    }

    async fn commit(
        &self,
        tx: &tokio_postgres::Transaction<'_>,
        job: &Job,
        output: Vectorized,
    ) -> Result<(), StepError> {
        if output.models.is_empty() && output.deferred.is_empty() {
            // superseded (the newer version's step writes every live model), or an archive
            // every live model's collection already lost
            return Ok(());
        }
        // Read under FOR SHARE: a model activation waits for this commit, or this commit
        // sees the activation.
        let live = rvc_store::models::live_for_commit(tx)
            .await
            .map_err(db_error)?;
        // A building model this step did not write (it failed, or it began building after
        // `execute` read the live models) gets an `embed` row for the version, so the
        // migration never misses a product.
        for (model_version, _) in live.iter().filter(|(v, s)| {
            *s == ModelState::Building && !output.models.iter().any(|m| &m.model_version == v)
        }) {
            rvc_outbox::embed::enqueue_one(tx, job.product_id, job.product_version, model_version)
                .await
                .map_err(db_error)?;
        }
        if output.models.is_empty() {
            return Ok(());
        }
        let active = live
            .iter()
            .find(|(_, s)| *s == ModelState::Active)
            .map(|(v, _)| v.as_str());
        let mut recorded_active = active.is_none();
        for m in output.models {
            if Some(m.model_version.as_str()) == active || active.is_none() {
                rvc_store::points::record_photo_points(
                    tx,
                    job.product_id,
                    job.product_version,
                    &m.model_version,
                    &m.points,
                )
                .await
                .map_err(db_error)?;
                recorded_active = true;
            } else if live
                .iter()
                .any(|(v, s)| *v == m.model_version && *s == ModelState::Building)
            {
                rvc_store::models::record_points(
                    tx,
                    &m.model_version,
                    job.product_id,
                    job.product_version,
                    &m.points,
                )
                .await
                .map_err(db_error)?;
            }
        }
        if !recorded_active {
            // A model became active after `execute` read the live models: run again, so the
            // version gets that model's points too.
            return Err(StepError::retryable(
                "the active recognition model changed while this version was vectorized; it runs again",
            ));
        }
        Ok(())
    }
}
