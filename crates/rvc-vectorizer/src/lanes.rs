//! The recognition models a vectorizer writes points for ("lanes"): each live model
//! (`recognition_models`: the active one, and the one being built during a model migration)
//! has its ML service and its own collection. Both steps of this crate work through [`Lanes`]:
//! `vectorize` writes a product version's points into every live lane, `embed` into the
//! building one only. Every vector-index write of a product runs under one per-product lock
//! ([`Lanes::write_index`]).
use crate::error::VectorizerError;
use crate::ml::{is_transient, MlClient, MlClientArgs};
use crate::step::IndexArgs;
use deadpool_postgres::Pool;
use rvc_domain::ModelState;
use rvc_objects::ObjectStore;
use rvc_outbox::StepError;
use rvc_store::models::Model as ModelRow;
use rvc_vectors::{
    point_id, GalleryView, PointPayload, PointRecord, VectorIndex, VectorIndexError,
};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tonic::Code;
use uuid::Uuid;

/// What the model behind an ML service is, as read from `GetModelInfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Model {
    pub name: String,
    pub version: String,
    pub dimension: usize,
}

/// One model's ML service and collection.
pub struct Lane {
    pub model: Model,
    pub ml: MlClient,
    pub index: VectorIndex,
    /// The ML service URL this lane was built for (a model row that names another URL gets
    /// a new lane).
    url: String,
    /// Bounds this lane's ML calls in flight across every job of the process.
    slots: Semaphore,
}

impl std::fmt::Debug for Lane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lane")
            .field("model", &self.model)
            .field("ml", &self.url)
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

/// A live lane and the state of its model when it was looked up.
#[derive(Debug, Clone)]
pub struct LiveLane {
    pub lane: Arc<Lane>,
    pub state: ModelState,
}

/// A photo of a product version (`object_key` is `None` until the upload step stored it).
pub type Photo = rvc_store::points::PhotoForIndex;

/// A product as the steps read it, with the photos of one of its versions.
#[derive(Debug)]
pub struct Loaded {
    pub sku: String,
    /// The product's current version.
    pub current: i32,
    pub archived: bool,
    pub status: rvc_domain::ProductStatus,
    pub photos: Vec<Photo>,
}

/// What [`Lanes::write_index`] writes for a version.
pub enum IndexWrite {
    /// Each lane's points of the version (empty: a superseded version, only clean up).
    Points(Vec<(Arc<Lane>, Vec<PointRecord>)>),
    /// The version archives the product: its points leave these lanes.
    Archive(Vec<Arc<Lane>>),
}

/// How long building another model's lane may wait for its ML service in a step.
const LANE_MODEL_INFO_WAIT: Duration = Duration::from_secs(2);

/// After a building model's lane failed, how long steps skip it (defer it to the `embed`
/// step) before trying again: one unreachable ML service costs one wait per this period, not
/// one per product.
const LANE_RETRY_AFTER: Duration = Duration::from_secs(30);

/// The lanes of one vectorizer process.
pub struct Lanes {
    pool: Pool,
    store: Arc<dyn ObjectStore>,
    /// The lane of the model this process's `ML_SERVICE_URL` serves.
    own: Arc<Lane>,
    /// Lanes of other models, by model version.
    others: Mutex<HashMap<String, Arc<Lane>>>,
    /// Building models whose lane failed, and when.
    failed: Mutex<HashMap<String, Instant>>,
    ml_args: MlClientArgs,
}

impl std::fmt::Debug for Lanes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lanes")
            .field("store", &self.store.location())
            .field("own", &self.own)
            .finish_non_exhaustive()
    }
}

pub(crate) fn db_error(e: impl std::fmt::Display) -> StepError {
    StepError::retryable(format!("database: {e}"))
}

pub(crate) fn index_error(op: &str, e: VectorIndexError) -> StepError {
    StepError::classify(e.is_retryable(), format!("vector index {op}: {e}"))
}

impl Lanes {
    /// Start-up: asks the ML service which model it serves (waiting for it a while),
    /// registers it as the active model when the deployment has none, and creates (or
    /// checks) the collection of that model when it is live.
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
        // The models table names each model's collection; the configuration only seeds it.
        let client = pool
            .get()
            .await
            .map_err(|e| VectorizerError::Database(e.to_string()))?;
        let active = rvc_store::models::seed_active(
            &**client,
            &model.version,
            &index_args.qdrant.qdrant_collection,
            ml.url(),
        )
        .await
        .map_err(|e| VectorizerError::Database(e.to_string()))?;
        let row = rvc_store::models::get(&**client, &model.version)
            .await
            .map_err(|e| VectorizerError::Database(e.to_string()))?;
        drop(client);
        let collection = row
            .as_ref()
            .map_or(index_args.qdrant.qdrant_collection.as_str(), |r| {
                &r.collection
            })
            .to_owned();
        let live = row.as_ref().is_some_and(|r| r.state != ModelState::Retired);
        if collection != index_args.qdrant.qdrant_collection {
            tracing::warn!(model_version = %model.version, %collection,
                configured = %index_args.qdrant.qdrant_collection,
                "QDRANT_COLLECTION differs from the models table; the table wins");
        }
        if !live {
            tracing::warn!(model_version = %model.version, active = %active.model_version,
                "ML_SERVICE_URL serves a model that is not live; this process writes the live \
                 models through the URLs of the models table (rvcctl model status)");
        }
        let index = VectorIndex::connect(&index_args.qdrant.qdrant_url, &collection)?;
        if live {
            rvc_runtime::retry::until_deadline(
                "vector index",
                Duration::from_secs(index_args.qdrant_startup_wait_secs),
                VectorIndexError::is_retryable,
                || index.ensure_collection(model.dimension as u64),
            )
            .await?;
        }
        tracing::info!(model = %model.name, model_version = %model.version, dimension = model.dimension,
            ml = %ml.url(), index = %index_args.qdrant.qdrant_url, %collection,
            ml_concurrency = ml_args.ml_concurrency, active = %active.model_version, "vectorizer ready");
        if let Err(e) = rvc_runtime::health::build_info(&model.version) {
            tracing::warn!(error = %e, "rvc_build_info not exported");
        }
        let own = Arc::new(Lane {
            url: ml.url().to_owned(),
            model,
            ml,
            index,
            slots: Semaphore::new(ml_args.ml_concurrency),
        });
        Ok(Self {
            pool,
            store,
            own,
            others: Mutex::new(HashMap::new()),
            failed: Mutex::new(HashMap::new()),
            ml_args: ml_args.clone(),
        })
    }

    /// The lane of the model `ML_SERVICE_URL` serves.
    pub fn own(&self) -> &Arc<Lane> {
        &self.own
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// The live lanes (active first), as the models table says now, and the building models
    /// whose lane cannot be used now (their ML service or collection fails): a step hands
    /// those to the migration's `embed` worker rather than failing, so a migration never
    /// holds up ingest. The active model's lane failing is the step's error.
    pub async fn live(&self) -> Result<(Vec<LiveLane>, Vec<String>), StepError> {
        let client = self.pool.get().await.map_err(db_error)?;
        let rows = rvc_store::models::live(&**client).await.map_err(db_error)?;
        drop(client);
        if rows.is_empty() {
            // A table emptied by hand: write the own model, as before models were recorded.
            return Ok((
                vec![LiveLane {
                    lane: self.own.clone(),
                    state: ModelState::Active,
                }],
                Vec::new(),
            ));
        }
        let mut out = Vec::with_capacity(rows.len());
        let mut unavailable = Vec::new();
        for row in rows {
            let building = row.state == ModelState::Building;
            if building && self.recently_failed(&row.model_version) {
                unavailable.push(row.model_version);
                continue;
            }
            match self.lane(&row).await {
                Ok(lane) => out.push(LiveLane {
                    lane,
                    state: row.state,
                }),
                Err(e) if building => {
                    tracing::warn!(model_version = %row.model_version, error = %e,
                        retry_in_secs = LANE_RETRY_AFTER.as_secs(),
                        "building model unavailable; its points are left to the embed step");
                    if let Ok(mut f) = self.failed.lock() {
                        f.insert(row.model_version.clone(), Instant::now());
                    }
                    unavailable.push(row.model_version);
                }
                Err(e) => return Err(e),
            }
        }
        Ok((out, unavailable))
    }

    fn recently_failed(&self, model_version: &str) -> bool {
        self.failed
            .lock()
            .ok()
            .and_then(|f| f.get(model_version).copied())
            .is_some_and(|at| at.elapsed() < LANE_RETRY_AFTER)
    }

    /// The lane of a model row: the own lane when it is that model, otherwise a lane on the
    /// row's ML service and collection (built once, its collection created if missing).
    pub async fn lane(&self, row: &ModelRow) -> Result<Arc<Lane>, StepError> {
        if row.model_version == self.own.model.version
            && row.collection == self.own.index.collection()
        {
            return Ok(self.own.clone());
        }
        if let Some(l) = self
            .others
            .lock()
            .map_err(|_| StepError::retryable("lane cache poisoned"))?
            .get(&row.model_version)
        {
            if l.index.collection() == row.collection && l.url == row.ml_service_url {
                return Ok(l.clone());
            }
        }
        let args = MlClientArgs {
            ml_service_url: row.ml_service_url.clone(),
            ..self.ml_args.clone()
        };
        let ml = MlClient::new(&args).map_err(|e| StepError::permanent(e.to_string()))?;
        let info = ml
            .wait_for_model_info(LANE_MODEL_INFO_WAIT)
            .await
            .map_err(|e| StepError::retryable(format!("model {:?}: {e}", row.model_version)))?;
        if info.model_version != row.model_version || info.dimension == 0 {
            return Err(StepError::retryable(format!(
                "the ML service at {} serves model {:?} (dimension {}), but the models table \
                 says it serves {:?}: point the model's ml_service_url at a service of that model",
                row.ml_service_url, info.model_version, info.dimension, row.model_version
            )));
        }
        let index = self.own.index.with_collection(&row.collection);
        index
            .ensure_collection(u64::from(info.dimension))
            .await
            .map_err(|e| index_error("create of a model's collection", e))?;
        tracing::info!(model_version = %row.model_version, collection = %row.collection,
            ml = %row.ml_service_url, "lane of another model ready");
        let lane = Arc::new(Lane {
            model: Model {
                name: info.name,
                version: info.model_version,
                dimension: info.dimension as usize,
            },
            ml,
            index,
            url: row.ml_service_url.clone(),
            slots: Semaphore::new(self.ml_args.ml_concurrency.max(1)),
        });
        self.others
            .lock()
            .map_err(|_| StepError::retryable("lane cache poisoned"))?
            .insert(row.model_version.clone(), lane.clone());
        Ok(lane)
    }

    /// The product's sku, current version, archive flag and status, and the photos of
    /// `version` (`None`: the product's current version).
    pub async fn load(&self, product_id: Uuid, version: Option<i32>) -> Result<Loaded, StepError> {
        let client = self.pool.get().await.map_err(db_error)?;
        let product = rvc_store::points::product(&**client, product_id)
            .await
            .map_err(db_error)?
            .ok_or_else(|| StepError::permanent(format!("product {product_id} does not exist")))?;
        let photos =
            rvc_store::points::photos(&**client, product_id, version.unwrap_or(product.current))
                .await
                .map_err(db_error)?;
        Ok(Loaded {
            sku: product.sku,
            current: product.current,
            archived: product.archived,
            status: product.status,
            photos,
        })
    }

    /// The points of `version`'s photos in `lane`, one per [`GalleryView`] of each photo: a
    /// photo whose points are already in the lane's collection (same product, sha256 and model:
    /// an edit that keeps it) is written back with the new payload, only new photos cost an ML
    /// call (`pace` is awaited before each). Returns the points (one per view of each distinct
    /// photo) and `(ordinal, point id)` of every photo (the whole view's id, which Postgres
    /// records; the other views' ids derive from it).
    pub async fn points(
        &self,
        lane: &Lane,
        product_id: Uuid,
        sku: &str,
        version: i32,
        photos: &[Photo],
        pace: Option<&Pacer>,
    ) -> Result<(Vec<PointRecord>, Vec<(i16, Uuid)>), StepError> {
        let mv = &lane.model.version;
        let photo_ids: Vec<Uuid> = photos
            .iter()
            .map(|p| point_id(product_id, &p.sha256, mv))
            .collect();
        let wanted: Vec<Uuid> = photo_ids
            .iter()
            .flat_map(|id| GalleryView::point_ids(*id))
            .collect();
        let stored = lane
            .index
            .vectors(&wanted)
            .await
            .map_err(|e| index_error("get of stored vectors", e))?;
        let reuse = |photo_point: Uuid| -> Option<Vec<Vec<f32>>> {
            GalleryView::point_ids(photo_point)
                .iter()
                .map(|id| {
                    stored
                        .get(id)
                        .filter(|v| v.len() == lane.model.dimension)
                        .cloned()
                })
                .collect()
        };
        let vectors =
            futures::future::try_join_all(photos.iter().zip(&photo_ids).map(|(p, id)| async {
                match reuse(*id) {
                    Some(views) => {
                        metrics::counter!("rvc_vectorizer_images_reused_total").increment(1);
                        Ok(views)
                    }
                    None => {
                        if let Some(pace) = pace {
                            pace.wait().await;
                        }
                        self.embed(lane, p).await
                    }
                }
            }))
            .await?;
        let mut seen = HashSet::new();
        let mut points = Vec::with_capacity(photos.len() * GalleryView::ALL.len());
        let mut ids = Vec::with_capacity(photos.len());
        for ((photo, views), photo_point) in photos.iter().zip(vectors).zip(photo_ids) {
            ids.push((photo.ordinal, photo_point));
            // The same photo twice in one version is one set of points.
            if !seen.insert(photo_point) {
                continue;
            }
            for (view, vector) in GalleryView::ALL.iter().zip(views) {
                points.push(PointRecord {
                    id: view.point_id(photo_point),
                    vector,
                    payload: PointPayload {
                        product_id,
                        sku: sku.to_owned(),
                        product_version: i64::from(version),
                        image_key: photo.object_key.clone().unwrap_or_default(),
                        model_version: mv.clone(),
                        created_at: photo.created_at,
                    },
                });
            }
        }
        Ok((points, ids))
    }

    /// The embeddings of one photo's views in `lane` ([`GalleryView::ALL`] order): an ML slot,
    /// then object storage → ML service.
    async fn embed(&self, lane: &Lane, photo: &Photo) -> Result<Vec<Vec<f32>>, StepError> {
        let ordinal = photo.ordinal;
        let Some(key) = photo.object_key.as_deref() else {
            return Err(StepError::permanent(format!(
                "photo {ordinal} has no object_key: it was never stored in object storage (upload step)"
            )));
        };
        // Take the ML slot first, then read the object: at most ML_CONCURRENCY photos are in
        // memory per lane, however many jobs and photos a batch holds.
        let _slot = lane
            .slots
            .acquire()
            .await
            .map_err(|_| StepError::retryable("ML concurrency limiter closed"))?;
        let object = self
            .store
            .get(key)
            .await
            .map_err(|e| {
                StepError::classify(
                    e.is_retryable(),
                    format!("photo {ordinal} ({key}): object store: {e}"),
                )
            })?
            .ok_or_else(|| {
                StepError::permanent(format!(
                    "photo {ordinal} ({key}) is missing from object storage"
                ))
            })?;
        let reply = lane
            .ml
            .embed_views(&object.bytes, &photo.content_type)
            .await
            .map_err(|s| match s.code() {
                Code::InvalidArgument => StepError::permanent(format!(
                    "photo {ordinal} ({key}) is not a usable image: the ML service rejected it: {}",
                    s.message()
                )),
                c if is_transient(c) => StepError::retryable(format!(
                    "photo {ordinal} ({key}): ML service {} still failing after in-attempt retries: {c:?}: {}",
                    lane.ml.url(),
                    s.message()
                )),
                c => StepError::retryable(format!(
                    "photo {ordinal} ({key}): ML service {} failed: {c:?}: {}",
                    lane.ml.url(),
                    s.message()
                )),
            })?;
        if reply.model_version != lane.model.version {
            return Err(StepError::retryable(format!(
                "the ML service {} now serves model {:?} but this lane indexes {:?}: restart the vectorizer (vectors of different models never mix)",
                lane.ml.url(),
                reply.model_version,
                lane.model.version
            )));
        }
        if let Some(v) = reply
            .vectors
            .iter()
            .find(|v| v.len() != lane.model.dimension)
        {
            return Err(StepError::retryable(format!(
                "photo {ordinal} ({key}): the ML service returned {} dimensions, expected {}",
                v.len(),
                lane.model.dimension
            )));
        }
        metrics::counter!("rvc_vectorizer_images_total", "model_version" => lane.model.version.clone())
            .increment(1);
        Ok(reply.vectors)
    }

    /// Every vector-index write of one product runs here, serialised across processes by a
    /// transaction-scoped advisory lock on the product (a SIGKILL frees it with the
    /// connection). Under the lock the product's current version is read again, and:
    ///
    /// * `version` is current: upsert each lane's points (their payload says `version`), then
    ///   delete the product's points whose `product_version` is below `version`;
    /// * `version` is superseded: write nothing, and delete the points below the current
    ///   version. A shared photo's point carries the newest version that wrote it, and the
    ///   newest version's step either ran before (its points are at the current version,
    ///   so they are kept) or runs after this (and writes them again).
    ///
    /// So a slow step of an old version can never overwrite or delete a newer version's
    /// points. Returns whether points were written.
    ///
    /// An archive version (`IndexWrite::Archive`) that is current deletes every point of the
    /// product from its lanes; a superseded one (un-archived meanwhile) acts as any
    /// superseded version.
    pub async fn write_index(
        &self,
        product_id: Uuid,
        version: i32,
        write: IndexWrite,
    ) -> Result<bool, StepError> {
        let mut client = self.pool.get().await.map_err(db_error)?;
        let tx = client.transaction().await?;
        let current = rvc_store::points::lock_for_index(&*tx, product_id)
            .await
            .map_err(db_error)?
            .ok_or_else(|| StepError::permanent(format!("product {product_id} does not exist")))?;
        let lanes = match write {
            IndexWrite::Archive(lanes) if current <= version => {
                for lane in &lanes {
                    lane.index
                        .delete_product(product_id)
                        .await
                        .map_err(|e| index_error("delete of an archived product's points", e))?;
                }
                tx.commit().await?;
                return Ok(false);
            }
            IndexWrite::Archive(lanes) => lanes.into_iter().map(|l| (l, Vec::new())).collect(),
            IndexWrite::Points(lanes) => lanes,
        };
        let write = current <= version && lanes.iter().any(|(_, p)| !p.is_empty());
        if write {
            for (lane, points) in &lanes {
                lane.index
                    .upsert(points.clone())
                    .await
                    .map_err(|e| index_error("upsert", e))?;
            }
        }
        // Versions start at 1: a first version has nothing older to delete (one index
        // write per new product instead of two).
        let floor = current.max(version);
        if floor > 1 {
            for (lane, _) in &lanes {
                lane.index
                    .delete_product_versions_below(product_id, i64::from(floor))
                    .await
                    .map_err(|e| index_error("delete of older versions", e))?;
            }
        }
        tx.commit().await?;
        Ok(write)
    }

    /// Readiness: the own ML service reports SERVING and the vector index answers.
    pub fn ready_check(&self) -> rvc_runtime::health::ReadyCheck {
        let (ml, index) = (self.own.ml.clone(), self.own.index.clone());
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
}

/// Spaces calls out to at most `per_sec` a second across every task of the process (a model
/// migration's throttle, so the backfill leaves the ML services and Postgres to ingest).
#[derive(Debug)]
pub struct Pacer {
    interval: Option<Duration>,
    next: tokio::sync::Mutex<tokio::time::Instant>,
}

impl Pacer {
    /// `per_sec` of 0 (or less) means no limit.
    pub fn new(per_sec: f64) -> Self {
        Self {
            interval: (per_sec > 0.0).then(|| Duration::from_secs_f64(1.0 / per_sec)),
            next: tokio::sync::Mutex::new(tokio::time::Instant::now()),
        }
    }

    /// Waits for this caller's turn.
    pub async fn wait(&self) {
        let Some(interval) = self.interval else {
            return;
        };
        let mut next = self.next.lock().await;
        let now = tokio::time::Instant::now();
        if *next > now {
            tokio::time::sleep_until(*next).await;
        }
        *next = (*next).max(now) + interval;
    }
}
