//! `rvcctl`: what an SRE runs against the catalog's Postgres.
//!
//! Exit codes: 0 ok, 1 failure (the database said no, a refused replay, drift found ...),
//! 2 usage (bad arguments or filters, unknown ids). Every error names what to do next.
//! `--output json` prints the documented shapes of [`json`] (docs/rvcctl-json.md).

mod apikey;
mod error;
pub mod external;
pub mod json;
pub mod model;
mod outbox;
pub mod output;
pub mod parse;
mod product;
pub mod reconcile;
mod replay;
mod steps;

use clap::{Parser, Subcommand};
use deadpool_postgres::Pool;
use rvc_runtime::DatabaseArgs;
use uuid::Uuid;

pub use error::CtlError;
pub use output::OutputFormat;
pub use reconcile::{CheckError, ObjectStore, Reconciler, VectorIndex};

#[derive(Debug, Parser)]
#[command(
    name = "rvcctl",
    about = "Operate the Retail Vision Catalog: migrations, outbox, products, reconcile, models",
    after_help = "Configuration comes from flags, the environment and a .env file in the working
directory (DATABASE_URL, DATABASE_POOL_SIZE).

Exit codes: 0 ok, 1 failure (refused, drift found, database error), 2 usage (bad arguments or
filters, unknown ids).

Examples:
  rvcctl migrate
  rvcctl outbox stats
  rvcctl outbox list --state dead --since 2h
  rvcctl outbox show 0190f1c2-7d4e-7a51-9c1b-2f6a3e5d8b10
  rvcctl outbox replay --dead --kind vectorize --dry-run
  rvcctl product status SKU-123
  rvcctl reconcile --repair
  rvcctl apikey create --name backoffice --scope catalog:write --scope catalog:read
  rvcctl model migrate --to efficientnet-lite0@2 --ml-url http://ml-v2:50051
  rvcctl --database-url postgres://postgres@db:5432/rvc outbox stats --output json

Runbook: docs/operations.md. JSON shapes: docs/rvcctl-json.md."
)]
pub struct Cli {
    #[command(flatten)]
    pub db: DatabaseArgs,
    /// Output format: table (human) or json (docs/rvcctl-json.md).
    #[arg(long, short = 'o', value_enum, default_value = "table", global = true)]
    pub output: OutputFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply the pending database migrations (embedded in this binary).
    #[command(after_help = "Examples:\n  rvcctl migrate\n  \
        DATABASE_URL=postgres://postgres@db:5432/rvc rvcctl migrate")]
    Migrate,
    /// Inspect the outbox, replay or cancel dead rows.
    #[command(subcommand)]
    Outbox(OutboxCommand),
    /// Look at one product.
    #[command(subcommand)]
    Product(ProductCommand),
    /// Report drift between Postgres and the pipeline's results; --repair fixes it.
    Reconcile(reconcile::ReconcileArgs),
    /// Create, list, revoke and verify API keys (secrets are shown once, at creation).
    #[command(subcommand)]
    Apikey(ApikeyCommand),
    /// Recognition models: switch to a new model with no downtime, follow the migration.
    #[command(subcommand)]
    Model(ModelCommand),
}

#[derive(Debug, Subcommand)]
pub enum ModelCommand {
    /// Build a new model's points for every product in the background, then switch to it.
    Migrate(model::MigrateArgs),
    /// Every model with its state, collection and migration progress (done / total, ETA).
    #[command(
        after_help = "Examples:\n  rvcctl model status\n  rvcctl model status --output json"
    )]
    Status,
}

#[derive(Debug, Subcommand)]
pub enum ApikeyCommand {
    /// Create a key and print it (the only time it is shown).
    Create(apikey::CreateArgs),
    /// Keys with their scopes, state, last use and expiry (never the secrets).
    List(apikey::ListArgs),
    /// Revoke a key by id.
    Revoke(apikey::RevokeArgs),
    /// Read a key on stdin and say whether it is valid (exit 0) or not (exit 1).
    #[command(after_help = "Example:\n  rvcctl apikey verify < var/dev-api-key")]
    Verify,
}

#[derive(Debug, Subcommand)]
pub enum OutboxCommand {
    /// Rows by kind and state, age of the oldest claimable row per kind, dead rows.
    #[command(
        after_help = "The age is how long the oldest row that is due (pending or with an
expired lease) has waited: a growing age means the workers of that kind are down or too slow.

Examples:
  rvcctl outbox stats
  rvcctl outbox stats --output json"
    )]
    Stats,
    /// List rows, newest change first, with filters.
    List(outbox::ListArgs),
    /// One row in full (attempts, last_error, traceparent, audit) and its product's timeline.
    #[command(after_help = "Examples:
  rvcctl outbox show 0190f1c2-7d4e-7a51-9c1b-2f6a3e5d8b10
  rvcctl outbox show 0190f1c2-7d4e-7a51-9c1b-2f6a3e5d8b10 --output json")]
    Show {
        /// The row's event id (from `rvcctl outbox list`).
        #[arg(value_parser = parse::event_id)]
        event_id: Uuid,
    },
    /// Send dead rows back to the workers (audited, one transaction).
    Replay(replay::ReplayArgs),
    /// Mark a dead row resolved without running it (audited).
    Cancel(replay::CancelArgs),
}

#[derive(Debug, Subcommand)]
pub enum ProductCommand {
    /// A product's status, photos and pipeline timeline.
    Status(product::StatusArgs),
}

/// What every command gets.
pub struct Ctx {
    pub pool: Pool,
    pub output: OutputFormat,
}

impl Ctx {
    pub fn json(&self) -> bool {
        self.output == OutputFormat::Json
    }
}

pub async fn run(cli: Cli) -> Result<(), CtlError> {
    if let Command::Migrate = cli.command {
        let applied = rvc_store::migrations::run(cli.db.url()).await?;
        if applied.is_empty() {
            println!(
                "database is up to date (schema version {})",
                rvc_store::migrations::latest_version()
            );
        } else {
            println!("applied migrations: {applied:?}");
        }
        return Ok(());
    }
    // A CLI needs few connections; the pool size flag is shared with the services.
    let pool = rvc_runtime::db::build(
        cli.db.url(),
        cli.db.database_pool_size.min(4),
        Some(cli.db.pool_wait()),
    )
    .map_err(rvc_store::StoreError::from)?;
    let ctx = Ctx {
        pool,
        output: cli.output,
    };
    match &cli.command {
        Command::Migrate => Ok(()),
        Command::Outbox(OutboxCommand::Stats) => outbox::stats(&ctx).await,
        Command::Outbox(OutboxCommand::List(a)) => outbox::list(&ctx, a).await,
        Command::Outbox(OutboxCommand::Show { event_id }) => outbox::show(&ctx, *event_id).await,
        Command::Outbox(OutboxCommand::Replay(a)) => replay::replay(&ctx, a).await,
        Command::Outbox(OutboxCommand::Cancel(a)) => replay::cancel(&ctx, a).await,
        Command::Product(ProductCommand::Status(a)) => product::status(&ctx, a).await,
        Command::Reconcile(a) => reconcile::reconcile(&ctx, a).await,
        Command::Apikey(ApikeyCommand::Create(a)) => apikey::create(&ctx, a).await,
        Command::Apikey(ApikeyCommand::List(a)) => apikey::list(&ctx, a).await,
        Command::Apikey(ApikeyCommand::Revoke(a)) => apikey::revoke(&ctx, a).await,
        Command::Apikey(ApikeyCommand::Verify) => apikey::verify(&ctx).await,
        Command::Model(ModelCommand::Migrate(a)) => model::migrate(&ctx, a).await,
        Command::Model(ModelCommand::Status) => model::status(&ctx).await,
    }
}
