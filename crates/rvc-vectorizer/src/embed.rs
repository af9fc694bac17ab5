//! Model migration (issue 14): the `embed` step builds a product's points for the model being
//! built, and [`spawn_model_keeper`] switches to it when it is complete and drops the retired
//! model's collection after a grace period.
//!
//! An `embed` row names its model (`payload.model_version`); the step embeds the product's
//! **current** version (whatever version the row was enqueued for), throttled by a
//! [`Pacer`], and records the points in `model_points`. It does nothing for a product that is
//! archived (its points leave the building collection), whose photos are not stored yet (its
//! `vectorize` step is still to come and writes every live model), or when the model is no
//! longer building.
use crate::lanes::{db_error, IndexWrite, Lanes, Pacer};
use rvc_domain::{ModelState, OutboxKind, ProductStatus};
use rvc_outbox::{Job, Step, StepError};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Settings of the model migration's worker (`#[command(flatten)]` into the binary's args).
#[derive(Debug, Clone, clap::Args)]
pub struct EmbedArgs {
    /// `embed` rows claimed per round trip.
    #[arg(long, env = "EMBED_BATCH_SIZE", default_value_t = 8)]
    pub embed_batch_size: usize,
    /// `embed` rows processed at once.
    #[arg(long, env = "EMBED_CONCURRENCY", default_value_t = 2)]
    pub embed_concurrency: usize,
    /// Most photos a second this process embeds for a model migration (0: no limit). Keeps
    /// the backfill from taking the ML services and Postgres away from ingest.
    #[arg(long, env = "EMBED_MAX_PHOTOS_PER_SEC", default_value_t = 20.0)]
    pub embed_max_photos_per_sec: f64,
    /// How often the model keeper checks whether a building model is complete, in ms.
    #[arg(long, env = "MODEL_CHECK_INTERVAL_MS", default_value_t = 2000)]
    pub model_check_interval_ms: u64,
    /// How long a retired model's collection is kept after the switch, in seconds (read-side
    /// replicas pick up the new model within RECOGNITION_MODEL_REFRESH_MS).
    #[arg(long, env = "MODEL_RETIRE_GRACE_SECS", default_value_t = 120)]
    pub model_retire_grace_secs: u64,
}

impl Default for EmbedArgs {
    /// The defaults of the `#[arg]` attributes above (stated once, there).
    fn default() -> Self {
        rvc_runtime::args::defaults()
    }
}

/// The result of `execute`: the points to record, if any.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Embedded {
    pub recorded: Option<Recorded>,
}

/// A building model's points for a product version's photos.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub model_version: String,
    pub version: i32,
    /// `(ordinal, point id)` of every photo.
    pub points: Vec<(i16, Uuid)>,
}

/// The `embed` [`Step`].
pub struct EmbedStep {
    lanes: Arc<Lanes>,
    pace: Pacer,
}

impl std::fmt::Debug for EmbedStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbedStep")
            .field("pace", &self.pace)
            .finish()
    }
}

impl EmbedStep {
    pub fn new(lanes: Arc<Lanes>, args: &EmbedArgs) -> Self {
        Self {
            lanes,
            pace: Pacer::new(args.embed_max_photos_per_sec),
        }
    }
}

impl Step for EmbedStep {
    type Output = Embedded;

    fn kind(&self) -> OutboxKind {
        OutboxKind::Embed
    }

    async fn execute(&self, job: &Job) -> Result<Embedded, StepError> {
        let product_id = job.product_id;
        let model_version = rvc_outbox::embed::embed_model(&job.payload)
            .ok_or_else(|| StepError::permanent("embed row without payload.model_version"))?;
        let row = {
            let client = self.lanes.pool().get().await.map_err(db_error)?;
            rvc_store::models::get(&**client, model_version)
                .await
                .map_err(db_error)?
        };
        let Some(row) = row.filter(|r| r.state == ModelState::Building) else {
            tracing::info!(%product_id, model_version, "model no longer building; nothing to embed");
            return Ok(Embedded::default());
        };
        let lane = self.lanes.lane(&row).await?;
        let loaded = self.lanes.load(product_id, None).await?;
        if loaded.archived {
            self.lanes
                .write_index(product_id, loaded.current, IndexWrite::Archive(vec![lane]))
                .await?;
            return Ok(Embedded::default());
        }
        if loaded.photos.iter().any(|p| p.object_key.is_none()) {
            // Not uploaded yet (or its upload failed): the version's vectorize step runs after
            // the migration began, so it writes this model's points itself.
            tracing::debug!(%product_id, version = loaded.current, status = %loaded.status,
                "photos not stored yet; the version's vectorize step embeds them");
            return Ok(Embedded::default());
        }
        let (points, ids) = self
            .lanes
            .points(
                &lane,
                product_id,
                &loaded.sku,
                loaded.current,
                &loaded.photos,
                Some(&self.pace),
            )
            .await?;
        if !self
            .lanes
            .write_index(
                product_id,
                loaded.current,
                IndexWrite::Points(vec![(lane, points)]),
            )
            .await?
        {
            // Superseded meanwhile: the newer version's vectorize step writes every live model.
            return Ok(Embedded::default());
        }
        if loaded.status == ProductStatus::Failed {
            tracing::info!(%product_id, version = loaded.current, "embedded a failed product's photos for the new model");
        }
        Ok(Embedded {
            recorded: Some(Recorded {
                model_version: model_version.to_owned(),
                version: loaded.current,
                points: ids,
            }),
        })
    }

    async fn commit(
        &self,
        tx: &tokio_postgres::Transaction<'_>,
        job: &Job,
        output: Embedded,
    ) -> Result<(), StepError> {
        let Some(Recorded {
            model_version,
            version,
            points: ids,
        }) = output.recorded
        else {
            return Ok(());
        };
        let building = rvc_store::models::live_for_commit(tx)
            .await
            .map_err(db_error)?
            .iter()
            .any(|(v, s)| *v == model_version && *s == ModelState::Building);
        if building {
            rvc_store::models::record_points(tx, &model_version, job.product_id, version, &ids)
                .await
                .map_err(db_error)?;
        }
        Ok(())
    }
}

/// Every `interval`: activates the building model once none of its `embed` rows is left to
/// run, and drops the collections of models retired more than `grace` ago. Each vectorizer
/// replica runs one; the database serialises them (the activation locks the model rows, a
/// drop of a dropped collection is a no-op).
pub fn spawn_model_keeper(
    lanes: Arc<Lanes>,
    args: &EmbedArgs,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let interval = Duration::from_millis(args.model_check_interval_ms.max(10));
    let grace = Duration::from_secs(args.model_retire_grace_secs);
    tokio::spawn(async move {
        loop {
            if let Err(e) = keep_models(&lanes, grace).await {
                tracing::warn!(error = %e, "model keeper: will try again");
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(interval) => {}
            }
        }
    })
}

/// One pass of the model keeper.
pub async fn keep_models(lanes: &Lanes, grace: Duration) -> Result<(), String> {
    let mut client = lanes.pool().get().await.map_err(|e| e.to_string())?;
    let models = rvc_store::models::list(&**client)
        .await
        .map_err(|e| e.to_string())?;
    for m in models.iter().filter(|m| m.state == ModelState::Building) {
        let counts = rvc_outbox::embed::counts(&**client, &m.model_version)
            .await
            .map_err(|e| e.to_string())?;
        metrics::gauge!("rvc_model_migration_remaining", "model_version" => m.model_version.clone())
            .set(counts.outstanding() as f64);
        if let Some(a) = rvc_store::models::activate_if_complete(&mut client, &m.model_version)
            .await
            .map_err(|e| e.to_string())?
        {
            metrics::counter!("rvc_model_activations_total").increment(1);
            tracing::info!(model_version = %a.model_version, retired = ?a.retired_model_version,
                photos = a.photos_switched, "recognition model activated");
        }
    }
    for m in rvc_store::models::due_for_drop(&**client, grace)
        .await
        .map_err(|e| e.to_string())?
    {
        lanes
            .own()
            .index
            .with_collection(&m.collection)
            .delete_collection()
            .await
            .map_err(|e| format!("drop of {:?}: {e}", m.collection))?;
        rvc_store::models::mark_dropped(&**client, &m.model_version)
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!(model_version = %m.model_version, collection = %m.collection,
            "retired model's collection dropped");
    }
    Ok(())
}
