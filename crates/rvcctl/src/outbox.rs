//! `rvcctl outbox stats|list|show`: looking at the outbox without writing SQL.
use crate::error::CtlError;
use crate::json::{
    AuditEntry, KindStats, ListOutput, OutboxEntry, ProductSummary, ShowOutput, StatsOutput,
    TimelineStep,
};
use crate::output::{clip, human_secs, opt_when, or_dash, print_json, relative, when, Table};
use crate::parse::Since;
use crate::Ctx;
use rvc_domain::{OutboxKind, OutboxState};
use rvc_outbox::admin::{EntryFilter, EntryOrder, OutboxEntryRow};
use tokio_postgres::GenericClient;
use uuid::Uuid;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  rvcctl outbox list --state dead
  rvcctl outbox list --state dead --kind vectorize --since 2h
  rvcctl outbox list --sku SKU-123 --output json
  rvcctl outbox list --since 2024-05-01T10:00:00Z --limit 200

--since matches rows whose last change (enqueue, attempt, completion, dead-lettering) is at or
after the given time; rows are listed newest change first.")]
pub struct ListArgs {
    /// Only rows in this state: pending, leased, done, dead.
    #[arg(long, value_parser = crate::parse::state)]
    pub state: Option<OutboxState>,
    /// Only rows of this kind: upload_images, vectorize, publish.
    #[arg(long, value_parser = crate::parse::kind)]
    pub kind: Option<OutboxKind>,
    /// Only rows of this product id (UUID).
    #[arg(long, value_parser = crate::parse::product_id, conflicts_with = "sku")]
    pub product: Option<Uuid>,
    /// Only rows of the product with this SKU.
    #[arg(long)]
    pub sku: Option<String>,
    /// Only rows changed since: an RFC 3339 timestamp or a duration back from now (2h, 30m, 7d).
    #[arg(long, value_parser = crate::parse::since)]
    pub since: Option<Since>,
    /// At most this many rows.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(i64).range(1..=100_000))]
    pub limit: i64,
}

/// Resolves `--product`/`--sku` to a product id, or says it does not exist (exit 2).
pub(crate) async fn resolve_product<C: GenericClient>(
    db: &C,
    product: Option<Uuid>,
    sku: Option<&str>,
) -> Result<Option<Uuid>, CtlError> {
    if let Some(id) = product {
        return match rvc_store::operator::product_exists(db, id).await? {
            true => Ok(Some(id)),
            false => Err(CtlError::NotFound(format!(
                "no product with id {id}; check the id, or select by SKU with --sku"
            ))),
        };
    }
    if let Some(sku) = sku {
        return match rvc_store::operator::product_id_by_sku(db, sku).await? {
            Some(id) => Ok(Some(id)),
            None => Err(CtlError::NotFound(format!(
                "no product with SKU {sku:?}; SKUs are case-sensitive, check the spelling"
            ))),
        };
    }
    Ok(None)
}

pub(crate) fn entry(e: OutboxEntryRow) -> OutboxEntry {
    OutboxEntry::new(e.row, e.sku)
}

pub async fn stats(ctx: &Ctx) -> Result<(), CtlError> {
    let s = rvc_outbox::stats(&ctx.pool).await?;
    let count = |kind: OutboxKind, state: OutboxState| {
        s.counts
            .iter()
            .filter(|c| c.kind == kind && c.state == state)
            .map(|c| c.rows)
            .sum::<i64>()
    };
    let kinds: Vec<KindStats> = OutboxKind::ALL
        .iter()
        .map(|&kind| KindStats {
            kind,
            pending: count(kind, OutboxState::Pending),
            leased: count(kind, OutboxState::Leased),
            done: count(kind, OutboxState::Done),
            dead: count(kind, OutboxState::Dead),
            oldest_claimable_age_secs: s
                .oldest_claimable_secs
                .iter()
                .find(|(k, _)| *k == kind)
                .map(|(_, a)| *a),
        })
        .collect();
    let out = StatsOutput {
        kinds,
        dead_total: s.dead,
    };
    if ctx.json() {
        return print_json(&out);
    }
    let mut t = Table::new(&[
        "KIND",
        "PENDING",
        "LEASED",
        "DONE",
        "DEAD",
        "OLDEST CLAIMABLE",
    ])
    .right(&[1, 2, 3, 4, 5]);
    for k in &out.kinds {
        t.row(vec![
            k.kind.to_string(),
            k.pending.to_string(),
            k.leased.to_string(),
            k.done.to_string(),
            k.dead.to_string(),
            k.oldest_claimable_age_secs
                .map_or_else(|| "-".to_owned(), human_secs),
        ]);
    }
    print!("{}", t.render());
    if out.dead_total > 0 {
        println!(
            "\n{} dead row(s): see them with `rvcctl outbox list --state dead`",
            out.dead_total
        );
    } else {
        println!("\nno dead rows");
    }
    Ok(())
}

pub async fn list(ctx: &Ctx, a: &ListArgs) -> Result<(), CtlError> {
    let client = ctx.pool.get().await?;
    let product = resolve_product(&**client, a.product, a.sku.as_deref()).await?;
    let filter = EntryFilter {
        state: a.state,
        kind: a.kind,
        product_id: product,
        changed_since: a.since.as_ref().map(|Since(t)| *t),
    };
    let total = rvc_outbox::admin::count_entries(&**client, &filter).await?;
    let rows = rvc_outbox::admin::list_entries(
        &**client,
        &filter,
        EntryOrder::NewestChange,
        Some(a.limit),
    )
    .await?
    .into_iter()
    .map(entry)
    .collect();
    let out = ListOutput {
        rows,
        total_matching: total,
        limit: a.limit,
    };
    if ctx.json() {
        return print_json(&out);
    }
    if out.rows.is_empty() {
        println!("no outbox rows match");
        return Ok(());
    }
    let mut t = Table::new(&[
        "EVENT_ID",
        "KIND",
        "STATE",
        "ATTEMPTS",
        "SKU",
        "VER",
        "UPDATED",
        "LAST_ERROR",
    ])
    .right(&[3, 5]);
    for r in &out.rows {
        t.row(vec![
            r.event_id.to_string(),
            r.kind.to_string(),
            r.state.to_string(),
            format!("{}/{}", r.attempts, r.max_attempts),
            clip(&r.sku, 24),
            r.product_version.to_string(),
            relative(r.updated_at),
            r.last_error
                .as_deref()
                .map_or_else(|| "-".to_owned(), |e| clip(e, 60)),
        ]);
    }
    print!("{}", t.render());
    if out.total_matching > out.rows.len() as i64 {
        println!(
            "\n{} of {} matching rows shown; narrow the filters or raise --limit",
            out.rows.len(),
            out.total_matching
        );
    }
    println!("details of one row: rvcctl outbox show EVENT_ID");
    Ok(())
}

/// The row, or "unknown event id" (exit 2).
pub(crate) async fn get_entry<C: GenericClient>(
    db: &C,
    event_id: Uuid,
) -> Result<OutboxEntry, CtlError> {
    rvc_outbox::admin::get_entry(db, event_id)
        .await?
        .map(entry)
        .ok_or_else(|| unknown_event(event_id))
}

pub(crate) fn unknown_event(id: Uuid) -> CtlError {
    CtlError::NotFound(format!(
        "no outbox row with event id {id} (done rows are pruned after their retention period); \
         find ids with `rvcctl outbox list`"
    ))
}

pub(crate) async fn product_summary<C: GenericClient>(
    db: &C,
    id: Uuid,
) -> Result<ProductSummary, CtlError> {
    let p = rvc_store::operator::product_head(db, id).await?;
    Ok(ProductSummary {
        id: p.id,
        sku: p.sku,
        name: p.name,
        version: p.version,
        status: p.status,
        archived: p.archived,
    })
}

pub(crate) async fn audit_of<C: GenericClient>(
    db: &C,
    event_id: Uuid,
) -> Result<Vec<AuditEntry>, CtlError> {
    Ok(rvc_outbox::admin::audit_of(db, event_id)
        .await?
        .into_iter()
        .map(|r| AuditEntry {
            id: r.id,
            event_id: r.event_id,
            action: r.action,
            actor: r.actor,
            reason: r.reason,
            details: r.details,
            at: r.at,
        })
        .collect())
}

pub async fn show(ctx: &Ctx, event_id: Uuid) -> Result<(), CtlError> {
    let client = ctx.pool.get().await?;
    let row = get_entry(&**client, event_id).await?;
    let audit = audit_of(&**client, event_id).await?;
    let product = product_summary(&**client, row.product_id).await?;
    let timeline: Vec<TimelineStep> = rvc_store::products::timeline(&**client, row.product_id)
        .await?
        .into_iter()
        .map(TimelineStep::from)
        .collect();
    let out = ShowOutput {
        row,
        audit,
        product,
        timeline,
    };
    if ctx.json() {
        return print_json(&out);
    }
    let r = &out.row;
    println!("event        {}", r.event_id);
    println!("kind         {}", r.kind);
    println!("state        {}", r.state);
    println!("attempts     {} of {}", r.attempts, r.max_attempts);
    println!("next attempt {}", when(r.next_attempt_at));
    if r.state == OutboxState::Leased {
        println!(
            "lease        {} until {}",
            or_dash(r.lease_owner.as_deref()),
            opt_when(r.lease_expires_at)
        );
    }
    println!("created      {}", when(r.created_at));
    println!("updated      {}", when(r.updated_at));
    println!("completed    {}", opt_when(r.completed_at));
    println!("traceparent  {}", or_dash(r.traceparent.as_deref()));
    println!(
        "product      {} (sku {}, row for version {}, product at version {}, status {})",
        r.product_id, out.product.sku, r.product_version, out.product.version, out.product.status
    );
    if r.payload.as_object().is_some_and(|o| !o.is_empty()) {
        println!("payload      {}", r.payload);
    }
    println!("last error   {}", or_dash(r.last_error.as_deref()));
    if !out.audit.is_empty() {
        println!("\naudit:");
        let mut t = Table::new(&["AT", "ACTION", "ACTOR", "REASON"]);
        for a in &out.audit {
            t.row(vec![
                when(a.at),
                a.action.clone(),
                a.actor.clone(),
                or_dash(a.reason.as_deref()),
            ]);
        }
        print!("{}", t.render());
    }
    println!("\ntimeline of product {}:", out.product.sku);
    print!("{}", timeline_table(&out.timeline, Some(r.event_id)));
    match r.state {
        OutboxState::Dead => println!(
            "\nnext: fix the cause, then `rvcctl outbox replay {} --dry-run` and \
             `rvcctl outbox replay {} --reason \"...\"` (or `rvcctl outbox cancel {} --reason \"...\"`)",
            r.event_id, r.event_id, r.event_id
        ),
        OutboxState::Pending | OutboxState::Leased => {
            println!("\nthis row is still being worked on; nothing to do by hand")
        }
        OutboxState::Done => {}
    }
    Ok(())
}

/// The timeline as a table; `mark` flags one row with `*`.
pub(crate) fn timeline_table(steps: &[TimelineStep], mark: Option<Uuid>) -> String {
    if steps.is_empty() {
        return "(no outbox rows: pruned, or never enqueued)\n".to_owned();
    }
    let mut t = Table::new(&[
        "",
        "VER",
        "KIND",
        "STATE",
        "ATTEMPTS",
        "CREATED",
        "DONE",
        "EVENT_ID",
        "LAST_ERROR",
    ])
    .right(&[1, 4]);
    for s in steps {
        t.row(vec![
            if Some(s.event_id) == mark { "*" } else { "" }.to_owned(),
            s.product_version.to_string(),
            s.kind.to_string(),
            s.state.to_string(),
            format!("{}/{}", s.attempts, s.max_attempts),
            relative(s.created_at),
            s.completed_at.map_or_else(|| "-".to_owned(), relative),
            s.event_id.to_string(),
            s.last_error
                .as_deref()
                .map_or_else(|| "-".to_owned(), |e| clip(e, 50)),
        ]);
    }
    t.render()
}
