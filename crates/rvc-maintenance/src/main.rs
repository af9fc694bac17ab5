//! `rvc-maintenance`: orphan collection and outbox pruning on a schedule (or once).
use clap::Parser;
use rvc_maintenance::{collect_orphans_with, schedule, Maintenance, MaintenanceArgs};

/// Maintenance: deletes objects Postgres no longer needs and prunes done outbox rows and old
/// idempotency keys, on `GC_SCHEDULE`. Every option can be given as the environment variable
/// shown (.env is read).
#[derive(Debug, Parser)]
#[command(name = "rvc-maintenance", version)]
struct Args {
    #[command(flatten)]
    db: rvc_runtime::DatabaseArgs,
    #[command(flatten)]
    objects: rvc_objects::ObjectStoreConfig,
    #[command(flatten)]
    maintenance: MaintenanceArgs,
    #[command(flatten)]
    telemetry: rvc_runtime::TelemetryArgs,
    /// Address of /healthz, /readyz and /metrics (port 0 picks a free one).
    #[arg(long, env = "METRICS_ADDR", default_value = rvc_maintenance::DEFAULT_METRICS_ADDR)]
    metrics_addr: String,
    /// Run one orphan collection (GC_GRACE_SECS and ARCHIVE_RETENTION_SECS apply), print its
    /// report and exit.
    #[arg(long)]
    once: bool,
    /// With --once: list what would be deleted, delete nothing.
    #[arg(long, requires = "once")]
    dry_run: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    rvc_runtime::load_dotenv()?;
    let args = Args::parse();
    let _telemetry = rvc_runtime::telemetry::init("rvc-maintenance", &args.telemetry)?;
    rvc_runtime::health::build_info("")?;
    let pool = rvc_runtime::db::pool(&args.db)?;
    let store = rvc_objects::open_tolerant(&args.objects).await?;
    let m = &args.maintenance;
    if args.once {
        let report = collect_orphans_with(
            &pool,
            store.as_ref(),
            m.grace(),
            m.archive_retention(),
            args.dry_run,
        )
        .await?;
        println!("{report}");
        return Ok(());
    }
    let schedule = m.schedule()?;
    let shutdown = rvc_runtime::shutdown::on_signal();
    schedule::serve(
        Maintenance::new(pool, store, m),
        schedule,
        &args.metrics_addr,
        shutdown,
    )
    .await?;
    Ok(())
}
