//! `rvcctl`: what an SRE runs against the catalog's Postgres.
//!
//! Exit codes: 0 ok, 1 failure (the database said no, drift found ...), 2 usage (bad
//! arguments, unknown ids). Every error names what to do next.

use clap::{Parser, Subcommand};
use rvc_runtime::DatabaseArgs;

#[derive(Debug, Parser)]
#[command(
    name = "rvcctl",
    about = "Operate the Retail Vision Catalog: migrations, outbox, products",
    after_help = "Examples:\n  rvcctl migrate\n  rvcctl --database-url postgres://postgres@db:5432/rvc migrate"
)]
pub struct Cli {
    #[command(flatten)]
    pub db: DatabaseArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply the pending database migrations (embedded in this binary).
    Migrate,
}

#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Store(#[from] rvc_store::StoreError),
}

impl CtlError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CtlError::Usage(_) => 2,
            CtlError::Store(_) => 1,
        }
    }

    pub fn hint(&self) -> Option<&'static str> {
        match self {
            CtlError::Store(rvc_store::StoreError::Migration(_) | rvc_store::StoreError::Db { .. }) => {
                Some("check DATABASE_URL (or --database-url) and that Postgres is up: `pg_isready -h HOST`")
            }
            _ => None,
        }
    }
}

pub async fn run(cli: Cli) -> Result<(), CtlError> {
    match cli.command {
        Command::Migrate => {
            let applied = rvc_store::migrations::run(cli.db.url()).await?;
            if applied.is_empty() {
                println!(
                    "database is up to date (schema version {})",
                    rvc_store::migrations::latest_version()
                );
            } else {
                println!("applied migrations: {applied:?}");
            }
            Ok(())
        }
    }
}
