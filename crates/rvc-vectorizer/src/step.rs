//! The `vectorize` step: photos of one product version → ML embeddings → one vector-index
//! point per photo (deterministic id), then the older versions' points are removed.
use crate::error::VectorizerError;
use crate::ml::{is_transient, MlClient, MlClientArgs};
use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use rvc_domain::OutboxKind;
use rvc_objects::ObjectStore;
use rvc_outbox::{Job, Step, StepError};
use rvc_runtime::health::ReadyCheck;
use rvc_vectors::{point_id, PointPayload, PointRecord, VectorIndex, VectorIndexError};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tonic::Code;
use uuid::Uuid;

/// Vector index settings (`#[command(flatten)]` into the binary's args).
#[derive(Debug, Clone, clap::Args)]
pub struct IndexArgs {
    /// gRPC URL of Qdrant (or of the local `rvc-vector-index`).
    #[arg(long, env = "QDRANT_URL", default_value = "http://127.0.0.1:6334")]
    pub qdrant_url: String,
    /// Collection holding one point per product photo.
    #[arg(long, env = "QDRANT_COLLECTION", default_value = "product_images")]
    pub qdrant_collection: String,
    /// At start, how long to wait for the vector index to answer, in seconds.
    #[arg(long, env = "QDRANT_STARTUP_WAIT_SECS", default_value_t = 60)]
    pub qdrant_startup_wait_secs: u64,
}

impl IndexArgs {
    pub fn new(url: impl Into<String>, collection: impl Into<String>) -> Self {
        Self {
            qdrant_url: url.into(),
            qdrant_collection: collection.into(),
            qdrant_startup_wait_secs: 60,
        }
    }
}

/// What the model behind the ML service is, as read once at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Model {
    pub name: String,
    pub version: String,
    pub dimension: usize,
}

/// The result of `execute`, recorded by `commit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vectorized {
    pub model_version: String,
    /// `(ordinal, point id)` of every photo of the version; empty when the version was
    /// superseded before it was vectorized.
    pub points: Vec<(i16, Uuid)>,
}

#[derive(Debug)]
struct Photo {
    ordinal: i16,
    sha256: String,
    content_type: String,
    object_key: String,
    created_at: DateTime<Utc>,
}

/// First key of the advisory lock that serialises one product's vector-index writes (the
/// second is `hashtext(product_id)`); "VIDX".
const INDEX_LOCK_CLASS: i32 = 0x5649_4458;

/// The vectorize [`Step`].
pub struct VectorizeStep {
    pool: Pool,
    store: Arc<dyn ObjectStore>,
    ml: MlClient,
    index: VectorIndex,
    model: Model,
    /// Bounds the ML calls in flight across every job of every batch of this process.
    ml_slots: Arc<Semaphore>,
}

impl std::fmt::Debug for VectorizeStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VectorizeStep")
            .field("store", &self.store.location())
            .field("ml", &self.ml.url())
            .field("index", &self.index)
            .field("model", &self.model)
            .finish_non_exhaustive()
    }
}

impl VectorizeStep {
    /// Start-up: asks the ML service which model it serves (waiting for it a while), then
    /// creates the collection with that dimension or checks an existing one
    /// ([`VectorIndexError::DimensionMismatch`] when it differs: a clear start-up error).
    pub async fn start(
        pool: Pool,
        store: Arc<dyn ObjectStore>,
        ml_args: &MlClientArgs,
        index_args: &IndexArgs,
    ) -> Result<Self, VectorizerError> {
        if ml_args.ml_concurrency == 0 {
            return Err(VectorizerError::Config(
                "ML_CONCURRENCY must be at least 1".to_owned(),
            ));
        }
        let ml = MlClient::new(ml_args)?;
        let info = ml
            .wait_for_model_info(Duration::from_secs(ml_args.ml_startup_wait_secs))
            .await?;
        if info.dimension == 0 || info.model_version.trim().is_empty() {
            return Err(VectorizerError::MlModel {
                url: ml.url().to_owned(),
                message: format!(
                    "dimension {} and model_version {:?}",
                    info.dimension, info.model_version
                ),
            });
        }
        let model = Model {
            name: info.name,
            version: info.model_version,
            dimension: info.dimension as usize,
        };
        let index = VectorIndex::connect(&index_args.qdrant_url, &index_args.qdrant_collection)?;
        let deadline = Instant::now() + Duration::from_secs(index_args.qdrant_startup_wait_secs);
        let mut delay = Duration::from_millis(200);
        loop {
            match index.ensure_collection(model.dimension as u64).await {
                Ok(()) => break,
                Err(e) if e.is_retryable() && Instant::now() + delay < deadline => {
                    tracing::info!(url = %index_args.qdrant_url, error = %e, "vector index not answering yet; waiting");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
                Err(e) => return Err(e.into()),
            }
        }
        tracing::info!(model = %model.name, model_version = %model.version, dimension = model.dimension,
            ml = %ml.url(), index = %index_args.qdrant_url, collection = %index_args.qdrant_collection,
            ml_concurrency = ml_args.ml_concurrency, "vectorizer ready");
        if let Err(e) = rvc_runtime::health::build_info(&model.version) {
            tracing::warn!(error = %e, "rvc_build_info not exported");
        }
        Ok(Self {
            pool,
            store,
            ml,
            index,
            model,
            ml_slots: Arc::new(Semaphore::new(ml_args.ml_concurrency)),
        })
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    pub fn index(&self) -> &VectorIndex {
        &self.index
    }

    /// Readiness: the ML service reports SERVING and the vector index answers.
    pub fn ready_check(&self) -> ReadyCheck {
        let (ml, index) = (self.ml.clone(), self.index.clone());
        Arc::new(move || {
            let (ml, index) = (ml.clone(), index.clone());
            Box::pin(async move {
                ml.health().await?;
                index
                    .health_check()
                    .await
                    .map_err(|e| format!("vector index: {e}"))?;
                Ok(())
            })
        })
    }

    /// The product's sku and current version, and the photos of `version`.
    async fn load(
        &self,
        product_id: Uuid,
        version: i32,
    ) -> Result<(String, i32, Vec<Photo>), StepError> {
        let client = self
            .pool
            .get()
            .await
            .map_err(|e| StepError::retryable(format!("database pool: {e}")))?;
        let product = client
            .query_opt(
                "SELECT sku, version FROM products WHERE id = $1",
                &[&product_id],
            )
            .await?
            .ok_or_else(|| StepError::permanent(format!("product {product_id} does not exist")))?;
        let rows = client
            .query(
                "SELECT ordinal, sha256, content_type, object_key, created_at FROM product_images
                 WHERE product_id = $1 AND version = $2 ORDER BY ordinal",
                &[&product_id, &version],
            )
            .await?;
        let mut photos = Vec::with_capacity(rows.len());
        for r in rows {
            let ordinal: i16 = r.get(0);
            let object_key: Option<String> = r.get(3);
            let Some(object_key) = object_key else {
                return Err(StepError::permanent(format!(
                    "photo {ordinal} of version {version} has no object_key: it was never stored in object storage (upload step)"
                )));
            };
            photos.push(Photo {
                ordinal,
                sha256: r.get(1),
                content_type: r.get(2),
                object_key,
                created_at: r.get(4),
            });
        }
        Ok((product.get(0), product.get(1), photos))
    }

    /// Every vector-index write of one product runs here, serialised across processes by a
    /// transaction-scoped advisory lock on the product (a SIGKILL frees it with the
    /// connection). Under the lock the product's current version is read again, and:
    ///
    /// * `version` is current: upsert `points` (their payload says `version`), then delete the
    ///   product's points whose `product_version` is below `version`;
    /// * `version` is superseded: write nothing, and delete the points below the current
    ///   version. A shared photo's point carries the newest version that wrote it, and the
    ///   newest version's step either ran before (its points are at the current version,
    ///   so they are kept) or runs after this (and writes them again).
    ///
    /// So a slow step of an old version can never overwrite or delete a newer version's
    /// points. Returns whether `points` were written.
    async fn write_index(
        &self,
        product_id: Uuid,
        version: i32,
        points: Vec<PointRecord>,
    ) -> Result<bool, StepError> {
        let mut client = self
            .pool
            .get()
            .await
            .map_err(|e| StepError::retryable(format!("database pool: {e}")))?;
        let tx = client.transaction().await?;
        tx.execute(
            "SELECT pg_advisory_xact_lock($1, hashtext($2::uuid::text))",
            &[&INDEX_LOCK_CLASS, &product_id],
        )
        .await?;
        let current: i32 = tx
            .query_opt("SELECT version FROM products WHERE id = $1", &[&product_id])
            .await?
            .map(|r| r.get(0))
            .ok_or_else(|| StepError::permanent(format!("product {product_id} does not exist")))?;
        let write = current <= version && !points.is_empty();
        if write {
            self.index
                .upsert(points)
                .await
                .map_err(|e| index_error("upsert", e))?;
        }
        // Versions start at 1: a first version has nothing older to delete (one index
        // write per new product instead of two).
        let floor = current.max(version);
        if floor > 1 {
            self.index
                .delete_product_versions_below(product_id, i64::from(floor))
                .await
                .map_err(|e| index_error("delete of older versions", e))?;
        }
        tx.commit().await?;
        Ok(write)
    }

    /// The embedding of one photo: an ML slot, then object storage → ML service.
    async fn embed(&self, photo: &Photo) -> Result<Vec<f32>, StepError> {
        let (ordinal, key) = (photo.ordinal, photo.object_key.as_str());
        // Take the ML slot first, then read the object: at most ML_CONCURRENCY photos are in
        // memory per process, however many jobs and photos a batch holds.
        let _slot = self
            .ml_slots
            .acquire()
            .await
            .map_err(|_| StepError::retryable("ML concurrency limiter closed"))?;
        let object = self
            .store
            .get(key)
            .await
            .map_err(|e| {
                let msg = format!("photo {ordinal} ({key}): object store: {e}");
                if e.is_retryable() {
                    StepError::Retryable(msg)
                } else {
                    StepError::Permanent(msg)
                }
            })?
            .ok_or_else(|| {
                StepError::permanent(format!(
                    "photo {ordinal} ({key}) is missing from object storage"
                ))
            })?;
        let reply = self
            .ml
            .vectorize(&object.bytes, &photo.content_type)
            .await
            .map_err(|s| match s.code() {
                Code::InvalidArgument => StepError::permanent(format!(
                    "photo {ordinal} ({key}) is not a usable image: the ML service rejected it: {}",
                    s.message()
                )),
                c if is_transient(c) => StepError::retryable(format!(
                    "photo {ordinal} ({key}): ML service {} still failing after in-attempt retries: {c:?}: {}",
                    self.ml.url(),
                    s.message()
                )),
                c => StepError::retryable(format!(
                    "photo {ordinal} ({key}): ML service {} failed: {c:?}: {}",
                    self.ml.url(),
                    s.message()
                )),
            })?;
        if reply.model_version != self.model.version {
            return Err(StepError::retryable(format!(
                "the ML service now serves model {:?} but this vectorizer indexes {:?}: restart the vectorizer (vectors of different models never mix)",
                reply.model_version, self.model.version
            )));
        }
        if reply.vector.len() != self.model.dimension {
            return Err(StepError::retryable(format!(
                "photo {ordinal} ({key}): the ML service returned {} dimensions, expected {}",
                reply.vector.len(),
                self.model.dimension
            )));
        }
        metrics::counter!("rvc_vectorizer_images_total").increment(1);
        Ok(reply.vector)
    }
}

fn index_error(op: &str, e: VectorIndexError) -> StepError {
    let msg = format!("vector index {op}: {e}");
    if e.is_retryable() {
        StepError::Retryable(msg)
    } else {
        StepError::Permanent(msg)
    }
}

impl Step for VectorizeStep {
    type Output = Vectorized;

    fn kind(&self) -> OutboxKind {
        OutboxKind::Vectorize
    }

    async fn execute(&self, job: &Job) -> Result<Vectorized, StepError> {
        let (product_id, version) = (job.product_id, job.product_version);
        let (sku, current, photos) = self.load(product_id, version).await?;
        if current > version {
            // A newer version exists: its own vectorize step indexes it. Embedding this one
            // would waste the ML service; only make sure no point of it is left behind.
            self.write_index(product_id, version, Vec::new()).await?;
            tracing::info!(%product_id, version, current, "version superseded; skipped");
            return Ok(Vectorized {
                model_version: self.model.version.clone(),
                points: Vec::new(),
            });
        }

        let vectors = futures::future::try_join_all(photos.iter().map(|p| self.embed(p))).await?;

        let mv = &self.model.version;
        let mut seen = HashSet::new();
        let mut points = Vec::with_capacity(photos.len());
        let mut ids = Vec::with_capacity(photos.len());
        for (photo, vector) in photos.iter().zip(vectors) {
            let id = point_id(product_id, &photo.sha256, mv);
            ids.push((photo.ordinal, id));
            // The same photo twice in one version is one point.
            if seen.insert(id) {
                points.push(PointRecord {
                    id,
                    vector,
                    payload: PointPayload {
                        product_id,
                        sku: sku.clone(),
                        product_version: i64::from(version),
                        image_key: photo.object_key.clone(),
                        model_version: mv.clone(),
                        created_at: photo.created_at,
                    },
                });
            }
        }
        if !self.write_index(product_id, version, points).await? {
            // Superseded while the ML service worked: the newer version's step owns the
            // points (shared photos keep their ids), so record nothing for this one.
            tracing::info!(%product_id, version, "version superseded during embedding; its points were not written");
            return Ok(Vectorized {
                model_version: mv.clone(),
                points: Vec::new(),
            });
        }
        tracing::debug!(%product_id, version, photos = ids.len(), "vectorized");
        Ok(Vectorized {
            model_version: mv.clone(),
            points: ids,
        })
    }

    async fn commit(
        &self,
        tx: &tokio_postgres::Transaction<'_>,
        job: &Job,
        output: Vectorized,
    ) -> Result<(), StepError> {
        if output.points.is_empty() {
            return Ok(());
        }
        let (ordinals, ids): (Vec<i16>, Vec<Uuid>) = output.points.into_iter().unzip();
        tx.execute(
            "UPDATE product_images i SET point_id = t.point_id, model_version = $3
             FROM unnest($4::smallint[], $5::uuid[]) AS t(ordinal, point_id)
             WHERE i.product_id = $1 AND i.version = $2 AND i.ordinal = t.ordinal",
            &[
                &job.product_id,
                &job.product_version,
                &output.model_version,
                &ordinals,
                &ids,
            ],
        )
        .await?;
        Ok(())
    }
}
