//! Scheduled maintenance (apalis 1.0 + apalis-cron 1.0): on each tick of `GC_SCHEDULE`, prune
//! done outbox rows older than `OUTBOX_RETENTION_HOURS` and stored idempotency keys older than
//! `IDEMPOTENCY_RETENTION_HOURS`, and, when `GC_ENABLED`, collect orphaned objects. Several
//! processes may run it: a Postgres advisory lock lets one of them do a tick's work, the
//! others skip it.
use crate::error::MaintenanceError;
use crate::gc::collect_orphans_with;
use apalis::prelude::{BoxDynError, Data, WorkerBuilder, WorkerBuilderExt};
use apalis_cron::{CronScheduler, Tick};
use rvc_objects::ObjectStore;
use rvc_outbox::Outbox;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Maintenance settings (flattened into the binary's args).
#[derive(Debug, Clone, clap::Args)]
pub struct MaintenanceArgs {
    /// Collect orphaned objects on the maintenance schedule.
    #[arg(long, env = "GC_ENABLED", default_value_t = true, action = clap::ArgAction::Set)]
    pub gc_enabled: bool,
    /// Cron schedule of maintenance (GC and outbox pruning), with seconds
    /// ("sec min hour day month weekday"); a 5-field expression gets "0" seconds.
    #[arg(long, env = "GC_SCHEDULE", default_value = "0 */15 * * * *")]
    pub gc_schedule: String,
    /// Objects no row refers to are deleted only once older than this (an upload whose row
    /// is not committed yet is younger).
    #[arg(long, env = "GC_GRACE_SECS", default_value_t = 3600)]
    pub gc_grace_secs: u64,
    /// The photos of an archived product are kept this long after the archive, in seconds
    /// (an un-archive within it re-uses them), then collected (7 days by default).
    #[arg(long, env = "ARCHIVE_RETENTION_SECS", default_value_t = 7 * 24 * 3600)]
    pub archive_retention_secs: u64,
    /// Done outbox rows older than this are deleted.
    #[arg(long, env = "OUTBOX_RETENTION_HOURS", default_value_t = 168)]
    pub outbox_retention_hours: u64,
    /// Stored Idempotency-Key responses older than this are deleted (a retry after that is
    /// a new request).
    #[arg(long, env = "IDEMPOTENCY_RETENTION_HOURS", default_value_t = 168)]
    pub idempotency_retention_hours: u64,
}

impl MaintenanceArgs {
    pub fn grace(&self) -> Duration {
        Duration::from_secs(self.gc_grace_secs)
    }

    pub fn archive_retention(&self) -> Duration {
        Duration::from_secs(self.archive_retention_secs)
    }

    pub fn retention(&self) -> Duration {
        Duration::from_secs(self.outbox_retention_hours.saturating_mul(3600))
    }

    pub fn idempotency_retention(&self) -> Duration {
        Duration::from_secs(self.idempotency_retention_hours.saturating_mul(3600))
    }

    /// The parsed schedule (5-field expressions get a leading `0` seconds field).
    pub fn schedule(&self) -> Result<cron::Schedule, MaintenanceError> {
        let expr = self.gc_schedule.trim();
        let expr = if expr.split_whitespace().count() == 5 {
            format!("0 {expr}")
        } else {
            expr.to_owned()
        };
        cron::Schedule::from_str(&expr).map_err(|e| MaintenanceError::Schedule {
            schedule: self.gc_schedule.clone(),
            reason: e.to_string(),
        })
    }
}

/// What one maintenance tick needs.
#[derive(Debug, Clone)]
pub struct Maintenance {
    pub pool: deadpool_postgres::Pool,
    pub store: Arc<dyn ObjectStore>,
    pub gc_enabled: bool,
    pub grace: Duration,
    pub archive_retention: Duration,
    pub retention: Duration,
    pub idempotency_retention: Duration,
}

impl Maintenance {
    pub fn new(
        pool: deadpool_postgres::Pool,
        store: Arc<dyn ObjectStore>,
        args: &MaintenanceArgs,
    ) -> Self {
        Self {
            pool,
            store,
            gc_enabled: args.gc_enabled,
            grace: args.grace(),
            archive_retention: args.archive_retention(),
            retention: args.retention(),
            idempotency_retention: args.idempotency_retention(),
        }
    }

    /// One tick: prune the outbox, then collect orphans. Returns false when another process
    /// holds the maintenance lock (it does this tick's work).
    pub async fn run_once(&self) -> Result<bool, MaintenanceError> {
        let client = self.pool.get().await?;
        let locked = rvc_store::objects::try_maintenance_lock(&**client).await?;
        if !locked {
            tracing::debug!("maintenance tick skipped: another process holds the lock");
            return Ok(false);
        }
        let result = self.work().await;
        // A session lock: give it back before the connection returns to the pool (if this
        // fails the connection is broken, and its lock went with it).
        if let Err(e) = rvc_store::objects::release_maintenance_lock(&**client).await {
            tracing::warn!(error = %e, "could not release the maintenance lock");
        }
        result.map(|()| true)
    }

    async fn work(&self) -> Result<(), MaintenanceError> {
        // Pruning finishes no row: nobody to tell.
        let outbox = Outbox::new(
            self.pool.clone(),
            "rvc-maintenance",
            rvc_outbox::hooks::none(),
        );
        let pruned = outbox.prune_done(self.retention).await?;
        metrics::counter!("rvc_outbox_pruned_total").increment(pruned);
        let keys = rvc_store::retention::prune_idempotency_keys(
            &**self.pool.get().await?,
            self.idempotency_retention,
        )
        .await?;
        metrics::counter!("rvc_idempotency_keys_pruned_total").increment(keys);
        if keys > 0 {
            tracing::info!(rows = keys, "pruned idempotency keys");
        }
        if self.gc_enabled {
            collect_orphans_with(
                &self.pool,
                self.store.as_ref(),
                self.grace,
                self.archive_retention,
                false,
            )
            .await?;
        }
        Ok(())
    }
}

async fn on_tick(tick: Tick, m: Data<Arc<Maintenance>>) -> Result<(), BoxDynError> {
    tracing::debug!(tick = tick.get_timestamp(), "maintenance tick");
    if let Err(e) = m.run_once().await {
        // Logged and dropped: the next tick tries again.
        metrics::counter!("rvc_maintenance_failed_total").increment(1);
        tracing::warn!(error = %e, "maintenance tick failed; retrying on the next tick");
    }
    Ok(())
}

/// Runs the maintenance schedule until `shutdown` with an apalis cron worker.
pub fn spawn(
    maintenance: Maintenance,
    schedule: cron::Schedule,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tracing::info!(schedule = %schedule, gc_enabled = maintenance.gc_enabled,
        grace_secs = maintenance.grace.as_secs(),
        archive_retention_secs = maintenance.archive_retention.as_secs(), retention_secs = maintenance.retention.as_secs(),
        "maintenance scheduled");
    let worker = WorkerBuilder::new("rvc-maintenance")
        .backend(CronScheduler::new(schedule))
        .concurrency(1)
        .data(Arc::new(maintenance))
        .build(on_tick);
    tokio::spawn(async move {
        let stop = async move {
            shutdown.cancelled().await;
            Ok::<(), std::io::Error>(())
        };
        if let Err(e) = worker.run_until(stop).await {
            tracing::error!(error = %e, "maintenance scheduler stopped");
        }
    })
}

/// Runs the schedule with `/healthz`, `/readyz` (the database answers) and `/metrics` on
/// `metrics_addr`, until `shutdown`.
pub async fn serve(
    maintenance: Maintenance,
    schedule: cron::Schedule,
    metrics_addr: &str,
    shutdown: CancellationToken,
) -> Result<(), MaintenanceError> {
    let pool = maintenance.pool.clone();
    let ready: rvc_runtime::health::ReadyCheck = Arc::new(move || {
        let pool = pool.clone();
        Box::pin(async move {
            rvc_store::ping(&pool)
                .await
                .map_err(|e| format!("database: {e}"))
        })
    });
    let (bound, server) = rvc_runtime::health::serve(metrics_addr, ready)?;
    let server_handle = server.handle();
    tokio::spawn(server);
    tracing::info!(%bound, "health and metrics endpoint up");
    let job = spawn(maintenance, schedule, shutdown.clone());
    shutdown.cancelled().await;
    let _ = job.await;
    server_handle.stop(true).await;
    tracing::info!("stopped cleanly");
    Ok(())
}
