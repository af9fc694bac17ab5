//! The command lines of `rvcctl outbox replay` and `rvcctl outbox cancel`.
use crate::parse::Since;
use rvc_domain::OutboxKind;
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
