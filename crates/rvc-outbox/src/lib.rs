//! The transactional outbox.
//!
//! * [`enqueue`] writes a row inside the caller's transaction (so the row exists exactly when
//!   the business change does) and NOTIFYs the workers.
//! * [`Outbox`] claims rows of one kind into short **leases** with `FOR UPDATE SKIP LOCKED`
//!   (no transaction is held open while a step talks to S3, the ML service or Kafka),
//!   extends them (heartbeat), completes them together with the step's own Postgres writes
//!   and the next step's row in **one** transaction, and fails them with backoff or to `dead`.
//! * [`Worker`] is the loop every worker binary runs: it is generic over a [`Step`], so a
//!   worker writes only what its step does, never claim/retry code.
//!
//! A row is claimable when `state IN ('pending','leased') AND next_attempt_at <= now()`:
//! for a leased row `next_attempt_at` is its lease expiry, so an abandoned lease (SIGKILL)
//! becomes claimable again by the same condition. Completion is fenced by a per-claim
//! `lease_token`: a worker whose lease was taken over cannot complete the row.

pub mod admin;
pub mod embed;
mod error;
pub mod hooks;
mod listener;
mod queue;
pub mod runner;
mod stats;
#[cfg(feature = "testing")]
pub mod testing;
mod worker;

pub use error::{OutboxError, StepError};
pub use hooks::{HookFuture, NoHooks, RowHooks, RowRef};
pub use listener::spawn_listener;
pub use queue::{
    enqueue, notify, Backoff, CompleteOutcome, Job, NewOutboxRow, Outbox, OutboxRow,
    NOTIFY_CHANNEL, OUTBOX_COLUMNS,
};
pub use stats::{
    dead_entries, spawn_stats_refresher, stats, DeadEntry, KindStateCount, OutboxStats,
    LIVE_COUNTS_SQL,
};
pub use worker::{
    run_concurrently, step_span, BatchReport, Step, Worker, WorkerArgs, WorkerConfig,
};
