//! The drift checks: Postgres alone, photos against the object store, indexed photos against
//! the vector index. Each check appends its findings and its name to the output.
use super::{
    ObjectStore, Reconciler, VectorIndex, CHECK_INDEXED_PHOTO_MISSING_POINT, CHECK_OBJECT_MISSING,
    CHECK_OBJECT_UNREFERENCED, CHECK_PHOTO_MISSING_OBJECT_KEY, CHECK_POINT_MISSING,
    CHECK_PRODUCT_STUCK, OBJECT_PREFIX,
};
use crate::error::CtlError;
use crate::json::{Finding, ReconcileOutput, RepairState};
use crate::steps::step_index;
use rvc_domain::{OutboxKind, ProductStatus};
use rvc_store::operator::{current_photos, CurrentPhoto, PhotoCheck};
use rvc_vectors::GalleryView;
use std::collections::HashSet;
use uuid::Uuid;

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

/// A finding about one photo of a product's current version.
fn photo_finding(
    check: &str,
    detail: String,
    fix_step: Option<OutboxKind>,
    p: &CurrentPhoto,
) -> Finding {
    let mut f = finding(check, detail, fix_step);
    f.product_id = Some(p.product_id);
    f.sku = Some(p.sku.clone());
    f.product_version = Some(p.version);
    f.status = Some(p.status);
    f.ordinal = Some(p.ordinal);
    f.object_key = p.object_key.clone();
    f
}

/// The step after the one that set `status` (the next thing the product waits for).
fn next_step_for(status: ProductStatus, done: &[OutboxKind]) -> Option<OutboxKind> {
    match status {
        ProductStatus::Failed => match done.iter().copied().max_by_key(|k| step_index(*k)) {
            None => Some(OutboxKind::UploadImages),
            Some(k) => k.next(),
        },
        // The step that starts from this status (none after `indexed`).
        s => OutboxKind::PIPELINE
            .iter()
            .copied()
            .find(|k| k.status_before() == Some(s)),
    }
}

impl Reconciler {
    pub(super) async fn postgres_checks(&self, out: &mut ReconcileOutput) -> Result<(), CtlError> {
        let client = self.pool.get().await?;
        for p in current_photos(&**client, PhotoCheck::MissingObjectKey).await? {
            let mut f = photo_finding(
                CHECK_PHOTO_MISSING_OBJECT_KEY,
                format!(
                    "photo {} has no object key although the product is {}",
                    p.ordinal, p.status
                ),
                Some(OutboxKind::UploadImages),
                &p,
            );
            f.object_key = None;
            out.findings.push(f);
        }
        out.checks_run
            .push(CHECK_PHOTO_MISSING_OBJECT_KEY.to_owned());

        for p in current_photos(&**client, PhotoCheck::IndexedWithoutPoint).await? {
            out.findings.push(photo_finding(
                CHECK_INDEXED_PHOTO_MISSING_POINT,
                format!(
                    "photo {} of an indexed product has no vector point id",
                    p.ordinal
                ),
                Some(OutboxKind::Vectorize),
                &p,
            ));
        }
        out.checks_run
            .push(CHECK_INDEXED_PHOTO_MISSING_POINT.to_owned());

        for p in rvc_store::operator::stuck_products(&**client).await? {
            let next = next_step_for(p.status, &p.done_kinds);
            let status = p.status;
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
            f.product_id = Some(p.product_id);
            f.sku = Some(p.sku);
            f.product_version = Some(p.version);
            f.status = Some(status);
            out.findings.push(f);
        }
        out.checks_run.push(CHECK_PRODUCT_STUCK.to_owned());
        Ok(())
    }

    pub(super) async fn object_checks(
        &self,
        objects: &dyn ObjectStore,
        out: &mut ReconcileOutput,
    ) -> Result<(), CtlError> {
        let client = self.pool.get().await?;
        let photos = current_photos(&**client, PhotoCheck::WithObjectKey).await?;
        let keys: Vec<String> = photos.iter().filter_map(|p| p.object_key.clone()).collect();
        let missing: HashSet<String> = objects.missing(&keys).await?.into_iter().collect();
        for p in &photos {
            let Some(key) = p.object_key.clone() else {
                continue;
            };
            if !missing.contains(&key) {
                continue;
            }
            let (detail, fix) = if p.staged {
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
            out.findings
                .push(photo_finding(CHECK_OBJECT_MISSING, detail, fix, p));
        }
        out.checks_run.push(CHECK_OBJECT_MISSING.to_owned());

        let referenced: HashSet<String> = rvc_store::operator::referenced_object_keys(&**client)
            .await?
            .into_iter()
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

    pub(super) async fn vector_checks(
        &self,
        vectors: &dyn VectorIndex,
        out: &mut ReconcileOutput,
    ) -> Result<(), CtlError> {
        let client = self.pool.get().await?;
        let photos = current_photos(&**client, PhotoCheck::IndexedWithPoint).await?;
        // Every view of a photo is a point; the recorded id is the whole view's.
        let ids: Vec<Uuid> = photos
            .iter()
            .filter_map(|p| p.point_id)
            .flat_map(GalleryView::point_ids)
            .collect();
        let missing: HashSet<Uuid> = vectors.missing_points(&ids).await?.into_iter().collect();
        for p in &photos {
            let Some(point) = p.point_id else { continue };
            let gone: Vec<(GalleryView, Uuid)> = GalleryView::ALL
                .iter()
                .map(|v| (*v, v.point_id(point)))
                .filter(|(_, id)| missing.contains(id))
                .collect();
            let Some(&(_, first)) = gone.first() else {
                continue;
            };
            let listed: Vec<String> = gone
                .iter()
                .map(|(v, id)| format!("{id} ({} view)", v.name()))
                .collect();
            let mut f = photo_finding(
                CHECK_POINT_MISSING,
                format!("vector point {} not in the index", listed.join(", ")),
                Some(OutboxKind::Vectorize),
                p,
            );
            f.point_id = Some(first);
            out.findings.push(f);
        }
        out.checks_run.push(CHECK_POINT_MISSING.to_owned());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stuck_products_wait_for_the_step_after_their_status() {
        assert_eq!(
            next_step_for(ProductStatus::Registered, &[]),
            Some(OutboxKind::UploadImages)
        );
        assert_eq!(
            next_step_for(ProductStatus::ImagesStored, &[]),
            Some(OutboxKind::Vectorize)
        );
        assert_eq!(
            next_step_for(ProductStatus::Vectorized, &[]),
            Some(OutboxKind::Publish)
        );
        assert_eq!(
            next_step_for(ProductStatus::Failed, &[OutboxKind::UploadImages]),
            Some(OutboxKind::Vectorize)
        );
        assert_eq!(
            next_step_for(ProductStatus::Failed, &[]),
            Some(OutboxKind::UploadImages)
        );
        assert_eq!(
            next_step_for(
                ProductStatus::Failed,
                &[
                    OutboxKind::Vectorize,
                    OutboxKind::UploadImages,
                    OutboxKind::Publish
                ]
            ),
            None
        );
        assert_eq!(next_step_for(ProductStatus::Indexed, &[]), None);
    }
}
