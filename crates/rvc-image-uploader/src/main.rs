//! `rvc-image-uploader`: claims `upload_images` outbox rows and puts the staged photos in
//! object storage; runs orphan collection and outbox pruning on a schedule.
use clap::Parser;
use rvc_image_uploader::{
    collect_orphans_with, maintenance, Maintenance, UploadStep, UploaderArgs,
};
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
    uploader: UploaderArgs,
    #[command(flatten)]
    telemetry: rvc_runtime::TelemetryArgs,
    /// Run one orphan collection (GC_GRACE_SECS and ARCHIVE_RETENTION_SECS apply), print its
    /// report and exit.
    #[arg(long)]
    gc_once: bool,
    /// With --gc-once: list what would be deleted, delete nothing.
    #[arg(long, requires = "gc_once")]
    dry_run: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    rvc_runtime::load_dotenv()?;
    let args = Args::parse();
    let _telemetry = rvc_runtime::telemetry::init("rvc-image-uploader", &args.telemetry)?;
    rvc_runtime::health::build_info("")?;
    let pool = runner::pool(&args.process)?;
    let store = rvc_image_uploader::open_store(&args.uploader.objects).await?;
    let m = &args.uploader.maintenance;
    if args.gc_once {
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
    let step = UploadStep::new(pool.clone(), store.clone());
    let ready = step.ready_check();
    let shutdown = rvc_runtime::shutdown::on_signal();
    let jobs = maintenance::spawn(
        Maintenance::new(pool.clone(), store, m),
        schedule,
        shutdown.clone(),
    );
    let result = runner::run(
        "rvc-image-uploader",
        rvc_image_uploader::DEFAULT_METRICS_ADDR,
        &args.process,
        pool,
        Arc::new(step),
        Some(ready),
        shutdown.clone(),
    )
    .await;
    shutdown.cancel();
    let _ = jobs.await;
    result?;
    Ok(())
}
