//! `rvc-relay`: publishes product change events to Kafka (the `publish` outbox step).
use clap::Parser;
use rvc_outbox::runner::{self, WorkerProcessArgs};
use rvc_relay::{EmbeddingArgs, KafkaArgs, PublishStep};
use std::sync::Arc;

#[derive(Debug, Parser)]
#[command(
    name = "rvc-relay",
    about = "Publishes one ProductChangeEvent per product version to Kafka (the publish outbox step)"
)]
struct Args {
    #[command(flatten)]
    process: WorkerProcessArgs,
    #[command(flatten)]
    kafka: KafkaArgs,
    #[command(flatten)]
    embeddings: EmbeddingArgs,
    #[command(flatten)]
    telemetry: rvc_runtime::TelemetryArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    rvc_runtime::load_dotenv()?;
    let args = Args::parse();
    let _telemetry = rvc_runtime::telemetry::init("rvc-relay", &args.telemetry)?;
    rvc_runtime::health::build_info("")?;
    let pool = runner::pool(&args.process)?;
    let step = PublishStep::start(pool.clone(), &args.kafka, &args.embeddings).await?;
    let ready = step.ready_check();
    let shutdown = rvc_runtime::shutdown::on_signal();
    let process = runner::Process {
        name: "rvc-relay",
        default_metrics_addr: rvc_relay::DEFAULT_METRICS_ADDR,
        args: &args.process,
        pool,
        hooks: rvc_store::pipeline::hooks(),
        shutdown,
    };
    runner::run(process, Arc::new(step), ready).await?;
    Ok(())
}
