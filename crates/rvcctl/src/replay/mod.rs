//! `rvcctl outbox replay` and `rvcctl outbox cancel`: the two hand-made changes to dead rows.
//! Each runs in ONE transaction together with its audit rows (and, for replay, the NOTIFY).
//!
//! Layout: [`args`] (the command line), [`checks`] (selecting the rows and what may change),
//! [`render`] (the output); this file runs the two transactions.
mod args;
mod checks;
mod render;

use crate::error::{CtlError, DbContext};
use crate::json::{CancelOutput, ReplayOutput};
use crate::outbox::{get_entry, unknown_event};
use crate::output::print_json;
use crate::Ctx;
use checks::{
    confirm, current_versions, filter_note, not_dead_reason, select_rows, transitions, views,
};
use render::{output, render};
use rvc_domain::{OutboxKind, OutboxState, ProductStatus};
use rvc_outbox::admin::AuditAction;
use serde::Serialize;
use std::collections::BTreeSet;
use uuid::Uuid;

pub use args::{resolve_actor, CancelArgs, ReplayArgs};

#[derive(Serialize)]
struct ReplayAudit<'a> {
    kind: OutboxKind,
    product_id: Uuid,
    product_version: i32,
    state_before: OutboxState,
    attempts_before: i32,
    last_error_before: Option<&'a str>,
    product_status_before: Option<ProductStatus>,
    product_status_after: Option<ProductStatus>,
}

pub async fn replay(ctx: &Ctx, a: &ReplayArgs) -> Result<(), CtlError> {
    let actor = resolve_actor(a.actor.as_deref());
    let mut client = ctx.pool.get().await?;
    let rows = select_rows(&**client, a).await?;
    let refused: Vec<String> = rows
        .iter()
        .filter(|r| r.state != OutboxState::Dead)
        .map(|r| not_dead_reason(r, "replay"))
        .collect();
    if !refused.is_empty() {
        let mut msg = refused.join("\n");
        if rows.len() > refused.len() {
            msg.push_str("\nnothing changed: replay only the dead rows of the list");
        } else {
            msg.push_str("\nnothing changed");
        }
        return Err(CtlError::Refused(msg));
    }
    if rows.is_empty() {
        let out = ReplayOutput {
            dry_run: a.dry_run,
            actor,
            reason: a.reason.clone(),
            rows: Vec::new(),
            products: Vec::new(),
            notified_kinds: Vec::new(),
        };
        if ctx.json() {
            return print_json(&out);
        }
        println!("no dead rows match{}: nothing to replay", filter_note(a));
        return Ok(());
    }

    if a.dry_run {
        let products = views(transitions(&**client, &rows).await?);
        let current = current_versions(&**client, &rows).await?;
        let out = output(a, actor, &rows, products, &current);
        return render(ctx, &out);
    }
    confirm(rows.len(), a)?;

    let tx = tokio_postgres::Client::transaction(&mut client)
        .await
        .ctx("replay begin")?;
    let ids: Vec<Uuid> = rows.iter().map(|r| r.event_id).collect();
    // Lock the rows and their products, then re-check the rows: someone may have replayed or
    // cancelled them since they were selected.
    let still_dead = rvc_outbox::admin::lock_dead(&tx, &ids).await?;
    let product_ids: Vec<Uuid> = rows
        .iter()
        .map(|r| r.product_id)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    rvc_store::operator::lock_products(&tx, &product_ids).await?;
    if still_dead != ids.len() {
        return Err(CtlError::Refused(format!(
            "{} of the {} selected rows stopped being dead while this command ran (replayed or \
             cancelled by someone else?); nothing changed: re-run it",
            ids.len() - still_dead,
            ids.len()
        )));
    }
    let moves = transitions(&tx, &rows).await?;
    rvc_outbox::admin::replay_dead(&tx, &ids).await?;
    for m in &moves {
        rvc_store::operator::move_out_of_failed(&tx, m.view.product_id, m.view.version, m.to)
            .await?;
    }
    let products = views(moves);
    for r in &rows {
        let t = products.iter().find(|p| p.product_id == r.product_id);
        let details = serde_json::to_value(ReplayAudit {
            kind: r.kind,
            product_id: r.product_id,
            product_version: r.product_version,
            state_before: r.state,
            attempts_before: r.attempts,
            last_error_before: r.last_error.as_deref(),
            product_status_before: t.map(|t| t.status_before),
            product_status_after: t.map(|t| t.status_after),
        })?;
        rvc_outbox::admin::record_audit(
            &tx,
            r.event_id,
            AuditAction::Replay,
            &actor,
            a.reason.as_deref(),
            &details,
        )
        .await?;
    }
    let current = current_versions(&tx, &rows).await?;
    let out = output(a, actor, &rows, products, &current);
    for k in &out.notified_kinds {
        rvc_outbox::notify(&tx, *k).await?;
    }
    tx.commit().await.ctx("replay commit")?;
    tracing::info!(rows = out.rows.len(), actor = %out.actor, "replayed dead outbox rows");
    render(ctx, &out)
}

#[derive(Serialize)]
struct CancelAudit<'a> {
    kind: OutboxKind,
    product_id: Uuid,
    product_version: i32,
    state_before: OutboxState,
    attempts: i32,
    last_error_before: Option<&'a str>,
    product_status: ProductStatus,
}

pub async fn cancel(ctx: &Ctx, a: &CancelArgs) -> Result<(), CtlError> {
    let actor = resolve_actor(a.actor.as_deref());
    let mut client = ctx.pool.get().await?;
    let tx = tokio_postgres::Client::transaction(&mut client)
        .await
        .ctx("cancel begin")?;
    if !rvc_outbox::admin::lock_row(&tx, a.event_id).await? {
        return Err(unknown_event(a.event_id));
    }
    let row = get_entry(&tx, a.event_id).await?;
    if row.state != OutboxState::Dead {
        return Err(CtlError::Refused(format!(
            "{}; only dead rows can be cancelled (nothing changed)",
            not_dead_reason(&row, "cancel")
        )));
    }
    let prefix = format!("cancelled by {actor}: {} | ", a.reason);
    let last_error = rvc_outbox::admin::cancel(&tx, a.event_id, &prefix).await?;
    let product_status = rvc_store::operator::product_status(&tx, row.product_id).await?;
    let details = serde_json::to_value(CancelAudit {
        kind: row.kind,
        product_id: row.product_id,
        product_version: row.product_version,
        state_before: row.state,
        attempts: row.attempts,
        last_error_before: row.last_error.as_deref(),
        product_status,
    })?;
    rvc_outbox::admin::record_audit(
        &tx,
        a.event_id,
        AuditAction::Cancel,
        &actor,
        Some(&a.reason),
        &details,
    )
    .await?;
    tx.commit().await.ctx("cancel commit")?;
    tracing::info!(event_id = %a.event_id, actor = %actor, "cancelled dead outbox row");
    let out = CancelOutput {
        event_id: row.event_id,
        product_id: row.product_id,
        sku: row.sku,
        product_version: row.product_version,
        kind: row.kind,
        state_before: row.state,
        state_after: OutboxState::Done,
        actor,
        reason: a.reason.clone(),
        last_error,
        product_status,
    };
    render::render_cancel(ctx, &out)
}
