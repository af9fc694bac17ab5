//! `rvc-vectorizer`: claims `vectorize` outbox rows and indexes every photo in the vector index.
use clap::Parser;
use rvc_outbox::runner::{self, Companion, WorkerProcessArgs};
use rvc_outbox::WorkerConfig;
use rvc_vectorizer::embed::spawn_model_keeper;
use rvc_vectorizer::{EmbedStep, VectorizerArgs, DEFAULT_METRICS_ADDR};
use std::sync::Arc;

/// Vectorize worker: photos from object storage → rvc-ml-service embeddings → vector-index
/// points (the whole photo and its centre, per photo). Every option can be given as the
/// environment variable shown (.env is read).
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
    // The model migration's backfill (`embed` rows) and its switch run beside `vectorize`.
    let embed = &args.vectorizer.embed;
    let keeper = spawn_model_keeper(step.lanes().clone(), embed, shutdown.clone());
    let companion = Companion {
        step: Arc::new(EmbedStep::new(step.lanes().clone(), embed)),
        config: WorkerConfig {
            batch_size: embed.embed_batch_size.max(1),
            concurrency: embed.embed_concurrency.max(1),
            ..args.process.worker.config()
        },
        claimers: 1,
    };
    let process = runner::Process {
        name: "rvc-vectorizer",
        default_metrics_addr: DEFAULT_METRICS_ADDR,
        args: &args.process,
        pool,
        hooks: rvc_store::pipeline::hooks(),
        shutdown,
    };
    runner::run_with(process, Arc::new(step), Some(ready), Some(companion)).await?;
    let _ = keeper.await;
    Ok(())
}
