//! Configuration: flags, environment and `.env`, with the defaults compiled in.
use rvc_runtime::{DatabaseArgs, TelemetryArgs};

#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "rvc-ingest-api",
    about = "Retail Vision Catalog HTTP API: POST products with photos, read their pipeline status",
    after_help = "Example:\n  DATABASE_URL=postgres://postgres@127.0.0.1:5432/rvc rvc-ingest-api --http-addr 127.0.0.1:8080"
)]
pub struct Config {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub http_addr: String,
    #[command(flatten)]
    pub db: DatabaseArgs,
    #[command(flatten)]
    pub telemetry: TelemetryArgs,
    /// Apply pending migrations at start.
    #[arg(long, env = "AUTO_MIGRATE", default_value_t = true, action = clap::ArgAction::Set)]
    pub auto_migrate: bool,
    #[command(flatten)]
    pub limits: Limits,
    /// Serve /healthz, /readyz and /metrics on this separate address instead of HTTP_ADDR
    /// (unauthenticated either way). Unset: on HTTP_ADDR.
    #[arg(long, env = "METRICS_ADDR")]
    pub metrics_addr: Option<String>,
    #[command(flatten)]
    pub auth: rvc_auth::AuthArgs,
    /// HTTP worker threads (0: one per core).
    #[arg(long, env = "HTTP_WORKERS", default_value_t = 0)]
    pub http_workers: usize,
    /// Redis of the read side's product cache: after each commit the API writes a tombstone
    /// there at once (the outbox trigger guarantees it anyway). Unset or empty: skipped.
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: Option<String>,
    /// Key prefix of the read side's cache (must match rvc-catalog's).
    #[arg(long, env = "CACHE_KEY_PREFIX", default_value = "rvc:")]
    pub cache_key_prefix: String,
    /// Seconds a cache tombstone lives (must match rvc-catalog's).
    #[arg(long, env = "CACHE_TOMBSTONE_TTL_SECS", default_value_t = 10)]
    pub cache_tombstone_ttl_secs: u64,
}

#[derive(Debug, Clone, clap::Args)]
pub struct Limits {
    /// Currency used when a request names none (ISO 4217).
    #[arg(long, env = "DEFAULT_CURRENCY", default_value = "EUR")]
    pub default_currency: String,
    /// Most photos per product.
    #[arg(long, env = "MAX_IMAGES", default_value_t = 10)]
    pub max_images: usize,
    /// Largest photo in bytes.
    #[arg(long, env = "MAX_IMAGE_BYTES", default_value_t = 10 * 1024 * 1024)]
    pub max_image_bytes: usize,
    /// Largest sum of photo bytes in one request.
    #[arg(long, env = "MAX_TOTAL_IMAGE_BYTES", default_value_t = 50 * 1024 * 1024)]
    pub max_total_bytes: usize,
    /// Largest photo width and height in pixels.
    #[arg(long, env = "MAX_IMAGE_DIMENSION", default_value_t = 8192)]
    pub max_image_dimension: u32,
    /// Request bodies (photos) held in memory at once, all requests together, in bytes. A
    /// request reserves its Content-Length (or the largest allowed body) before its body is
    /// read; when the reservation cannot be made within INGEST_ADMISSION_WAIT_MS the answer is
    /// 503 with Retry-After.
    #[arg(long, env = "MAX_INFLIGHT_BODY_BYTES", default_value_t = 256 * 1024 * 1024)]
    pub max_inflight_body_bytes: usize,
    /// How long a request may wait for room among the in-flight bodies, in milliseconds.
    #[arg(long, env = "INGEST_ADMISSION_WAIT_MS", default_value_t = 2000)]
    pub admission_wait_ms: u64,
    /// How long a client may take to send its whole body, in seconds (then 408).
    #[arg(long, env = "BODY_READ_TIMEOUT_SECS", default_value_t = 60)]
    pub body_read_timeout_secs: u64,
}

impl Limits {
    /// The largest multipart body a valid request can have: the photos plus room for the
    /// text fields and the multipart framing.
    pub fn max_body_bytes(&self) -> usize {
        self.max_total_bytes.saturating_add(1024 * 1024)
    }
}

impl Default for Limits {
    /// The defaults of the `#[arg]` attributes above (stated once, there).
    fn default() -> Self {
        rvc_runtime::args::defaults()
    }
}
