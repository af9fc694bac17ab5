//! Configuration: flags, environment and `.env`, with the defaults compiled in.
use rvc_runtime::{DatabaseArgs, TelemetryArgs};

#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "rvc-catalog",
    about = "Retail Vision Catalog read side: gRPC ProductService and RecognitionService, HTTP product reads and recognition, behind a Redis cache and API keys",
    after_help = "Example:\n  DATABASE_URL=postgres://postgres@127.0.0.1:5432/rvc REDIS_URL=redis://127.0.0.1:6379 \\\n  ML_SERVICE_URL=http://127.0.0.1:50051 QDRANT_URL=http://127.0.0.1:6334 rvc-catalog"
)]
pub struct Config {
    /// gRPC address (ProductService, RecognitionService, health, reflection); port 0 picks a
    /// free one.
    #[arg(long, env = "GRPC_ADDR", default_value = "127.0.0.1:8091")]
    pub grpc_addr: String,
    /// HTTP address (reads, recognition, /healthz /readyz /metrics, OpenAPI, Swagger UI).
    #[arg(long, env = "CATALOG_HTTP_ADDR", default_value = "127.0.0.1:8081")]
    pub http_addr: String,
    /// Serve /healthz, /readyz and /metrics on this separate address instead of
    /// CATALOG_HTTP_ADDR (unauthenticated either way). Unset: on CATALOG_HTTP_ADDR.
    #[arg(long, env = "METRICS_ADDR")]
    pub metrics_addr: Option<String>,
    #[command(flatten)]
    pub db: DatabaseArgs,
    #[command(flatten)]
    pub cache: CacheArgs,
    #[command(flatten)]
    pub telemetry: TelemetryArgs,
    /// API keys and rate limits (shared with rvc-ingest-api; docs/security.md).
    #[command(flatten)]
    pub auth: rvc_auth::AuthArgs,
    #[command(flatten)]
    pub recognition: RecognitionArgs,
    /// Where the product photos are, for the web console (`/console`; read only).
    #[command(flatten)]
    pub objects: rvc_objects::ObjectStoreConfig,
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

/// Where recognition (`POST /api/v1/recognize`, gRPC `RecognitionService`) finds its
/// backends. Nothing is contacted at start: while a backend is unreachable, recognition answers
/// 503 problem+json (gRPC UNAVAILABLE) and the product reads are unaffected.
#[derive(Debug, Clone, clap::Args)]
pub struct RecognitionArgs {
    /// The ML service (EmbedRegions).
    #[arg(long, env = "ML_SERVICE_URL", default_value = "http://127.0.0.1:50051")]
    pub ml_service_url: String,
    /// Timeout of one ML call of a recognition, in milliseconds.
    #[arg(long, env = "RECOGNITION_ML_TIMEOUT_MS", default_value_t = 10_000)]
    pub recognition_ml_timeout_ms: u64,
    /// The vector index (Qdrant gRPC API; rvc-vector-index locally) and the collection the
    /// vectorizer fills.
    #[command(flatten)]
    pub qdrant: rvc_vectors::QdrantArgs,
    /// How often recognition checks the active model (models table), in milliseconds: after
    /// a model migration's switch it answers from the new model within this time.
    #[arg(long, env = "RECOGNITION_MODEL_REFRESH_MS", default_value_t = 2000)]
    pub recognition_model_refresh_ms: u64,
    /// Approach, default min_score (RECOGNITION_MIN_SCORE) and the other pipeline settings.
    #[command(flatten)]
    pub recognizer: rvc_recognition::RecognizerConfig,
}
