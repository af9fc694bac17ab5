//! A worker whose step does nothing but wait: for crash tests (SIGKILL while holding
//! leases) and outbox benchmarks. Not part of the deployed system.
use clap::Parser;
use rvc_domain::OutboxKind;
use rvc_outbox::runner::{self, WorkerProcessArgs};
use rvc_outbox::testing::NoopStep;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(about = "Claims and completes outbox rows with a no-op step (tests, benchmarks)")]
struct Args {
    #[command(flatten)]
    process: WorkerProcessArgs,
    #[command(flatten)]
    telemetry: rvc_runtime::TelemetryArgs,
    /// Outbox kind to claim.
    #[arg(long, env = "NOOP_KIND", default_value = "publish")]
    kind: OutboxKind,
    /// How long each step "works", in milliseconds.
    #[arg(long, env = "NOOP_SLEEP_MS", default_value_t = 0)]
    sleep_ms: u64,
    /// Insert each completed event id into outbox_step_log.
    #[arg(long, env = "NOOP_LOG")]
    log: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _telemetry = rvc_runtime::telemetry::init("rvc-outbox-noop-worker", &args.telemetry)?;
    let pool = runner::pool(&args.process)?;
    let step = Arc::new(NoopStep {
        kind: args.kind,
        sleep: Duration::from_millis(args.sleep_ms),
        log: args.log,
        owner: args
            .process
            .worker_id
            .clone()
            .unwrap_or_else(|| "noop".into()),
    });
    let shutdown = rvc_runtime::shutdown::on_signal();
    let process = runner::Process {
        name: "rvc-outbox-noop-worker",
        default_metrics_addr: "127.0.0.1:0",
        args: &args.process,
        pool,
        // The queue alone: products' status is the pipeline's business, not measured here.
        hooks: rvc_outbox::hooks::none(),
        shutdown,
    };
    runner::run(process, step, None).await?;
    Ok(())
}
