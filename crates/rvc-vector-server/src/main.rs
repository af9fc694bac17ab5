//! `rvc-vector-index`: local Qdrant-protocol vector index (see the `rvc_vector_server` docs).

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use tracing_subscriber::EnvFilter;

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
    /// Log output format.
    #[arg(long, env = "LOG_FORMAT", default_value = "pretty", value_parser = ["pretty", "json"])]
    log_format: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    rvc_runtime::load_dotenv()?;
    let args = Args::parse();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    if args.log_format == "json" {
        tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .init();
    } else {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }

    let listener = tokio::net::TcpListener::bind(args.addr)
        .await
        .with_context(|| format!("binding {}", args.addr))?;
    let cfg = rvc_vector_server::Config {
        data_dir: args.data_dir,
    };
    rvc_vector_server::serve(listener, cfg, shutdown_signal())
        .await
        .context("rvc-vector-index failed")?;
    Ok(())
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received, shutting down"),
        () = term => tracing::info!("SIGTERM received, shutting down"),
    }
}
