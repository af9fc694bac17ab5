//! `--repair`: enqueue the step that fixes each product version's findings, in one
//! transaction with an audit row per new outbox row.
use super::Reconciler;
use crate::error::{CtlError, DbContext};
use crate::json::{Enqueued, ReconcileOutput, RepairState};
use crate::steps::{status_before, step_index};
use rvc_domain::{OutboxKind, ProductStatus};
use rvc_outbox::admin::AuditAction;
use rvc_outbox::NewOutboxRow;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use uuid::Uuid;

#[derive(Serialize)]
struct RepairAudit<'a> {
    kind: OutboxKind,
    product_id: Uuid,
    product_version: i32,
    checks: Vec<&'a str>,
    product_status_before: ProductStatus,
    product_status_after: Option<ProductStatus>,
}

impl Reconciler {
    /// One transaction: per product version, enqueue the earliest fixing step unless a
    /// pending/leased row of that or an earlier step exists.
    pub(super) async fn repair(
        &self,
        actor: &str,
        out: &mut ReconcileOutput,
    ) -> Result<(), CtlError> {
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
            let Some((cur_version, status)) =
                rvc_store::operator::lock_product(&tx, product_id).await?
            else {
                continue;
            };
            if cur_version != version {
                // A new version arrived meanwhile: it has its own pipeline; re-run reconcile.
                continue;
            }
            let covering = rvc_outbox::admin::queued_steps(&tx, product_id, version)
                .await?
                .into_iter()
                .find(|q| step_index(q.kind) <= step_index(kind))
                .map(|q| q.event_id);
            if let Some(event_id) = covering {
                for &i in &idx {
                    out.findings[i].repair = RepairState::AlreadyQueued;
                    out.findings[i].repair_event_id = Some(event_id);
                }
                continue;
            }
            let row = NewOutboxRow::new(product_id, version, kind);
            let event_id = rvc_outbox::enqueue(&tx, &row).await?;
            let move_to = (status == ProductStatus::Failed)
                .then(|| status_before(kind))
                .flatten();
            if let Some(to) = move_to {
                rvc_store::operator::move_out_of_failed(&tx, product_id, version, to).await?;
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
                product_status_before: status,
                product_status_after: move_to,
            })?;
            rvc_outbox::admin::record_audit(
                &tx,
                event_id,
                AuditAction::ReconcileEnqueue,
                actor,
                Some("rvcctl reconcile --repair"),
                &details,
            )
            .await?;
            for &i in &idx {
                out.findings[i].repair = RepairState::Enqueued;
                out.findings[i].repair_event_id = Some(event_id);
            }
            out.enqueued.push(Enqueued {
                event_id,
                product_id,
                product_version: version,
                kind,
                status_after: move_to,
            });
        }
        tx.commit().await.ctx("repair commit")?;
        Ok(())
    }
}
