//! Maintenance of what the pipeline leaves behind, apart from the workers (each worker
//! binary does one step).
//!
//! * [`gc::collect_orphans`] deletes objects that Postgres does not need (see its module).
//! * [`schedule`] runs it, with outbox pruning and idempotency-key pruning, on a cron
//!   schedule (apalis). Several processes may run it: a Postgres advisory lock lets one of
//!   them do a tick's work, the others skip it.
//!
//! The `rvc-maintenance` binary runs the schedule (`--once` runs one tick's collection and
//! exits; with `--dry-run` it only lists what it would delete).

pub mod error;
pub mod gc;
pub mod schedule;

pub use error::MaintenanceError;
pub use gc::{
    collect_orphans, collect_orphans_with, GcItem, GcReason, GcReport, DEFAULT_ARCHIVE_RETENTION,
};
pub use schedule::{Maintenance, MaintenanceArgs};

/// Default address of `/healthz`, `/readyz` and `/metrics`.
pub const DEFAULT_METRICS_ADDR: &str = "127.0.0.1:9106";
