//! `rvcctl reconcile`: drift between what Postgres says and what is true, and its repair.
//!
//! The Postgres-only checks always run. Checks against the object store and the vector index
//! run when a [`Reconciler`] is given an [`ObjectStore`] / [`VectorIndex`]: two small traits
//! that `rvc-objects` and `rvc-vectors` implement. The binary wires both in (the configured
//! bucket and vector index); `--no-objects` / `--no-vectors` skip them, and a store or index
//! that cannot be reached is reported as skipped.
//!
//! Repairs only ever enqueue pipeline steps (the steps are idempotent by design), and never a
//! second pending/leased row: a finding is covered by any pending or leased row of the same
//! product version whose step comes at or before the fixing step (the pipeline re-runs every
//! later step).
//!
//! Layout: [`args`] (the command line), [`checks`] (the drift checks), [`repair`] (the
//! repairs, in one transaction) and [`render`] (the table output); this file holds the
//! [`Reconciler`] that runs them and the `rvcctl reconcile` command.
mod args;
mod checks;
mod render;
mod repair;

use crate::error::CtlError;
use crate::json::{ReconcileOutput, RepairState, SkippedCheck};
use crate::output::print_json;
use crate::Ctx;
use async_trait::async_trait;
use deadpool_postgres::Pool;
use std::sync::Arc;
use uuid::Uuid;

pub use args::ReconcileArgs;

pub const CHECK_PHOTO_MISSING_OBJECT_KEY: &str = "photo_missing_object_key";
pub const CHECK_INDEXED_PHOTO_MISSING_POINT: &str = "indexed_photo_missing_point";
pub const CHECK_PRODUCT_STUCK: &str = "product_stuck";
pub const CHECK_OBJECT_MISSING: &str = "object_missing";
pub const CHECK_OBJECT_UNREFERENCED: &str = "object_unreferenced";
pub const CHECK_POINT_MISSING: &str = "point_missing";

/// Prefix under which the uploader writes photos ([`rvc_domain::ImageKey`]).
pub const OBJECT_PREFIX: &str = rvc_domain::ImageKey::PREFIX;

/// An external check could not run.
#[derive(Debug, thiserror::Error)]
#[error("{check} check failed: {message}")]
pub struct CheckError {
    pub check: &'static str,
    pub message: String,
}

/// What the reconciler needs from the object store (rvc-objects implements it).
#[async_trait]
pub trait ObjectStore: Send + Sync {
    /// Of `keys`, those that do not exist.
    async fn missing(&self, keys: &[String]) -> Result<Vec<String>, CheckError>;
    /// Every key under `prefix`.
    async fn list(&self, prefix: &str) -> Result<Vec<String>, CheckError>;
}

/// What the reconciler needs from the vector index (rvc-vectors implements it).
#[async_trait]
pub trait VectorIndex: Send + Sync {
    /// Of `ids`, the points the index does not hold.
    async fn missing_points(&self, ids: &[Uuid]) -> Result<Vec<Uuid>, CheckError>;
}

/// Runs the checks and, optionally, the repairs.
pub struct Reconciler {
    pool: Pool,
    objects: Option<Arc<dyn ObjectStore>>,
    vectors: Option<Arc<dyn VectorIndex>>,
}

impl Reconciler {
    pub fn new(pool: Pool) -> Self {
        Self {
            pool,
            objects: None,
            vectors: None,
        }
    }

    pub fn with_objects(mut self, objects: Arc<dyn ObjectStore>) -> Self {
        self.objects = Some(objects);
        self
    }

    pub fn with_vectors(mut self, vectors: Arc<dyn VectorIndex>) -> Self {
        self.vectors = Some(vectors);
        self
    }

    /// Runs every available check; with `repair`, enqueues the fixes (as `actor`).
    pub async fn run(&self, repair: bool, actor: &str) -> Result<ReconcileOutput, CtlError> {
        let mut out = ReconcileOutput {
            repair,
            checks_run: Vec::new(),
            checks_skipped: Vec::new(),
            findings: Vec::new(),
            enqueued: Vec::new(),
        };
        self.postgres_checks(&mut out).await?;
        match &self.objects {
            Some(objects) => self.object_checks(objects.as_ref(), &mut out).await?,
            None => {
                for check in [CHECK_OBJECT_MISSING, CHECK_OBJECT_UNREFERENCED] {
                    out.checks_skipped.push(SkippedCheck {
                        check: check.to_owned(),
                        reason: "no object store configured for rvcctl reconcile yet".to_owned(),
                    });
                }
            }
        }
        match &self.vectors {
            Some(vectors) => self.vector_checks(vectors.as_ref(), &mut out).await?,
            None => out.checks_skipped.push(SkippedCheck {
                check: CHECK_POINT_MISSING.to_owned(),
                reason: "no vector index configured for rvcctl reconcile yet".to_owned(),
            }),
        }
        if repair {
            self.repair(actor, &mut out).await?;
        }
        Ok(out)
    }
}

pub async fn reconcile(ctx: &Ctx, a: &ReconcileArgs) -> Result<(), CtlError> {
    let actor = crate::replay::resolve_actor(a.actor.as_deref());
    let mut reconciler = Reconciler::new(ctx.pool.clone());
    if !a.no_objects {
        // An unreachable store makes its checks fail (reported), not the whole run.
        match rvc_objects::from_config(&a.objects).await {
            Ok(store) => {
                eprintln!("checking objects in {}", store.location());
                reconciler = reconciler.with_objects(Arc::new(crate::external::Objects(store)));
            }
            Err(e) => eprintln!("object store unavailable, its checks are skipped: {e}"),
        }
    }
    if !a.no_vectors {
        // The photos name the active model's points, which live in its collection (the
        // models table); QDRANT_COLLECTION only serves a database that records no model.
        let collection = {
            let client = ctx.pool.get().await?;
            rvc_store::models::active(&**client)
                .await?
                .map_or_else(|| a.qdrant.qdrant_collection.clone(), |m| m.collection)
        };
        match rvc_vectors::VectorIndex::connect(&a.qdrant.qdrant_url, &collection) {
            Ok(index) => {
                eprintln!("checking points in {} ({collection})", a.qdrant.qdrant_url);
                reconciler = reconciler.with_vectors(Arc::new(crate::external::Vectors(index)));
            }
            Err(e) => eprintln!("vector index unavailable, its check is skipped: {e}"),
        }
    }
    let out = reconciler.run(a.repair, &actor).await?;
    if ctx.json() {
        print_json(&out)?;
    } else {
        render::render(&out);
    }
    let open = out
        .findings
        .iter()
        .filter(|f| matches!(f.repair, RepairState::None | RepairState::NotRepaired))
        .count();
    if open == 0 {
        return Ok(());
    }
    Err(CtlError::Drift(if a.repair {
        format!(
            "{open} finding(s) need a human (no automatic repair, or the product changed during \
             the run): read their detail, then re-run `rvcctl reconcile`"
        )
    } else {
        format!("{open} finding(s); fix them with `rvcctl reconcile --repair`")
    }))
}
