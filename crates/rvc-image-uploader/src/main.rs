//! `rvc-image-uploader`: claims `upload_images` outbox rows and puts the staged photos in
//! object storage.
use clap::Parser;
use rvc_image_uploader::UploadStep;
use rvc_outbox::runner::{self, WorkerProcessArgs};
use std::sync::Arc;

/// Upload worker: staged photos → object storage (S3, or a directory when S3_ENDPOINT is
/// unset) under deterministic keys. Every option can be given as the environment variable
/// shown (.env is read).
#[derive(Debug, Parser)]
#[command(name = "rvc-image-uploader", version)]
struct Args {
    #[command(flatten)]
    process: WorkerProcessArgs,
    #[command(flatten)]
    objects: rvc_objects::ObjectStoreConfig,
    #[command(flatten)]
    telemetry: rvc_runtime::TelemetryArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    rvc_runtime::load_dotenv()?;
    let args = Args::parse();
    let _telemetry = rvc_runtime::telemetry::init("rvc-image-uploader", &args.telemetry)?;
    rvc_runtime::health::build_info("")?;
    let pool = runner::pool(&args.process)?;
    let store = rvc_objects::open_tolerant(&args.objects).await?;
    let step = UploadStep::new(pool.clone(), store);
    let ready = step.ready_check();
    let process = runner::Process {
        name: "rvc-image-uploader",
        default_metrics_addr: rvc_image_uploader::DEFAULT_METRICS_ADDR,
        args: &args.process,
        pool,
        hooks: rvc_store::pipeline::hooks(),
        shutdown: rvc_runtime::shutdown::on_signal(),
    };
    runner::run(process, Arc::new(step), Some(ready)).await?;
    Ok(())
}
