//! Configuration: flags, environment and `.env`, with the defaults compiled in.
use rvc_runtime::{DatabaseArgs, TelemetryArgs};

#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "rvc-catalog",
    about = "Retail Vision Catalog read side: gRPC ProductService and HTTP product reads behind a Redis cache",
    after_help = "Example:\n  DATABASE_URL=postgres://postgres@127.0.0.1:5432/rvc REDIS_URL=redis://127.0.0.1:6379 rvc-catalog"
)]
pub struct Config {
    /// gRPC address (ProductService, health, reflection); port 0 picks a free one.
    #[arg(long, env = "GRPC_ADDR", default_value = "127.0.0.1:8091")]
    pub grpc_addr: String,
    /// HTTP address (reads, /healthz /readyz /metrics, OpenAPI, Swagger UI).
    #[arg(long, env = "CATALOG_HTTP_ADDR", default_value = "127.0.0.1:8081")]
    pub http_addr: String,
    #[command(flatten)]
    pub db: DatabaseArgs,
    #[command(flatten)]
    pub cache: CacheArgs,
    #[command(flatten)]
    pub telemetry: TelemetryArgs,
    /// Most ids in one GetProductsInfo / batchGet call.
    #[arg(long, env = "CATALOG_MAX_IDS", default_value_t = 500)]
    pub max_ids: usize,
    /// HTTP worker threads (0: one per core).
    #[arg(long, env = "HTTP_WORKERS", default_value_t = 0)]
    pub http_workers: usize,
}

#[derive(Debug, Clone, clap::Args)]
pub struct CacheArgs {
    /// Redis for the product cache. Unset or empty: no cache, every read goes to Postgres.
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: Option<String>,
    /// Prefix of every cache key.
    #[arg(long, env = "CACHE_KEY_PREFIX", default_value = "rvc:")]
    pub cache_key_prefix: String,
    /// Seconds a cached product lives (the last net; invalidation is the mechanism).
    #[arg(long, env = "CACHE_TTL_SECS", default_value_t = 300)]
    pub cache_ttl_secs: u64,
    /// Seconds a tombstone lives; a fill whose Postgres read is older than half of it is skipped.
    #[arg(long, env = "CACHE_TOMBSTONE_TTL_SECS", default_value_t = 10)]
    pub cache_tombstone_ttl_secs: u64,
    /// Per-command Redis timeout in milliseconds (slower counts as down for that read).
    #[arg(long, env = "CACHE_TIMEOUT_MS", default_value_t = 250)]
    pub cache_timeout_ms: u64,
    /// Run the cache invalidator (cache_invalidations → Redis tombstones) in this process.
    #[arg(long, env = "CACHE_INVALIDATOR", default_value_t = true, action = clap::ArgAction::Set)]
    pub cache_invalidator: bool,
    /// Invalidator idle poll interval in milliseconds (NOTIFY wakes it sooner).
    #[arg(long, env = "CACHE_INVALIDATOR_POLL_MS", default_value_t = 500)]
    pub cache_invalidator_poll_ms: u64,
}

impl CacheArgs {
    pub fn url(&self) -> Option<&str> {
        self.redis_url
            .as_deref()
            .map(str::trim)
            .filter(|u| !u.is_empty())
    }

    pub fn cache_config(&self, url: &str) -> rvc_cache::CacheConfig {
        rvc_cache::CacheConfig {
            url: url.to_owned(),
            prefix: self.cache_key_prefix.clone(),
            value_ttl: std::time::Duration::from_secs(self.cache_ttl_secs.max(1)),
            tombstone_ttl: std::time::Duration::from_secs(self.cache_tombstone_ttl_secs.max(1)),
            command_timeout: std::time::Duration::from_millis(self.cache_timeout_ms.max(1)),
        }
    }
}
