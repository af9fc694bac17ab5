//! Recognition models (issue 14, migration V6): which model recognition answers from, and the
//! switch to a new one with no downtime.
//!
//! * The first vectorizer to start registers the model its ML service serves as `active`
//!   ([`seed_active`]), with its collection.
//! * [`start_migration`] (`rvcctl model migrate`) adds a `building` model and, in the same
//!   transaction, one `embed` outbox row per product that is not archived.
//! * While a model builds, the vectorizers write the points of every live model (active and
//!   building) and record the building model's in `model_points` ([`record_points`]).
//! * [`activate_if_complete`] flips the building model to `active` and the old one to
//!   `retired` in one transaction once none of its `embed` rows is left to run; the photos'
//!   `point_id`/`model_version` move to the new model's points at the same moment.
//! * A retired model's collection is dropped after a grace period ([`due_for_drop`],
//!   [`mark_dropped`]), so a read-side replica that has not yet seen the switch still finds
//!   points.
use crate::{DbContext, StoreError};
use chrono::{DateTime, Utc};
use rvc_domain::ModelState;
use rvc_outbox::embed::{self, EmbedCounts};
use std::time::Duration;
use tokio_postgres::{GenericClient, Row};
use uuid::Uuid;

/// One row of `recognition_models`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Model {
    pub model_version: String,
    pub collection: String,
    pub ml_service_url: String,
    pub state: ModelState,
    pub created_at: DateTime<Utc>,
    pub activated_at: Option<DateTime<Utc>>,
    pub retired_at: Option<DateTime<Utc>>,
    pub dropped_at: Option<DateTime<Utc>>,
}

const SELECT: &str = "SELECT model_version, collection, ml_service_url, state, created_at, \
                      activated_at, retired_at, dropped_at FROM recognition_models";

fn model(r: &Row) -> Result<Model, StoreError> {
    let state: String = r.try_get("state").ctx("model row")?;
    Ok(Model {
        model_version: r.try_get("model_version").ctx("model row")?,
        collection: r.try_get("collection").ctx("model row")?,
        ml_service_url: r.try_get("ml_service_url").ctx("model row")?,
        state: state.parse().map_err(StoreError::Corrupt)?,
        created_at: r.try_get("created_at").ctx("model row")?,
        activated_at: r.try_get("activated_at").ctx("model row")?,
        retired_at: r.try_get("retired_at").ctx("model row")?,
        dropped_at: r.try_get("dropped_at").ctx("model row")?,
    })
}

/// Every model, newest first.
pub async fn list<C: GenericClient>(db: &C) -> Result<Vec<Model>, StoreError> {
    db.query(&format!("{SELECT} ORDER BY created_at DESC"), &[])
        .await
        .ctx("list models")?
        .iter()
        .map(model)
        .collect()
}

/// The models whose points are written: the active one first, then the building one.
pub async fn live<C: GenericClient>(db: &C) -> Result<Vec<Model>, StoreError> {
    db.query(
        &format!(
            "{SELECT} WHERE state IN ('active', 'building')
             ORDER BY state = 'active' DESC"
        ),
        &[],
    )
    .await
    .ctx("live models")?
    .iter()
    .map(model)
    .collect()
}

/// One model by version.
pub async fn get<C: GenericClient>(
    db: &C,
    model_version: &str,
) -> Result<Option<Model>, StoreError> {
    db.query_opt(
        &format!("{SELECT} WHERE model_version = $1"),
        &[&model_version],
    )
    .await
    .ctx("get model")?
    .as_ref()
    .map(model)
    .transpose()
}

/// The model recognition answers from.
pub async fn active<C: GenericClient>(db: &C) -> Result<Option<Model>, StoreError> {
    db.query_opt(&format!("{SELECT} WHERE state = 'active'"), &[])
        .await
        .ctx("active model")?
        .as_ref()
        .map(model)
        .transpose()
}

/// The live models' versions and states, read `FOR SHARE` inside a step's commit: an
/// activation (which locks the rows `FOR UPDATE`) waits for the commit, and a commit after
/// the activation sees the new states.
pub async fn live_for_commit<C: GenericClient>(
    tx: &C,
) -> Result<Vec<(String, ModelState)>, StoreError> {
    let rows = tx
        .query(
            "SELECT model_version, state FROM recognition_models
             WHERE state IN ('active', 'building') FOR SHARE",
            &[],
        )
        .await
        .ctx("live models for commit")?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let state: String = r.try_get("state").ctx("live models for commit")?;
        out.push((
            r.try_get("model_version").ctx("live models for commit")?,
            state.parse().map_err(StoreError::Corrupt)?,
        ));
    }
    Ok(out)
}

/// Registers `model_version` as the active model when there is none (the first vectorizer
/// start of a deployment); returns the active model either way.
pub async fn seed_active<C: GenericClient>(
    db: &C,
    model_version: &str,
    collection: &str,
    ml_service_url: &str,
) -> Result<Model, StoreError> {
    db.execute(
        "INSERT INTO recognition_models (model_version, collection, ml_service_url, state,
                                         activated_at)
         SELECT $1, $2, $3, 'active', now()
         WHERE NOT EXISTS (SELECT 1 FROM recognition_models WHERE state IN ('active', 'building'))
         ON CONFLICT DO NOTHING",
        &[&model_version, &collection, &ml_service_url],
    )
    .await
    .ctx("seed active model")?;
    active(db).await?.ok_or_else(|| {
        StoreError::Refused(format!(
            "no active recognition model, and {model_version:?} could not be registered as one \
             (its version or collection {collection:?} is taken by a retired model): \
             see `rvcctl model status`"
        ))
    })
}

/// What [`start_migration`] did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MigrationStarted {
    pub model_version: String,
    pub collection: String,
    pub from_model_version: String,
    /// `embed` rows enqueued (one per product that is not archived).
    pub enqueued: u64,
}

/// Starts building `model_version` into `collection` (in the caller's transaction): the model
/// row in state `building` and one `embed` row per product that is not archived. Refused
/// (nothing written) when another model is building, when there is no active model, when the
/// version is active or known and not dropped, or when the collection is in use.
pub async fn start_migration<C: GenericClient>(
    tx: &C,
    model_version: &str,
    collection: &str,
    ml_service_url: &str,
) -> Result<MigrationStarted, StoreError> {
    // One migration at a time: serialise concurrent starts on the active row.
    let from = tx
        .query_opt(&format!("{SELECT} WHERE state = 'active' FOR UPDATE"), &[])
        .await
        .ctx("lock active model")?
        .as_ref()
        .map(model)
        .transpose()?
        .ok_or_else(|| {
            StoreError::Refused(
                "there is no active model yet: start a vectorizer first (it registers the model \
                 its ML service serves)"
                    .to_owned(),
            )
        })?;
    for m in list(tx).await? {
        if m.state == ModelState::Building {
            return Err(StoreError::Refused(format!(
                "model {:?} is already being built: wait for it (`rvcctl model status`) before \
                 starting another migration",
                m.model_version
            )));
        }
        if m.model_version == model_version && m.dropped_at.is_none() {
            return Err(StoreError::Refused(format!(
                "model {model_version:?} is {} (collection {:?}); nothing to migrate",
                m.state, m.collection
            )));
        }
        if m.collection == collection && m.dropped_at.is_none() {
            return Err(StoreError::Refused(format!(
                "collection {collection:?} holds model {:?} ({}): choose another collection",
                m.model_version, m.state
            )));
        }
    }
    tx.execute(
        "DELETE FROM recognition_models WHERE dropped_at IS NOT NULL
           AND (model_version = $1 OR collection = $2)",
        &[&model_version, &collection],
    )
    .await
    .ctx("forget dropped model")?;
    tx.execute(
        "INSERT INTO recognition_models (model_version, collection, ml_service_url, state)
         VALUES ($1, $2, $3, 'building')",
        &[&model_version, &collection, &ml_service_url],
    )
    .await
    .ctx("insert building model")?;
    let enqueued = embed::enqueue_backfill(tx, model_version).await?;
    Ok(MigrationStarted {
        model_version: model_version.to_owned(),
        collection: collection.to_owned(),
        from_model_version: from.model_version,
        enqueued,
    })
}

/// Records the points a building model has for photos of a product version (idempotent).
pub async fn record_points<C: GenericClient>(
    tx: &C,
    model_version: &str,
    product_id: Uuid,
    version: i32,
    points: &[(i16, Uuid)],
) -> Result<(), StoreError> {
    if points.is_empty() {
        return Ok(());
    }
    let (ordinals, ids): (Vec<i16>, Vec<Uuid>) = points.iter().copied().unzip();
    tx.execute(
        "INSERT INTO model_points (model_version, product_id, version, ordinal, point_id)
         SELECT $1, $2, $3, t.ordinal, t.point_id
         FROM unnest($4::smallint[], $5::uuid[]) AS t(ordinal, point_id)
         ON CONFLICT (model_version, product_id, version, ordinal)
         DO UPDATE SET point_id = EXCLUDED.point_id",
        &[&model_version, &product_id, &version, &ordinals, &ids],
    )
    .await
    .ctx("record model points")?;
    Ok(())
}

/// What an activation changed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Activated {
    pub model_version: String,
    pub retired_model_version: Option<String>,
    /// Photos whose `point_id`/`model_version` now name the new model's points.
    pub photos_switched: u64,
}

/// Makes `model_version` the active model if it is building and none of its `embed` rows is
/// left to run (pending, leased or dead): in one transaction the active model becomes
/// `retired`, this one `active`, and the photos' recorded points the new model's. `Ok(None)`
/// when it is not time yet (or the model is not building).
pub async fn activate_if_complete(
    client: &mut deadpool_postgres::Object,
    model_version: &str,
) -> Result<Option<Activated>, StoreError> {
    let tx = tokio_postgres::Client::transaction(client)
        .await
        .ctx("activate begin")?;
    let rows = tx
        .query(
            &format!("{SELECT} WHERE state IN ('active', 'building') FOR UPDATE"),
            &[],
        )
        .await
        .ctx("lock models")?;
    let models = rows.iter().map(model).collect::<Result<Vec<_>, _>>()?;
    let building = models
        .iter()
        .any(|m| m.model_version == model_version && m.state == ModelState::Building);
    if !building {
        return Ok(None);
    }
    if embed::counts(&tx, model_version).await?.outstanding() > 0 {
        return Ok(None);
    }
    let photos_switched = tx
        .execute(
            "UPDATE product_images i SET point_id = m.point_id, model_version = m.model_version
             FROM model_points m
             WHERE m.model_version = $1 AND i.product_id = m.product_id
               AND i.version = m.version AND i.ordinal = m.ordinal",
            &[&model_version],
        )
        .await
        .ctx("switch photo points")?;
    tx.execute(
        "DELETE FROM model_points WHERE model_version = $1",
        &[&model_version],
    )
    .await
    .ctx("clear model points")?;
    let retired = tx
        .query_opt(
            "UPDATE recognition_models SET state = 'retired', retired_at = now()
             WHERE state = 'active' RETURNING model_version",
            &[],
        )
        .await
        .ctx("retire active model")?
        .map(|r| r.try_get::<_, String>("model_version"))
        .transpose()
        .ctx("retire active model")?;
    tx.execute(
        "UPDATE recognition_models SET state = 'active', activated_at = now()
         WHERE model_version = $1",
        &[&model_version],
    )
    .await
    .ctx("activate model")?;
    tx.commit().await.ctx("activate commit")?;
    Ok(Some(Activated {
        model_version: model_version.to_owned(),
        retired_model_version: retired,
        photos_switched,
    }))
}

/// Retired models whose collection is still there and whose grace period has passed.
pub async fn due_for_drop<C: GenericClient>(
    db: &C,
    grace: Duration,
) -> Result<Vec<Model>, StoreError> {
    db.query(
        &format!(
            "{SELECT} WHERE state = 'retired' AND dropped_at IS NULL
               AND retired_at <= now() - make_interval(secs => $1)"
        ),
        &[&grace.as_secs_f64()],
    )
    .await
    .ctx("models due for drop")?
    .iter()
    .map(model)
    .collect()
}

/// Records that a retired model's collection was dropped.
pub async fn mark_dropped<C: GenericClient>(db: &C, model_version: &str) -> Result<(), StoreError> {
    db.execute(
        "UPDATE recognition_models SET dropped_at = now()
         WHERE model_version = $1 AND state = 'retired' AND dropped_at IS NULL",
        &[&model_version],
    )
    .await
    .ctx("mark model dropped")?;
    Ok(())
}

/// A model with its migration's progress.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ModelStatus {
    #[serde(flatten)]
    pub model: Model,
    /// `embed` rows done / all (a migration's products; 0/0 for a model that was seeded).
    pub done: i64,
    pub total: i64,
    pub pending: i64,
    pub dead: i64,
    /// Rows done per second over the last five minutes.
    pub rate_per_sec: f64,
    /// Seconds to go at that rate (building models with a rate only).
    pub eta_secs: Option<f64>,
}

/// Every model with its progress, newest first.
pub async fn status<C: GenericClient>(db: &C) -> Result<Vec<ModelStatus>, StoreError> {
    let mut out = Vec::new();
    for m in list(db).await? {
        let c: EmbedCounts = embed::counts(db, &m.model_version).await?;
        // Over the last five minutes, or since the migration began if that is sooner.
        let window = (Utc::now() - m.created_at).num_milliseconds() as f64 / 1000.0;
        let rate = c.done_last_5m as f64 / window.clamp(1.0, 300.0);
        let eta_secs = (m.state == ModelState::Building && rate > 0.0)
            .then(|| (c.pending + c.leased) as f64 / rate);
        out.push(ModelStatus {
            model: m,
            done: c.done,
            total: c.total(),
            pending: c.pending + c.leased,
            dead: c.dead,
            rate_per_sec: rate,
            eta_secs,
        });
    }
    Ok(out)
}
