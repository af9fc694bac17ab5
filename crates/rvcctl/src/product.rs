//! `rvcctl product status SKU|ID`: where one product stands.
use crate::error::CtlError;
use crate::json::{PhotoView, ProductStatusOutput, TimelineStep};
use crate::outbox::timeline_table;
use crate::output::{or_dash, print_json, when, Table};
use crate::Ctx;
use rvc_domain::{OutboxState, ProductStatus};
use rvc_store::products::ProductRef;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Prints the product's current version, its status (registered ->
images_stored -> vectorized -> indexed, or failed), its photos with their object keys and
vector point ids, and every outbox row of the product (its pipeline timeline).

Examples:
  rvcctl product status SKU-123
  rvcctl product status 0190f1c2-7d4e-7a51-9c1b-2f6a3e5d8b10
  watch -n 2 rvcctl product status SKU-123
  rvcctl product status SKU-123 --output json"
)]
pub struct StatusArgs {
    /// The product's SKU, or its id (a UUID).
    #[arg(value_name = "SKU|ID")]
    pub product: String,
}

pub async fn status(ctx: &Ctx, a: &StatusArgs) -> Result<(), CtlError> {
    let client = ctx.pool.get().await?;
    let which = ProductRef::parse(&a.product);
    let p = rvc_store::products::find(&**client, &which)
        .await?
        .ok_or_else(|| {
            CtlError::NotFound(match which {
                ProductRef::Id(id) => format!(
                    "no product with id {id}; if that is a SKU, SKUs are case-sensitive: \
                     check the spelling"
                ),
                ProductRef::Sku(s) => format!(
                    "no product with SKU {s:?} (SKUs are case-sensitive); find products with \
                     `rvcctl outbox list --limit 20`"
                ),
            })
        })?;
    let out = ProductStatusOutput {
        id: p.id,
        sku: p.sku,
        name: p.name,
        category: p.category,
        price: p.price,
        currency: p.currency,
        version: p.version,
        status: p.status,
        archived: p.archived,
        created_at: p.created_at,
        updated_at: p.updated_at,
        photos: p
            .images
            .into_iter()
            .map(|i| PhotoView {
                ordinal: i.ordinal,
                sha256: i.sha256,
                content_type: i.content_type,
                width: i.width,
                height: i.height,
                size_bytes: i.size_bytes,
                staged: i.staged,
                object_key: i.object_key,
                point_id: i.point_id,
                model_version: i.model_version,
            })
            .collect(),
        timeline: p.timeline.into_iter().map(TimelineStep::from).collect(),
    };
    if ctx.json() {
        return print_json(&out);
    }
    println!("product   {} ({})", out.sku, out.id);
    println!("name      {}", out.name);
    println!("category  {}", out.category);
    println!("price     {} {}", out.price, out.currency);
    println!("version   {}", out.version);
    println!(
        "status    {}{}",
        out.status,
        if out.archived { " (archived)" } else { "" }
    );
    println!("updated   {}", when(out.updated_at));
    println!("\nphotos of version {}:", out.version);
    if out.photos.is_empty() {
        println!("(none)");
    } else {
        let mut t = Table::new(&[
            "#",
            "SHA256",
            "TYPE",
            "SIZE",
            "STAGED",
            "OBJECT_KEY",
            "POINT_ID",
            "MODEL",
        ])
        .right(&[0, 3]);
        for i in &out.photos {
            t.row(vec![
                i.ordinal.to_string(),
                i.sha256.chars().take(12).collect(),
                i.content_type.clone(),
                format!("{}x{} {}B", i.width, i.height, i.size_bytes),
                if i.staged { "yes" } else { "no" }.to_owned(),
                or_dash(i.object_key.as_deref()),
                i.point_id.map_or_else(|| "-".to_owned(), |u| u.to_string()),
                or_dash(i.model_version.as_deref()),
            ]);
        }
        print!("{}", t.render());
    }
    println!("\ntimeline:");
    print!("{}", timeline_table(&out.timeline, None));
    let current = |state: OutboxState| {
        out.timeline
            .iter()
            .any(|s| s.product_version == out.version && s.state == state)
    };
    if current(OutboxState::Dead) {
        println!(
            "\nnext: a step is dead: `rvcctl outbox list --sku {} --state dead`, fix the cause, \
             then `rvcctl outbox replay --sku {} --reason \"...\"`",
            out.sku, out.sku
        );
    } else if out.status != ProductStatus::Indexed
        && !current(OutboxState::Pending)
        && !current(OutboxState::Leased)
    {
        println!(
            "\nnext: nothing is queued for this version: `rvcctl reconcile` reports it, \
             `rvcctl reconcile --repair` re-drives it"
        );
    }
    Ok(())
}
