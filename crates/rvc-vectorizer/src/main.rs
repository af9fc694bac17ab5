//! `rvc-vectorizer`: claims `vectorize` outbox rows and indexes every photo in the vector index.
use clap::Parser;
use rvc_outbox::runner::{self, WorkerProcessArgs};
use rvc_vectorizer::{VectorizerArgs, DEFAULT_METRICS_ADDR};
use std::sync::Arc;

/// Vectorize worker: photos from object storage → rvc-ml-service embeddings → one vector-index
/// point per photo. Every option can be given as the environment variable shown (.env is read).
#[derive(Debug, Parser)]
#[command(name = "rvc-vectorizer", version)]
struct Args {
    #[command(flatten)]
    process: WorkerProcessArgs,
    #[command(flatten)]
    vectorizer: VectorizerArgs,
    #[command(flatten)]
    telemetry: rvc_runtime::TelemetryArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    rvc_runtime::load_dotenv()?;
    let args = Args::parse();
    let _telemetry = rvc_runtime::telemetry::init("rvc-vectorizer", &args.telemetry)?;
    let pool = runner::pool(&args.process)?;
    let step = args.vectorizer.build(pool.clone()).await?;
    let ready = step.ready_check();
    let shutdown = rvc_runtime::shutdown::on_signal();
    runner::run(
        "rvc-vectorizer",
        DEFAULT_METRICS_ADDR,
        &args.process,
        pool,
        Arc::new(step),
        Some(ready),
        shutdown,
    )
    .await?;
    Ok(())
}
