//! `rvc-catalog`: the read side (gRPC ProductService, HTTP reads, cache invalidator).
use clap::Parser;
use rvc_catalog::{Config, ReaderOptions};

/// mimalloc rather than glibc's malloc: a cache-hot GetProductsInfo allocates a few hundred
/// small strings, and glibc's allocator took a fifth of the CPU; +25 % requests/s at 8 and 32
/// callers (docs/benchmarks.md, the catalog section; the bench uses the same allocator).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    rvc_runtime::load_dotenv()?;
    let config = Config::parse();
    let _telemetry = rvc_runtime::telemetry::init("rvc-catalog", &config.telemetry)?;
    rvc_runtime::health::build_info("")?;
    tracing::info!(db = ?config.db, cache = config.cache.url().is_some(), "starting rvc-catalog");
    let shutdown = rvc_runtime::shutdown::on_signal();
    let cache = rvc_catalog::cache_from(&config.cache).await?;
    let running = rvc_catalog::start(&config, cache, ReaderOptions::default(), shutdown).await?;
    running.wait().await;
    tracing::info!("stopped cleanly");
    Ok(())
}
