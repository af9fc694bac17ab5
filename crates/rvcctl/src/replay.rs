//! `rvcctl outbox replay` and `rvcctl outbox cancel`: the two hand-made changes to dead rows.
//! Each runs in ONE transaction together with its audit rows (and, for replay, the NOTIFY).
use crate::error::{CtlError, DbContext};
use crate::json::{CancelOutput, OutboxEntry, ProductTransition, ReplayOutput, ReplayRow};
use crate::outbox::{entry_from_row, get_entry, resolve_product, unknown_event, ENTRY_SELECT};
use crate::output::{clip, opt_when, or_dash, print_json, when, Table};
use crate::parse::Since;
use crate::Ctx;
use rvc_domain::{OutboxKind, OutboxState, ProductStatus};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, IsTerminal, Write};
use tokio_postgres::types::ToSql;
use tokio_postgres::GenericClient;
use uuid::Uuid;

#[derive(Debug, clap::Args)]
#[command(
    group(clap::ArgGroup::new("selection").required(true)
        .args(["event_ids", "product", "sku", "dead"])),
    after_help = "Select dead rows by event id, by product (--product/--sku), or all dead rows
(--dead) narrowed by --kind/--since. Each replayed row goes back to pending with attempts 0,
due now and without a lease; its product leaves `failed` (back to the status before the
replayed step); an outbox_audit row records who and why; the workers are woken (NOTIFY).
All of it in one transaction. Only dead rows can be replayed.

Examples:
  rvcctl outbox replay --dead --kind vectorize --since 2h --dry-run
  rvcctl outbox replay --dead --kind vectorize --since 2h --reason \"ML service fixed (INC-42)\"
  rvcctl outbox replay 0190f1c2-7d4e-7a51-9c1b-2f6a3e5d8b10 --reason \"S3 credentials rotated\"
  rvcctl outbox replay --sku SKU-123 --reason \"bad photo replaced\" --actor alice
  rvcctl outbox replay --dead --reason \"broker back\" --yes --output json"
)]
pub struct ReplayArgs {
    /// Event ids of dead rows to replay.
    #[arg(value_parser = crate::parse::event_id)]
    pub event_ids: Vec<Uuid>,
    /// Replay the dead rows of this product id.
    #[arg(long, value_parser = crate::parse::product_id)]
    pub product: Option<Uuid>,
    /// Replay the dead rows of the product with this SKU.
    #[arg(long)]
    pub sku: Option<String>,
    /// Replay every dead row (narrow with --kind and --since).
    #[arg(long)]
    pub dead: bool,
    /// Only rows of this kind: upload_images, vectorize, publish.
    #[arg(long, value_parser = crate::parse::kind, conflicts_with = "event_ids")]
    pub kind: Option<OutboxKind>,
    /// Only rows that died (last changed) since: RFC 3339 timestamp or a duration (2h, 30m, 7d).
    #[arg(long, value_parser = crate::parse::since, conflicts_with = "event_ids")]
    pub since: Option<Since>,
    /// Print exactly what would change, change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Why (stored in outbox_audit); required unless --dry-run.
    #[arg(long, required_unless_present = "dry_run",
          value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub reason: Option<String>,
    /// Who (stored in outbox_audit); default $USER, else "unknown".
    #[arg(long)]
    pub actor: Option<String>,
    /// Ask for confirmation on the terminal when more rows than this would be replayed.
    #[arg(long, default_value_t = 10)]
    pub confirm_above: usize,
    /// Do not ask for confirmation (needed above --confirm-above when there is no terminal).
    #[arg(long, short = 'y')]
    pub yes: bool,
}

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Marks a dead row resolved without running it: state done, completed now,
last_error kept and prefixed \"cancelled by <actor>: <reason> | \", one outbox_audit row
(action cancel). The product keeps its status (the step did not run): `rvcctl reconcile`
lists it as stuck, and a re-submission of the product starts a new version.

Examples:
  rvcctl outbox cancel 0190f1c2-7d4e-7a51-9c1b-2f6a3e5d8b10 --reason \"product withdrawn\"
  rvcctl outbox cancel 0190f1c2-7d4e-7a51-9c1b-2f6a3e5d8b10 --reason \"superseded by v3\" --actor alice"
)]
pub struct CancelArgs {
    /// Event id of the dead row.
    #[arg(value_parser = crate::parse::event_id)]
    pub event_id: Uuid,
    /// Why (stored in outbox_audit and in the row's last_error).
    #[arg(long, value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub reason: String,
    /// Who; default $USER, else "unknown".
    #[arg(long)]
    pub actor: Option<String>,
}

/// `--actor`, else $USER, else "unknown".
pub fn resolve_actor(actor: Option<&str>) -> String {
    actor
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(str::to_owned)
        .or_else(|| std::env::var("USER").ok().filter(|u| !u.trim().is_empty()))
        .unwrap_or_else(|| "unknown".to_owned())
}

/// Why a row that is not dead cannot be replayed or cancelled.
pub(crate) fn not_dead_reason(e: &OutboxEntry, verb: &str) -> String {
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

/// The status a product had before `kind` ran.
fn status_before(kind: OutboxKind) -> ProductStatus {
    match kind {
        OutboxKind::UploadImages => ProductStatus::Registered,
        OutboxKind::Vectorize => ProductStatus::ImagesStored,
        OutboxKind::Publish => ProductStatus::Vectorized,
    }
}

pub(crate) fn step_index(kind: OutboxKind) -> usize {
    OutboxKind::ALL
        .iter()
        .position(|k| *k == kind)
        .unwrap_or(usize::MAX)
}

/// Products that leave `failed` when `rows` are replayed: a failed product whose current
/// version has replayed rows goes back to the status before the earliest replayed step (the
/// last completed one). Rows of older versions leave the product alone.
async fn transitions<C: GenericClient>(
    db: &C,
    rows: &[OutboxEntry],
) -> Result<Vec<ProductTransition>, CtlError> {
    let mut earliest: BTreeMap<(Uuid, i32), OutboxKind> = BTreeMap::new();
    for r in rows {
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
    for p in db
        .query(
            "SELECT id, sku, version, status FROM products WHERE id = ANY($1) ORDER BY sku",
            &[&ids],
        )
        .await
        .ctx("products of replayed rows")?
    {
        let (id, sku, version, status): (Uuid, String, i32, String) =
            (p.get(0), p.get(1), p.get(2), p.get(3));
        if status != ProductStatus::Failed.as_str() {
            continue;
        }
        if let Some(kind) = earliest.get(&(id, version)) {
            out.push(ProductTransition {
                product_id: id,
                sku,
                version,
                status_before: status,
                status_after: status_before(*kind).to_string(),
            });
        }
    }
    Ok(out)
}

/// The rows the selection names (not yet checked for being dead).
async fn select_rows<C: GenericClient>(
    db: &C,
    a: &ReplayArgs,
) -> Result<Vec<OutboxEntry>, CtlError> {
    if !a.event_ids.is_empty() {
        let ids: Vec<Uuid> = a.event_ids.clone();
        let rows = db
            .query(
                &format!("{ENTRY_SELECT} WHERE event_id = ANY($1) ORDER BY created_at, event_id"),
                &[&ids],
            )
            .await
            .ctx("select rows to replay")?
            .iter()
            .map(entry_from_row)
            .collect::<Result<Vec<_>, _>>()?;
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
    let mut conds = vec!["state = 'dead'".to_owned()];
    let mut params: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
    if let Some(p) = product {
        params.push(Box::new(p));
        conds.push(format!("product_id = ${}", params.len()));
    }
    if let Some(k) = a.kind {
        params.push(Box::new(k.as_str().to_owned()));
        conds.push(format!("kind = ${}", params.len()));
    }
    if let Some(Since(t)) = a.since {
        params.push(Box::new(t));
        conds.push(format!("updated_at >= ${}", params.len()));
    }
    let refs: Vec<&(dyn ToSql + Sync)> = params
        .iter()
        .map(|p| p.as_ref() as &(dyn ToSql + Sync))
        .collect();
    let rows = db
        .query(
            &format!(
                "{ENTRY_SELECT} WHERE {} ORDER BY created_at, event_id",
                conds.join(" AND ")
            ),
            &refs,
        )
        .await
        .ctx("select rows to replay")?
        .iter()
        .map(entry_from_row)
        .collect::<Result<Vec<_>, _>>()?;
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

fn filter_note(a: &ReplayArgs) -> String {
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

fn confirm(n: usize, a: &ReplayArgs) -> Result<(), CtlError> {
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

#[derive(Serialize)]
struct ReplayAudit<'a> {
    kind: OutboxKind,
    product_id: Uuid,
    product_version: i32,
    state_before: OutboxState,
    attempts_before: i32,
    last_error_before: Option<&'a str>,
    product_status_before: Option<&'a str>,
    product_status_after: Option<&'a str>,
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
        let products = transitions(&**client, &rows).await?;
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
    let still_dead = tx
        .query(
            "SELECT event_id FROM outbox WHERE event_id = ANY($1) AND state = 'dead'
             ORDER BY event_id FOR UPDATE",
            &[&ids],
        )
        .await
        .ctx("lock rows")?
        .len();
    let product_ids: Vec<Uuid> = rows
        .iter()
        .map(|r| r.product_id)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    tx.query(
        "SELECT 1 FROM products WHERE id = ANY($1) ORDER BY id FOR UPDATE",
        &[&product_ids],
    )
    .await
    .ctx("lock products")?;
    if still_dead != ids.len() {
        return Err(CtlError::Refused(format!(
            "{} of the {} selected rows stopped being dead while this command ran (replayed or \
             cancelled by someone else?); nothing changed: re-run it",
            ids.len() - still_dead,
            ids.len()
        )));
    }
    let products = transitions(&tx, &rows).await?;
    tx.execute(
        "UPDATE outbox SET state = 'pending', attempts = 0, next_attempt_at = now(),
                first_failed_at = NULL, lease_expiries = 0,
                lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL,
                completed_at = NULL, updated_at = now()
         WHERE event_id = ANY($1) AND state = 'dead'",
        &[&ids],
    )
    .await
    .ctx("replay rows")?;
    for p in &products {
        tx.execute(
            "UPDATE products SET status = $3, updated_at = now()
             WHERE id = $1 AND version = $2 AND status = 'failed'",
            &[&p.product_id, &p.version, &p.status_after],
        )
        .await
        .ctx("move product out of failed")?;
    }
    for r in &rows {
        let t = products.iter().find(|p| p.product_id == r.product_id);
        let details = serde_json::to_value(ReplayAudit {
            kind: r.kind,
            product_id: r.product_id,
            product_version: r.product_version,
            state_before: r.state,
            attempts_before: r.attempts,
            last_error_before: r.last_error.as_deref(),
            product_status_before: t.map(|t| t.status_before.as_str()),
            product_status_after: t.map(|t| t.status_after.as_str()),
        })?;
        tx.execute(
            "INSERT INTO outbox_audit (event_id, action, actor, reason, details)
             VALUES ($1, 'replay', $2, $3, $4)",
            &[&r.event_id, &actor, &a.reason, &details],
        )
        .await
        .ctx("write audit row")?;
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

/// Current version of each product of `rows`.
async fn current_versions<C: GenericClient>(
    db: &C,
    rows: &[OutboxEntry],
) -> Result<BTreeMap<Uuid, i32>, CtlError> {
    let ids: Vec<Uuid> = rows.iter().map(|r| r.product_id).collect();
    Ok(db
        .query(
            "SELECT id, version FROM products WHERE id = ANY($1)",
            &[&ids],
        )
        .await
        .ctx("current versions")?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect())
}

fn output(
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

fn render(ctx: &Ctx, out: &ReplayOutput) -> Result<(), CtlError> {
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

#[derive(Serialize)]
struct CancelAudit<'a> {
    kind: OutboxKind,
    product_id: Uuid,
    product_version: i32,
    state_before: OutboxState,
    attempts: i32,
    last_error_before: Option<&'a str>,
    product_status: &'a str,
}

pub async fn cancel(ctx: &Ctx, a: &CancelArgs) -> Result<(), CtlError> {
    let actor = resolve_actor(a.actor.as_deref());
    let mut client = ctx.pool.get().await?;
    let tx = tokio_postgres::Client::transaction(&mut client)
        .await
        .ctx("cancel begin")?;
    let locked = tx
        .query_opt(
            "SELECT 1 FROM outbox WHERE event_id = $1 FOR UPDATE",
            &[&a.event_id],
        )
        .await
        .ctx("lock row")?;
    if locked.is_none() {
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
    let last_error: String = tx
        .query_one(
            "UPDATE outbox SET state = 'done', completed_at = now(), updated_at = now(),
                    last_error = $2 || coalesce(last_error, '')
             WHERE event_id = $1 RETURNING last_error",
            &[&a.event_id, &prefix],
        )
        .await
        .ctx("cancel row")?
        .get(0);
    let product_status: String = tx
        .query_one(
            "SELECT status FROM products WHERE id = $1",
            &[&row.product_id],
        )
        .await
        .ctx("product status")?
        .get(0);
    let details = serde_json::to_value(CancelAudit {
        kind: row.kind,
        product_id: row.product_id,
        product_version: row.product_version,
        state_before: row.state,
        attempts: row.attempts,
        last_error_before: row.last_error.as_deref(),
        product_status: &product_status,
    })?;
    tx.execute(
        "INSERT INTO outbox_audit (event_id, action, actor, reason, details)
         VALUES ($1, 'cancel', $2, $3, $4)",
        &[&a.event_id, &actor, &a.reason, &details],
    )
    .await
    .ctx("write audit row")?;
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
    if ctx.json() {
        return print_json(&out);
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
