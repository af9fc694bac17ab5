//! `rvc-vector-index`: local Qdrant-protocol vector index (see the `rvc_vector_server` docs).

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;

/// Local vector index speaking the subset of Qdrant's gRPC API that rvc uses, over
/// qdrant-edge shards on disk. Point QDRANT_URL at http://VECTOR_ADDR.
#[derive(Debug, Parser)]
#[command(name = "rvc-vector-index", version)]
struct Args {
    /// gRPC listen address (Qdrant's gRPC port is 6334).
    #[arg(long, env = "VECTOR_ADDR", default_value = "127.0.0.1:6334")]
    addr: SocketAddr,
    /// Directory holding the collections (created when missing; one process per directory).
    #[arg(long, env = "VECTOR_DATA_DIR", default_value = "var/vector-index")]
    data_dir: PathBuf,
    /// Address of /healthz, /readyz and /metrics (request counts and durations per gRPC
    /// method); unset: none.
    #[arg(long, env = "METRICS_ADDR")]
    metrics_addr: Option<String>,
    #[command(flatten)]
    telemetry: rvc_runtime::TelemetryArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    rvc_runtime::load_dotenv()?;
    let args = Args::parse();
    let _telemetry = rvc_runtime::telemetry::init("rvc-vector-index", &args.telemetry)?;
    let listener = tokio::net::TcpListener::bind(args.addr)
        .await
        .with_context(|| format!("binding {}", args.addr))?;
    if let Some(addr) = args
        .metrics_addr
        .as_deref()
        .filter(|a| !a.trim().is_empty())
    {
        let ready: rvc_runtime::health::ReadyCheck =
            std::sync::Arc::new(|| Box::pin(async { Ok::<(), String>(()) }));
        let (bound, server) = rvc_runtime::health::serve(addr, ready)?;
        tracing::info!(%bound, "health and metrics endpoint up");
        tokio::spawn(server);
    }
    let cfg = rvc_vector_server::Config {
        data_dir: args.data_dir,
    };
    let shutdown = rvc_runtime::shutdown::on_signal();
    rvc_vector_server::serve(listener, cfg, async move { shutdown.cancelled().await })
        .await
        .context("rvc-vector-index failed")?;
    Ok(())
}
