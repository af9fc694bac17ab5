//! What `rvcctl outbox replay` and `cancel` print (table or JSON).
use super::args::ReplayArgs;
use crate::error::CtlError;
use crate::json::{CancelOutput, OutboxEntry, ProductTransition, ReplayOutput, ReplayRow};
use crate::output::{clip, print_json, Table};
use crate::steps::step_index;
use crate::Ctx;
use rvc_domain::{OutboxKind, OutboxState};
use std::collections::{BTreeMap, BTreeSet};
use uuid::Uuid;

pub(super) fn output(
    a: &ReplayArgs,
    actor: String,
    rows: &[OutboxEntry],
    products: Vec<ProductTransition>,
    current: &BTreeMap<Uuid, i32>,
) -> ReplayOutput {
    let kinds: BTreeSet<usize> = rows.iter().map(|r| step_index(r.kind)).collect();
    ReplayOutput {
        dry_run: a.dry_run,
        actor,
        reason: a.reason.clone(),
        rows: rows
            .iter()
            .map(|r| ReplayRow {
                event_id: r.event_id,
                product_id: r.product_id,
                sku: r.sku.clone(),
                product_version: r.product_version,
                kind: r.kind,
                state_before: r.state,
                state_after: OutboxState::Pending,
                attempts_before: r.attempts,
                last_error: r.last_error.clone(),
                superseded_by: current
                    .get(&r.product_id)
                    .copied()
                    .filter(|v| *v > r.product_version),
            })
            .collect(),
        products,
        notified_kinds: kinds
            .into_iter()
            .filter_map(|i| OutboxKind::ALL.get(i).copied())
            .collect(),
    }
}

pub(super) fn render(ctx: &Ctx, out: &ReplayOutput) -> Result<(), CtlError> {
    if ctx.json() {
        return print_json(out);
    }
    let (verb, would) = if out.dry_run {
        ("would replay", "would ")
    } else {
        ("replayed", "")
    };
    println!("{verb} {} dead row(s):", out.rows.len());
    let mut t = Table::new(&[
        "EVENT_ID",
        "KIND",
        "SKU",
        "VER",
        "STATE",
        "ATTEMPTS",
        "LAST_ERROR",
    ])
    .right(&[3]);
    for r in &out.rows {
        t.row(vec![
            r.event_id.to_string(),
            r.kind.to_string(),
            clip(&r.sku, 24),
            r.product_version.to_string(),
            format!("{} -> {}", r.state_before, r.state_after),
            format!("{} -> 0", r.attempts_before),
            r.last_error
                .as_deref()
                .map_or_else(|| "-".to_owned(), |e| clip(e, 50)),
        ]);
    }
    print!("{}", t.render());
    println!("each row: next attempt now, lease cleared");
    for r in &out.rows {
        if let Some(current) = r.superseded_by {
            println!(
                "note: {} version {} is superseded by version {current}: replaying its {} step \
                 {} version {} after a newer one; consumers keep the highest \
                 product_version per product (docs/events.md), so they ignore it",
                r.sku,
                r.product_version,
                r.kind,
                if out.dry_run {
                    "would publish"
                } else {
                    "publishes"
                },
                r.product_version
            );
        }
    }
    for p in &out.products {
        println!(
            "product {} ({}) version {}: {would}move {} -> {}",
            p.sku, p.product_id, p.version, p.status_before, p.status_after
        );
    }
    println!(
        "audit: {would}write {} outbox_audit row(s): action replay, actor {}, reason {}",
        out.rows.len(),
        out.actor,
        out.reason
            .as_deref()
            .map_or_else(|| "(none given)".to_owned(), |r| format!("{r:?}"))
    );
    let kinds: Vec<&str> = out.notified_kinds.iter().map(|k| k.as_str()).collect();
    println!("notify: {would}wake the {} worker(s)", kinds.join(", "));
    if out.dry_run {
        println!("\ndry run: nothing changed. Apply with the same selection and --reason \"...\"");
    } else {
        println!("\nwatch progress: rvcctl outbox stats; rvcctl product status SKU (one product)");
    }
    Ok(())
}

/// Prints what `rvcctl outbox cancel` did.
pub(super) fn render_cancel(ctx: &Ctx, out: &CancelOutput) -> Result<(), CtlError> {
    if ctx.json() {
        return print_json(out);
    }
    println!(
        "cancelled {} ({} of {} version {}): dead -> done, audited as {}",
        out.event_id, out.kind, out.sku, out.product_version, out.actor
    );
    println!(
        "product {} stays {}: the step did not run. `rvcctl reconcile` lists it as stuck; \
         re-submit the product to start a new version",
        out.sku, out.product_status
    );
    Ok(())
}
