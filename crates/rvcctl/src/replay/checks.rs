//! Which rows a replay takes, whether they may change, and what happens to their products.
use super::args::ReplayArgs;
use crate::error::CtlError;
use crate::json::{OutboxEntry, ProductTransition};
use crate::outbox::{entry, resolve_product, unknown_event};
use crate::output::{opt_when, or_dash, when};
use crate::parse::Since;
use crate::steps::{status_before, step_index};
use rvc_domain::{OutboxKind, OutboxState, ProductStatus};
use rvc_outbox::admin::{EntryFilter, EntryOrder};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, IsTerminal, Write};
use tokio_postgres::GenericClient;
use uuid::Uuid;

/// Why a row that is not dead cannot be replayed or cancelled.
pub(super) fn not_dead_reason(e: &OutboxEntry, verb: &str) -> String {
    let id = e.event_id;
    match e.state {
        OutboxState::Pending => format!(
            "row {id} is pending: it will run by itself (next attempt {}); nothing to {verb}",
            when(e.next_attempt_at)
        ),
        OutboxState::Leased => format!(
            "row {id} is leased by {} until {}: a worker is running it now; nothing to {verb}",
            or_dash(e.lease_owner.as_deref()),
            opt_when(e.lease_expires_at)
        ),
        OutboxState::Done => format!(
            "row {id} is done (completed {}): nothing to {verb}; to run the step again use \
             `rvcctl reconcile --repair` or re-submit the product",
            opt_when(e.completed_at)
        ),
        OutboxState::Dead => format!("row {id} is dead"),
    }
}

/// A product that leaves `failed`: what is shown, and the status it moves to.
pub(super) struct Transition {
    pub(super) view: ProductTransition,
    pub(super) to: ProductStatus,
}

/// Products that leave `failed` when `rows` are replayed: a failed product whose current
/// version has replayed rows goes back to the status before the earliest replayed step (the
/// last completed one). Rows of older versions leave the product alone.
pub(super) async fn transitions<C: GenericClient>(
    db: &C,
    rows: &[OutboxEntry],
) -> Result<Vec<Transition>, CtlError> {
    let mut earliest: BTreeMap<(Uuid, i32), OutboxKind> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.kind.is_pipeline_step()) {
        earliest
            .entry((r.product_id, r.product_version))
            .and_modify(|k| {
                if step_index(r.kind) < step_index(*k) {
                    *k = r.kind;
                }
            })
            .or_insert(r.kind);
    }
    let ids: Vec<Uuid> = rows
        .iter()
        .map(|r| r.product_id)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut out = Vec::new();
    for p in rvc_store::operator::product_heads(db, &ids).await? {
        if p.status != ProductStatus::Failed {
            continue;
        }
        if let Some(to) = earliest
            .get(&(p.id, p.version))
            .and_then(|k| status_before(*k))
        {
            out.push(Transition {
                view: ProductTransition {
                    product_id: p.id,
                    sku: p.sku,
                    version: p.version,
                    status_before: p.status,
                    status_after: to,
                },
                to,
            });
        }
    }
    Ok(out)
}

/// The rows the selection names (not yet checked for being dead).
pub(super) async fn select_rows<C: GenericClient>(
    db: &C,
    a: &ReplayArgs,
) -> Result<Vec<OutboxEntry>, CtlError> {
    if !a.event_ids.is_empty() {
        let rows: Vec<OutboxEntry> = rvc_outbox::admin::entries_by_ids(db, &a.event_ids)
            .await?
            .into_iter()
            .map(entry)
            .collect();
        let found: BTreeSet<Uuid> = rows.iter().map(|r| r.event_id).collect();
        let missing: Vec<Uuid> = a
            .event_ids
            .iter()
            .filter(|id| !found.contains(id))
            .copied()
            .collect();
        if let [one] = missing.as_slice() {
            return Err(unknown_event(*one));
        }
        if !missing.is_empty() {
            let list: Vec<String> = missing.iter().map(Uuid::to_string).collect();
            return Err(CtlError::NotFound(format!(
                "no outbox rows with event ids {}; nothing changed; find ids with \
                 `rvcctl outbox list --state dead`",
                list.join(", ")
            )));
        }
        return Ok(rows);
    }
    let product = resolve_product(db, a.product, a.sku.as_deref()).await?;
    let filter = EntryFilter {
        state: Some(OutboxState::Dead),
        kind: a.kind,
        product_id: product,
        changed_since: a.since.as_ref().map(|Since(t)| *t),
    };
    let rows: Vec<OutboxEntry> =
        rvc_outbox::admin::list_entries(db, &filter, EntryOrder::Created, None)
            .await?
            .into_iter()
            .map(entry)
            .collect();
    if rows.is_empty() {
        if let Some(p) = product {
            let label = a.sku.clone().unwrap_or_else(|| p.to_string());
            return Err(CtlError::Refused(format!(
                "product {label} has no dead rows{}: nothing to replay; see its pipeline with \
                 `rvcctl product status {label}`",
                filter_note(a)
            )));
        }
    }
    Ok(rows)
}

pub(super) fn filter_note(a: &ReplayArgs) -> String {
    let mut parts = Vec::new();
    if let Some(k) = a.kind {
        parts.push(format!("kind {k}"));
    }
    if let Some(Since(t)) = a.since {
        parts.push(format!("since {}", t.to_rfc3339()));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!(" matching {}", parts.join(", "))
    }
}

pub(super) fn confirm(n: usize, a: &ReplayArgs) -> Result<(), CtlError> {
    if a.dry_run || a.yes || n <= a.confirm_above {
        return Ok(());
    }
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(CtlError::Usage(format!(
            "refusing to replay {n} rows (more than --confirm-above {}) without confirmation, \
             and there is no terminal to ask on; nothing changed. Check the selection with \
             --dry-run, then re-run with --yes (or narrow it with --kind/--since)",
            a.confirm_above
        )));
    }
    let mut err = std::io::stderr();
    let _ = write!(err, "replay {n} dead rows? type yes to continue: ");
    let _ = err.flush();
    let mut line = String::new();
    stdin
        .lock()
        .read_line(&mut line)
        .map_err(|source| CtlError::Io {
            context: "read the confirmation",
            source,
        })?;
    if line.trim().eq_ignore_ascii_case("yes") {
        Ok(())
    } else {
        Err(CtlError::Refused(
            "not confirmed: nothing changed (answer `yes`, or pass --yes)".to_owned(),
        ))
    }
}

/// Current version of each product of `rows`.
pub(super) async fn current_versions<C: GenericClient>(
    db: &C,
    rows: &[OutboxEntry],
) -> Result<BTreeMap<Uuid, i32>, CtlError> {
    let ids: Vec<Uuid> = rows.iter().map(|r| r.product_id).collect();
    Ok(rvc_store::operator::current_versions(db, &ids).await?)
}

pub(super) fn views(moves: Vec<Transition>) -> Vec<ProductTransition> {
    moves.into_iter().map(|m| m.view).collect()
}
