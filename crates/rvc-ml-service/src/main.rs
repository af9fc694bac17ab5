//! `rvc-ml-service`: the image-embedding gRPC server.
use anyhow::Context;
use clap::Parser;
use rvc_ml_service::{Embedder, ServiceConfig};
use rvc_runtime::TelemetryArgs;
use std::sync::Arc;

/// Image-embedding gRPC service (rvc.ml.v1.MachineLearningService + grpc.health.v1.Health).
/// Every option can be given as the environment variable shown (a .env file is read too).
#[derive(Debug, Parser)]
#[command(name = "rvc-ml-service", version)]
struct Args {
    /// Address the gRPC server listens on.
    #[arg(long, env = "ML_ADDR", default_value = "127.0.0.1:50051")]
    ml_addr: String,
    /// Optional HTTP address for /healthz, /readyz and /metrics (Prometheus). Unset: none.
    #[arg(long, env = "METRICS_ADDR")]
    metrics_addr: Option<String>,
    #[command(flatten)]
    service: ServiceConfig,
    #[command(flatten)]
    telemetry: TelemetryArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    rvc_runtime::load_dotenv()?;
    let args = Args::parse();
    let _telemetry = rvc_runtime::telemetry::init("rvc-ml-service", &args.telemetry)?;
    tracing::info!(
        model_path = %args.service.embedder.model_path.display(),
        workers = args.service.effective_workers(),
        queue_capacity = args.service.queue_capacity,
        max_batch = args.service.max_batch,
        max_message_bytes = args.service.max_message_bytes,
        "starting"
    );
    let listener = tokio::net::TcpListener::bind(&args.ml_addr)
        .await
        .with_context(|| format!("cannot bind ML_ADDR={}", args.ml_addr))?;
    let token = rvc_runtime::shutdown::on_signal();

    let embedder_cfg = args.service.embedder.clone();
    let embedder = tokio::task::spawn_blocking(move || Embedder::load(embedder_cfg))
        .await
        .context("model loading task")??;
    rvc_runtime::health::build_info(embedder.model_version())?;

    let serving = rvc_ml_service::Serving::default();
    let metrics = match &args.metrics_addr {
        Some(addr) => {
            let (bound, server) = rvc_runtime::health::serve(addr, serving.ready_check())?;
            tracing::info!(%bound, "health and metrics endpoint listening");
            let handle = server.handle();
            tokio::spawn(server);
            Some(handle)
        }
        None => None,
    };

    let stop = token.clone();
    rvc_ml_service::serve_with_health(
        listener,
        args.service,
        Arc::new(embedder),
        serving,
        async move {
            stop.cancelled().await;
        },
    )
    .await?;
    if let Some(handle) = metrics {
        handle.stop(true).await;
    }
    Ok(())
}
