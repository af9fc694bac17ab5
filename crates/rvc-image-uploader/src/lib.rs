//! The `upload_images` step of the pipeline, on the outbox engine (`rvc-outbox`), and the
//! scheduled orphan collection of the bucket.
//!
//! For each claimed `upload_images` row (one product version) [`UploadStep`]:
//! 1. loads the version's photos (`staged_bytes`, `sha256`, `content_type`);
//! 2. PUTs each still-staged photo to `products/{product_id}/{sha256}.{ext}` with its
//!    Content-Type and `sha256` user metadata; on a retry of the row, unless HEAD shows the
//!    same object is already there (a re-run after a crash writes nothing new);
//! 3. in `commit`, inside the engine's completion transaction, sets `object_key` and drops
//!    `staged_bytes`; the engine marks the row done, moves the product to `images_stored` and
//!    enqueues `vectorize` in that same transaction.
//!
//! Object-store errors that a retry can fix (network, timeouts, 5xx) back off and retry;
//! credentials or a missing bucket dead-letter the row at once with a message naming the
//! bucket and endpoint.
//!
//! [`gc::collect_orphans`] deletes objects that Postgres does not need (see its module), and
//! [`maintenance`] runs it with outbox pruning on a cron schedule (apalis).

pub mod error;
pub mod gc;
pub mod maintenance;
pub mod step;

pub use error::UploaderError;
pub use gc::{
    collect_orphans, collect_orphans_with, GcItem, GcReason, GcReport, DEFAULT_ARCHIVE_RETENTION,
};
pub use maintenance::{Maintenance, MaintenanceArgs};
pub use step::{photo_key, StoredPhoto, UploadStep, Uploaded, SHA256_METADATA};

use rvc_objects::{FsStore, ObjectStore, ObjectStoreConfig, S3Store};
use std::sync::Arc;

/// Default address of `/healthz`, `/readyz` and `/metrics`.
pub const DEFAULT_METRICS_ADDR: &str = "127.0.0.1:9101";

/// The uploader's own settings (flattened into the binary's args).
#[derive(Debug, Clone, clap::Args)]
pub struct UploaderArgs {
    #[command(flatten)]
    pub objects: ObjectStoreConfig,
    #[command(flatten)]
    pub maintenance: MaintenanceArgs,
}

/// Opens the configured store (S3 when `S3_ENDPOINT` is set, else the directory) and makes
/// sure the bucket exists. Only a configuration error fails: an unreachable store or refused
/// credentials are logged, and the worker starts anyway (its readiness reports the store,
/// and its rows retry or dead-letter with the reason, visible in `rvcctl`).
pub async fn open_store(config: &ObjectStoreConfig) -> Result<Arc<dyn ObjectStore>, UploaderError> {
    let store: Arc<dyn ObjectStore> = match config.s3() {
        Some(s3) => Arc::new(S3Store::new(s3)?),
        None => Arc::new(FsStore::new(&config.object_store_dir)),
    };
    match store.ensure_bucket().await {
        Ok(()) => tracing::info!(backend = store.backend(), location = %store.location(),
            "object store ready"),
        Err(e) if e.is_retryable() => tracing::warn!(backend = store.backend(),
            location = %store.location(), error = %e,
            "object store unreachable at start; uploads retry until it answers"),
        Err(e) => tracing::error!(backend = store.backend(), location = %store.location(),
            error = %e, "object store refused us at start (credentials? bucket?); uploads will be dead-lettered"),
    }
    Ok(store)
}
