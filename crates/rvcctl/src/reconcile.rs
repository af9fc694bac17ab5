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
use crate::error::{CtlError, DbContext};
use crate::json::{Enqueued, Finding, ReconcileOutput, RepairState, SkippedCheck};
use crate::output::{or_dash, print_json, Table};
use crate::replay::step_index;
use crate::Ctx;
use async_trait::async_trait;
use deadpool_postgres::Pool;
use rvc_domain::{OutboxKind, ProductStatus};
use rvc_outbox::NewOutboxRow;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use uuid::Uuid;

pub const CHECK_PHOTO_MISSING_OBJECT_KEY: &str = "photo_missing_object_key";
pub const CHECK_INDEXED_PHOTO_MISSING_POINT: &str = "indexed_photo_missing_point";
pub const CHECK_PRODUCT_STUCK: &str = "product_stuck";
pub const CHECK_OBJECT_MISSING: &str = "object_missing";
pub const CHECK_OBJECT_UNREFERENCED: &str = "object_unreferenced";
pub const CHECK_POINT_MISSING: &str = "point_missing";

/// Prefix under which the uploader writes photos (`products/{id}/{sha256}.{ext}`).
pub const OBJECT_PREFIX: &str = "products/";

#[derive(Debug, clap::Args)]
#[command(after_help = "Checks (Postgres):
  photo_missing_object_key     photos of a product whose status says images_stored, vectorized
                               or indexed, but without an object key   -> fix: upload_images
  indexed_photo_missing_point  photos of an indexed product without a vector point id
                                                                       -> fix: vectorize
  product_stuck                a product not indexed, with no pending/leased row for its
                               current version and no dead row waiting for an SRE (e.g. after
                               `outbox cancel`)                        -> fix: the next step
Checks against the object store (object_missing, object_unreferenced) and the vector index
(point_missing) run against the configured bucket (S3_* / OBJECT_STORE_DIR) and vector index
(QDRANT_URL); --no-objects / --no-vectors skip them, and one that cannot be reached is listed
as skipped.

--repair enqueues the fixing step (and moves a failed product back to the status before that
step), in one transaction with an outbox_audit row (action reconcile_enqueue) per new row.
It is idempotent: a finding already covered by a pending/leased row of the same product version
(same or earlier step) is reported as already_queued and nothing new is enqueued.

Exit code: 0 when there is no drift (or all of it is repaired / queued), 1 when drift remains.

Examples:
  rvcctl reconcile
  rvcctl reconcile --repair --actor alice
  rvcctl reconcile --output json")]
pub struct ReconcileArgs {
    /// Enqueue the steps that fix what is found.
    #[arg(long)]
    pub repair: bool,
    /// Who (stored in outbox_audit for repairs); default $USER, else "unknown".
    #[arg(long)]
    pub actor: Option<String>,
    /// Skip the object-store checks (missing and unreferenced objects).
    #[arg(long)]
    pub no_objects: bool,
    /// Skip the vector-index check (indexed products without their points).
    #[arg(long)]
    pub no_vectors: bool,
    #[command(flatten)]
    pub objects: rvc_objects::ObjectStoreConfig,
    /// Vector index (Qdrant gRPC) to check points against.
    #[arg(long, env = "QDRANT_URL", default_value = "http://127.0.0.1:6334")]
    pub qdrant_url: String,
    /// Collection holding one point per photo.
    #[arg(long, env = "QDRANT_COLLECTION", default_value = "product_images")]
    pub qdrant_collection: String,
}

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

fn finding(check: &str, detail: String, fix_step: Option<OutboxKind>) -> Finding {
    Finding {
        check: check.to_owned(),
        product_id: None,
        sku: None,
        product_version: None,
        status: None,
        ordinal: None,
        object_key: None,
        point_id: None,
        detail,
        fix_step,
        repair: if fix_step.is_some() {
            RepairState::NotRepaired
        } else {
            RepairState::None
        },
        repair_event_id: None,
    }
}

/// The step after the one that set `status` (the next thing the product waits for).
fn next_step_for(status: &str, done: &[String]) -> Option<OutboxKind> {
    match status {
        "registered" => Some(OutboxKind::UploadImages),
        "images_stored" => Some(OutboxKind::Vectorize),
        "vectorized" => Some(OutboxKind::Publish),
        "failed" => {
            let last_done = done
                .iter()
                .filter_map(|k| k.parse::<OutboxKind>().ok())
                .max_by_key(|k| step_index(*k));
            match last_done {
                None => Some(OutboxKind::UploadImages),
                Some(k) => k.next(),
            }
        }
        _ => None,
    }
}

fn status_before(kind: OutboxKind) -> ProductStatus {
    match kind {
        OutboxKind::UploadImages => ProductStatus::Registered,
        OutboxKind::Vectorize => ProductStatus::ImagesStored,
        OutboxKind::Publish => ProductStatus::Vectorized,
    }
}

#[derive(Serialize)]
struct RepairAudit<'a> {
    kind: OutboxKind,
    product_id: Uuid,
    product_version: i32,
    checks: Vec<&'a str>,
    product_status_before: &'a str,
    product_status_after: Option<&'a str>,
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

    async fn postgres_checks(&self, out: &mut ReconcileOutput) -> Result<(), CtlError> {
        let client = self.pool.get().await?;
        for r in client
            .query(
                "SELECT p.id, p.sku, p.version, p.status, i.ordinal
                 FROM products p
                 JOIN product_images i ON i.product_id = p.id AND i.version = p.version
                 WHERE NOT p.archived AND p.status IN ('images_stored', 'vectorized', 'indexed')
                   AND i.object_key IS NULL
                 ORDER BY p.sku, i.ordinal",
                &[],
            )
            .await
            .ctx("check photos without object key")?
        {
            let status: String = r.get(3);
            let ordinal: i16 = r.get(4);
            let mut f = finding(
                CHECK_PHOTO_MISSING_OBJECT_KEY,
                format!("photo {ordinal} has no object key although the product is {status}"),
                Some(OutboxKind::UploadImages),
            );
            f.product_id = Some(r.get(0));
            f.sku = Some(r.get(1));
            f.product_version = Some(r.get(2));
            f.status = Some(status);
            f.ordinal = Some(ordinal);
            out.findings.push(f);
        }
        out.checks_run
            .push(CHECK_PHOTO_MISSING_OBJECT_KEY.to_owned());

        for r in client
            .query(
                "SELECT p.id, p.sku, p.version, p.status, i.ordinal, i.object_key
                 FROM products p
                 JOIN product_images i ON i.product_id = p.id AND i.version = p.version
                 WHERE NOT p.archived AND p.status = 'indexed' AND i.point_id IS NULL
                 ORDER BY p.sku, i.ordinal",
                &[],
            )
            .await
            .ctx("check indexed photos without point")?
        {
            let ordinal: i16 = r.get(4);
            let mut f = finding(
                CHECK_INDEXED_PHOTO_MISSING_POINT,
                format!("photo {ordinal} of an indexed product has no vector point id"),
                Some(OutboxKind::Vectorize),
            );
            f.product_id = Some(r.get(0));
            f.sku = Some(r.get(1));
            f.product_version = Some(r.get(2));
            f.status = Some(r.get(3));
            f.ordinal = Some(ordinal);
            f.object_key = r.get(5);
            out.findings.push(f);
        }
        out.checks_run
            .push(CHECK_INDEXED_PHOTO_MISSING_POINT.to_owned());

        for r in client
            .query(
                "SELECT p.id, p.sku, p.version, p.status,
                        coalesce((SELECT array_agg(o.kind) FROM outbox o
                                  WHERE o.product_id = p.id AND o.product_version = p.version
                                    AND o.state = 'done'
                                    -- a cancelled row is done without having run
                                    AND NOT EXISTS (SELECT 1 FROM outbox_audit a
                                                    WHERE a.event_id = o.event_id
                                                      AND a.action = 'cancel')),
                                 '{}') AS done_kinds
                 FROM products p
                 WHERE NOT p.archived AND p.status <> 'indexed'
                   AND NOT EXISTS (SELECT 1 FROM outbox o
                                   WHERE o.product_id = p.id AND o.product_version = p.version
                                     AND o.state IN ('pending', 'leased'))
                   AND NOT (p.status = 'failed' AND EXISTS (
                                   SELECT 1 FROM outbox o
                                   WHERE o.product_id = p.id AND o.product_version = p.version
                                     AND o.state = 'dead'))
                 ORDER BY p.sku",
                &[],
            )
            .await
            .ctx("check stuck products")?
        {
            let status: String = r.get(3);
            let done: Vec<String> = r.get(4);
            let next = next_step_for(&status, &done);
            let detail = match next {
                Some(k) => format!(
                    "status {status} but nothing is queued for this version (no pending, leased \
                     or dead row); it waits for {k}"
                ),
                None => format!(
                    "status {status} but every step of this version is done; re-submit the \
                     product to start a new version"
                ),
            };
            let mut f = finding(CHECK_PRODUCT_STUCK, detail, next);
            f.product_id = Some(r.get(0));
            f.sku = Some(r.get(1));
            f.product_version = Some(r.get(2));
            f.status = Some(status);
            out.findings.push(f);
        }
        out.checks_run.push(CHECK_PRODUCT_STUCK.to_owned());
        Ok(())
    }

    async fn object_checks(
        &self,
        objects: &dyn ObjectStore,
        out: &mut ReconcileOutput,
    ) -> Result<(), CtlError> {
        let client = self.pool.get().await?;
        let photos = client
            .query(
                "SELECT p.id, p.sku, p.version, p.status, i.ordinal, i.object_key,
                        i.staged_bytes IS NOT NULL
                 FROM products p
                 JOIN product_images i ON i.product_id = p.id AND i.version = p.version
                 WHERE NOT p.archived AND i.object_key IS NOT NULL
                 ORDER BY p.sku, i.ordinal",
                &[],
            )
            .await
            .ctx("photos with object keys")?;
        let keys: Vec<String> = photos.iter().map(|r| r.get(5)).collect();
        let missing: HashSet<String> = objects.missing(&keys).await?.into_iter().collect();
        for r in &photos {
            let key: String = r.get(5);
            if !missing.contains(&key) {
                continue;
            }
            let staged: bool = r.get(6);
            let (detail, fix) = if staged {
                (
                    format!("object {key} is missing; the photo bytes are still staged"),
                    Some(OutboxKind::UploadImages),
                )
            } else {
                (
                    format!(
                        "object {key} is missing and the bytes are no longer staged: re-submit \
                         the product with its photos"
                    ),
                    None,
                )
            };
            let mut f = finding(CHECK_OBJECT_MISSING, detail, fix);
            f.product_id = Some(r.get(0));
            f.sku = Some(r.get(1));
            f.product_version = Some(r.get(2));
            f.status = Some(r.get(3));
            f.ordinal = Some(r.get(4));
            f.object_key = Some(key);
            out.findings.push(f);
        }
        out.checks_run.push(CHECK_OBJECT_MISSING.to_owned());

        let referenced: HashSet<String> = client
            .query(
                "SELECT DISTINCT object_key FROM product_images WHERE object_key IS NOT NULL",
                &[],
            )
            .await
            .ctx("referenced object keys")?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let mut listed = objects.list(OBJECT_PREFIX).await?;
        listed.sort();
        for key in listed.into_iter().filter(|k| !referenced.contains(k)) {
            let mut f = finding(
                CHECK_OBJECT_UNREFERENCED,
                format!(
                    "object {key} is referenced by no photo (an upload in flight shows here \
                     briefly); delete it by hand once you are sure"
                ),
                None,
            );
            f.object_key = Some(key);
            out.findings.push(f);
        }
        out.checks_run.push(CHECK_OBJECT_UNREFERENCED.to_owned());
        Ok(())
    }

    async fn vector_checks(
        &self,
        vectors: &dyn VectorIndex,
        out: &mut ReconcileOutput,
    ) -> Result<(), CtlError> {
        let client = self.pool.get().await?;
        let photos = client
            .query(
                "SELECT p.id, p.sku, p.version, p.status, i.ordinal, i.point_id, i.object_key
                 FROM products p
                 JOIN product_images i ON i.product_id = p.id AND i.version = p.version
                 WHERE NOT p.archived AND p.status = 'indexed' AND i.point_id IS NOT NULL
                 ORDER BY p.sku, i.ordinal",
                &[],
            )
            .await
            .ctx("photos with points")?;
        let ids: Vec<Uuid> = photos.iter().map(|r| r.get(5)).collect();
        let missing: HashSet<Uuid> = vectors.missing_points(&ids).await?.into_iter().collect();
        for r in &photos {
            let point: Uuid = r.get(5);
            if !missing.contains(&point) {
                continue;
            }
            let mut f = finding(
                CHECK_POINT_MISSING,
                format!("vector point {point} is not in the index"),
                Some(OutboxKind::Vectorize),
            );
            f.product_id = Some(r.get(0));
            f.sku = Some(r.get(1));
            f.product_version = Some(r.get(2));
            f.status = Some(r.get(3));
            f.ordinal = Some(r.get(4));
            f.point_id = Some(point);
            f.object_key = r.get(6);
            out.findings.push(f);
        }
        out.checks_run.push(CHECK_POINT_MISSING.to_owned());
        Ok(())
    }

    /// One transaction: per product version, enqueue the earliest fixing step unless a
    /// pending/leased row of that or an earlier step exists.
    async fn repair(&self, actor: &str, out: &mut ReconcileOutput) -> Result<(), CtlError> {
        let mut groups: BTreeMap<(Uuid, i32), Vec<usize>> = BTreeMap::new();
        for (i, f) in out.findings.iter().enumerate() {
            if let (Some(_), Some(p), Some(v)) = (f.fix_step, f.product_id, f.product_version) {
                groups.entry((p, v)).or_default().push(i);
            }
        }
        if groups.is_empty() {
            return Ok(());
        }
        let mut client = self.pool.get().await?;
        let tx = tokio_postgres::Client::transaction(&mut client)
            .await
            .ctx("repair begin")?;
        for ((product_id, version), idx) in groups {
            let Some(kind) = idx
                .iter()
                .filter_map(|&i| out.findings[i].fix_step)
                .min_by_key(|k| step_index(*k))
            else {
                continue;
            };
            // Lock the product: two reconcilers at once cannot both enqueue.
            let Some(p) = tx
                .query_opt(
                    "SELECT version, status FROM products WHERE id = $1 FOR UPDATE",
                    &[&product_id],
                )
                .await
                .ctx("lock product")?
            else {
                continue;
            };
            let (cur_version, status): (i32, String) = (p.get(0), p.get(1));
            if cur_version != version {
                // A new version arrived meanwhile: it has its own pipeline; re-run reconcile.
                continue;
            }
            let existing = tx
                .query(
                    "SELECT event_id, kind FROM outbox
                     WHERE product_id = $1 AND product_version = $2
                       AND state IN ('pending', 'leased')
                     ORDER BY created_at",
                    &[&product_id, &version],
                )
                .await
                .ctx("queued rows of product")?;
            let covering = existing.iter().find_map(|r| {
                let k: String = r.get(1);
                k.parse::<OutboxKind>()
                    .ok()
                    .filter(|k| step_index(*k) <= step_index(kind))
                    .map(|_| r.get::<_, Uuid>(0))
            });
            if let Some(event_id) = covering {
                for &i in &idx {
                    out.findings[i].repair = RepairState::AlreadyQueued;
                    out.findings[i].repair_event_id = Some(event_id);
                }
                continue;
            }
            let row = NewOutboxRow::new(product_id, version, kind);
            let event_id = rvc_outbox::enqueue(&tx, &row).await?;
            let status_after =
                (status == ProductStatus::Failed.as_str()).then(|| status_before(kind).to_string());
            if let Some(s) = &status_after {
                tx.execute(
                    "UPDATE products SET status = $3, updated_at = now()
                     WHERE id = $1 AND version = $2 AND status = 'failed'",
                    &[&product_id, &version, s],
                )
                .await
                .ctx("move product out of failed")?;
            }
            let checks: BTreeSet<&str> = idx
                .iter()
                .map(|&i| out.findings[i].check.as_str())
                .collect();
            let details = serde_json::to_value(RepairAudit {
                kind,
                product_id,
                product_version: version,
                checks: checks.into_iter().collect(),
                product_status_before: &status,
                product_status_after: status_after.as_deref(),
            })?;
            tx.execute(
                "INSERT INTO outbox_audit (event_id, action, actor, reason, details)
                 VALUES ($1, 'reconcile_enqueue', $2, $3, $4)",
                &[&event_id, &actor, &"rvcctl reconcile --repair", &details],
            )
            .await
            .ctx("write audit row")?;
            for &i in &idx {
                out.findings[i].repair = RepairState::Enqueued;
                out.findings[i].repair_event_id = Some(event_id);
            }
            out.enqueued.push(Enqueued {
                event_id,
                product_id,
                product_version: version,
                kind,
                status_after,
            });
        }
        tx.commit().await.ctx("repair commit")?;
        Ok(())
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
        match rvc_vectors::VectorIndex::connect(&a.qdrant_url, &a.qdrant_collection) {
            Ok(index) => {
                eprintln!(
                    "checking points in {} ({})",
                    a.qdrant_url, a.qdrant_collection
                );
                reconciler = reconciler.with_vectors(Arc::new(crate::external::Vectors(index)));
            }
            Err(e) => eprintln!("vector index unavailable, its check is skipped: {e}"),
        }
    }
    let out = reconciler.run(a.repair, &actor).await?;
    if ctx.json() {
        print_json(&out)?;
    } else {
        render(&out);
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

fn render(out: &ReconcileOutput) {
    println!("checks run: {}", out.checks_run.join(", "));
    for s in &out.checks_skipped {
        println!("skipped:    {} ({})", s.check, s.reason);
    }
    if out.findings.is_empty() {
        println!("\nno drift found");
        return;
    }
    println!();
    let mut t =
        Table::new(&["CHECK", "SKU", "VER", "STATUS", "FIX", "REPAIR", "DETAIL"]).right(&[2]);
    for f in &out.findings {
        let repair = match f.repair {
            RepairState::None => "none".to_owned(),
            RepairState::NotRepaired => "not repaired".to_owned(),
            RepairState::Enqueued => format!(
                "enqueued {}",
                f.repair_event_id.map(|e| e.to_string()).unwrap_or_default()
            ),
            RepairState::AlreadyQueued => format!(
                "already queued {}",
                f.repair_event_id.map(|e| e.to_string()).unwrap_or_default()
            ),
        };
        t.row(vec![
            f.check.clone(),
            or_dash(f.sku.as_deref()),
            f.product_version
                .map_or_else(|| "-".to_owned(), |v| v.to_string()),
            or_dash(f.status.as_deref()),
            f.fix_step.map_or_else(|| "-".to_owned(), |k| k.to_string()),
            repair,
            f.detail.clone(),
        ]);
    }
    print!("{}", t.render());
    if out.repair {
        println!("\nenqueued {} new row(s)", out.enqueued.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stuck_products_wait_for_the_step_after_their_status() {
        assert_eq!(
            next_step_for("registered", &[]),
            Some(OutboxKind::UploadImages)
        );
        assert_eq!(
            next_step_for("images_stored", &[]),
            Some(OutboxKind::Vectorize)
        );
        assert_eq!(next_step_for("vectorized", &[]), Some(OutboxKind::Publish));
        assert_eq!(
            next_step_for("failed", &["upload_images".into()]),
            Some(OutboxKind::Vectorize)
        );
        assert_eq!(next_step_for("failed", &[]), Some(OutboxKind::UploadImages));
        assert_eq!(
            next_step_for(
                "failed",
                &["vectorize".into(), "upload_images".into(), "publish".into()]
            ),
            None
        );
        assert_eq!(next_step_for("indexed", &[]), None);
    }
}
