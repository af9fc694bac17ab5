//! A worker whose step does nothing but wait: for crash tests (SIGKILL while holding
//! leases) and outbox benchmarks. Not part of the deployed system.
use clap::Parser;
use rvc_domain::OutboxKind;
use rvc_outbox::{testing::NoopStep, Outbox, Worker, WorkerArgs};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(about = "Claims and completes outbox rows with a no-op step (tests, benchmarks)")]
struct Args {
    #[command(flatten)]
    db: rvc_runtime::DatabaseArgs,
    #[command(flatten)]
    worker: WorkerArgs,
    /// Outbox kind to claim.
    #[arg(long, env = "NOOP_KIND", default_value = "publish")]
    kind: OutboxKind,
    /// How long each step "works", in milliseconds.
    #[arg(long, env = "NOOP_SLEEP_MS", default_value_t = 0)]
    sleep_ms: u64,
    /// Insert each completed event id into outbox_step_log.
    #[arg(long, env = "NOOP_LOG")]
    log: bool,
    /// Lease owner name.
    #[arg(long, env = "NOOP_OWNER", default_value = "noop-worker")]
    owner: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let pool = deadpool_postgres::Pool::builder(deadpool_postgres::Manager::new(
        args.db.url().parse()?,
        tokio_postgres::NoTls,
    ))
    .max_size(args.db.database_pool_size)
    .build()?;
    let shutdown = rvc_runtime::shutdown::on_signal();
    let step = Arc::new(NoopStep {
        kind: args.kind,
        sleep: Duration::from_millis(args.sleep_ms),
        log: args.log,
        owner: args.owner.clone(),
    });
    let outbox = Outbox::new(pool, args.owner.clone());
    let worker = Worker::new(outbox, step, args.worker.config());
    rvc_outbox::spawn_listener(
        args.db.url().parse()?,
        args.kind,
        worker.wake_handle(),
        shutdown.clone(),
    );
    let mut tasks = Vec::new();
    for _ in 0..args.worker.claimers.max(1) {
        tasks.push(tokio::spawn(worker.clone().run(shutdown.clone())));
    }
    for t in tasks {
        t.await?;
    }
    Ok(())
}
